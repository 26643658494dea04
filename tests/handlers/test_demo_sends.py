"""``flask --app console demo`` sends for real, and only on this machine: SMS and push to the
outbox, webhooks to the console's catch-all, email only to a local SMTP server that answers;
maintenance jobs where the tier allows them, and reports on the Reports page at once."""
from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from sqlalchemy import func, select

from console.handlers.models import outbox_messages_table, reports_table
from console.jobs.models import jobs_table
from tests.support import refused_port


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "MAIL_DEFAULT_SENDER": "Demo console <console@example.test>"}


@pytest.fixture
def console_url(app):
    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def by(service, table, column):
    with service.engine.connect() as conn:
        return dict(conn.execute(select(table.c[column], func.count())
                                 .group_by(table.c[column])).all())


def demo(app, *args):
    return app.test_cli_runner().invoke(args=["demo", "--days", "2", "--jobs-per-day", "20",
                                              *args])


def test_the_demo_sends_to_the_outbox_the_catch_all_and_a_local_smtp_server(
        app, service, smtp_server, console_url):
    result = demo(app, "--webhook-url", f"{console_url}/outbox/webhooks")
    assert result.exit_code == 0, result.output
    assert "not sent" not in result.output
    # Its webhooks reach 127.0.0.1 only with private addresses allowed, and land only with the
    # catch-all on, in the console too.
    assert ("CONSOLE_WEBHOOK_ALLOW_PRIVATE=true CONSOLE_WEBHOOK_CATCH_ALL=true "
            "flask --app console run") in result.output
    # The Reports page has something before any job ran: the history's usage.
    reports = by(service, reports_table, "tenant_id")
    assert reports == {"acme": 1, "globex": 1}
    with service.engine.connect() as conn:
        content = conn.execute(select(reports_table.c.content).where(
            reports_table.c.tenant_id == "acme")).scalar()
    assert content.count("\n") > 3 and "data_processor" in content
    # Maintenance jobs for every tier that allows them; none for tier1 (umbrella).
    with service.engine.connect() as conn:
        maintenance = dict(conn.execute(select(jobs_table.c.tenant_id, func.count())
                                        .where(jobs_table.c.type == "maintenance",
                                               jobs_table.c.cron_schedule.is_not(None))
                                        .group_by(jobs_table.c.tenant_id)).all())
    assert maintenance == {"acme": 4, "globex": 4, "initech": 4, "hooli": 4}

    service.run_until_idle(settle=0.5, timeout=60)

    channels = by(service, outbox_messages_table, "channel")
    assert channels == {"sms": 10, "push": 4, "webhook": 5}   # five tenants
    assert len(smtp_server.sink.envelopes) == 5
    assert {e.rcpt_tos[0].rpartition("@")[2] for e in smtp_server.sink.envelopes} == {
        f"{t}.invalid" for t in ("acme", "globex", "initech", "hooli", "umbrella")}


def test_without_a_local_smtp_server_the_demo_sends_no_email(app_config, console_url):
    from console import create_app

    with refused_port() as port:
        app = create_app({**app_config, "MAIL_PORT": port})
        try:
            result = demo(app, "--webhook-url", f"{console_url}/outbox/webhooks")
            assert result.exit_code == 0, result.output
            assert f"not sent: email: nothing listens on 127.0.0.1:{port}" in result.output
            with app.extensions["jobs"].engine.connect() as conn:
                emails = conn.execute(select(func.count()).select_from(jobs_table).where(
                    jobs_table.c.handler == "email_handler")).scalar()
            assert emails == 0
        finally:
            app.extensions["jobs"].engine.dispose()


def test_without_private_addresses_allowed_the_demo_sends_no_webhook(app_config, console_url):
    from console import create_app

    app = create_app({**app_config, "WEBHOOK_ALLOW_PRIVATE": False})
    try:
        url = f"{console_url}/outbox/webhooks"
        result = demo(app, "--webhook-url", url)
        assert result.exit_code == 0, result.output
        assert (f"not sent: webhook: {url} is on this machine and WEBHOOK_ALLOW_PRIVATE is off"
                in result.output)
        assert "CONSOLE_WEBHOOK_ALLOW_PRIVATE=true flask" not in result.output
        with app.extensions["jobs"].engine.connect() as conn:
            webhooks = conn.execute(select(func.count()).select_from(jobs_table).where(
                jobs_table.c.handler == "webhook_handler")).scalar()
        assert webhooks == 0
    finally:
        app.extensions["jobs"].engine.dispose()


def test_without_the_catch_all_the_demo_sends_no_webhook(app_config, console_url):
    from console import create_app

    app = create_app({**app_config, "WEBHOOK_CATCH_ALL": False})
    try:
        result = demo(app, "--webhook-url", f"{console_url}/outbox/webhooks")
        assert result.exit_code == 0, result.output
        assert "not sent: webhook: the console's catch-all is off" in result.output
        assert "CONSOLE_WEBHOOK_CATCH_ALL=true flask" not in result.output
        with app.extensions["jobs"].engine.connect() as conn:
            webhooks = conn.execute(select(func.count()).select_from(jobs_table).where(
                jobs_table.c.handler == "webhook_handler")).scalar()
        assert webhooks == 0
    finally:
        app.extensions["jobs"].engine.dispose()


def test_the_demo_names_a_sender_the_email_channel_would_refuse(app_config, console_url):
    from console import create_app

    app = create_app({**app_config, "MAIL_DEFAULT_SENDER": "not-an-address"})
    try:
        result = demo(app, "--webhook-url", f"{console_url}/outbox/webhooks")
        assert result.exit_code == 0, result.output
        assert "not sent: email: MAIL_DEFAULT_SENDER 'not-an-address'" in result.output
    finally:
        app.extensions["jobs"].engine.dispose()


@pytest.mark.parametrize("url", ["https://hooks.example.com/in", "ftp://127.0.0.1/x",
                                 "http://10.0.0.5:5000/outbox/webhooks"])
def test_the_demo_refuses_to_send_webhooks_off_this_machine(app, service, url):
    result = demo(app, "--webhook-url", url)
    assert result.exit_code == 2 and "this machine" in result.output
    assert service.tenants.list_tenant_configs() == []
