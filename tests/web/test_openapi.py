"""The REST API's OpenAPI 3.1 document (``bridge/web/openapi.py``): it describes every /api/v1 route with
its scope, parameters, bodies and answers, and the API keeps to it: Schemathesis calls every operation
with generated requests and checks each answer (no 5xx; status, content type, headers and body as
documented)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.domain.templates import _TEMPLATE_KEYS
from bridge.services.api_keys import create_key
from bridge.web.access import API_PREFIX, need_of
from bridge.web.openapi import CONTENT_SECURITY_POLICY, api_rules, operation_path
from bridge.web.schemas import BadgeDocumentIn
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store
from tests.issuing.support import award

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Examples per operation (about 30 s in all at 50); BRIDGE_SCHEMATHESIS_EXAMPLES=200 for a deeper run, and
# BRIDGE_SCHEMATHESIS_MODE=negative for invalid requests (each must get a documented 4xx, never a 5xx).
EXAMPLES = int(os.environ.get("BRIDGE_SCHEMATHESIS_EXAMPLES", "50"))
DERANDOMIZE = os.environ.get("BRIDGE_FUZZ_RANDOM") != "1"
MODE = GenerationMode(os.environ.get("BRIDGE_SCHEMATHESIS_MODE", "positive"))
KNOWN = {
    "platform": "demo",
    "learner": "7",
    "lms_user_id": "7",
    "event_id": 1,
    "award_id": 1,
    "approval_id": 1,
}


@pytest.fixture
def open_app(database_url: str, tmp_path: Path, database: Database) -> Flask:
    """The app with rate limits off (Schemathesis sends far more than 600 calls a minute), seeded with an
    event of each status, awards, a revoked award and an approval, so that lists answer rows."""
    settings = make_settings(database_url, tmp_path, rate_limits={"enabled": False})
    store(database, learning_event("e-1", kind="login"), learning_event("e-2", kind="assignment_graded"))
    Worker(database, settings).run(threading.Event(), drain=True)
    award(database, settings, "welcome", learner="7")
    return create_app(settings, database)


@pytest.fixture
def admin_auth(database: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(database, 'schemathesis', scope='admin')}"}


def _known_names(case: Any) -> None:
    """Half the examples name what the database holds (random names are nearly always a 404), so that the
    answers with rows are checked too: the seeded platform, learner and ids, in the path and the body."""
    for name, value in KNOWN.items():
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = value
        if isinstance(case.body, dict) and name in case.body:
            case.body[name] = value
    if "platform" in (case.query or {}):
        case.query["platform"] = "demo"


def test_every_operation_keeps_to_the_document(open_app: Flask, admin_auth: dict[str, str]) -> None:
    """Schemathesis's stateless checks on every operation, one after another on the same database (what
    one creates, the next may read). Each failure is reported with its operation and a curl command."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", open_app)
    problems: list[str] = []
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(operation.label)

        @given(case=operation.as_strategy(MODE), known=st.booleans())
        @settings(
            max_examples=EXAMPLES,
            derandomize=DERANDOMIZE,  # repeatable; BRIDGE_FUZZ_RANDOM=1 draws new examples
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        def call(case: Any, known: bool) -> None:
            if known:
                _known_names(case)
            case.call_and_validate(headers=admin_auth, checks=CHECKS)

        try:
            call()
        except Unsatisfiable:  # negative mode, an operation without parameters or body: nothing to break
            assert MODE is GenerationMode.NEGATIVE
        except Exception as error:  # every operation is run; the failures are reported together
            problems.append(f"{operation.label}:\n{error}")
    documented = [f"{m.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for m in item]
    # Schemathesis leaves out the operation serving the document it reads (the document tests cover it).
    assert sorted(tested) == sorted(set(documented) - {"GET /api/v1/openapi.json"})
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()


def test_the_document_is_openapi_3_1_and_valid(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    validate(document)  # raises on any error against the OpenAPI 3.1 schema


def test_the_document_needs_no_key_even_with_the_api_disabled(tmp_path: Path, database_url: str) -> None:
    app = create_app(make_settings(database_url, tmp_path, api_access="disabled"))
    client = app.test_client()
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/events").status_code == 403


def test_every_api_route_is_described_with_its_methods_and_scope(
    app: Flask, document: dict[str, Any]
) -> None:
    rules = api_rules(app)
    assert rules
    for rule in rules:
        path = operation_path(rule)
        assert path in document["paths"], f"{rule.rule} is not in the document (@documented missing?)"
        need = need_of(app, rule.endpoint)
        assert need is not None
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path].get(method.lower())
            assert operation is not None, f"{method} {rule.rule} is not in the document"
            assert operation["x-required-scope"] == need.scope
            if need.scope == "public":
                assert operation["security"] == []
            else:
                assert operation["security"] == [{"bearerAuth": []}]
                assert f"`{need.scope}` scope" in operation["description"]
                for status in ("401", "403", "422", "429", "503"):
                    assert document["paths"][path][method.lower()]["responses"][status]
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {
        (operation_path(rule), method.lower())
        for rule in rules
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert described == routed
    assert all(path.startswith(API_PREFIX) for path, _ in described)


def _operation(document: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    return document["paths"][path][method]


def _parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation["parameters"]}


def test_parameters_carry_their_types_and_limits(document: dict[str, Any]) -> None:
    events = _parameters(_operation(document, "/api/v1/events"))
    assert events["limit"]["in"] == "query"
    limit = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert events["limit"]["schema"].items() >= limit.items()
    assert events["order"]["schema"]["enum"] == ["newest", "oldest"]
    assert set(events["status"]["schema"]["enum"]) == {"all", "pending", "done", "failed"}
    assert events["cursor"]["schema"]["type"] == "string"
    runs = _parameters(_operation(document, "/api/v1/sync/runs"))
    assert (runs["limit"]["schema"]["maximum"], runs["limit"]["schema"]["default"]) == (500, 50)
    approvals = _parameters(_operation(document, "/api/v1/approvals"))
    assert approvals["order"]["schema"]["default"] == "oldest"
    board = _parameters(_operation(document, "/api/v1/leaderboards"))
    assert board["platform"]["required"] is True
    assert board["limit"]["schema"]["maximum"] == 100
    one = _parameters(_operation(document, "/api/v1/events/{event_id}"))
    assert one["event_id"]["in"] == "path"
    assert one["event_id"]["schema"] == {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": 2**63 - 1,
    }
    status = _parameters(_operation(document, "/api/v1/lti/registrations/{registration_id}/status", "post"))
    assert status["registration_id"]["schema"]["maximum"] == 2**31 - 1  # lti_registrations.id is 32-bit
    progress = _parameters(_operation(document, "/api/v1/learners/{platform}/{learner}/progress"))
    assert "/" in progress["learner"]["description"]


@pytest.mark.parametrize(
    ("path", "name", "good", "bad"),
    [
        ("/api/v1/events", "limit", "1000", "1001"),
        ("/api/v1/sync/runs", "limit", "500", "501"),
        ("/api/v1/learners/demo/7/notifications", "limit", "1000", "1001"),
        ("/api/v1/analytics/awards-per-week", "weeks", "260", "261"),
        ("/api/v1/leaderboards?platform=demo", "limit", "100", "101"),
        ("/api/v1/events", "status", "failed", "lost"),
        ("/api/v1/approvals", "status", "rejected", "lost"),
        ("/api/v1/awards", "order", "oldest", "up"),
    ],
)
def test_documented_query_limits_are_the_ones_enforced(
    client: FlaskClient,
    auth: dict[str, str],
    document: dict[str, Any],
    path: str,
    name: str,
    good: str,
    bad: str,
) -> None:
    """The query models document what inputs.query_int / query_choice and paging.keyset enforce."""
    schema = _parameters(
        _operation(document, path.split("?")[0].replace("/demo/7/", "/{platform}/{learner}/"))
    )
    documented = schema[name]["schema"]
    assert good in (documented.get("enum") or [str(documented.get("maximum"))])
    joiner = "&" if "?" in path else "?"
    assert client.get(f"{path}{joiner}{name}={good}", headers=auth).status_code in (200, 404)
    refused = client.get(f"{path}{joiner}{name}={bad}", headers=auth)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"].startswith(f"{name}: ")


def test_bodies_are_the_models_that_validate_them(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    def body(path: str, method: str) -> str:
        return _operation(document, path, method)["requestBody"]["content"]["application/json"]["schema"][
            "$ref"
        ]

    assert body("/api/v1/events", "post").endswith("/EventsBodyIn")
    assert body("/api/v1/awards", "post").endswith("/ManualAwardIn")
    assert body("/api/v1/badges", "post").endswith("/BadgeDocumentIn")
    assert schemas["EventIn"]["properties"]["score"]["anyOf"][0] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
    }
    assert set(schemas["EventIn"]["required"]) == {"platform", "event_key", "kind", "learner"}
    assert (
        _operation(document, "/api/v1/learners/{platform}/{learner}/notifications/seen", "post")[
            "requestBody"
        ]["required"]
        is False
    )
    # The badge document is parsed by the domain; its model names the same keys.
    assert set(BadgeDocumentIn.model_fields) == _TEMPLATE_KEYS


def test_errors_and_non_json_answers_are_described(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    throttled = _operation(document, "/api/v1/awards")["responses"]["429"]
    assert throttled["headers"]["Retry-After"]["required"] is True
    created = _operation(document, "/api/v1/awards", "post")["responses"]
    assert {"201", "409", "413", "415", "422"} <= set(created)
    csv = _operation(document, "/api/v1/analytics/badges.csv")["responses"]["200"]["content"]
    assert list(csv) == ["text/csv"]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (badge-bridge api-keys create)",
    }


def test_the_docs_page_serves_swagger_ui_itself_under_a_strict_policy(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    html = page.get_data(as_text=True)
    assert 'data-document="/api/v1/openapi.json"' in html
    sources = [s for s in re.findall(r'(?:src|href)="([^"]+)"', html) if s != "data:,"]  # data:, no favicon
    assert len(sources) == 3 and all(s.startswith("/") and not s.startswith("//") for s in sources)  # no CDN
    assert not re.search(r"<script>|<script [^>]*>[^<]+</script>|<style|style=", html)  # nothing inline
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert asset.mimetype in ("text/javascript", "text/css")
        assert len(asset.get_data()) > 100
    assert client.get("/docs-assets/swagger-ui/../../app.py").status_code == 404
    assert client.get("/docs-assets/swagger-ui/index.html").status_code == 404


# What Schemathesis found, kept as plain tests.


def test_a_registration_id_beyond_its_32_bit_column_is_unknown(
    client: FlaskClient, database: Database
) -> None:
    """PostgreSQL refused the out-of-range id (NumericValueOutOfRange: a 500); the route now answers 404."""
    admin = {"Authorization": f"Bearer {create_key(database, 'lti-admin', scope='admin')}"}
    for path, method in (("status", client.post), ("contexts/c1/grade-sync", client.put)):
        for registration_id in (2**31, 79676704371, 2**63 - 1):
            body = {"status": "active"} if path == "status" else {"enabled": True}
            answer = method(f"/api/v1/lti/registrations/{registration_id}/{path}", json=body, headers=admin)
            assert answer.status_code == 404, (path, registration_id)
            assert answer.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("url", ["https://[", "https://[::1", "http://]x["])
def test_a_registration_url_that_cannot_be_read_is_invalid(
    client: FlaskClient, database: Database, url: str
) -> None:
    """urlsplit raised ValueError ("Invalid IPv6 URL"): a 500; now a 422 naming the field."""
    admin = {"Authorization": f"Bearer {create_key(database, 'lti-admin', scope='admin')}"}
    body = {
        "platform": "demo",
        "issuer": "https://lms.example.edu",
        "client_id": "c1",
        "auth_login_url": url,
        "auth_token_url": "https://lms.example.edu/token",
        "key_set_url": "https://lms.example.edu/jwks",
    }
    answer = client.post("/api/v1/lti/registrations", json=body, headers=admin)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["message"].startswith("auth_login_url: expected an https:// URL")


def test_a_notification_id_beyond_64_bits_is_invalid(client: FlaskClient, auth: dict[str, str]) -> None:
    """PostgreSQL refused it ("bigint out of range": a 500); the model now refuses it, naming the field."""
    client.put("/api/v1/learners/demo/7/badge-profile", json={"public": False}, headers=auth)  # the learner
    body = {"ids": [1, 2**63]}
    answer = client.post("/api/v1/learners/demo/7/notifications/seen", json=body, headers=auth)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["message"].startswith("ids[1]: Input should be less than or equal to")
    assert client.post(
        "/api/v1/learners/demo/7/notifications/seen", json={"ids": [2**63 - 1]}, headers=auth
    ).json == {"marked": 0}
