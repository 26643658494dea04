"""Users (admins only): add users, change roles, bind them to tenants, reset passwords, disable
and enable, sign out everywhere.

A new role, new tenants, a new password and disabling end every session of that user
(``end_sessions``); for the admin's own role or password, this browser is signed in again on
the spot.

An admin bound to tenants manages only users bound within its tenants: it sees no other user
(another user's row is a 404), and every user it adds or re-binds stays bound to some of its
tenants. Every change is refused when it would leave no active staff admin (bound to no tenant:
the only kind that manages limits and every user). Each action is its own small
form on the user's row; a refused one re-renders the list with the message on that row (422).
Each bad value gets a message on its own field; passwords are never shown back.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, abort, flash, redirect, url_for
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.security import generate_password_hash
from wtforms import (
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    ValidationError,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Regexp

from ...extensions import db, session_write
from ...jobs import get_job_service
from ...jobs.audit import record
from ..audit.actor import console_actor
from ..auth.passwords import MIN_LENGTH, password_problem
from ..auth.views import end_sessions, role_required, set_user
from ..models import User, user_tenants_table
from ..rendering import render_view
from ..scope import bind_tenants, bindings, current_scope, tenant_scoped, tenants_of, visible

ROLE_CHOICES = [SelectChoice("viewer", "viewer — reads everything"),
                SelectChoice("operator", "operator — also creates, retries and cancels jobs"),
                SelectChoice("admin", "admin — also limits, tenants and users")]
PASSWORD_HINT = (f"At least {MIN_LENGTH} characters and hard to guess: a few uncommon words "
                 "work well.")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class NewUserForm(FlaskForm):
    username = StringField("Username", filters=[_strip], validators=[
        DataRequired("Give the user a name to sign in with."),
        Length(max=80, message="At most 80 characters."),
        Regexp(r"^[\w.@+-]+$", message="Use letters, digits and . @ + - _ only (no spaces).")])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")
    tenants = SelectMultipleField("Tenants", description=(
        "The user sees only these tenants. None: staff, who sees every tenant."))
    password = PasswordField("Password", validators=[
        InputRequired(f"Give a password of at least {MIN_LENGTH} characters.")])

    def validate_password(self, field):
        _check_password(field.data, self.username.data or "")

    def validate_tenants(self, field):
        _check_tenants(field)

    def validate_username(self, field):
        if db.session.scalar(select(User.id).where(User.username == field.data)) is not None:
            raise ValidationError(f"{field.data!r} already exists: change that user's role or "
                                  "password in the list instead.")


class TenantsForm(FlaskForm):
    tenants = SelectMultipleField("Tenants")

    def validate_tenants(self, field):
        _check_tenants(field)


def _check_tenants(field) -> None:
    """A bound admin binds users within its own tenants only, and cannot make anyone staff.
    (Tenants it may not see are not among the choices, so naming one fails as unknown.)"""
    if not field.data and current_scope() is not None:
        raise ValidationError("Choose at least one of your tenants: you cannot add staff users.")


def tenant_choices(field) -> None:
    """The tenants the signed-in admin may bind users to: every tenant, or its own."""
    configs = visible(get_job_service().tenants.list_tenant_configs(), lambda t: t.tenant_id)
    field.choices = [SelectChoice(t.tenant_id, f"{t.name} ({t.tenant_id})")
                     for t in sorted(configs, key=lambda t: t.tenant_id)]


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class PasswordForm(FlaskForm):
    """The user whose password it is is ``username`` (zxcvbn tries it as a word)."""
    password = PasswordField("New password", validators=[
        InputRequired(f"Type a new password of at least {MIN_LENGTH} characters.")])

    def __init__(self, username: str, **kwargs):
        super().__init__(**kwargs)
        self.username = username

    def validate_password(self, field):
        _check_password(field.data, self.username)


def _check_password(password: str, username: str) -> None:
    problem = password_problem(password, username)
    if problem:
        raise ValidationError(problem)


class ActiveForm(FlaskForm):
    active = SelectField("Active", choices=[SelectChoice("1", "enable"),
                                            SelectChoice("0", "disable")])


def _staff(column):
    return ~select(user_tenants_table.c.user_id).where(
        user_tenants_table.c.user_id == column).exists()


def active_admins_without(user: User) -> int:
    """Active staff admins other than ``user``: what is left if ``user`` stops being one."""
    return db.session.scalar(select(db.func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id, _staff(User.id)))


def last_admin_problem(user: User, role: str, active: bool, bound: bool = False) -> str | None:
    """Why giving ``user`` this role, state and binding would leave nobody able to manage
    users and limits (a staff admin)."""
    if role == "admin" and active and not bound:
        return None
    if (user.role == "admin" and user.active and not tenants_of(user.id)
            and active_admins_without(user) == 0):
        action = "disable" if not active else "bind to tenants" if bound and role == "admin" \
            else "demote"
        who = "yourself" if _is_current(user) else user.username
        return (f"You cannot {action} {who}: no active admin would be left to manage users and "
                "limits. Make another user an admin first.")
    return None


def _is_current(user: User) -> bool:
    return current_user.is_authenticated and current_user.id == user.id


def _keep_signed_in_here(user: User) -> None:
    """After ending the sessions of the admin at work, sign this browser in again (with the new
    session version): their other browsers stay signed out."""
    if _is_current(user):
        login_user(user)


bp = Blueprint("users", __name__)
UTC = timezone.utc


@bp.before_request
@role_required("admin")
def admins_only():
    """Every route here is for admins: operators and viewers get 403."""
    return None


def _manageable(tenants: list[str] | frozenset[str]) -> bool:
    """Whether the signed-in admin manages a user bound to ``tenants`` (none: staff)."""
    scope = current_scope()
    return scope is None or (bool(tenants) and set(tenants) <= scope)


def _render(form: NewUserForm | None = None, row_errors: dict | None = None, status: int = 200):
    bound = bindings()
    users = [user for user in db.session.scalars(select(User).order_by(User.username))
             if _manageable(bound.get(user.id, []))]
    if form is None:
        form = NewUserForm(formdata=None)
        tenant_choices(form.tenants)
    tenants_form = TenantsForm(formdata=None)
    tenant_choices(tenants_form.tenants)
    return render_view("users/index.html", "users/_table.html", status, users=users,
                       form=form, row_errors=row_errors or {}, password_hint=PASSWORD_HINT,
                       now=datetime.now(UTC), bindings=bound,
                       tenant_options=tenants_form.tenants.choices,
                       staff_admin=current_scope() is None)


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or not _manageable(tenants_of(user.id)):
        abort(404, "There is no such user; it may have been removed. The Users page lists them.")
    return user


def _refuse(user: User, action: str, message: str):
    """The list again, with ``message`` on ``user``'s ``action`` form; nothing changed."""
    db.session.rollback()
    return _render(row_errors={(user.id, action): message}, status=422)


