"""The console's scope matrix: every route of the app × four kinds of user (staff admin, staff
viewer, admin bound to tenant A, viewer bound to A) × two tenants (A and B, each with jobs,
failures, outbox messages, reports, alerts and rules), the status each gets, and that no page a
user bound to A receives carries anything of B: not its name, not its payloads, not the ids of
its jobs, messages, reports or alerts.

Every route must be classified in ``ROUTES``: tenant-scoped (how to build its URL for a tenant,
the least role it needs) or tenant-neutral (why). A new route that is not fails
``test_every_route_is_classified``; a view not declared ``tenant_scoped`` is staff-only, so a
bound user gets 403 there until it is scoped. One app serves the module, as in the API's matrix
(tests/api/test_scopes.py); each case that changes something makes its own records.
"""
from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from console import create_app
from console.alerts import evaluate_alert_rules
from console.alerts.store import RuleValues, check_rule, create_rule
from console.handlers.models import outbox_messages_table
from console.handlers.reports import store_report
from console.jobs import TenantConfig
from console.jobs.models import jobs_table
from console.tokens import create_token
from console.web.auth.views import PUBLIC_ENDPOINTS, PUBLIC_PATH_PREFIXES, set_user
from tests.conftest import BASE_CONFIG, fresh_database

from .conftest import csrf_token, sign_in

A, B = "acme", "globex"
# Only ever stored for one tenant: seeing one on a page of the other tenant's user is a leak.
MARKERS = {A: ("Acme Secret Name", "acme-private-payload"),
           B: ("Globex Secret Name", "globex-private-payload")}
UNLIMITED = {"maxQueuedJobs": None, "maxDailyJobs": None}
PASSWORD = "matrix password 1"
# kind → (username, role, tenants bound to)
USERS = {"staff_admin": ("sam", "admin", ()), "staff_viewer": ("stella", "viewer", ()),
         "bound_admin": ("abe", "admin", (A,)), "bound_viewer": ("ava", "viewer", (A,))}
ROLE_ORDER = ("admin", "operator", "viewer")
COUNTER = itertools.count()


@dataclass
class World:
    """What each tenant has, by tenant: ids a page may (not) show."""

    app: object
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    clients: dict[str, object] = field(default_factory=dict)

    @property
    def service(self):
        return self.app.extensions["jobs"]

    def job(self, tenant: str, cancelled: bool = False) -> str:
        job = self.service.queue_job("immediate", "noop", {"note": MARKERS[tenant][1]}, tenant)
        if cancelled:
            self.service.cancel_job(job.id)
        return job.id

    def made(self, tenant: str, name: str, record_id: str) -> str:
        """Keep the id of a record a case made (to check afterwards) and return it."""
        self.ids[tenant][name] = record_id
        return record_id

    def status(self, job_id: str) -> str:
        return self.service.get_job_by_id(job_id).status.value

    def secrets_of(self, tenant: str) -> list[str]:
        """Its markers and its records' ids (the uuids: rule and user numbers are too short
        to search a page for; their names carry the markers)."""
        return [*MARKERS[tenant], *(value for value in self.ids[tenant].values()
                                    if len(value) >= 32)]


def _rule(service, tenant: str) -> int:
    values = RuleValues(name=f"Backlog of {MARKERS[tenant][0]}", kind="queue_backlog",
                        scope="tenant", threshold=0, tenant_id=tenant)
    tenants = [t.tenant_id for t in service.tenants.list_tenant_configs()]
    return create_rule(service.engine, check_rule(values, tenants, service.handlers.names())).id


