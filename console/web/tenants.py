"""Placeholder: this screen family is being built (issue 4)."""
from flask import Blueprint

bp = Blueprint("tenants", __name__)


@bp.get("/tenants")
def index():
    return "coming"