def _record(session, action: str, user: User, before: dict | None = None,
            after: dict | None = None) -> None:
    """The change's audit entry, in its own transaction (``session``)."""
    record(session, console_actor(), action, target_type="user", target_id=user.username,
           before=before, after=after)


@bp.get("/users")
@tenant_scoped
def index():
    return _render()


@bp.post("/users")
@tenant_scoped
def create():
    form = NewUserForm()
    tenant_choices(form.tenants)
    if not form.validate():
        return _render(form=form, status=422)
    user = set_user(form.username.data, form.role.data, form.password.data, console_actor(),
                    tenants=form.tenants.data)
    sees = f"bound to {', '.join(sorted(form.tenants.data))}" if form.tenants.data \
        else "staff: sees every tenant"
    flash(f"User {user.username} added as {user.role} ({sees}). They can sign in now.")
    return redirect(url_for(".index"), 303)


@bp.post("/users/<int:user_id>/role")
@tenant_scoped
def change_role(user_id: int):
    user = _user_or_404(user_id)
    form = RoleForm()
    if not form.validate():
        return _refuse(user, "role", " ".join(form.role.errors) or "Choose a role from the list.")
    with session_write() as session:   # the admin count is read under the write lock: exact
        user = _user_or_404(user_id)
        problem = last_admin_problem(user, form.role.data, user.active)
        old = user.role
        if not problem and old != form.role.data:
            user.role = form.role.data
            user.end_sessions()   # a session must not keep the rights of the old role
            _record(session, "user_role_changed", user, {"role": old}, {"role": user.role})
    if problem:
        return _refuse(user, "role", problem)
    _keep_signed_in_here(user)
    flash(f"{user.username} is already {old}: nothing changed." if old == user.role
          else f"{user.username} is now {user.role} (was {old}).")
    return redirect(url_for(".index"), 303)


