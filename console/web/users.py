"""Placeholder: this screen family is being built (issue 4)."""
from flask import Blueprint

bp = Blueprint("users", __name__)


@bp.get("/users")
def index():
    return "coming"
