"""Every route of the app, fuzzed: no request, however malformed, is answered with a 5xx.

For every URL rule in ``app.url_map`` and each of its methods, hypothesis builds requests: path values
(plausible ids of things that exist, numbers past 64 bits, text with NUL, controls and non-ASCII), query
strings, headers (with the API key and without, odd ``Accept``, ``Content-Type``, signatures) and bodies
(valid documents with a field changed, random JSON of bounded depth and size, numbers JSON has not, lone
surrogates, NUL, nesting deeper than any parser goes, random bytes, forms). An answer of 500 or more fails
the test, naming the route and the request; an error answer under ``/api``, ``/webhooks`` or ``/ob`` must
also be the JSON error every API error is.

``BRIDGE_FUZZ_EXAMPLES`` sets the examples per route and method (default 30: the file runs in well under
a minute on SQLite); raise it for a longer hunt, e.g. ``BRIDGE_FUZZ_EXAMPLES=500``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from werkzeug.routing import AnyConverter, IntegerConverter, PathConverter, Rule

from bridge.db.engine import Database
from bridge.settings import Settings
from bridge.web.context import Services
from tests.conftest import make_settings
from tests.connectors.support import JWKS_URL, MOODLE_SECRET, MOODLE_URL, fixture, jwks, signed
from tests.issuing.support import award
from tests.web.test_webhooks import LMS_PLATFORMS

EXAMPLES = int(os.environ.get("BRIDGE_FUZZ_EXAMPLES", "30"))
# The same examples every run, so that the suite (and CI) gives the same answer for the same code;
# BRIDGE_FUZZ_RANDOM=1 draws new ones, as a search for inputs nobody has tried yet.
DERANDOMIZE = os.environ.get("BRIDGE_FUZZ_RANDOM") != "1"
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
# Levels of nesting: far past the parser's recursion limit, and just inside it (read, then handled).
DEPTHS = st.sampled_from([50_000, 2_000, 990, 900, 500, 33])


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The suite's settings with Canvas and Moodle platforms, so that the webhooks have someone to hear,
    and rate limits no fuzzing run reaches (a 429 would end a request before what is fuzzed is read)."""
    unlimited = {"api": "1000000/minute", "api_anonymous": "1000000/minute", "webhooks": "1000000/minute"}
    return make_settings(database_url, tmp_path, platforms=LMS_PLATFORMS, rate_limits=unlimited)


@dataclass
class Known:
    """Values that exist in the fuzzed app, by path argument, so that requests reach past "not found"."""

    values: dict[str, list[Any]] = field(default_factory=dict)
    junk: list[str] = field(default_factory=lambda: ["", "0", "x", ".", "..", "%", "\x00", "a" * 300])

    def of(self, name: str) -> list[Any]:
        return self.values.get(name, [])