@pytest.fixture(scope="module")
def world(database_template, tmp_path_factory):
    url = fresh_database(database_template, tmp_path_factory.mktemp("console-scopes"))
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    service = app.extensions["jobs"]
    world = World(app)
    for tenant, (name, _) in MARKERS.items():
        service.tenants.set_tenant_config(TenantConfig.for_tier(
            tenant, name, "tier4", {"jobLimits": UNLIMITED}))
    for tenant, (_, secret) in MARKERS.items():
        failed = service.queue_job("immediate", "always_fails", {"note": secret}, tenant,
                                   max_retries=0)
        service.queue_notification("sms", "+14155550123", tenant, body=f"sms {secret}")
        batch = service.queue_batch_jobs(
            [{"type": "immediate", "handler": "always_fails", "max_retries": 0,
              "payload": {"note": secret}}], tenant,
            on_complete={"type": "immediate", "handler": "noop", "payload": {"note": secret}})
        world.ids[tenant] = {"failed": failed.id, "batch_id": batch[0].batch_id,
                             "batch_failed": batch[0].id}
    service.run_until_idle(timeout=20, settle=0.2)
    o = outbox_messages_table.c
    with service.engine.connect() as conn:
        for tenant in MARKERS:
            world.ids[tenant]["message"] = conn.execute(
                select(o.id).where(o.tenant_id == tenant)).scalar_one()
    for tenant, (_, secret) in MARKERS.items():
        ids = world.ids[tenant]
        ids["queued"] = world.job(tenant)     # waiting: the backlog rule fires on it
        ids["report"] = store_report(
            service.engine, tenant_id=tenant, job_id=ids["failed"], recurring=False,
            name=f"Report {secret}", report_type="usage",
            start=service.get_job_by_id(ids["failed"]).created_at,
            end=service.get_job_by_id(ids["failed"]).created_at, content=f"x,{secret}\r\n",
            row_count=1)
        ids["rule"] = str(_rule(service, tenant))
    evaluate_alert_rules(service, {**app.config, "ALERTS_ENABLED": True})
    from console.alerts.models import alerts_table
    with service.engine.connect() as conn:
        for tenant in MARKERS:
            world.ids[tenant]["alert"] = conn.execute(select(alerts_table.c.id).where(
                alerts_table.c.tenant_id == tenant)).scalar_one()
    with app.app_context():
        for username, role, tenants in USERS.values():
            set_user(username, role, PASSWORD, tenants=list(tenants))
    for kind, (username, _, _) in USERS.items():
        client = app.test_client()
        assert sign_in(client, username, PASSWORD).status_code == 302
        client.csrf = csrf_token(client, "/jobs")
        world.clients[kind] = client
    yield world
    service.engine.dispose()


# -- the route table --------------------------------------------------------------------------

@dataclass(frozen=True)
class Scoped:
    """A route about one tenant's record or page. ``url(world, tenant)`` builds it for that
    tenant; ``data(world, tenant)`` the form it posts; ``role`` is the least role it needs;
    ``denied`` what a user bound to the other tenant gets; ``happened(world, tenant, url)``
    tells whether the POST changed something (it must not have, when denied)."""

    url: Callable
    role: str = "viewer"
    data: Callable | None = None
    denied: int = 404
    happened: Callable | None = None
    shows: str | None = None           # an id kind the page of its own tenant shows
    bound_admin_refused: int | None = None   # a status a bound admin gets on its own tenant


@dataclass(frozen=True)
class Neutral:
    """A route about no one tenant: lists and figures filtered to the user's tenants, or a
    screen with no tenant data. ``url`` builds it (default: the rule as is); ``staff`` routes
    refuse bound users (403)."""

    reason: str
    url: Callable | None = None
    role: str = "viewer"
    staff: bool = False
    shows: str | None = None
    skip: bool = False                 # not fetched here (why: ``reason``)


def ids(kind: str) -> Callable:
    return lambda world, tenant: world.ids[tenant][kind]


def _fresh_done(world, tenant):
    return f"/jobs/{world.job(tenant, cancelled=True)}/retry"


def _fresh_queued(world, tenant):
    return f"/jobs/{world.job(tenant)}/cancel"


def _job_of(url: str) -> str:
    return url.split("/")[2]


# Operator control: each case sets the state its verb changes first (a case before it, of
# another user, may have changed it), so that ``happened`` sees this request's doing only.

def _control_job(world, tenant, kind: str) -> str:
    """One job per tenant and kind, made once (the listing's first page must keep showing the
    jobs the module started with)."""
    if kind not in world.ids[tenant]:
        job = world.service.queue_delayed_job("noop", {"note": MARKERS[tenant][1]},
                                              timedelta(hours=1), tenant)
        world.ids[tenant][kind] = job.id
    return world.ids[tenant][kind]


def _job_to_pause(world, tenant):
    job_id = _control_job(world, tenant, "to_pause")
    world.service.resume_job(job_id)
    return f"/jobs/{job_id}/pause"


def _paused_job(world, tenant):
    job_id = _control_job(world, tenant, "to_pause")
    world.service.pause_job(job_id)
    return f"/jobs/{job_id}/resume"


