"""The token a launch's pages carry instead of a third-party cookie, and the CSRF token of its forms."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import itsdangerous.timed
import pytest
from itsdangerous import URLSafeTimedSerializer

from bridge.lti.sessions import LaunchTokens

SECRET = b"s" * 32
LAUNCH = "0b5a7c1e-9d4f-4e2a-8c3b-6f1d2e7a9b40"
OTHER_LAUNCH = "7e2d9c4b-1a3f-4b8e-9d6c-5a0f3e2b1c87"


class Clock:
    """The wall clock itsdangerous stamps and checks tokens with."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_800_000_000.0
        monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: self.now))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def tokens() -> LaunchTokens:
    return LaunchTokens(SECRET, timedelta(minutes=30))


def test_a_token_names_its_launch(tokens: LaunchTokens) -> None:
    token = tokens.token(LAUNCH)
    assert tokens.launch_id(token) == LAUNCH
    assert tokens.launch_id(tokens.token(OTHER_LAUNCH)) == OTHER_LAUNCH


def test_a_token_is_safe_in_a_url(tokens: LaunchTokens) -> None:
    token = tokens.token(LAUNCH)
    assert all(c.isalnum() or c in "-_." for c in token)


def test_a_tampered_token_names_no_launch(tokens: LaunchTokens) -> None:
    token = tokens.token(LAUNCH)
    payload, _, rest = token.partition(".")
    forged = URLSafeTimedSerializer(b"x" * 32).dumps(OTHER_LAUNCH).partition(".")[0]
    assert tokens.launch_id(f"{forged}.{rest}") is None  # another launch's id under this signature
    last = token[-1]
    assert tokens.launch_id(token[:-1] + ("A" if last != "A" else "B")) is None  # signature changed
    assert tokens.launch_id(token[:-3]) is None  # truncated
    assert tokens.launch_id(payload) is None  # no signature at all


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c", "....", "ü.ö.ä"])
def test_garbage_names_no_launch(tokens: LaunchTokens, garbage: str) -> None:
    assert tokens.launch_id(garbage) is None


def test_a_token_from_another_secret_names_no_launch(tokens: LaunchTokens) -> None:
    other_tool = LaunchTokens(b"o" * 32, timedelta(minutes=30))
    assert tokens.launch_id(other_tool.token(LAUNCH)) is None


def test_a_token_signed_with_the_same_secret_for_another_purpose_names_no_launch(
    tokens: LaunchTokens,
) -> None:
    invite = URLSafeTimedSerializer(SECRET, salt="lti-register").dumps(LAUNCH)
    unsalted = URLSafeTimedSerializer(SECRET).dumps(LAUNCH)
    assert tokens.launch_id(invite) is None
    assert tokens.launch_id(unsalted) is None


def test_a_token_is_valid_for_its_lifetime_and_not_after(tokens: LaunchTokens, clock: Clock) -> None:
    token = tokens.token(LAUNCH)
    clock.now += 30 * 60
    assert tokens.launch_id(token) == LAUNCH
    clock.now += 1
    assert tokens.launch_id(token) is None


def test_a_token_stamped_in_the_future_names_no_launch(tokens: LaunchTokens, clock: Clock) -> None:
    clock.now += 3600
    token = tokens.token(LAUNCH)
    clock.now -= 3600
    assert tokens.launch_id(token) is None


def test_the_csrf_token_is_stable_for_a_launch_and_differs_between_launches(tokens: LaunchTokens) -> None:
    assert tokens.csrf(LAUNCH) == tokens.csrf(LAUNCH)
    assert LaunchTokens(SECRET, timedelta(minutes=1)).csrf(LAUNCH) == tokens.csrf(LAUNCH)
    assert tokens.csrf(LAUNCH) != tokens.csrf(OTHER_LAUNCH)
    assert LaunchTokens(b"o" * 32, timedelta(minutes=30)).csrf(LAUNCH) != tokens.csrf(LAUNCH)


def test_the_csrf_token_is_neither_the_launch_id_nor_its_page_token(tokens: LaunchTokens) -> None:
    csrf = tokens.csrf(LAUNCH)
    assert LAUNCH not in csrf and csrf != tokens.token(LAUNCH)
    assert len(csrf) == 64


def test_csrf_matches_only_the_launchs_own_token(tokens: LaunchTokens) -> None:
    assert tokens.csrf_matches(LAUNCH, tokens.csrf(LAUNCH))
    assert not tokens.csrf_matches(LAUNCH, None)
    assert not tokens.csrf_matches(LAUNCH, "")
    assert not tokens.csrf_matches(LAUNCH, tokens.csrf(OTHER_LAUNCH))
    assert not tokens.csrf_matches(LAUNCH, tokens.csrf(LAUNCH).upper())
    assert not tokens.csrf_matches(LAUNCH, tokens.csrf(LAUNCH)[:-1])
    assert not tokens.csrf_matches(LAUNCH, tokens.token(LAUNCH))


def test_csrf_matches_refuses_a_value_that_is_not_ascii(tokens: LaunchTokens) -> None:
    assert not tokens.csrf_matches(LAUNCH, "é" * 64)