@pytest.fixture
def known(
    app: Flask, client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> Known:
    award_id = award(database, settings, "welcome")
    services: Services = app.extensions["bridge"]
    public_id = services.publisher.public_id(award_id)
    posted = client.post(
        "/api/v1/events",
        json={"platform": "demo", "event_key": "seed", "kind": "login", "learner": "42"},
        headers=auth,
    )
    event_id = posted.get_json()["id"]
    profile = client.put("/api/v1/learners/demo/42/badge-profile", json={"public": True}, headers=auth)
    registration = client.post("/api/v1/lti/registrations", json=REGISTRATION, headers=auth)
    assert registration.status_code == 201, registration.get_json()
    kids = [key["kid"].rsplit("/", 1)[-1] for key in services.publisher.jwks()["keys"]]
    platforms = [p["id"] for p in LMS_PLATFORMS]
    return Known(
        {
            "platform": platforms,
            "platform_id": platforms,
            "iid": ["default", "demo", "moodle1", "canvas1"],
            "badge_id": ["welcome", "course-graduate", "level-up"],
            "tier": ["gold", "bronze", ""],
            "learner": ["42", "311"],
            "lms_user_id": ["42", "311"],
            "public_id": [public_id, public_id + "x", public_id.upper(), f"{award_id}-{'0' * 20}"],
            "kid": kids,
            "token": [profile.get_json()["url"].rsplit("/", 1)[-1], "abc"],
            "number": [0, 1, 2**46 - 2, 2**46 - 1, 2**63, 10**30],
            "event_id": [event_id, 2**63, 2**63 - 1],
            "award_id": [award_id],
            "approval_id": [1],
            "registration_id": [registration.get_json()["id"]],
            "course": ["42", "42/x"],
            "context_id": ["42"],
            "filename": ["badges.css", "../app.py", "x/../../y"],
        }
    )


# --- values ----------------------------------------------------------------------------------------

ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\n", "\r", "\x1b", "\x7f", "\u0085", "\u2028", "\ufeff", "%", "/", "\\"]),
    ),
    max_size=40,
)
# Lone surrogates: JSON's \u escapes make them; plain UTF-8 (and so neither database) cannot hold them.
SURROGATES = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
)
TEXT = st.one_of(ODD_TEXT, SURROGATES, st.builds(lambda a, b: a + b, ODD_TEXT, SURROGATES))
HUGE_INTS = st.one_of(
    st.integers(min_value=2**31 - 2, max_value=2**31 + 2),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(10**400),
)
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=100),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1.0, 1e300, -1e300, 5e-324]),
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-03-01T10:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59.999999+00:00",
            "1969-12-31T23:59:59Z",
            "2026-02-30T10:00:00Z",
            "2026-03-01",
            "1717430400",
            "99999999999999999999",
        ]
    ),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.integers(min_value=-(10**20), max_value=10**20),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, TIMES)
# Random JSON, its size (and so its depth) bounded by the number of leaves.
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(TEXT, st.sampled_from(["id", "0"])), children, max_size=4),
    ),
    max_leaves=20,
)


def deep_json(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "[" else '{"a":' * depth + "1" + "}" * depth


def with_deep_member(document: bytes, depth: int, kind: str) -> bytes:
    """``document`` (a JSON object) with one more member nested ``depth`` deep, or else nested itself."""
    if document.startswith(b"{") and document != b"{}":
        return b'{"deep": ' + deep_json(depth, kind).encode() + b", " + document[1:]
    return deep_json(depth, kind).encode()


# Documents the app reads, valid as given: a mutation of one of them reaches far past the first check.
REGISTRATION = {
    "platform": "moodle1",
    "issuer": "https://moodle.example.edu",
    "client_id": "abc",
    "auth_login_url": "https://moodle.example.edu/mod/lti/auth.php",
    "auth_token_url": "https://moodle.example.edu/mod/lti/token.php",
    "key_set_url": "https://moodle.example.edu/mod/lti/certs.php",
    "deployment_ids": ["1"],
}
API_DOCUMENTS: list[Any] = [
    {"platform": "demo", "event_key": "k1", "kind": "login", "learner": "42", "score": 0.5, "data": {"a": 1}},
    {"events": [{"platform": "demo", "event_key": "k2", "kind": "login", "learner": "42"}]},
    {
        "id": "three-logins",
        "name": "Three Logins",
        "description": "Signed in three times.",
        "image": "welcome.svg",
        "points": 7,
        "criteria": {"groups": [{"requirements": [{"kinds": ["login"], "target": 3}]}]},
    },
    {"enabled": False},
    {"platform": "demo", "learner": "42", "badge": "welcome", "reason": "by hand"},
    {"reason": "wrong learner"},
    {"leaderboard_opt_out": True, "display_name": "Ada"},
    {"public": True, "email": "ada@example.edu"},
    REGISTRATION,
    {"status": "active"},
]
LMS_DOCUMENTS: list[Any] = [
    *[{**event, "token": MOODLE_SECRET} for event in fixture("moodle", "webhook_events")],
    *[
        fixture("canvas", name)
        for name in (
            "live_course_completed",
            "live_grade_change",
            "live_course_grade_change",
            "live_enrollment_created",
            "live_submission_created",
            "live_quiz_submitted",
            "live_course_progress",
        )
    ],
]


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_documents(draw: st.DrawFn, documents: list[Any]) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(documents)))
    places = list(_paths(document))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if not places:
            break
        where = draw(st.sampled_from(places))
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(where[-1], None)
        else:
            with contextlib.suppress(IndexError, KeyError, TypeError):
                parent[where[-1]] = draw(JSON_VALUES)
        places = list(_paths(document))
    return document


