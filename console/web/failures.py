"""Placeholder: this screen family is being built (issue 4)."""
from flask import Blueprint

bp = Blueprint("failures", __name__)


@bp.get("/failures")
def index():
    return "coming"
