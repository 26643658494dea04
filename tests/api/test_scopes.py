"""The scope matrix: every kind of token × every endpoint × each tenant, the status it gets,
and that no answer to one tenant's token carries anything of the other tenant.

One app (and database) serves the whole module, so the 300-odd cases share one set-up; each
case makes the job it needs, so their order does not matter.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from console import create_app
from console.jobs import TenantConfig
from tests.api.conftest import bearer, make_tokens
from tests.conftest import BASE_CONFIG, fresh_database

A, B = "acme", "globex"
# Only ever stored for one tenant: seeing one in the other tenant's answers is a leak.
MARKERS = {A: ("Acme Secret Name", "acme-private-payload"),
           B: ("Globex Secret Name", "globex-private-payload")}
UNLIMITED = {"maxQueuedJobs": None, "maxDailyJobs": None}


@pytest.fixture(scope="module")
def matrix_app(database_template, tmp_path_factory):
    url = fresh_database(database_template, tmp_path_factory.mktemp("scopes"))
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    service = app.extensions["jobs"]
    for tenant_id, (name, _) in MARKERS.items():
        service.tenants.set_tenant_config(TenantConfig.for_tier(
            tenant_id, name, "tier4", {"jobLimits": UNLIMITED}))
        # History for usage and lists to (not) show.
        service.queue_job("immediate", "noop", {"note": MARKERS[tenant_id][1]}, tenant_id,
                          metadata={"note": MARKERS[tenant_id][1]})
        # A pause whose reason only its tenant may read (GET /pauses, jobs, explanations).
        service.pause_job(_job(app, tenant_id, delayed=True), reason=MARKERS[tenant_id][1])
    app.secrets = make_tokens(service.engine)
    yield app
    service.engine.dispose()


def _job(app, tenant: str, cancelled: bool = False, delayed: bool = False) -> str:
    service = app.extensions["jobs"]
    job = service.queue_job("immediate", "noop", {"note": MARKERS[tenant][1]}, tenant,
                            delay=timedelta(hours=1) if delayed else None)
    if cancelled:
        service.cancel_job(job.id)
    return job.id


def _batch(app, tenant: str) -> str:
    service = app.extensions["jobs"]
    return service.queue_batch_jobs([{"type": "immediate", "handler": "noop",
                                      "payload": {"note": MARKERS[tenant][1]}}], tenant,
                                    on_complete={"type": "immediate", "handler": "noop"}
                                    )[0].batch_id


def _subscription(app, tenant: str) -> str:
    """An event webhook of the tenant whose URL only its tenant may read."""
    subscription, _ = app.extensions["jobs"].subscribe_webhook(
        tenant, f"https://hooks.example.com/{MARKERS[tenant][1]}", ["job.completed"])
    return subscription.id


def _unsubscribe_all(app, tenant: str) -> None:
    service = app.extensions["jobs"]
    for subscription in service.webhook_subscriptions(tenant):
        service.unsubscribe_webhook(tenant, subscription.id)


# name → (method, path, body, success status); ``{t}`` is the target tenant, ``{job}``,
# ``{done}`` and ``{later}`` a queued, a cancelled and a delayed job of it, ``{batch}`` a batch
# of it, ``{sub}`` an event webhook of it, ``{h}`` a handler.
ENDPOINTS = {
    "create_job": ("POST", "/jobs", {"type": "immediate", "handler": "noop", "tenant_id": "{t}"},
                   201),
    "create_notification": ("POST", "/notifications",
                            {"type": "sms", "recipient": "+15550100", "body": "hi",
                             "tenant_id": "{t}"}, 201),
    "create_batch": ("POST", "/jobs/batch",
                     {"tenant_id": "{t}", "jobs": [{"type": "immediate", "handler": "noop"}]},
                     201),
    "create_chain": ("POST", "/jobs/chain",
                     {"tenant_id": "{t}", "jobs": [{"type": "immediate", "handler": "noop"}] * 2},
                     201),
    "get_job": ("GET", "/jobs/{job}", None, 200),
    "list_jobs": ("GET", "/jobs?tenant_id={t}", None, 200),
    "retry_job": ("POST", "/jobs/{done}/retry", None, 200),
    "cancel_job": ("POST", "/jobs/{job}/cancel", None, 200),
    "usage": ("GET", "/tenants/{t}/usage", None, 200),
    "health": ("GET", "/tenants/{t}/health", None, 200),
    "trends": ("GET", "/tenants/{t}/trends", None, 200),
    "get_limits": ("GET", "/tenants/{t}/limits", None, 200),
    "put_limits": ("PUT", "/tenants/{t}/limits",
                   {"tier": "tier4", "limits": {"max_queued_jobs": None, "max_daily_jobs": None}},
                   200),
    "pause_tenant": ("POST", "/tenants/{t}/pause", {"reason": "matrix"}, 200),
    "resume_tenant": ("POST", "/tenants/{t}/resume", None, 200),
    "pause_handler": ("POST", "/handlers/{h}/pause", {"tenant_id": "{t}"}, 200),
    "resume_handler": ("POST", "/handlers/{h}/resume", {"tenant_id": "{t}"}, 200),
    "pause_job": ("POST", "/jobs/{job}/pause", {"reason": "matrix"}, 200),
    "resume_job": ("POST", "/jobs/{job}/resume", None, 200),
    "run_now": ("POST", "/jobs/{later}/run-now", None, 200),
    "explain_job": ("GET", "/jobs/{job}/explain", None, 200),
    "list_job_attempts": ("GET", "/jobs/{job}/attempts", None, 200),
    "list_pauses": ("GET", "/pauses?tenant_id={t}", None, 200),
    "get_handler_rate_limit": ("GET", "/handlers/{h}/rate-limit?tenant_id={t}", None, 200),
    "put_handler_rate_limit": ("PUT", "/handlers/{h}/rate-limit",
                               {"tenant_id": "{t}", "count": 100_000, "period_seconds": 1}, 200),
    "delete_handler_rate_limit": ("DELETE", "/handlers/{h}/rate-limit?tenant_id={t}", None, 200),
    "get_batch": ("GET", "/batches/{batch}", None, 200),
    "list_webhooks": ("GET", "/tenants/{t}/webhooks", None, 200),
    "create_webhook": ("POST", "/tenants/{t}/webhooks",
                       {"url": "https://hooks.example.com/matrix", "events": ["job.failed"]},
                       201),
    "delete_webhook": ("DELETE", "/tenants/{t}/webhooks/{sub}", None, 204),
    "list_webhook_deliveries": ("GET", "/tenants/{t}/webhook-deliveries", None, 200),
}
SYSTEM_ENDPOINTS = {"queue": ("GET", "/queue", None, 200), "stats": ("GET", "/stats", None, 200),
                    "audit": ("GET", "/audit", None, 200),
                    "runners": ("GET", "/runners", None, 200)}
ADMIN_ONLY = {"put_limits", "audit"}
TOKENS = ["acme", "globex", "all", "admin", "revoked", "malformed", "missing"]
MALFORMED = "cjt_" + "!" * 43


def expected(endpoint: str, token: str, target: str | None, success: int) -> int:
    if token in ("revoked", "malformed", "missing"):
        return 401
    if token in (A, B):
        if target is None:
            return 403                              # queue, stats: all-tenant tokens only
        if target != token:
            return 404                              # another tenant: as if it did not exist
        return 403 if endpoint in ADMIN_ONLY else success
    if endpoint in ADMIN_ONLY and token != "admin":
        return 403
    return success


def _fill(value, replacements):
    if isinstance(value, str):
        for key, new in replacements.items():
            value = value.replace("{" + key + "}", new)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, replacements) for v in value]
    return value


def _secret(app, token: str) -> str | None:
    if token == "missing":
        return None
    return MALFORMED if token == "malformed" else app.secrets[token]


def _call(app, token, method, path, body):
    headers = bearer(_secret(app, token))
    return app.test_client().open("/api/v1" + path, method=method, headers=headers, json=body)


CASES = [(endpoint, token, target) for endpoint in ENDPOINTS for token in TOKENS
         for target in (A, B)]
SYSTEM_CASES = [(endpoint, token) for endpoint in SYSTEM_ENDPOINTS for token in TOKENS]


@pytest.mark.parametrize("endpoint,token,target", CASES)
def test_tenant_endpoints(matrix_app, endpoint, token, target):
    method, path, body, success = ENDPOINTS[endpoint]
    replacements = {"t": target, "h": "noop"}
    if "{job}" in path:
        replacements["job"] = _job(matrix_app, target)
    if "{done}" in path:
        replacements["done"] = _job(matrix_app, target, cancelled=True)
    if "{later}" in path:
        replacements["later"] = _job(matrix_app, target, delayed=True)
    if "{batch}" in path:
        replacements["batch"] = _batch(matrix_app, target)
    if "{sub}" in path:
        replacements["sub"] = _subscription(matrix_app, target)
    try:
        response = _call(matrix_app, token, method, _fill(path, replacements),
                         _fill(body, replacements))
    finally:
        _unsubscribe_all(matrix_app, target)   # a tenant has at most 10
    status = expected(endpoint, token, target, success)
    assert response.status_code == status, response.get_data(as_text=True)
    text_body = response.get_data(as_text=True)
    if status >= 400:
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if token in (A, B):
        other = B if token == A else A
        for marker in MARKERS[other]:
            assert marker not in text_body
        if status < 300 and endpoint == "list_jobs":
            assert {job["tenant_id"] for job in response.get_json()["jobs"]} == {token}
        if status < 300 and endpoint == "list_pauses":
            assert {p["tenant_id"] for p in response.get_json()["pauses"]} <= {token, None}


@pytest.mark.parametrize("endpoint,token", SYSTEM_CASES)
def test_system_endpoints(matrix_app, endpoint, token):
    method, path, body, success = SYSTEM_ENDPOINTS[endpoint]
    response = _call(matrix_app, token, method, path, body)
    assert response.status_code == expected(endpoint, token, None, success)
    if endpoint == "audit" and response.status_code == 200:
        return   # an admin's audit trail names every tenant's changes (the webhooks' URLs)
    for marker in MARKERS[A] + MARKERS[B]:
        assert marker not in response.get_data(as_text=True)


@pytest.mark.parametrize("token", TOKENS)
def test_pausing_a_handler_without_a_tenant(matrix_app, token):
    """A tenant token pauses it for its own tenant; an all-tenant token, for every tenant,
    only when it is an admin's."""
    response = _call(matrix_app, token, "POST", "/handlers/record/pause", {"reason": "matrix"})
    status = {A: 200, B: 200, "all": 403, "admin": 200}.get(token, 401)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 200:
        assert response.get_json()["paused"]["tenant_id"] == (None if token == "admin"
                                                              else token)
        resumed = _call(matrix_app, token, "POST", "/handlers/record/resume", None)
        assert resumed.status_code == 200 and resumed.get_json()["paused"] is None


