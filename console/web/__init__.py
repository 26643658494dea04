"""The web layer: blueprints that translate HTTP into ``JobService`` verbs and render pages."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from ..extensions import csrf
    from .auth import bp as auth
    from .home import bp as home
    from .monitoring import bp as monitoring

    app.register_blueprint(auth)
    app.register_blueprint(home)
    app.register_blueprint(monitoring)
    csrf.exempt(monitoring)   # GET-only probes; nothing to forge
