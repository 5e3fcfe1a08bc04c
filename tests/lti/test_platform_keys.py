"""Platforms' public keys from their JWKS URLs: found by kid, cached, refetched for a new kid at most once per
``refetch_seconds``, and every request bounded by a timeout."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from bridge.lti.platform_keys import KeyUnavailable, PlatformKeys

JWKS_URL = "https://moodle.example.edu/mod/lti/certs.php"


def rsa_jwk(kid: str, **extra: Any) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return {**RSAAlgorithm.to_jwk(key, as_dict=True), "kid": kid, **extra}


OLD, NEW = rsa_jwk("old", alg="RS256", use="sig"), rsa_jwk("new", alg="RS256", use="sig")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(clock: Clock) -> PlatformKeys:
    return PlatformKeys(timeout=4.0, cache_seconds=3600, refetch_seconds=30, clock=clock)


def publish(*jwks: dict[str, Any]) -> None:
    responses.get(JWKS_URL, json={"keys": list(jwks)})


def public_numbers(found: Any) -> tuple[int, int]:
    numbers = found.key.public_numbers()
    return numbers.n, numbers.e


def expected_numbers(jwk: dict[str, Any]) -> tuple[int, int]:
    numbers = RSAAlgorithm.from_jwk(jwk).public_numbers()
    return numbers.n, numbers.e


@responses.activate
def test_the_key_is_found_by_its_kid(keys: PlatformKeys) -> None:
    publish(OLD, NEW)
    found = keys.key(JWKS_URL, "new")
    assert found.key_id == "new"
    assert found.algorithm_name == "RS256"
    assert public_numbers(found) == expected_numbers(NEW)


@responses.activate
def test_a_key_without_alg_or_use_is_taken_as_an_rs256_signing_key(keys: PlatformKeys) -> None:
    publish(rsa_jwk("bare"))
    assert keys.key(JWKS_URL, "bare").key_id == "bare"


@responses.activate
def test_one_fetch_serves_many_lookups(keys: PlatformKeys, clock: Clock) -> None:
    publish(OLD, NEW)
    for _ in range(20):
        keys.key(JWKS_URL, "old")
        keys.key(JWKS_URL, "new")
        clock.now += 60
    assert len(responses.calls) == 1 and keys.fetches == 1


@responses.activate
def test_an_unknown_kid_refetches_once_then_not_again_within_refetch_seconds(
    keys: PlatformKeys, clock: Clock
) -> None:
    publish(OLD)
    keys.key(JWKS_URL, "old")
    clock.now += 31  # the set is older than refetch_seconds
    with pytest.raises(KeyUnavailable, match="no key 'made-up'"):
        keys.key(JWKS_URL, "made-up")
    assert len(responses.calls) == 2
    for _ in range(10):  # a stream of tokens with made-up kids does not become a stream of requests
        clock.now += 2
        with pytest.raises(KeyUnavailable, match="no key 'made-up-too'"):
            keys.key(JWKS_URL, "made-up-too")
    assert len(responses.calls) == 2
    assert keys.key(JWKS_URL, "old").key_id == "old"  # the known key is still served from the cache
    assert len(responses.calls) == 2


@responses.activate
def test_after_refetch_seconds_an_unknown_kid_refetches_and_finds_a_rotated_key(
    keys: PlatformKeys, clock: Clock
) -> None:
    publish(OLD)
    keys.key(JWKS_URL, "old")
    clock.now += 10
    with pytest.raises(KeyUnavailable):  # within refetch_seconds of the first fetch: no request
        keys.key(JWKS_URL, "new")
    assert len(responses.calls) == 1
    responses.replace(responses.GET, JWKS_URL, json={"keys": [NEW, OLD]})  # the platform rotates
    clock.now += 21
    assert keys.key(JWKS_URL, "new").key_id == "new"
    assert len(responses.calls) == 2


@responses.activate
def test_a_cached_set_older_than_cache_seconds_is_fetched_again(keys: PlatformKeys, clock: Clock) -> None:
    publish(OLD)
    keys.key(JWKS_URL, "old")
    clock.now += 3599
    keys.key(JWKS_URL, "old")
    assert len(responses.calls) == 1
    clock.now += 1
    keys.key(JWKS_URL, "old")
    assert len(responses.calls) == 2


@responses.activate
def test_each_url_has_its_own_cache(keys: PlatformKeys) -> None:
    other = "https://canvas.instructure.com/api/lti/security/jwks"
    publish(OLD)
    responses.get(other, json={"keys": [NEW]})
    assert keys.key(JWKS_URL, "old").key_id == "old"
    assert keys.key(other, "new").key_id == "new"
    with pytest.raises(KeyUnavailable):
        keys.key(other, "old")


@pytest.mark.parametrize(
    "unusable",
    [
        pytest.param({**rsa_jwk("k"), "alg": "RS512"}, id="alg RS512"),
        pytest.param({**rsa_jwk("k"), "alg": "RS256", "use": "enc"}, id="use enc"),
        pytest.param(
            {
                **ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True),
                "kid": "k",
            },
            id="EC key",
        ),
        pytest.param({"kty": "oct", "k": "c2VjcmV0", "kid": "k"}, id="symmetric key"),
        pytest.param({**rsa_jwk("k"), "kid": 7}, id="kid not a string"),
    ],
)
@responses.activate
def test_keys_that_are_not_rs256_signing_keys_are_skipped(
    keys: PlatformKeys, unusable: dict[str, Any]
) -> None:
    publish(unusable, OLD)
    with pytest.raises(KeyUnavailable, match="no key 'k'"):
        keys.key(JWKS_URL, "k")
    assert keys.key(JWKS_URL, "old").key_id == "old"  # the usable key beside it is kept


@responses.activate
def test_a_malformed_rsa_key_does_not_spoil_the_others(keys: PlatformKeys) -> None:
    publish({"kty": "RSA", "kid": "broken", "alg": "RS256", "use": "sig"}, OLD)
    assert keys.key(JWKS_URL, "old").key_id == "old"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param({"status": 500, "body": "Internal Server Error"}, id="500"),
        pytest.param({"status": 404, "json": {"error": "not found"}}, id="404"),
        pytest.param({"body": "<html>Site maintenance</html>", "content_type": "text/html"}, id="not JSON"),
        pytest.param({"body": requests.ReadTimeout("read timed out (secret-token)")}, id="read timeout"),
        pytest.param(
            {"body": requests.ConnectTimeout("connect timed out (secret-token)")}, id="connect timeout"
        ),
        pytest.param({"body": requests.ConnectionError("refused (secret-token)")}, id="connection refused"),
    ],
)
@responses.activate
def test_a_key_set_that_cannot_be_read_raises_key_unavailable_without_details(
    keys: PlatformKeys, reply: dict[str, Any]
) -> None:
    responses.get(f"{JWKS_URL}?token=secret-token", **reply)
    with pytest.raises(KeyUnavailable, match="could not be read") as raised:
        keys.key(f"{JWKS_URL}?token=secret-token", "old")
    message = str(raised.value)
    assert "secret-token" not in message and "moodle.example.edu" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


@pytest.mark.parametrize(
    "document",
    [[OLD], {"keys": "old"}, {"keys": {"old": OLD}}, {"no_keys": []}, "old"],
    ids=["a list", "keys a string", "keys an object", "no keys", "a string"],
)
@responses.activate
def test_a_document_that_is_not_a_key_set_has_no_keys(keys: PlatformKeys, document: Any) -> None:
    responses.get(JWKS_URL, json=document)
    with pytest.raises(KeyUnavailable, match="no key 'old'"):
        keys.key(JWKS_URL, "old")


@responses.activate
def test_a_key_set_whose_keys_are_null_has_no_keys(keys: PlatformKeys) -> None:
    responses.get(JWKS_URL, json={"keys": None})
    with pytest.raises(KeyUnavailable):
        keys.key(JWKS_URL, "old")


@responses.activate
def test_a_failing_key_set_is_not_requested_again_within_refetch_seconds(
    keys: PlatformKeys, clock: Clock
) -> None:
    responses.get(JWKS_URL, status=503)
    for _ in range(5):
        clock.now += 1
        with pytest.raises(KeyUnavailable):
            keys.key(JWKS_URL, "made-up")
    assert len(responses.calls) == 1


@responses.activate
def test_every_request_has_the_timeout_and_a_user_agent(keys: PlatformKeys) -> None:
    publish(OLD)
    keys.key(JWKS_URL, "old")
    sent = responses.calls[0].request
    assert sent.req_kwargs["timeout"] == 4.0
    assert sent.headers["User-Agent"].startswith("lms-badge-bridge/")


@responses.activate
def test_a_given_session_is_used_with_the_timeout() -> None:
    session = requests.Session()
    session.headers["X-Trace"] = "t1"
    keys = PlatformKeys(timeout=2.5, session=session)
    publish(OLD)
    keys.key(JWKS_URL, "old")
    sent = responses.calls[0].request
    assert sent.req_kwargs["timeout"] == 2.5 and sent.headers["X-Trace"] == "t1"