@pytest.mark.parametrize("token", TOKENS)
def test_rate_limiting_a_handler_without_a_tenant(matrix_app, token):
    """A tenant token limits it for its own tenant; an all-tenant token, for every tenant,
    only when it is an admin's; any token reads the limit of its scope."""
    body = {"count": 100_000, "period_seconds": 1}
    response = _call(matrix_app, token, "PUT", "/handlers/record/rate-limit", body)
    status = {A: 200, B: 200, "all": 403, "admin": 200}.get(token, 401)
    assert response.status_code == status, response.get_data(as_text=True)
    read = _call(matrix_app, token, "GET", "/handlers/record/rate-limit", None)
    assert read.status_code == (401 if status == 401 else 200)
    if status == 200:
        assert response.get_json()["tenant_id"] == (None if token == "admin" else token)
        assert read.get_json() == response.get_json()
        removed = _call(matrix_app, token, "DELETE", "/handlers/record/rate-limit", None)
        assert removed.status_code == 200 and removed.get_json()["rate_limit"] is None


@pytest.mark.parametrize("token", TOKENS)
def test_listing_pauses_without_a_tenant(matrix_app, token):
    """Every pause for all-tenant tokens; for a tenant token, those that hold its work."""
    response = _call(matrix_app, token, "GET", "/pauses", None)
    status = 401 if token in ("revoked", "malformed", "missing") else 200
    assert response.status_code == status
    if token in (A, B):
        other = B if token == A else A
        assert {p["tenant_id"] for p in response.get_json()["pauses"]} <= {token, None}
        for marker in MARKERS[other]:
            assert marker not in response.get_data(as_text=True)
    elif status == 200:
        assert {A, B} <= {p["tenant_id"] for p in response.get_json()["pauses"]}


@pytest.mark.parametrize("token", [A, B])
def test_a_tenant_token_lists_only_its_own_jobs(matrix_app, token):
    response = _call(matrix_app, token, "GET", "/jobs?limit=200", None)
    assert response.status_code == 200
    jobs = response.get_json()["jobs"]
    assert jobs and {job["tenant_id"] for job in jobs} == {token}


def test_the_matrix_covers_every_api_operation(matrix_app):
    """A new endpoint must join the matrix: compare it with the OpenAPI document's paths."""
    document = matrix_app.test_client().get("/api/v1/openapi.json").get_json()
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method != "parameters"}
    covered = set()
    for method, path, _, _ in [*ENDPOINTS.values(), *SYSTEM_ENDPOINTS.values()]:
        path = path.split("?")[0].replace("{t}", "{tenant_id}").replace("{h}", "{handler}")
        for job in ("{job}", "{done}", "{later}"):
            path = path.replace(job, "{job_id}")
        path = path.replace("{batch}", "{batch_id}").replace("{sub}", "{subscription_id}")
        covered.add((method, "/api/v1" + path))
    assert documented == covered
