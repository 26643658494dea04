"""Who is acting, as the console's audit entries record it: the signed-in user and the
client's address (``request.remote_addr``: the proxy's, unless ProxyFix trusts its header)."""
from __future__ import annotations

from flask import request
from flask_login import current_user

from ...extensions import session_write
from ...jobs.audit import Actor, record


def console_actor() -> Actor:
    """The signed-in user making this request's change."""
    return Actor("user", current_user.username, request.remote_addr)


def record_sign_in(username: str, succeeded: bool, session=None) -> None:
    """A sign-in's outcome, with the name tried (a failed one names no one for sure), in
    ``session``'s transaction, or in one of its own."""
    actor = Actor("user", username[:100] or "(empty)", request.remote_addr)
    action = "sign_in" if succeeded else "sign_in_failed"
    if session is not None:
        record(session, actor, action, target_type="user", target_id=username)
        return
    with session_write() as own:
        record(own, actor, action, target_type="user", target_id=username)
