"""Sign-in, sign-out, roles. Every page but sign-in, /healthz, /metrics and static files needs a
signed-in user; actions check the role (``role_required``)."""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ...extensions import db, session_write
from ..models import ROLES, User
from ..scope import bind_tenants, refuse_unscoped, tenant_scoped

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
PUBLIC_ENDPOINTS = {"auth.login", "monitoring.healthz", "monitoring.metrics", "static",
                    "assets.plotly_js"}
# The HTTP API (console/api) authenticates every request itself, with bearer tokens only: a
# session cookie neither signs an API call in nor is asked for.
PUBLIC_PATH_PREFIXES = ("/api/v1/",)
UTC = timezone.utc
# Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


@bp.before_app_request
def require_sign_in():
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    if request.path.startswith(PUBLIC_PATH_PREFIXES):
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    refuse_unscoped(current_app.view_functions.get(request.endpoint))
    return None


def role_required(role: str):
    """Refuse (403) users below ``role``."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.may(role):
                abort(403, f"this needs the {role} role")
            return view(*args, **kwargs)
        return wrapper
    return decorate


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in would help phishing."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(
            target).netloc:
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        user = db.session.scalar(select(User).where(User.username == username))
        valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
        if user and valid and user.is_active:
            with session_write():
                user.last_login_at = datetime.now(UTC)
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        error = "Wrong username or password, or the account is disabled."
    status = 401 if error else 200
    return render_template("auth/login.html", error=error,
                           username=request.form.get("username", "")), status


@bp.post("/logout")
@tenant_scoped   # shows no tenant
def logout():
    logout_user()
    flash("Signed out.")
    return redirect(url_for("auth.login"))


def set_user(username: str, role: str, password: str,
             tenants: Iterable[str] | None = None) -> User:
    """Create or update a user (the CLI and the demo use this). ``tenants``: bind the user to
    exactly these (an empty list makes it staff); None leaves an existing user's binding as it
    is, and makes a new user staff.

    :raise ValueError: a bad role, name or password, or a tenant that does not exist.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 80:
        raise ValueError("username must be 1–80 characters")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    password_hash = generate_password_hash(password)   # slow: before taking the write lock
    with session_write() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            user = User(username=username, created_at=datetime.now(UTC), active=True)
            session.add(user)
        user.role = role
        user.password_hash = password_hash
        user.active = True
        if tenants is not None:
            session.flush()   # the new user's id
            bind_tenants(session, user.id, tenants)
    return user
