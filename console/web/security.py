"""Response headers that make the browser refuse what the console never does: framing, sniffed
content types, scripts or connections to other origins (plotly.js and htmx are served by us,
or by the pinned CDN when ASSETS_FROM_CDN is set)."""
from __future__ import annotations

from flask import Flask, Response

# plotly.js and htmx inject <style> elements, hence 'unsafe-inline' for styles only.
_POLICY = ("default-src 'self'; script-src 'self'{cdn}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
           "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'")
_CDN_HOSTS = " https://cdn.jsdelivr.net https://cdn.plot.ly"


def init_security_headers(app: Flask) -> None:
    policy = _POLICY.format(cdn=_CDN_HOSTS if app.config.get("ASSETS_FROM_CDN") else "")

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