def _pending_job(world, tenant):
    """A pending job (run now makes it queued; a pause puts it back to pending)."""
    job_id = _control_job(world, tenant, "to_run")
    world.service.pause_job(job_id)
    world.service.resume_job(job_id)
    return f"/jobs/{job_id}/run-now"


def _job_paused(world, url: str) -> bool:
    return world.service.pauses().of("job", job_id=_job_of(url)) is not None


def _tenant_paused(world, tenant) -> bool:
    return world.service.pauses().of("tenant", tenant_id=tenant) is not None


def _handler_paused(world, tenant) -> bool:
    return world.service.pauses().of("handler", handler="noop", tenant_id=tenant) is not None


def _rate_limited(world, tenant) -> bool:
    return any(limit.tenant_id == tenant for limit in world.service.handler_rate_limits("noop"))


def _rate_limit_url(path: str, limited_first: bool) -> Callable:
    def url(world, tenant):
        limit = {"count": 1000, "periodSeconds": 1} if limited_first else None
        world.service.set_handler_rate_limit("noop", limit, tenant)
        return f"/handlers/{path}"
    return url


def _tenant_url(verb: str, paused_first: bool) -> Callable:
    def url(world, tenant):
        if paused_first:
            world.service.pause_tenant(tenant)
        else:
            world.service.resume_tenant(tenant)
        return f"/tenants/{tenant}/{verb}"
    return url


HOOKS = "https://hooks.example.com"


def _subscription_url(world, tenant):
    """A subscription of its own per case (one removed by a case before is gone)."""
    subscription, _ = world.service.subscribe_webhook(
        tenant, f"{HOOKS}/{tenant}/{next(COUNTER)}", ["job.failed"])
    world.made(tenant, "subscription", subscription.id)
    return f"/tenants/{tenant}/webhooks/{subscription.id}/remove"


def _handler_url(verb: str, paused_first: bool) -> Callable:
    def url(world, tenant):
        if paused_first:
            world.service.pause_handler("noop", tenant)
        else:
            world.service.resume_handler("noop", tenant)
        return f"/handlers/{verb}"
    return url