@dataclass(frozen=True)
class Body:
    data: bytes | None
    content_type: str | None

    def __repr__(self) -> str:
        shown = self.data if self.data is None or len(self.data) < 300 else self.data[:300] + b"..."
        return f"Body({shown!r}, {self.content_type!r})"


def as_json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8")


CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "application/jwt",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/ld+json",
        ]
    ),
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)


def bodies(documents: list[Any]) -> st.SearchStrategy[Body]:
    """Bodies for a route that reads ``documents`` (mutated), and anything else."""
    mutated = mutated_documents(documents)
    return st.one_of(
        st.just(Body(None, None)),
        st.builds(Body, mutated.map(as_json), st.just("application/json")),
        st.builds(Body, mutated.map(as_json), st.just("application/json")),
        st.builds(Body, mutated.map(as_json), CONTENT_TYPES),
        st.builds(Body, JSON_VALUES.map(as_json), st.just("application/json")),
        st.builds(
            Body, mutated.map(lambda d: signed(d) if isinstance(d, dict) else as_json(d)), CONTENT_TYPES
        ),
        st.builds(
            Body,
            st.builds(deep_json, DEPTHS, st.sampled_from(["[", '{"a":'])).map(str.encode),
            st.just("application/json"),
        ),
        st.builds(
            Body,
            st.builds(with_deep_member, mutated.map(as_json), DEPTHS, st.sampled_from(["[", '{"a":'])),
            st.just("application/json"),
        ),
        st.builds(
            Body,
            st.sampled_from(
                [
                    b"NaN",
                    b"-Infinity",
                    b"1e400",
                    b"9" * 4301,
                    b'{"a": 1e999}',
                    b"\xff\xfe",
                    b"\xed\xa0\x80",
                    b"\x00",
                ]
            ),
            st.just("application/json"),
        ),
        st.builds(Body, st.binary(max_size=200), CONTENT_TYPES),
        st.builds(
            Body,
            st.dictionaries(
                st.sampled_from(["id_token", "state", "csrf", "item", "iss", "x"]), TEXT, max_size=3
            ).map(lambda form: urlencode(form, errors="surrogatepass").encode()),
            st.just("application/x-www-form-urlencoded"),
        ),
    )


API_BODIES = bodies(API_DOCUMENTS)
LMS_BODIES = bodies(LMS_DOCUMENTS)
QUERY_NAMES = [
    "limit",
    "cursor",
    "order",
    "weeks",
    "platform",
    "learner",
    "badge",
    "alg",
    "status",
    "period",
    "metric",
    "unseen",
    "invite",
    "openid_configuration",
    "registration_token",
    "iss",
    "login_hint",
    "target_link_uri",
    "lti_message_hint",
    "client_id",
    "lti_deployment_id",
]
# Cursors as the lists give them out (base64url of {"l": list, "o": order, "a": id}), odd ones, orders.
PAGING = [
    "eyJsIjoiYXdhcmRzIiwibyI6Im5ld2VzdCIsImEiOjF9",
    "eyJsIjoiZXZlbnRzIiwibyI6Im9sZGVzdCIsImEiOjB9",
    "eyJsIjoiYXdhcmRzIiwibyI6Im5ld2VzdCIsImEiOjEwMDAwMDAwMDAwMDAwMDAwMDAwMDB9",
    "newest",
    "oldest",
]
QUERY_VALUES = st.one_of(
    TEXT,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        ["1", "0", "-1", "1000", "1001", "RS256", "EdDSA", "HS256", "none", "demo", "42", "true", *PAGING]
    ),
)
QUERIES = st.dictionaries(st.one_of(st.sampled_from(QUERY_NAMES), TEXT), QUERY_VALUES, max_size=4)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=60).map(
    lambda text: text.replace("\n", " ").replace("\r", " ")
)


