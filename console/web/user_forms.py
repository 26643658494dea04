"""The Users screen's forms: add a user, change a role, reset a password, disable or enable.
Each bad value gets a message on its own field; passwords are never shown back."""
from __future__ import annotations

from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, SelectField, StringField, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Regexp

from ..extensions import db
from .models import User

MIN_PASSWORD = 8
ROLE_CHOICES = [SelectChoice("viewer", "viewer — reads everything"),
                SelectChoice("operator", "operator — also creates, retries and cancels jobs"),
                SelectChoice("admin", "admin — also limits, tenants and users")]
PASSWORD_RULE = Length(min=MIN_PASSWORD, max=200,
                       message=f"Use at least {MIN_PASSWORD} characters (at most 200).")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class NewUserForm(FlaskForm):
    username = StringField("Username", filters=[_strip], validators=[
        DataRequired("Give the user a name to sign in with."),
        Length(max=80, message="At most 80 characters."),
        Regexp(r"^[\w.@+-]+$", message="Use letters, digits and . @ + - _ only (no spaces).")])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")
    password = PasswordField("Password", validators=[
        InputRequired(f"Give a password of at least {MIN_PASSWORD} characters."), PASSWORD_RULE])

    def validate_username(self, field):
        if db.session.scalar(select(User.id).where(User.username == field.data)) is not None:
            raise ValidationError(f"{field.data!r} already exists: change that user's role or "
                                  "password in the list instead.")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class PasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[
        InputRequired(f"Type a new password of at least {MIN_PASSWORD} characters."),
        PASSWORD_RULE])


class ActiveForm(FlaskForm):
    active = SelectField("Active", choices=[SelectChoice("1", "enable"),
                                            SelectChoice("0", "disable")])


def active_admins_without(user: User) -> int:
    """Active admins other than ``user``: what is left if ``user`` stops being one."""
    return db.session.scalar(select(db.func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id))


def last_admin_problem(user: User, role: str, active: bool) -> str | None:
    """Why giving ``user`` this role and state would leave nobody able to manage users."""
    if role == "admin" and active:
        return None
    if user.role == "admin" and user.active and active_admins_without(user) == 0:
        action = "disable" if not active else "demote"
        who = "yourself" if _is_current(user) else user.username
        return (f"You cannot {action} {who}: no active admin would be left to manage users and "
                "limits. Make another user an admin first.")
    return None


def _is_current(user: User) -> bool:
    return current_user.is_authenticated and current_user.id == user.id
