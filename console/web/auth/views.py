"""Sign-in, sign-out, roles. Every page but sign-in, /healthz, /metrics and static files needs a
signed-in user; actions check the role (``role_required``).

A session holds the user's id and session version (``User.get_id``); a request whose version
is no longer the user's is signed out. Sign-out, a new password, a new role and disabling
raise the version (``User.end_sessions``), so every cookie signed in before stops working,
however it was copied. Failed sign-ins are throttled (``throttle.py``); passwords must pass
``passwords.password_problem``.
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ...extensions import db, session_write
from ...jobs.audit import Actor, record
from ..audit.actor import console_actor, record_sign_in
from ..models import ROLES, User
from ..scope import bind_tenants, refuse_unscoped, tenant_scoped
from .passwords import password_problem
from .throttle import (
    ThrottlePolicy,
    forget_failures,
    record_failure,
    seconds_blocked,
    throttle_keys,
)

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
def load_user(session_id: str) -> User | None:
    """The session's user while its version is still the user's (and the user is enabled)."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None   # a session from before versions (or forged): sign in again
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or user.session_version != int(version):
        return None
    return user


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


@dataclass(frozen=True)
class SignInResult:
    """What one try to sign in came to: ``user`` when it succeeded; ``retry_after`` seconds
    when it was refused unchecked because the username or the address is throttled."""
    user: User | None
    retry_after: int = 0


def attempt_sign_in(username: str, password: str, address: str | None) -> SignInResult:
    """The whole sign-in decision, in one place (throttle, password, recording the outcome in
    the throttle and the audit trail); the caller only renders it and starts the session. A
    throttled try is refused before anything is read or written: flooding it costs nothing."""
    engine, now = db.engine, datetime.now(UTC)
    keys = throttle_keys(username, address)
    wait = seconds_blocked(engine, keys, now)
    if wait:
        return SignInResult(None, wait)   # no hash computed: that is what throttling saves
    user = db.session.scalar(select(User).where(User.username == username))
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    if not (user and valid and user.is_active):
        record_failure(engine, keys, now, ThrottlePolicy.from_config(current_app.config))
        record_sign_in(username, False)
        return SignInResult(None)
    with session_write() as session:
        user.last_login_at = now
        forget_failures(session, keys[0])
        record_sign_in(username, True, session)
    return SignInResult(user)


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status = None, 200
    headers = {}
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        result = attempt_sign_in(username, request.form.get("password") or "",
                                 request.remote_addr)
        if result.user is not None:
            login_user(result.user)
            return redirect(_safe_next(request.args.get("next")))
        if result.retry_after:
            until = datetime.now(UTC) + timedelta(seconds=result.retry_after)
            error = (f"Too many failed sign-ins for this username or from your address. Try "
                     f"again in {_wait_text(result.retry_after)} (after {until:%H:%M:%S} UTC); "
                     "no password is checked until then.")
            status, headers = 429, {"Retry-After": str(result.retry_after)}
        else:
            error, status = "Wrong username or password, or the account is disabled.", 401
    return render_template("auth/login.html", error=error,
                           username=request.form.get("username", "")), status, headers


def _wait_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


@bp.post("/logout")
@tenant_scoped   # shows no tenant
def logout():
    """Signs out every session of this user, in every browser (a copied cookie included)."""
    if current_user.is_authenticated:
        end_sessions(current_user.id, console_actor())
    logout_user()
    flash("Signed out, in every browser.")
    return redirect(url_for("auth.login"))


def end_sessions(user_id: int, actor: Actor | None = None) -> User | None:
    """Raise ``user_id``'s session version in a write transaction of its own: every session
    of that user signed in so far is refused from its next request. With ``actor`` (an admin
    ending another's sessions, or one's own sign-out), the audit entry is in that transaction."""
    with session_write() as session:
        user = session.get(User, user_id)
        if user is not None:
            user.end_sessions()
            record(session, actor, "sessions_ended", target_type="user",
                   target_id=user.username)
    return user


class UserValueError(ValueError):
    """A value ``set_user`` refuses; ``field`` names it (``username``, ``role``, ``password``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def set_user(username: str, role: str, password: str, actor: Actor | None = None,
             tenants: Iterable[str] | None = None) -> User:
    """Create or update a user (the CLI and the demo use this; the Users screen, with the
    ``actor`` its audit entry names). Updating one ends its sessions. ``tenants``: bind the
    user to exactly these (an empty list makes it staff); None leaves an existing user's
    binding as it is, and makes a new user staff.

    :raise UserValueError: a bad role, username or password, saying why.
    :raise UnknownTenantError: a tenant that does not exist (console/web/scope.py).
    """
    if role not in ROLES:
        raise UserValueError("role", f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 80:
        raise UserValueError("username", "username must be 1–80 characters")
    problem = password_problem(password, username)
    if problem:
        raise UserValueError("password", problem)
    password_hash = generate_password_hash(password)   # slow: before taking the write lock
    with session_write() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            user = User(username=username, created_at=datetime.now(UTC), active=True,
                        session_version=1)
            session.add(user)
        else:
            user.end_sessions()   # a new password: whoever held the old one is signed out
        user.role = role
        user.password_hash = password_hash
        user.active = True
        record(session, actor, "user_added", target_type="user", target_id=username,
               after={"role": role})
        if tenants is not None:
            session.flush()   # the new user's id
            bind_tenants(session, user.id, tenants)
    return user