@st.composite
def headers(draw: st.DrawFn, auth: dict[str, str]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    authorization = draw(st.sampled_from(["key", "key", "key", "none", "odd"]))
    if authorization == "key":
        chosen.update(auth)
    elif authorization == "odd":
        chosen["Authorization"] = draw(st.one_of(HEADER_TEXT, HEADER_TEXT.map(lambda t: "Bearer " + t)))
    if draw(st.booleans()):
        chosen["Accept"] = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "text/html",
                        "application/json",
                        "application/vc+jwt",
                        "*/*",
                        "image/*;q=0",
                        "text/html;q=x",
                    ]
                ),
                HEADER_TEXT,
            )
        )
    if draw(st.booleans()):
        chosen["X-Moodle-Timestamp"] = draw(
            st.one_of(HEADER_TEXT, st.integers(min_value=-(10**400), max_value=10**400).map(str))
        )
        chosen["X-Moodle-Signature"] = draw(st.one_of(HEADER_TEXT, HEADER_TEXT.map(lambda t: "sha256=" + t)))
    if draw(st.booleans()):
        name = draw(
            st.sampled_from(["Cookie", "X-Forwarded-For", "X-Forwarded-Proto", "If-None-Match", "Range"])
        )
        chosen[name] = draw(HEADER_TEXT)
    return chosen


