"""Errors an operator can act on: a page (or, for htmx, a message in the page's message area)
that says what went wrong and what to do. Bad input is a 4xx with a message, never a 500."""
from __future__ import annotations

from flask import Flask, current_app, g, make_response, render_template
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from ..jobs.availability import as_unavailable
from ..jobs.types import DatabaseUnavailableError
from .rendering import is_htmx

ADVICE = {
    400: "The request was not understood. Go back and check the form.",
    403: "Your role does not allow this. Ask an admin for a role that does.",
    404: "There is nothing here. It may have been pruned, or the link is wrong.",
    405: "This address does not take that kind of request.",
    413: "The upload is too large. Split the file into smaller ones.",
    429: "Too many attempts. Wait a minute and try again.",
}


def _render_error(status: int, title: str, message: str):
    if is_htmx():
        # htmx swaps the message into the page's message area instead of the target.
        body = render_template("errors/_message.html", title=title, message=message)
        return body, status, {"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"}
    return render_template("errors/error.html", status=status, title=title,
                           message=message), status


def database_unavailable_page(error: DatabaseUnavailableError):
    """503 with Retry-After: the database is down or busy; nothing was changed, try again."""
    if not hasattr(g, "_login_user"):
        # The signed-in user could not be loaded either: draw the page without the menu
        # rather than fail again while rendering it.
        g._login_user = current_app.login_manager.anonymous_user()
    detail = f" ({error.detail})" if error.detail else ""
    if error.reason == "busy":
        title = "The database is busy"
        message = (f"Other work kept the database locked for too long{detail}, so this could "
                   "not be done. Try again in a few seconds.")
    else:
        title = "The database is unavailable"
        message = (f"The console cannot reach its database{detail}, so this page could not be "
                   "shown or your change saved. Try again in a few seconds.")
    response = make_response(_render_error(503, title, message))
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def init_errors(app: Flask) -> None:
    @app.errorhandler(DatabaseUnavailableError)
    def database_unavailable(error: DatabaseUnavailableError):
        return database_unavailable_page(error)

    @app.errorhandler(SQLAlchemyError)
    def database_error(error: SQLAlchemyError):
        unavailable = as_unavailable(error)
        if unavailable is None:
            raise error   # a bug, not an outage: Flask logs it and answers 500
        return database_unavailable_page(unavailable)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _render_error(400, "The form expired",
                             f"{error.description} Reload the page and submit it again.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code >= 500:
            return error
        description = error.description or ""
        # werkzeug's stock texts are long; ours say what to do next.
        default = type(error).description
        message = ADVICE.get(error.code, "") if description == default else description
        return _render_error(error.code, error.name, message)
