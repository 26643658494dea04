"""Queue status and statistics, the public OpenAPI document and problem types, and answers to
paths and methods the API does not have."""
from __future__ import annotations

from openapi_spec_validator import validate

from tests.api.conftest import queue


def test_queue_status_and_statistics_for_all_tenant_tokens(api):
    queue(api)
    queue(api, tenant="globex", delay_seconds=600)
    status = api("get", "/queue", token="all").get_json()
    assert (status["queued_jobs"], status["pending_jobs"], status["processing_jobs"]) == (1, 1, 0)
    stats = api("get", "/stats", token="all").get_json()
    assert stats["total_jobs"] == 2 and stats["total_queued_jobs"] == 2
    assert isinstance(stats["system_warnings"], list)
    refused = api("get", "/queue", token="acme")
    assert refused.status_code == 403 and "all-tenant token" in refused.get_json()["detail"]


def test_the_openapi_document_is_public_and_valid(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    validate(document)                      # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    create = document["paths"]["/api/v1/jobs"]["post"]
    assert set(create["responses"]) >= {"201", "401", "422", "429"}
    problem = document["components"]["responses"]["Problem429"]
    assert "application/problem+json" in problem["content"]
    assert "Retry-After" in problem["headers"]


def test_problem_types_resolve_to_their_meaning(app, api):
    problem = api("get", "/jobs", token=None).get_json()
    described = app.test_client().get(problem["type"])
    assert described.status_code == 200
    assert described.get_json()["title"] == problem["title"]
    assert app.test_client().get("/api/v1/problems/nope").status_code == 404


def test_unknown_paths_and_methods_are_problems_not_pages(api):
    missing = api("get", "/nowhere")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert "openapi.json" in missing.get_json()["detail"]
    wrong = api("delete", "/jobs")
    assert wrong.status_code == 405 and wrong.mimetype == "application/problem+json"
    assert set(wrong.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_the_console_keeps_its_html_error_pages(app, users):
    from tests.web.conftest import PASSWORDS, sign_in

    client = app.test_client()
    sign_in(client, "ada", PASSWORDS["ada"])
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_bad_bodies(api):
    not_json = api("post", "/jobs", token="acme", data="type=immediate",
                   content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 415
    broken = api("post", "/jobs", token="acme", data="{", content_type="application/json")
    assert broken.status_code == 400
    assert broken.get_json()["type"] == "/api/v1/problems/malformed-request"
    for body, why in (('{"type": "immediate", "handler": "noop", "payload": {"a": "\\ud800"}}',
                       "unpaired surrogate"),
                      ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
                      ('{"type" "x"}', "Expecting ':' delimiter at character 8")):
        response = api("post", "/jobs", token="acme", data=body, content_type="application/json")
        assert response.status_code == 400 and why in response.get_json()["detail"]
    for body in ("[]", "null", '"job"', "3"):
        response = api("post", "/jobs", token="acme", data=body, content_type="application/json")
        assert response.status_code == 422, body
        assert response.get_json()["errors"][0]["field"] == "body"
    empty = api("post", "/jobs", token="acme")
    assert empty.status_code == 422
    assert {e["field"] for e in empty.get_json()["errors"]} == {"type", "handler"}


def test_the_openapi_document_is_the_one_clients_were_built_against(app):
    """The public contract changes only on purpose: refresh ``openapi.json`` beside this test
    when an endpoint, field or bound changes deliberately, never as a side effect."""
    import json
    from pathlib import Path

    expected = json.loads((Path(__file__).parent / "openapi.json").read_text())
    assert app.test_client().get("/api/v1/openapi.json").get_json() == expected
