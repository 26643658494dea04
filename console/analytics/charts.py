"""Charts: functions that turn analytics results into Plotly figures.

Views call these and templates only embed the figure's JSON (``templates/shared/_chart.html``);
``static/js/console.js`` draws every embedded figure with the plotly.js the app serves, so the
Python and JavaScript versions always match.
"""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

# One palette for every chart, the same colours the status badges use (static/css/console.css).
COLOURS = {"created": "#64748b", "completed": "#15803d", "failed": "#b91c1c",
           "cancelled": "#a16207", "avg": "#2563eb", "p95": "#7c3aed", "depth": "#0891b2",
           "rejections": "#ea580c", "success": "#15803d"}


def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}}, "height": 260,
            "margin": {"l": 50, "r": 16, "t": 36, "b": 36},
            "legend": {"orientation": "h", "y": -0.2}, "yaxis": {"title": y_title,
                                                                 "rangemode": "tozero"},
            "xaxis": {"type": "date"}, "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)", **extra}


def throughput_chart(trends: dict[str, Any], title: str = "Jobs") -> go.Figure:
    """Jobs queued (line) against jobs completed, failed and cancelled (stacked bars)."""
    x = trends["points"]
    fig = go.Figure(layout=_layout(title, "jobs", barmode="stack"))
    for name in ("completed", "failed", "cancelled"):
        fig.add_bar(x=x, y=trends[f"jobs_{name}"], name=name, marker_color=COLOURS[name])
    fig.add_scatter(x=x, y=trends["jobs_created"], name="queued", mode="lines",
                    line={"color": COLOURS["created"], "width": 2})
    return fig


def failure_chart(trends: dict[str, Any], title: str = "Failures") -> go.Figure:
    """Failed jobs, timed-out attempts and limit rejections."""
    x = trends["points"]
    fig = go.Figure(layout=_layout(title, "count"))
    fig.add_bar(x=x, y=trends["jobs_failed"], name="failed jobs", marker_color=COLOURS["failed"])
    fig.add_scatter(x=x, y=trends["timeouts"], name="timeouts", mode="lines",
                    line={"color": COLOURS["p95"]})
    if "limit_rejections" in trends:
        fig.add_scatter(x=x, y=trends["limit_rejections"], name="limit rejections",
                        mode="lines", line={"color": COLOURS["rejections"], "dash": "dot"})
    return fig


def duration_chart(trends: dict[str, Any], title: str = "Duration") -> go.Figure:
    """Average and p95 attempt duration, and the average wait before a job started."""
    x = trends["points"]
    fig = go.Figure(layout=_layout(title, "milliseconds"))
    fig.add_scatter(x=x, y=trends["avg_duration_ms"], name="average", mode="lines+markers",
                    line={"color": COLOURS["avg"]}, connectgaps=False)
    fig.add_scatter(x=x, y=trends["p95_duration_ms"], name="p95", mode="lines+markers",
                    line={"color": COLOURS["p95"]}, connectgaps=False)
    fig.add_scatter(x=x, y=trends["avg_wait_ms"], name="wait", mode="lines",
                    line={"color": COLOURS["created"], "dash": "dot"}, connectgaps=False)
    return fig


def success_rate_chart(trends: dict[str, Any], title: str = "Success rate") -> go.Figure:
    x = trends["points"]
    rates = [None if r is None else round(100 * r, 1) for r in trends["success_rate"]]
    fig = go.Figure(layout=_layout(title, "%", yaxis={"title": "%", "range": [0, 100]}))
    fig.add_scatter(x=x, y=rates, name="success", mode="lines+markers",
                    line={"color": COLOURS["success"]}, connectgaps=False)
    return fig


def queue_depth_chart(trends: dict[str, Any], title: str = "Queue depth") -> go.Figure:
    """Jobs waiting, as runners sampled it: the hour's average and its largest sample."""
    x = trends["points"]
    fig = go.Figure(layout=_layout(title, "jobs waiting"))
    fig.add_scatter(x=x, y=trends["queue_depth"], name="average", mode="lines",
                    line={"color": COLOURS["depth"]}, connectgaps=False)
    fig.add_scatter(x=x, y=trends["queue_depth_max"], name="largest", mode="lines",
                    line={"color": COLOURS["depth"], "dash": "dot"}, connectgaps=False)
    return fig


def breakdown_chart(counts: dict[str, int], title: str) -> go.Figure:
    """A horizontal bar per key (jobs by type, by status, errors by type), largest first."""
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig = go.Figure(layout=_layout(title, "", height=max(160, 40 + 28 * len(items)),
                                   xaxis={"rangemode": "tozero"}, yaxis={"automargin": True},
                                   showlegend=False))
    fig.add_bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                marker_color=COLOURS["avg"])
    return fig


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON for ``shared/_chart.html`` (plotly's encoder handles dates and numpy)."""
    return fig.to_json()