ROUTES: dict[tuple[str, str], Scoped | Neutral] = {
    # jobs
    ("jobs.index", "GET"): Neutral("the list filtered to the user's tenants", shows="queued"),
    ("jobs.show", "GET"): Scoped(lambda w, t: f"/jobs/{w.ids[t]['queued']}", shows="queued"),
    ("jobs.activity", "GET"): Scoped(lambda w, t: f"/jobs/{w.ids[t]['failed']}/activity"),
    ("jobs.retry", "POST"): Scoped(
        _fresh_done, role="operator",
        happened=lambda w, t, url: w.status(_job_of(url)) != "cancelled"),
    ("jobs.cancel", "POST"): Scoped(
        _fresh_queued, role="operator",
        happened=lambda w, t, url: w.status(_job_of(url)) != "queued"),
    ("jobs.explanation", "GET"): Scoped(lambda w, t: f"/jobs/{w.ids[t]['queued']}/explanation"),
    ("jobs.pause", "POST"): Scoped(
        _job_to_pause, role="operator",
        happened=lambda w, t, url: _job_paused(w, url)),
    ("jobs.resume", "POST"): Scoped(
        _paused_job, role="operator", happened=lambda w, t, url: not _job_paused(w, url)),
    ("jobs.run_now", "POST"): Scoped(
        _pending_job, role="operator",
        happened=lambda w, t, url: w.status(_job_of(url)) != "pending"),
    ("jobs.bulk_selected", "POST"): Scoped(
        lambda w, t: "/jobs/bulk", role="operator", denied=303,
        data=lambda w, t: {"action": "cancel", "job_ids": [w.made(t, "bulk", w.job(t))]},
        happened=lambda w, t, url: w.status(w.ids[t]["bulk"]) != "queued"),
    ("jobs.bulk_all", "GET"): Scoped(lambda w, t: f"/jobs/bulk/all?action=cancel&tenant={t}",
                                     role="operator", denied=200),
    ("jobs.bulk_all", "POST"): Scoped(
        lambda w, t: "/jobs/bulk/all", role="operator", denied=303,
        data=lambda w, t: {"action": "retry", "tenant": t, "status": "cancelled",
                           "_": w.made(t, "bulk_all", w.job(t, cancelled=True))},
        happened=lambda w, t, url: w.status(w.ids[t]["bulk_all"]) != "cancelled"),
    # batches: the list filtered to the user's tenants; a batch's page and its progress
    ("batches.index", "GET"): Neutral("batches of the user's tenants", shows="batch_id"),
    ("batches.show", "GET"): Scoped(lambda w, t: f"/batches/{w.ids[t]['batch_id']}",
                                    shows="batch_failed"),
    ("batches.progress", "GET"): Scoped(
        lambda w, t: f"/batches/{w.ids[t]['batch_id']}/progress", shows="batch_failed"),
    # the live stream: filtered per user (tests/web/test_scope.py, tests/browser)
    ("stream.events", "GET"): Neutral("streams forever; its filter is tested on its own",
                                      skip=True),
    # users: a bound admin manages only users bound within its tenants
    ("users.index", "GET"): Neutral("lists only the users the admin manages", role="admin"),
    ("users.create", "POST"): Scoped(
        lambda w, t: "/users", role="admin", denied=422,
        data=lambda w, t: {"username": f"new-{t}-{next(COUNTER)}", "role": "viewer",
                           "password": "long enough pw", "tenants": [t]}),
    ("users.change_role", "POST"): Scoped(lambda w, t: f"/users/{_user_of(w, t)}/role",
                                          role="admin", data=lambda w, t: {"role": "viewer"}),
    ("users.change_tenants", "POST"): Scoped(lambda w, t: f"/users/{_user_of(w, t)}/tenants",
                                             role="admin", data=lambda w, t: {"tenants": [t]}),
    ("users.reset_password", "POST"): Scoped(
        lambda w, t: f"/users/{_user_of(w, t)}/password", role="admin",
        data=lambda w, t: {"password": "another long one"}),
    ("users.set_active", "POST"): Scoped(lambda w, t: f"/users/{_user_of(w, t)}/active",
                                         role="admin", data=lambda w, t: {"active": "1"}),
    ("users.end_user_sessions", "POST"): Scoped(
        lambda w, t: f"/users/{_user_of(w, t)}/sessions/end", role="admin"),
    ("auth.logout", "POST"): Neutral("signs out; tested in test_auth", skip=True),
    ("audit.index", "GET"): Neutral("entries of the user's tenants only", role="admin"),
    # tenants: a bound admin reads its limits but cannot change them, nor add tenants
    ("tenants.index", "GET"): Neutral("lists only the user's tenants"),
    ("tenants.create", "POST"): Neutral("adds a tenant: system-wide", role="admin", staff=True),
    ("tenants.show", "GET"): Scoped(lambda w, t: f"/tenants/{t}"),
    ("tenants.pause", "POST"): Scoped(
        _tenant_url("pause", paused_first=False), role="operator",
        happened=lambda w, t, url: _tenant_paused(w, t)),
    ("tenants.resume", "POST"): Scoped(
        _tenant_url("resume", paused_first=True), role="operator",
        happened=lambda w, t, url: not _tenant_paused(w, t)),
    ("tenants.health", "GET"): Scoped(lambda w, t: f"/tenants/{t}/health"),
    ("tenants.charts", "GET"): Scoped(lambda w, t: f"/tenants/{t}/charts"),
    # event webhooks: the tenant's operators subscribe and remove; anyone of it reads the log
    ("tenants.webhook_deliveries", "GET"): Scoped(lambda w, t: f"/tenants/{t}/webhook-deliveries"),
    ("tenants.subscribe_webhook", "POST"): Scoped(
        lambda w, t: f"/tenants/{t}/webhooks", role="operator",
        data=lambda w, t: {"url": w.made(t, "hook", f"{HOOKS}/{t}/{next(COUNTER)}"),
                           "events": ["job.failed"]},
        happened=lambda w, t, url: any(s.url == w.ids[t]["hook"]
                                       for s in w.service.webhook_subscriptions(t))),
    ("tenants.unsubscribe_webhook", "POST"): Scoped(
        _subscription_url, role="operator",
        happened=lambda w, t, url: not any(s.id == url.split("/")[4]
                                           for s in w.service.webhook_subscriptions(t))),
    ("tenants.limit_fields", "GET"): Scoped(lambda w, t: f"/tenants/{t}/limits", role="admin",
                                            denied=403, bound_admin_refused=403),
    ("tenants.update_limits", "POST"): Scoped(
        lambda w, t: f"/tenants/{t}/limits", role="admin", denied=403, bound_admin_refused=403,
        data=lambda w, t: {"tier": "tier1"},
        happened=lambda w, t, url: w.service.tenants.get_tenant_config(t).tier.value != "tier4"),
    # maintenance: pausing everything is system-wide (staff admins); resumed after
    ("dashboard.pause_all", "POST"): Neutral("pauses everything: system-wide", role="admin",
                                             staff=True, url=lambda w: "/maintenance/pause"),
    ("dashboard.resume_all", "POST"): Neutral("resumes everything: system-wide", role="admin",
                                              staff=True, url=lambda w: "/maintenance/resume"),
    # runners: hosts and processes (staff)
    ("runners.index", "GET"): Neutral("runners: system-wide", staff=True),
    # dashboard: figures, tiles, feed and charts of the user's tenants
    ("dashboard.index", "GET"): Neutral("figures and feed of the user's tenants"),
    ("dashboard.summary", "GET"): Neutral("figures of the user's tenants"),
    ("dashboard.tenants", "GET"): Neutral("tiles of the user's tenants"),
    ("dashboard.charts", "GET"): Neutral("charts of the user's tenants' rollups"),
    ("failures.index", "GET"): Neutral("failures of the user's tenants", shows="failed"),
    # outbox, reports
    ("outbox.index", "GET"): Neutral("messages of the user's tenants", shows="message"),
    ("outbox.show", "GET"): Scoped(lambda w, t: f"/outbox/{w.ids[t]['message']}"),
    ("reports.index", "GET"): Neutral("reports of the user's tenants", shows="report"),
    ("reports.download", "GET"): Scoped(lambda w, t: f"/reports/{w.ids[t]['report']}/download"),
    ("reports.generate", "POST"): Scoped(
        lambda w, t: "/reports", role="operator", denied=422,
        data=lambda w, t: {"tenant": t, "start_date": TODAY, "end_date": TODAY}),
    # alerts: the history and contacts per tenant; rules are system-wide settings (staff)
    ("alerts.index", "GET"): Neutral("alerts of the user's tenants", shows="alert"),
    ("alerts.show", "GET"): Scoped(lambda w, t: f"/alerts/{w.ids[t]['alert']}"),
    ("alerts.contacts", "GET"): Scoped(lambda w, t: f"/alerts/contacts/{t}"),
    ("alerts.update_contacts", "POST"): Scoped(
        lambda w, t: f"/alerts/contacts/{t}", role="admin",
        data=lambda w, t: {"alert_email": w.made(t, "contact", f"ops{next(COUNTER)}@example.com")},
        happened=lambda w, t, url: w.ids[t]["contact"] in str(
            w.service.tenants.get_tenant_config(t).custom_settings)),
    ("alerts.rules", "GET"): Neutral("rules: system-wide settings", staff=True),
    ("alerts.create_rule", "POST"): Neutral("rules: system-wide settings", role="admin",
                                            staff=True),
    ("alerts.rule", "GET"): Neutral("rules: system-wide settings", staff=True,
                                    url=lambda w: f"/alerts/rules/{w.ids[A]['rule']}"),
    **{(f"alerts.{verb}", "POST"): Neutral(
        "rules: system-wide settings", role="admin", staff=True,
        url=lambda w, path=path: f"/alerts/rules/{w.ids[A]['rule']}{path}")
       for verb, path in (("update_rule", ""), ("enable_rule", "/enable"),
                          ("disable_rule", "/disable"), ("mute_rule", "/mute"),
                          ("unmute_rule", "/unmute"))},
    # handlers: figures summed over every tenant (staff)
    **{(f"handlers.{view}", "GET"): Neutral(
        "figures summed over every tenant", staff=True,
        url=lambda w, path=path: f"/handlers{path}")
       for view, path in (("index", ""), ("show", "/noop"), ("row", "/noop/row"),
                          ("charts", "/noop/charts"))},
    # a handler paused for one tenant: that tenant's operators (for every tenant: staff admins,
    # tests/web/test_control.py)
    ("handlers.pause", "POST"): Scoped(
        _handler_url("pause", paused_first=False), role="operator",
        data=lambda w, t: {"handler": "noop", "tenant_id": t},
        happened=lambda w, t, url: _handler_paused(w, t)),
    ("handlers.resume", "POST"): Scoped(
        _handler_url("resume", paused_first=True), role="operator",
        data=lambda w, t: {"handler": "noop", "tenant_id": t},
        happened=lambda w, t, url: not _handler_paused(w, t)),
    # a handler's rate limit for one tenant: as pausing it (for every tenant: staff admins,
    # tests/web/test_rate_limits.py)
    ("handlers.set_rate_limit", "POST"): Scoped(
        _rate_limit_url("rate-limit", limited_first=False), role="operator",
        data=lambda w, t: {"handler": "noop", "tenant_id": t, "count": "500",
                           "period_seconds": "1"},
        happened=lambda w, t, url: _rate_limited(w, t)),
    ("handlers.remove_rate_limit", "POST"): Scoped(
        _rate_limit_url("rate-limit/remove", limited_first=True), role="operator",
        data=lambda w, t: {"handler": "noop", "tenant_id": t},
        happened=lambda w, t, url: not _rate_limited(w, t)),
    # API tokens: for every tenant or any one (staff)
    ("tokens.index", "GET"): Neutral("tokens: system-wide", role="admin", staff=True),
    ("tokens.create", "POST"): Neutral("tokens: system-wide", role="admin", staff=True),
    ("tokens.revoke", "POST"): Neutral("tokens: system-wide", role="admin", staff=True,
                                       url=lambda w: f"/tokens/{_token(w)}/revoke"),
    # new job: offers and accepts only the user's tenants
    ("new_job.index", "GET"): Neutral("offers only the user's tenants", role="operator",
                                      url=lambda w: "/jobs/new/immediate"),
    ("new_job.create", "POST"): Scoped(
        lambda w, t: "/jobs/new/immediate", role="operator", denied=422,
        data=lambda w, t: {"tenant_id": t, "handler": "noop", "payload": "{}",
                           "priority": "normal", "max_retries": "0",
                           "idempotency_key": w.made(t, "new_job", f"new-{t}-{next(COUNTER)}")},
        happened=lambda w, t, url: _has_key(w, w.ids[t]["new_job"])),
    ("new_job.batch", "GET"): Neutral("offers only the user's tenants", role="operator",
                                      url=lambda w: "/jobs/new/batch"),
    ("new_job.batch", "POST"): Scoped(
        lambda w, t: "/jobs/new/batch", role="operator", denied=422,
        data=lambda w, t: {"tenant_id": t, "file": (io.BytesIO(
            b'[{"type": "immediate", "handler": "noop", "payload": {"batch": "%s"}}]'
            % w.made(t, "batch", f"batch-{t}-{next(COUNTER)}").encode()), "jobs.json")},
        happened=lambda w, t, url: _has_payload(w, w.ids[t]["batch"])),
    ("new_job.cron_preview_fragment", "GET"): Neutral(
        "no tenant in it", role="operator",
        url=lambda w: "/jobs/new/cron-preview?cron_schedule=*/5+*+*+*+*"),
    ("new_job.tenant_usage", "GET"): Scoped(
        lambda w, t: f"/jobs/new/tenant-usage?tenant_id={t}", role="operator"),
    ("new_job.validate_field", "POST"): Scoped(
        lambda w, t: "/jobs/new/validate/payload?kind=immediate", role="operator", denied=200,
        data=lambda w, t: {"tenant_id": t, "handler": "noop", "payload": "{}"}),
}
TODAY = date.today().isoformat()


