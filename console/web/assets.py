"""Front-end assets: htmx and its SSE extension from ``static/vendor``, plotly.js from the
plotly wheel (so the Python and JavaScript versions always match). ``ASSETS_FROM_CDN`` swaps in
the same pinned versions from a public CDN, with integrity hashes of these very files."""
from __future__ import annotations

from importlib.resources import files

import plotly
from flask import Blueprint, current_app, send_file, url_for

bp = Blueprint("assets", __name__)
PLOTLY_JS = files("plotly") / "package_data" / "plotly.min.js"
PLOTLY_JS_VERSION = "4.1.1"   # what plotly.py's wheel bundles (its file's header says so)

# name: (local url builder, CDN URL, subresource-integrity hash of the local file)
_SCRIPTS = {
    "htmx": (lambda: url_for("static", filename="vendor/htmx.min.js"),
             "https://cdn.jsdelivr.net/npm/htmx.org@2.0.11/dist/htmx.min.js",
             "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"),
    "htmx_sse": (lambda: url_for("static", filename="vendor/sse.min.js"),
                 "https://cdn.jsdelivr.net/npm/htmx-ext-sse@2.2.4/dist/sse.min.js",
                 "sha384-A986SAtodyH8eg8x8irJnYUk7i9inVQqYigD6qZ9evobksGNIXfeFvDwLSHcp31N"),
    "plotly": (lambda: url_for("assets.plotly_js", v=plotly.__version__),
               f"https://cdn.plot.ly/plotly-{PLOTLY_JS_VERSION}.min.js",
               "sha384-AFNp2MtSm5/oZbEs/J19F/Ah57MEiVsoed8nE3fq2Wnccdl1u/EkyJ9XKKU8rt7+"),
}


@bp.get("/assets/plotly.min.js")
def plotly_js():
    # Versioned URL (?v=), so a long cache is safe across upgrades.
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=7 * 86400)


@bp.app_context_processor
def script_sources():
    def script_src(name: str) -> dict[str, str]:
        local, cdn, integrity = _SCRIPTS[name]
        if current_app.config.get("ASSETS_FROM_CDN"):
            return {"src": cdn, "integrity": integrity, "crossorigin": "anonymous"}
        return {"src": local()}
    return {"script_src": script_src}
