"""The LTI Advantage client: client-credentials tokens (cached, refreshed), NRPS paging, AGS line items
and scores, retries, and secrets kept out of errors and logs. Payload shapes follow the 1EdTech NRPS 2.0
and AGS 2.0 specifications and what Moodle and Canvas send."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.issuing.keys import SigningKey
from bridge.lti.advantage import (
    LINEITEM_SCOPE,
    NRPS_SCOPE,
    SCORE_SCOPE,
    AccessTokenCache,
    AdvantageClient,
    AdvantageError,
    ServiceRefused,
    TokenRejected,
    ToolRegistration,
    scores_url,
)
from connectors.http import HttpPolicy

MOODLE = ToolRegistration(
    issuer="https://moodle.example.edu",
    client_id="kR4tZ1mB9xQw2Ls",
    token_url="https://moodle.example.edu/mod/lti/token.php",
)
CANVAS_TOKEN_URL = "https://sso.canvaslms.com/login/oauth2/token"
CANVAS = ToolRegistration(
    issuer="https://canvas.instructure.com",
    client_id="10000000000001",
    token_url=CANVAS_TOKEN_URL,
    audience="https://canvas.instructure.com/login/oauth2/token",
)
CANVAS_OTHER_TENANT = ToolRegistration("https://canvas.instructure.com", "10000000000002", CANVAS_TOKEN_URL)
POLICY = HttpPolicy(timeout=2.0, attempts=3, backoff_base=0.01, backoff_max=5.0)
LINEITEMS = "https://moodle.example.edu/mod/lti/services.php/2/lineitems?type_id=1"
LINEITEM = "https://moodle.example.edu/mod/lti/services.php/2/lineitems/7/lineitem?type_id=1"
LINEITEMS_BY_TAG = f"{LINEITEMS}&tag=badges"
SCORES = "https://moodle.example.edu/mod/lti/services.php/2/lineitems/7/lineitem/scores?type_id=1"
WHEN = datetime(2026, 3, 4, 18, 54, 36, 736000, tzinfo=UTC)
CUSTOM = "https://purl.imsglobal.org/spec/lti/claim/custom"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(
        kid="rsa-20260304-lti1", alg="RS256", created_at=datetime.now(UTC), active=True, private_key=private
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(clock: Clock) -> AccessTokenCache:
    return AccessTokenCache(clock=clock)


@pytest.fixture
def issued() -> Iterator[list[dict[str, str]]]:
    """A platform token endpoint (Moodle's and Canvas's) handing out a new token per request."""
    forms: list[dict[str, str]] = []

    def token_endpoint(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = {name: values[0] for name, values in parse_qs(str(request.body)).items()}
        forms.append(form)
        answer = {"access_token": f"at-{len(forms)}-Zx9", "token_type": "Bearer", "expires_in": 3600}
        return 200, {}, json.dumps({**answer, "scope": form["scope"]})

    responses.start()
    try:
        for url in (MOODLE.token_url, CANVAS_TOKEN_URL):
            responses.add_callback(responses.POST, url, callback=token_endpoint)
        yield forms
    finally:
        responses.stop()
        responses.reset()


def advantage(
    key: SigningKey, tokens: AccessTokenCache, registration: ToolRegistration = MOODLE, **kwargs: Any
) -> AdvantageClient:
    kwargs.setdefault("sleep", lambda _seconds: None)
    return AdvantageClient(registration, key, tokens, POLICY, **kwargs)


def bearer(call: Any) -> str:
    return str(call.request.headers["Authorization"]).removeprefix("Bearer ")


def service_calls() -> list[Any]:
    return [call for call in responses.calls if "token" not in call.request.url]


def post_score(client: AdvantageClient, user: str = "2") -> None:
    client.post_score(LINEITEM, user, 8.5, 10, WHEN)


# --- tokens ---------------------------------------------------------------------------------------------


def test_a_token_is_requested_once_and_reused_across_calls(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, body="")
    client = advantage(key, tokens)
    post_score(client, "2")
    post_score(client, "3")
    assert len(issued) == 1
    assert [bearer(call) for call in service_calls()] == ["at-1-Zx9", "at-1-Zx9"]
    assert issued[0]["scope"] == SCORE_SCOPE


def test_a_token_is_refreshed_shortly_before_it_expires(
    key: SigningKey, tokens: AccessTokenCache, clock: Clock, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, body="")
    client = advantage(key, tokens)
    post_score(client)
    clock.now += 3_500  # expires_in 3600, renewed 60 s early
    post_score(client)
    clock.now += 41
    post_score(client)
    assert len(issued) == 2
    assert [bearer(call) for call in service_calls()] == ["at-1-Zx9", "at-1-Zx9", "at-2-Zx9"]


def test_tokens_are_kept_apart_per_client_id_and_per_scope_set(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, body="")
    first, second = advantage(key, tokens, CANVAS), advantage(key, tokens, CANVAS_OTHER_TENANT)
    post_score(first)
    post_score(second)  # same issuer (Canvas shares one), another developer key: its own token
    post_score(first)
    assert [form["scope"] for form in issued] == [SCORE_SCOPE, SCORE_SCOPE]
    assert [bearer(call) for call in service_calls()] == ["at-1-Zx9", "at-2-Zx9", "at-1-Zx9"]
    responses.get(
        LINEITEMS_BY_TAG, json=[{"id": LINEITEM, "label": "Badges", "tag": "badges", "scoreMaximum": 10}]
    )
    first.find_or_create_line_item(LINEITEMS, "badges", "Badges", 10)
    assert issued[-1]["scope"] == LINEITEM_SCOPE and len(issued) == 3


def test_the_cache_fetches_once_for_threads_asking_together() -> None:
    cache, fetched = AccessTokenCache(), []

    def slow_fetch() -> tuple[str, float]:
        time.sleep(0.05)
        fetched.append(1)
        return "at-only", 3600.0

    key = ("https://moodle.example.edu", "client", frozenset({NRPS_SCOPE}))
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(key, slow_fetch))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["at-only"] * 8 and len(fetched) == 1


def test_the_client_assertion_is_signed_by_the_tool_key_with_the_right_claims(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, body="")
    moodle_client, canvas_client = advantage(key, tokens), advantage(key, tokens, CANVAS)
    post_score(moodle_client)
    post_score(canvas_client)
    moodle_form, canvas_form = issued
    assert moodle_form["grant_type"] == "client_credentials"
    assert moodle_form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = moodle_form["client_assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == key.kid
    claims = jwt.decode(assertion, key.public_key, algorithms=["RS256"], audience=MOODLE.token_url)
    assert claims["iss"] == claims["sub"] == MOODLE.client_id
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 5
    # Canvas: the registration's audience, not the token URL.
    canvas = jwt.decode(
        canvas_form["client_assertion"], key.public_key, algorithms=["RS256"], audience=CANVAS.audience
    )
    assert canvas["iss"] == CANVAS.client_id and canvas["jti"] != claims["jti"]


def test_only_rsa_keys_sign_client_assertions(tokens: AccessTokenCache) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    ed = SigningKey(kid="ed-1", alg="EdDSA", created_at=datetime.now(UTC), active=True, private_key=private)
    with pytest.raises(ValueError, match="RS256"):
        AdvantageClient(MOODLE, ed, tokens)


# --- NRPS -----------------------------------------------------------------------------------------------

NRPS_URL = "https://canvas.example.edu/api/lti/courses/1234/names_and_roles"
NRPS_PAGE_2 = "https://canvas.example.edu/api/lti/courses/1234/names_and_roles?rlid=RL-9f3&page=Bookmark:WzQyLCJBYmMiXQ&per_page=2"
CANVAS_HOST = ToolRegistration("https://canvas.instructure.com", "10000000000001", CANVAS_TOKEN_URL)


def member(
    sub: str, name: str, roles: list[str], canvas_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    given, family = name.split()
    body: dict[str, Any] = {
        "status": "Active",
        "name": name,
        "given_name": given,
        "family_name": family,
        "email": f"{given.lower()}@example.edu",
        "user_id": sub,
        "roles": roles,
        **extra,
    }
    if canvas_id is not None:
        body["message"] = [
            {
                "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiResourceLinkRequest",
                "locale": "en",
                CUSTOM: {"canvas_user_id": canvas_id},
            }
        ]
    return body


LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


def test_members_follow_the_next_link_exactly_as_given(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    context = {"id": "4dde05e8ca1973bcca9bffc13e1548820eee93a3", "label": "BIO-101", "title": "Biology"}
    first = {
        "id": f"{NRPS_URL}?rlid=RL-9f3",
        "context": context,
        "members": [
            member(
                "535fa085f22b4655f48cd5a36a9215f64c062838", "Ada Lovelace", [INSTRUCTOR], "1", status=None
            ),
            member("86157096483e6b3a50bfedc6bac902c0b20a824f", "Alan Turing", [LEARNER], "2"),
        ],
    }
    second = {
        "id": NRPS_PAGE_2,
        "context": context,
        "members": [member("b7a5f1d2", "Grace Hopper", [LEARNER], "3", lis_person_sourcedid="SIS-0042")],
    }
    responses.get(
        f"{NRPS_URL}?rlid=RL-9f3",
        json=first,
        headers={"Link": f'<{NRPS_PAGE_2}>; rel="next", <{NRPS_URL}?rlid=RL-9f3>; rel="first"'},
    )
    responses.get(NRPS_PAGE_2, json=second)
    members = list(advantage(key, tokens, CANVAS_HOST).members(NRPS_URL, resource_link_id="RL-9f3"))
    assert [m.name for m in members] == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert [m.custom("canvas_user_id") for m in members] == ["1", "2", "3"]
    ada, _alan, grace = members
    assert ada.user_id == "535fa085f22b4655f48cd5a36a9215f64c062838" and ada.roles == (INSTRUCTOR,)
    assert ada.status == "Active"  # absent or null means Active
    assert (grace.given_name, grace.family_name, grace.email) == ("Grace", "Hopper", "grace@example.edu")
    assert grace.lis_person_sourcedid == "SIS-0042"
    calls = service_calls()
    assert calls[1].request.url == NRPS_PAGE_2  # upper case kept (pylti1p3 lower-cases it)
    assert {call.request.headers["Accept"] for call in calls} == {
        "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
    }
    assert [form["scope"] for form in issued] == [NRPS_SCOPE]


def test_moodle_members_carry_the_moodle_user_id_as_user_id(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    url = "https://moodle.example.edu/mod/lti/services.php/CourseSection/2/bindings/1/memberships"
    responses.get(
        url, json={"id": url, "context": {"id": "2"}, "members": [member("7", "Jane Doe", [LEARNER])]}
    )
    [jane] = advantage(key, tokens).members(url)
    assert (jane.user_id, jane.message, jane.custom("canvas_user_id")) == ("7", (), None)


def test_a_next_link_to_another_host_is_refused(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.get(
        NRPS_URL,
        json={"id": NRPS_URL, "members": [member("s1", "Ada Lovelace", [LEARNER])]},
        headers={"Link": '<https://evil.example.net/names_and_roles?page=2>; rel="next"'},
    )
    members = advantage(key, tokens, CANVAS_HOST).members(NRPS_URL)
    assert next(members).user_id == "s1"
    with pytest.raises(AdvantageError, match=r"off the platform's host: https://evil\.example\.net"):
        next(members)
    assert [call.request.url for call in service_calls()] == [NRPS_URL]


# --- AGS ------------------------------------------------------------------------------------------------


def line_item(number: int, tag: str, label: str = "Badges earned") -> dict[str, Any]:
    return {
        "id": f"https://moodle.example.edu/mod/lti/services.php/2/lineitems/{number}/lineitem?type_id=1",
        "label": label,
        "scoreMaximum": 10,
        "resourceId": "badge-bridge",
        "tag": tag,
        "resourceLinkId": "3",
    }


def test_an_existing_line_item_is_reused_by_tag(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    # Platforms may ignore the tag filter: the answer also holds another column.
    responses.get(LINEITEMS_BY_TAG, json=[line_item(6, "quiz", "Quiz 1"), line_item(7, "badges")])
    item = advantage(key, tokens).find_or_create_line_item(LINEITEMS, "badges", "Badges earned", 10)
    assert (item.id, item.tag, item.label, item.score_maximum) == (LINEITEM, "badges", "Badges earned", 10.0)
    [call] = service_calls()
    assert call.request.method == "GET"
    assert call.request.url == LINEITEMS_BY_TAG
    assert call.request.headers["Accept"] == "application/vnd.ims.lis.v2.lineitemcontainer+json"


def test_a_missing_line_item_is_created_once(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    gradebook: list[dict[str, Any]] = []

    def create(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        gradebook.append({**json.loads(request.body or b"{}"), "id": LINEITEM})
        return 201, {}, json.dumps(gradebook[-1])

    responses.add_callback(responses.GET, LINEITEMS, callback=lambda _r: (200, {}, json.dumps(gradebook)))
    responses.add_callback(responses.POST, LINEITEMS, callback=create)
    client = advantage(key, tokens)
    first = client.find_or_create_line_item(LINEITEMS, "badges", "Badges earned", 10, resource_id="bb-1")
    again = client.find_or_create_line_item(LINEITEMS, "badges", "Badges earned", 10, resource_id="bb-1")
    assert first == again and first.id == LINEITEM and first.resource_id == "bb-1"
    posts = [call for call in service_calls() if call.request.method == "POST"]
    assert len(posts) == 1
    assert posts[0].request.headers["Content-Type"] == "application/vnd.ims.lis.v2.lineitem+json"
    assert json.loads(posts[0].request.body) == {
        "label": "Badges earned",
        "tag": "badges",
        "scoreMaximum": 10,
        "resourceId": "bb-1",
    }


def test_a_creation_that_timed_out_is_looked_up_again_not_repeated(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    gradebook: list[dict[str, Any]] = []

    def create_slowly(request: requests.PreparedRequest) -> Exception:
        gradebook.append(line_item(7, "badges"))  # the platform made it, but the answer never came
        return requests.ReadTimeout("read timed out")

    responses.add_callback(responses.GET, LINEITEMS, callback=lambda _r: (200, {}, json.dumps(gradebook)))
    responses.add_callback(responses.POST, LINEITEMS, callback=create_slowly)
    item = advantage(key, tokens).find_or_create_line_item(LINEITEMS, "badges", "Badges earned", 10)
    assert item.id == LINEITEM and len(gradebook) == 1
    assert [call.request.method for call in service_calls()] == ["GET", "POST", "GET"]


def test_a_score_is_posted_to_the_scores_url_before_the_query(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, body="")  # Moodle answers 200 with an empty body
    when = datetime(2026, 3, 4, 19, 54, 36, 736512, tzinfo=timezone(timedelta(hours=1)))
    advantage(key, tokens).post_score(LINEITEM, "7", 8.5, 10, when, comment="3 of 4 badges")
    [call] = service_calls()
    assert call.request.url == SCORES
    assert call.request.headers["Content-Type"] == "application/vnd.ims.lis.v1.score+json"
    assert json.loads(call.request.body) == {
        "userId": "7",
        "scoreGiven": 8.5,
        "scoreMaximum": 10,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": "2026-03-04T19:54:36.736+01:00",
        "comment": "3 of 4 badges",
    }


@pytest.mark.parametrize(
    ("line_item_url", "expected"),
    [
        (LINEITEM, SCORES),
        (
            "https://canvas.example.edu/api/lti/courses/1/line_items/5",
            "https://canvas.example.edu/api/lti/courses/1/line_items/5/scores",
        ),
        (
            "https://lms.example.com/context/2923/lineitems/1/?a=B&c=d",
            "https://lms.example.com/context/2923/lineitems/1/scores?a=B&c=d",
        ),
    ],
)
def test_the_scores_url_appends_to_the_path(line_item_url: str, expected: str) -> None:
    assert scores_url(line_item_url) == expected


def test_a_naive_timestamp_is_refused(key: SigningKey, tokens: AccessTokenCache) -> None:
    with pytest.raises(ValueError, match="time zone"):
        advantage(key, tokens).post_score(LINEITEM, "7", 1, 1, datetime(2026, 3, 4, 12, 0))


# --- retries, 401, errors ---------------------------------------------------------------------------------


def test_a_429_is_retried_after_the_retry_after_delay(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, status=429, headers={"Retry-After": "2"}, json={"errors": "rate limited"})
    responses.post(SCORES, json={"resultUrl": f"{LINEITEM}/results/7"})  # Canvas's answer
    sleeps: list[float] = []
    post_score(advantage(key, tokens, sleep=sleeps.append))
    assert sleeps == [2.0] and len(service_calls()) == 2


def test_a_401_drops_the_token_and_retries_once_with_a_fresh_one(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, status=401, json={"error": "invalid_token"})
    responses.post(SCORES, body="")
    client = advantage(key, tokens)
    post_score(client)
    post_score(client)  # the fresh token stays cached
    assert len(issued) == 2
    assert [bearer(call) for call in service_calls()] == ["at-1-Zx9", "at-2-Zx9", "at-2-Zx9"]


def test_a_second_401_is_an_error_naming_the_status(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.post(SCORES, status=401, json={"error": "unauthorized"})
    with pytest.raises(
        TokenRejected, match=r"POST /mod/lti/services.php/2/lineitems/7/lineitem/scores: HTTP 401"
    ):
        post_score(advantage(key, tokens))
    assert len(issued) == 2 and len(service_calls()) == 2


def test_other_client_errors_name_the_status_and_body_and_are_not_retried(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]]
) -> None:
    responses.get(LINEITEMS_BY_TAG, status=403, json={"errors": [{"message": "Unauthorized scope"}]})
    with pytest.raises(ServiceRefused, match=r"HTTP 403: .*Unauthorized scope") as refused:
        advantage(key, tokens).find_or_create_line_item(LINEITEMS, "badges", "Badges", 10)
    assert refused.value.status == 403 and len(service_calls()) == 1


def test_no_token_or_assertion_appears_in_errors_or_logs(
    key: SigningKey, tokens: AccessTokenCache, issued: list[dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    def echo(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return 403, {}, json.dumps({"error": "forbidden", "authorization": request.headers["Authorization"]})

    responses.add_callback(responses.POST, SCORES, callback=echo)
    with caplog.at_level(logging.DEBUG), pytest.raises(ServiceRefused) as refused:
        post_score(advantage(key, tokens))
    assert "at-1-Zx9" not in str(refused.value) and "[redacted]" in str(refused.value)

    refusing = ToolRegistration(MOODLE.issuer, "other", "https://moodle.example.edu/mod/lti/token2.php")
    forms: list[str] = []

    def refuse(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        forms.append(str(request.body))
        return 400, {}, json.dumps({"error": "invalid_client", "request": str(request.body)})

    responses.add_callback(responses.POST, refusing.token_url, callback=refuse)
    with pytest.raises(ServiceRefused, match=r"access token request refused.*invalid_client") as denied:
        post_score(advantage(key, tokens, refusing))
    assertion = parse_qs(forms[0])["client_assertion"][0]
    assert assertion not in str(denied.value)
    secrets = ["at-1-Zx9", assertion, issued[0]["client_assertion"]]
    logged = " ".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "lti.access_token_issued" in logged
    assert not any(secret in logged for secret in secrets)


def test_a_token_answer_that_is_not_json_is_retried_without_quoting_it(
    key: SigningKey, tokens: AccessTokenCache
) -> None:
    registration = ToolRegistration(MOODLE.issuer, "cut", "https://moodle.example.edu/mod/lti/token3.php")
    with responses.RequestsMock() as mock:
        mock.post(registration.token_url, body='{"access_token": "at-secret-cut')
        mock.post(registration.token_url, json={"access_token": "at-whole", "token_type": "bearer"})
        mock.post(SCORES, body="")
        post_score(advantage(key, tokens, registration))
        assert mock.calls[-1].request.headers["Authorization"] == "Bearer at-whole"