def path_values(rule: Rule, known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly values that exist (so that the request reaches past "not found"), else anything."""
    plausible: dict[str, st.SearchStrategy[Any]] = {}
    anything: dict[str, st.SearchStrategy[Any]] = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, AnyConverter):
            plausible[name] = st.sampled_from(sorted(converter.items))
            anything[name] = TEXT
        elif isinstance(converter, IntegerConverter):
            numbers = [v for v in known.of(name) if isinstance(v, int)]
            plausible[name] = st.sampled_from(numbers or [1])
            anything[name] = st.one_of(st.integers(min_value=0, max_value=10), HUGE_INTS.map(abs))
        else:
            plausible[name] = st.sampled_from([str(v) for v in known.of(name)] or ["1"])
            if isinstance(converter, PathConverter):
                anything[name] = st.lists(
                    st.one_of(TEXT, st.sampled_from(known.junk)), min_size=1, max_size=3
                ).map("/".join)
            else:
                # An id that exists with odd text after it ("1-é" for an assertion, say) goes furthest.
                spoilt = st.builds(lambda good, odd: good + odd, plausible[name], TEXT)
                anything[name] = st.one_of(TEXT, spoilt, st.sampled_from(known.junk))
    if not plausible:
        return st.just({})
    mixed = {name: st.one_of(plausible[name], plausible[name], anything[name]) for name in plausible}
    return st.one_of(
        st.fixed_dictionaries(plausible),
        st.fixed_dictionaries(plausible),
        st.fixed_dictionaries(mixed),
        st.fixed_dictionaries(anything),
    )


_ARGUMENT = re.compile(r"<(?:[^>:]+:)?([^>]+)>")


def url_for_rule(rule: Rule, values: dict[str, Any], query: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        value = str(values[match.group(1)])
        safe = "/" if isinstance(rule._converters[match.group(1)], PathConverter) else ""
        return quote(value, safe=safe, errors="surrogatepass")

    path = _ARGUMENT.sub(fill, rule.rule)
    if query:
        path += "?" + urlencode(query, errors="surrogatepass")
    return path


def fuzz_routes(app: Flask) -> list[tuple[Rule, str]]:
    return [
        (rule, method)
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS)
    ]


def check_answer(method: str, url: str, sent: dict[str, Any], response: Any) -> None:
    shown = response.get_data()[:500]
    where = f"{method} {url[:500]!r} headers={sent['headers']!r} body={sent['body']!r}"
    assert response.status_code < 500, f"{where}\n-> {response.status_code} {shown!r}"
    # A revoked assertion answers 410 with its stripped assertion or its page (OB 2.0 hosted revocation).
    revoked = response.status_code == 410 and url.startswith("/ob/assertions/")
    if response.status_code >= 400 and url.startswith(("/api/", "/webhooks/", "/ob/")) and not revoked:
        error = (response.get_json(silent=True) or {}).get("error")
        assert isinstance(error, dict) and error.get("code") and error.get("message"), (
            f"{where}\n-> {response.status_code}, not the JSON error: {shown!r}"
        )


@pytest.fixture
def lms() -> Iterator[responses.RequestsMock]:
    """The LMSs the connectors reach (Canvas's JWKS, Moodle's web service): no request leaves the machine."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks("test-key-1"))
        mock.post(
            f"{MOODLE_URL}/webservice/rest/server.php",
            json={"exception": "dml_missing_record_exception", "errorcode": "invalidrecord", "message": "no"},
        )
        yield mock


def fuzz_route(client: FlaskClient, rule: Rule, method: str, auth: dict[str, str], known: Known) -> None:
    """Hypothesis's requests to one rule with one method; the first 5xx (shrunk) is raised."""

    @FUZZ
    @given(
        values=path_values(rule, known),
        query=QUERIES,
        sent_headers=headers(auth),
        body=LMS_BODIES if rule.rule.startswith("/webhooks/") else API_BODIES,
    )
    def one_request(
        values: dict[str, Any], query: dict[str, str], sent_headers: dict[str, str], body: Body
    ) -> None:
        url = url_for_rule(rule, values, query)
        kwargs: dict[str, Any] = {"headers": sent_headers}
        if body.data is not None:
            kwargs["data"] = body.data
        if body.content_type is not None:
            kwargs["content_type"] = body.content_type
        response = client.open(url, method=method, **kwargs)
        try:
            check_answer(method, url, {"headers": sent_headers, "body": body}, response)
        finally:
            response.close()  # a file served (static, images) is closed here, not by the garbage collector

    one_request()


def test_no_route_answers_a_5xx_to_anything(
    app: Flask, client: FlaskClient, auth: dict[str, str], known: Known, lms: responses.RequestsMock
) -> None:
    routes = fuzz_routes(app)
    assert len(routes) > 40  # every rule of the app, not a list kept by hand
    failures: list[str] = []
    for rule, method in routes:
        try:
            fuzz_route(client, rule, method, auth, known)
        except Exception as error:  # every route is tried, and all failures are reported at once
            failures.append(f"{method} {rule.rule}: {type(error).__name__}: {error}")
    services: Services = app.extensions["bridge"]
    services.webhook_fetches.wait()
    assert not failures, f"{len(failures)} route(s) answered a 5xx or a non-JSON error:\n\n" + "\n\n".join(
        failures
    )


# --- what the fuzzer found, each fixed once for every route (bridge/app.py) --------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/api/v1/events/{2**63}", None),
        ("POST", f"/api/v1/awards/{2**63}/revoke", {"reason": "wrong learner"}),
        ("POST", f"/api/v1/approvals/{2**63}/approve", {}),
        ("POST", f"/api/v1/lti/registrations/{2**63}/status", {"status": "active"}),
        ("PUT", f"/api/v1/lti/registrations/{2**63}/contexts/42/grade-sync", {"enabled": True}),
    ],
)
def test_an_id_past_64_bits_in_an_api_path_is_a_404(
    client: FlaskClient, auth: dict[str, str], method: str, path: str, body: Any
) -> None:
    response = client.open(path, method=method, json=body, headers=auth)
    assert response.status_code == 404, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/awards?platform=%00", None),
        ("GET", "/api/v1/awards?learner=%00", None),
        ("GET", "/api/v1/badges/%00", None),
        ("PATCH", "/api/v1/badges/%00", {"enabled": True}),
        ("GET", "/api/v1/learners/demo/%00/progress", None),
        ("GET", "/api/v1/leaderboards?platform=demo&course=%00", None),
        ("PUT", "/api/v1/learners/demo/%00/preferences", {"leaderboard_opt_out": True}),
        ("PUT", "/api/v1/learners/demo/%00/badge-profile", {"public": True}),
        ("PUT", "/api/v1/lti/registrations/1/contexts/%00/grade-sync", {"enabled": True}),
    ],
)
def test_nul_in_an_api_path_or_query_is_not_a_5xx(
    client: FlaskClient, auth: dict[str, str], method: str, path: str, body: Any
) -> None:
    response = client.open(path, method=method, json=body, headers=auth)
    assert response.status_code < 500, response.get_data(as_text=True)
