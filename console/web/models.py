"""The console's own tables: the people who sign in, and the sign-in throttle."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..jobs.models import Base, UTCDateTime

ROLES = ("admin", "operator", "viewer")   # each includes what the next one may do


class User(UserMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Kept in each session at sign-in and compared on every request: raising it ends every
    # session signed in before (the cookie is signed, not stored, so nothing else can).
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    @property
    def is_active(self) -> bool:   # Flask-Login refuses sign-in to disabled users
        return bool(self.active)

    def get_id(self) -> str:
        """What the session keeps (Flask-Login's alternative id): id and session version."""
        return f"{self.id}:{self.session_version}"

    def end_sessions(self) -> None:
        """Every session of this user signed in so far is refused from its next request."""
        self.session_version = (self.session_version or 1) + 1

    def may(self, role: str) -> bool:
        """True when this user's role is ``role`` or above (admin > operator > viewer)."""
        return ROLES.index(self.role) <= ROLES.index(role)


class SignInThrottle(Base):
    """Failed sign-ins per username or client address (``console/web/auth/throttle.py``)."""
    __tablename__ = "sign_in_throttles"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserTenant(Base):
    """A user bound to a tenant: such a user sees only its tenants (console/web/scope.py). A
    user with no row here is staff and sees every tenant. Tenants are never deleted, so a
    binding cannot vanish and silently make its user staff."""

    __tablename__ = "user_tenants"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"),
                                           primary_key=True)


user_tenants_table = UserTenant.__table__
