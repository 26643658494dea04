"""The web layer: blueprints that translate HTTP into ``JobService`` verbs and render pages."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from .home import bp as home

    app.register_blueprint(home)
