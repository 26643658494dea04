"""Placeholder: this screen family is being built (issue 4)."""
from flask import Blueprint

bp = Blueprint("new_job", __name__)


@bp.get("/jobs/new")
def index():
    return "coming"