def _token(world) -> int:
    token, _ = create_token(world.service.engine, f"matrix {next(COUNTER)}", A)
    return token.id


def _has_key(world, key: str) -> bool:
    j = jobs_table.c
    with world.service.engine.connect() as conn:
        return conn.execute(select(j.id).where(j.idempotency_key == key)).first() is not None


def _has_payload(world, text: str) -> bool:
    j = jobs_table.c
    with world.service.engine.connect() as conn:
        return conn.execute(select(j.id).where(j.payload.contains(text))).first() is not None


def _user_of(world, tenant: str) -> int:
    """A viewer bound to ``tenant`` (made once), whom its tenant's admins manage."""
    from console.web.models import User
    username = f"member-{tenant}"
    key = f"user:{tenant}"
    if key not in world.ids[tenant]:
        with world.app.app_context():
            world.ids[tenant][key] = str(set_user(username, "viewer", PASSWORD,
                                                  tenants=[tenant]).id)
        assert User is not None
    return int(world.ids[tenant][key])


def console_routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PUBLIC_PATH_PREFIXES) or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in rule.methods & {"GET", "POST"}:
            found.add((rule.endpoint, method))
    return found


def test_every_route_is_classified(world):
    """A new route must join ROUTES: tenant-scoped (with its URLs) or neutral (with why)."""
    missing = console_routes(world.app) - set(ROUTES)
    assert not missing, f"classify these routes in ROUTES: {sorted(missing)}"
    assert not set(ROUTES) - console_routes(world.app), "ROUTES names routes that are gone"


