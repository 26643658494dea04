"""Placeholder: this screen family is being built (issue 4)."""
from flask import Blueprint

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
def index():
    return "coming"


@bp.get("/jobs/<job_id>")
def show(job_id):
    return job_id