@bp.post("/users/<int:user_id>/tenants")
@tenant_scoped
def change_tenants(user_id: int):
    """Bind the user to the chosen tenants (none: staff; only a staff admin may choose none)."""
    user = _user_or_404(user_id)
    form = TenantsForm()
    tenant_choices(form.tenants)
    if not form.validate():
        return _refuse(user, "tenants", " ".join(form.tenants.errors))
    wanted = sorted(set(form.tenants.data))
    with session_write() as session:   # the staff admin count is read under the write lock
        user = _user_or_404(user_id)
        problem = last_admin_problem(user, user.role, user.active, bound=bool(wanted))
        before = sorted(tenants_of(user.id))
        if not problem and before != wanted:
            bind_tenants(session, user.id, wanted)
            user.end_sessions()   # a session must not keep seeing tenants it lost
            _record(session, "user_tenants_changed", user, {"tenants": before},
                    {"tenants": wanted})
    if problem:
        return _refuse(user, "tenants", problem)
    _keep_signed_in_here(user)
    flash(f"{user.username} now sees only {', '.join(wanted)}." if wanted
          else f"{user.username} is now staff: they see every tenant.")
    return redirect(url_for(".index"), 303)


@bp.post("/users/<int:user_id>/password")
@tenant_scoped
def reset_password(user_id: int):
    user = _user_or_404(user_id)
    form = PasswordForm(user.username)
    if not form.validate():
        return _refuse(user, "password", " ".join(form.password.errors))
    password_hash = generate_password_hash(form.password.data)   # slow: outside the lock
    with session_write() as session:
        user = _user_or_404(user_id)
        user.password_hash = password_hash
        user.end_sessions()   # whoever held the old password is signed out
        _record(session, "user_password_reset", user)
    _keep_signed_in_here(user)
    flash(f"Password of {user.username} changed and their sessions ended. Give them the new "
          "one in person or over a channel you trust.")
    return redirect(url_for(".index"), 303)


@bp.post("/users/<int:user_id>/active")
@tenant_scoped
def set_active(user_id: int):
    user = _user_or_404(user_id)
    form = ActiveForm()
    if not form.validate():
        return _refuse(user, "active", "Choose enable or disable.")
    active = form.active.data == "1"
    with session_write() as session:
        user = _user_or_404(user_id)
        problem = last_admin_problem(user, user.role, active)
        was_active = user.active
        if not problem and was_active != active:
            user.active = active
            if not active:
                user.end_sessions()   # so enabling again does not bring old cookies back
            _record(session, "user_enabled" if active else "user_disabled", user,
                    {"active": was_active}, {"active": active})
    if problem:
        return _refuse(user, "active", problem)
    if active == was_active:
        flash(f"{user.username} is already {'enabled' if active else 'disabled'}.")
    else:
        flash(f"{user.username} enabled: they can sign in again." if active
              else f"{user.username} disabled: they can no longer sign in.")
    return redirect(url_for(".index"), 303)


@bp.post("/users/<int:user_id>/sessions/end")
@tenant_scoped
def end_user_sessions(user_id: int):
    """Sign out everywhere: every browser of this user must sign in again (this one too, when
    it is the admin's own)."""
    user = _user_or_404(user_id)
    end_sessions(user.id, console_actor())
    flash(f"{user.username} is signed out everywhere: every browser must sign in again.")
    return redirect(url_for(".index"), 303)
