"""How views answer: the whole page, or for an htmx request just the partial it swaps in; and the
template filters every screen shares (numbers, durations, times, JSON)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask, render_template, request
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from markupsafe import Markup

UTC = timezone.utc


class CompiledTemplates(BytecodeCache):
    """Templates compiled once per process and shared by every app it builds (each app has its
    own Jinja environment, which would otherwise parse and compile every template again: the
    test suite builds an app per test). Jinja checks each entry against its template's
    source, so an edited template is compiled afresh."""

    def __init__(self):
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render_view(page: str, partial: str | None = None, status: int = 200, **context: Any):
    """Render ``page``, or ``partial`` when htmx asks (one context, two templates).

    A boosted or history-restoring htmx request wants the whole page, so it gets it.
    """
    wants_partial = (partial is not None and is_htmx()
                     and request.headers.get("HX-Boosted") != "true"
                     and request.headers.get("HX-History-Restore-Request") != "true")
    return render_template(partial if wants_partial else page, **context), status


def safe_json(text: str) -> Markup:
    """JSON text made safe inside <script type="application/json">: no '</script>' breakout."""
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def duration(value: timedelta | float | int | None) -> str:
    """12 ms, 3.4 s, 5 min 2 s, 2 h 5 min. Numbers are milliseconds."""
    if value is None:
        return "–"
    ms = value.total_seconds() * 1000 if isinstance(value, timedelta) else float(value)
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def timestamp(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """'in 5 min' or '3 h ago': how far a moment is from now."""
    if value is None:
        return "–"
    delta = (value - (now or datetime.now(UTC))).total_seconds()
    text = duration(abs(delta) * 1000) if abs(delta) >= 1 else "now"
    if text == "now":
        return text
    return f"in {text}" if delta > 0 else f"{text} ago"


def log_time(value: datetime | None) -> str:
    """A log line's time: 14:03:07.123 (UTC; the attempt's start gives the day)."""
    return "–" if value is None else value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def init_rendering(app: Flask) -> None:
    for name, function in (("safe_json", safe_json), ("number", number), ("percent", percent),
                           ("duration", duration), ("timestamp", timestamp), ("ago", ago),
                           ("pretty_json", pretty_json), ("log_time", log_time)):
        app.add_template_filter(function, name)
