"""``flask --app console …`` commands: ``worker``, ``demo``, ``create-user``, ``create-token``."""
from __future__ import annotations

import gc
import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def command_actor():
    """Who runs this command, as the audit trail names them: the operating system's user."""
    import getpass

    from .jobs.audit import Actor

    try:
        name = getpass.getuser()
    except (KeyError, OSError):   # no user name in the environment or the password database
        name = "unknown"
    return Actor("command", name)


def register_commands(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(demo_command)
    app.cli.add_command(create_user_command)
    app.cli.add_command(create_token_command)


@click.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 12 characters and hard to guess (asked for when not given).")
@click.option("--tenant", "tenants", metavar="TENANT_ID", multiple=True,
              help="Bind the user to this tenant: it sees only its tenants (repeatable). "
                   "Without it a new user is staff and sees every tenant, and an existing "
                   "user keeps its tenants.")
@with_appcontext
def create_user_command(username: str, role: str, password: str, tenants: tuple[str, ...]) -> None:
    """Create or update a console user."""
    from .web.auth.views import UserValueError, set_user
    from .web.scope import UnknownTenantError, tenants_of

    try:
        user = set_user(username, role, password, command_actor(),
                        tenants=list(tenants) or None)
    except UnknownTenantError as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant") from None
    except UserValueError as exc:
        hint = "USERNAME" if exc.field == "username" else f"--{exc.field}"
        raise click.BadParameter(str(exc), param_hint=hint) from None
    bound = sorted(tenants_of(user.id))
    sees = f"bound to {', '.join(bound)}" if bound else "staff: every tenant"
    click.echo(f"user {username} ({role}, {sees}) saved")


@click.command("create-token")
@click.option("--tenant", "tenant_id", metavar="TENANT_ID", help="Scope it to this tenant.")
@click.option("--all-tenants", is_flag=True, help="Scope it to every tenant.")
@click.option("--admin", is_flag=True, help="May also change limits (all-tenant tokens only).")
@click.option("--name", default=None, help="Who uses it (default: the scope).")
@click.option("--expires-in", default=None, metavar="LIFETIME",
              help="Expire after this long: hours or days, e.g. 12h, 90d (default: never).")
@click.option("--rate-limit", type=int, default=None, metavar="N",
              help="Requests a minute (default: the API_RATE_LIMIT setting).")
@with_appcontext
def create_token_command(tenant_id: str | None, all_tenants: bool, admin: bool,
                         name: str | None, expires_in: str | None,
                         rate_limit: int | None) -> None:
    """Create an API token and print it (once: only its hash is stored)."""
    from .tokens import TokenError, create_token, parse_expires_in

    if bool(tenant_id) == all_tenants:
        raise click.UsageError("give exactly one of --tenant TENANT_ID or --all-tenants")
    name = name or (f"tenant {tenant_id}" if tenant_id else "all tenants")
    try:
        lifetime = parse_expires_in(expires_in) if expires_in is not None else None
        token, secret = create_token(current_app.extensions["jobs"].engine, name, tenant_id,
                                     admin, lifetime, rate_limit, actor=command_actor())
    except TokenError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}"
                                 ) from None
    expiry = (f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at
              else "")
    click.echo(f"API token {token.name!r} ({token.scope}{expiry}); shown only now:", err=True)
    click.echo(secret)


@click.command("worker")
@click.option("--threads", type=int, default=None,
              help="Handler threads (default: JOBS_WORKER_THREADS).")
@with_appcontext
def worker_command(threads: int | None) -> None:
    """Run jobs without a web server (extra processes or machines on a shared database).

    SIGTERM or Ctrl-C stops it cleanly: running attempts finish (up to
    JOBS_SHUTDOWN_GRACE_SECONDS) or are handed back to the queue.
    """
    from .jobs.runner import Runner

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runner = Runner(current_app.extensions["jobs"], threads=threads).start()
    from .alerts import ensure_alerting
    ensure_alerting(current_app.extensions["jobs"], current_app.config)
    click.echo(f"worker {runner.id} running {runner.threads} threads on "
               f"{current_app.extensions['jobs'].engine.url.render_as_string()}", err=True)
    # Start-up objects out of the collector's sight, as in gunicorn.conf.py post_worker_init:
    # a full collection over them stops every thread for tens of milliseconds.
    gc.collect()
    gc.freeze()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        click.echo("stopping: finishing running attempts…", err=True)
        runner.stop()


@click.command("demo")
@click.option("--days", default=7, show_default=True, help="Days of history to create.")
@click.option("--jobs-per-day", default=300, show_default=True,
              help="Finished jobs per tenant and day in the history.")
@click.option("--webhook-url", default="http://127.0.0.1:5000/outbox/webhooks",
              show_default=True,
              help="Where the demo's webhooks go: the console's own catch-all, where you will "
                   "run it (this machine only).")
@with_appcontext
def demo_command(days: int, jobs_per_day: int, webhook_url: str) -> None:
    """Fill the database with demo tenants (all four tiers), history and live jobs."""
    import os
    import secrets

    from .demo import check_local_url, load_demo
    from .web.auth.passwords import password_problem
    from .web.auth.views import set_user

    try:
        check_local_url(webhook_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--webhook-url") from None
    password = os.environ.get("CONSOLE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    problem = password_problem(password, "admin")
    if problem:   # before anything is stored
        raise click.UsageError(f"CONSOLE_ADMIN_PASSWORD refused: {problem}")
    summary = load_demo(current_app.extensions["jobs"], days=days, jobs_per_day=jobs_per_day,
                        config=current_app.config, webhook_url=webhook_url)
    for line in summary:
        click.echo(line)
    set_user("admin", "admin", password)
    click.echo(f"\nSign in as admin with password: {password}")
    # The demo's webhooks go to this machine, to the console's own catch-all.
    private = "CONSOLE_WEBHOOK_ALLOW_PRIVATE=true " if current_app.config.get(
        "WEBHOOK_ALLOW_PRIVATE") else ""
    catch_all = "CONSOLE_WEBHOOK_CATCH_ALL=true " if current_app.config.get(
        "WEBHOOK_CATCH_ALL") else ""
    click.echo(f"Start the console with:  {private}{catch_all}flask --app console run\n"
               "then open http://127.0.0.1:5000/")
