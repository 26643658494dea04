"""Schemathesis against the app (WSGI, in-process): generated requests for every operation of
the OpenAPI document, valid and invalid, with an all-tenant admin token. Every answer must be
no 5xx, a documented status code and content type, and a body that conforms to the schema.

Bounded (``MAX_EXAMPLES`` per operation, no deadline) so the run stays well under a minute.
Requests naming a tenant, a job, a batch or a handler are also sent for an existing one, so
success paths are fuzzed too, not only 404s and 422s.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup

from console import create_app
from console.jobs import TenantConfig
from console.tokens import create_token
from tests.conftest import BASE_CONFIG, fresh_database

MAX_EXAMPLES = 30
# A schema-valid job can still be refused with 422 for what a schema cannot say: the handler
# is not registered, or the tenant does not exist. So "valid data is accepted" is not checked;
# everything else is (no 5xx, documented status and content type, conforming bodies and
# headers, schema-invalid data refused with 4xx, and 401 without the token).
EXCLUDED = [positive_data_acceptance]


@pytest.fixture(scope="module")
def fuzz_app(database_template, tmp_path_factory):
    url = fresh_database(database_template, tmp_path_factory.mktemp("fuzz"))
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    service = app.extensions["jobs"]
    service.tenants.set_tenant_config(TenantConfig.for_tier("acme", "Acme", "tier4"))
    app.fuzz_token = create_token(service.engine, "fuzzer", None, is_admin=True)[1]
    app.fuzz_job = service.queue_job("immediate", "noop", {}, "acme").id
    app.fuzz_batch = service.queue_batch_jobs([{"type": "immediate", "handler": "noop"}], "acme",
                                              on_complete={"type": "immediate",
                                                           "handler": "noop"})[0].batch_id
    yield app
    service.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)


# Listed here, not collected from the document, because schemathesis's own pytest integration
# (``schemathesis.pytest.from_fixture``) does not run under pytest 9.2; the last test below
# checks the list against the document, so a new operation cannot be left out.
OPERATIONS = [("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs/batch"),
              ("POST", "/api/v1/jobs/chain"),
              ("GET", "/api/v1/jobs/{job_id}"), ("POST", "/api/v1/jobs/{job_id}/retry"),
              ("POST", "/api/v1/jobs/{job_id}/cancel"), ("POST", "/api/v1/notifications"),
              ("GET", "/api/v1/tenants/{tenant_id}/usage"),
              ("GET", "/api/v1/tenants/{tenant_id}/health"),
              ("GET", "/api/v1/tenants/{tenant_id}/trends"),
              ("GET", "/api/v1/tenants/{tenant_id}/limits"),
              ("PUT", "/api/v1/tenants/{tenant_id}/limits"),
              ("GET", "/api/v1/queue"), ("GET", "/api/v1/stats"), ("GET", "/api/v1/audit"),
              ("POST", "/api/v1/tenants/{tenant_id}/pause"),
              ("POST", "/api/v1/tenants/{tenant_id}/resume"),
              ("POST", "/api/v1/handlers/{handler}/pause"),
              ("POST", "/api/v1/handlers/{handler}/resume"),
              ("POST", "/api/v1/jobs/{job_id}/pause"), ("POST", "/api/v1/jobs/{job_id}/resume"),
              ("POST", "/api/v1/jobs/{job_id}/run-now"), ("GET", "/api/v1/jobs/{job_id}/explain"),
              ("GET", "/api/v1/jobs/{job_id}/attempts"),
              ("GET", "/api/v1/pauses"), ("GET", "/api/v1/runners"),
              ("GET", "/api/v1/handlers/{handler}/rate-limit"),
              ("PUT", "/api/v1/handlers/{handler}/rate-limit"),
              ("DELETE", "/api/v1/handlers/{handler}/rate-limit"),
              ("GET", "/api/v1/batches/{batch_id}"),
              ("GET", "/api/v1/tenants/{tenant_id}/webhooks"),
              ("POST", "/api/v1/tenants/{tenant_id}/webhooks"),
              ("DELETE", "/api/v1/tenants/{tenant_id}/webhooks/{subscription_id}"),
              ("GET", "/api/v1/tenants/{tenant_id}/webhook-deliveries")]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda mode: mode.value)
@pytest.mark.parametrize("method,path", OPERATIONS)
def test_api_conforms_to_its_openapi_document(api_schema, fuzz_app, method, path, mode):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {fuzz_app.fuzz_token}"}
    known = {"tenant_id": "acme", "job_id": fuzz_app.fuzz_job, "handler": "noop",
             "batch_id": fuzz_app.fuzz_batch}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)
        if mode is GenerationMode.POSITIVE and set(case.path_parameters or {}) & set(known):
            # Again for the existing tenant or job, so that success paths are fuzzed too.
            case.path_parameters = {**case.path_parameters, **{
                k: v for k, v in known.items() if k in case.path_parameters}}
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

    check()


@pytest.mark.parametrize("method,path", OPERATIONS)
def test_coverage_cases_conform(api_schema, fuzz_app, method, path):
    """Schemathesis's coverage phase: deterministic boundary values, missing and wrong-typed
    fields, each parameter at its limits, for every operation."""
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {fuzz_app.fuzz_token}"}
    failures, count = [], 0
    for case in api_schema.iter_coverage_cases(
            operation, generation_modes=list(GenerationMode),
            generation_config=api_schema.config.generation_for(operation=operation)):
        count += 1
        try:
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)
        except FailureGroup as failure:
            failures.append(str(failure))
    assert count
    assert not failures, "\n\n".join(failures[:5])


def test_every_operation_is_fuzzed(api_schema):
    documented = {(operation.method.upper(), operation.path)
                  for operation in (result.ok() for result in api_schema.get_all_operations())}
    assert documented == set(OPERATIONS)
