"""Placeholder: this screen family is being built (issue 4)."""
from flask import Blueprint

bp = Blueprint("handlers", __name__)


@bp.get("/handlers")
def index():
    return "coming"