def _allowed(kind: str, role: str) -> bool:
    return ROLE_ORDER.index(USERS[kind][1]) <= ROLE_ORDER.index(role)


def _request(world, kind: str, method: str, url: str, data: dict | None):
    client = world.clients[kind]
    if method == "GET":
        return client.get(url)
    return client.post(url, data={"csrf_token": client.csrf, **(data or {})})


def _assert_served(response, method: str, about) -> None:
    """Answered for this user: a page (GET), or taken or refused for its content (POST: these
    cases post little, and a form's own 422 is not the matter here)."""
    if method == "GET":
        assert response.status_code < 400, (response.status_code, about)
    else:
        assert response.status_code < 500 and response.status_code not in (403, 404), (
            response.status_code, about)


def _assert_no_leak(world, kind: str, body: str, where: str) -> None:
    if USERS[kind][2]:
        for secret in world.secrets_of(B):
            assert secret not in body, (where, kind, secret)


SCOPED = [(route, kind, tenant) for route, spec in ROUTES.items() if isinstance(spec, Scoped)
          for kind in USERS for tenant in (A, B)]
NEUTRAL = [(route, kind) for route, spec in ROUTES.items()
           if isinstance(spec, Neutral) and not spec.skip for kind in USERS]


@pytest.mark.parametrize("route,kind,tenant", SCOPED, ids=lambda v: str(v))
def test_tenant_scoped_routes(world, route, kind, tenant):
    spec = ROUTES[route]
    method = route[1]
    url = spec.url(world, tenant)
    data = spec.data(world, tenant) if spec.data else None
    response = _request(world, kind, method, url, data)
    body = response.get_data(as_text=True)
    bound = USERS[kind][2]
    if not _allowed(kind, spec.role):
        assert response.status_code == 403, (route, kind, tenant, response.status_code)
    elif bound and tenant not in bound:
        assert response.status_code == spec.denied, (route, kind, tenant, response.status_code)
    elif bound and spec.bound_admin_refused:
        assert response.status_code == spec.bound_admin_refused, (route, kind, tenant)
    else:
        _assert_served(response, method, (route, kind, tenant, body[:300]))
        if spec.shows and method == "GET":
            assert world.ids[tenant][spec.shows] in body, (route, kind, tenant)
    if spec.happened and bound and tenant not in bound:
        assert not spec.happened(world, tenant, url), (route, kind, "changed another tenant")
    _assert_no_leak(world, kind, body, route)
    if response.status_code in (302, 303) and method == "POST":
        followed = world.clients[kind].get(response.headers["Location"])
        _assert_no_leak(world, kind, followed.get_data(as_text=True), route)


@pytest.mark.parametrize("route,kind", NEUTRAL, ids=lambda v: str(v))
def test_tenant_neutral_routes(world, route, kind):
    spec = ROUTES[route]
    url = spec.url(world) if spec.url else next(
        rule.rule for rule in world.app.url_map.iter_rules() if rule.endpoint == route[0])
    response = _request(world, kind, route[1], url, None)
    body = response.get_data(as_text=True)
    if not _allowed(kind, spec.role) or (spec.staff and USERS[kind][2]):
        assert response.status_code == 403, (route, kind, response.status_code)
    else:
        _assert_served(response, route[1], (route, kind, body[:300]))
        if spec.shows:
            assert world.ids[A][spec.shows] in body, (route, kind)
            if not USERS[kind][2]:
                assert world.ids[B][spec.shows] in body, (route, kind)
    _assert_no_leak(world, kind, body, route)
