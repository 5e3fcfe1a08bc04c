"""The xAPI channel against a fake LRS on 127.0.0.1 that checks what an LRS checks: basic auth, the version
header, the statement's required structure, and one statement per id (a repeat of the same is a no-op)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.notify.messages import DeliveryError, Kind, Notification
from bridge.notify.xapi import VERB_EARNED, XapiChannel, XapiConfig, build_statement
from tests.notify.receivers import Received, Reply, serve

PASSWORD = "lrs-s3cret"
IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
ASSERTION = "https://bridge.example.edu/ob/assertions/abc"
BADGE_CLASS = "https://bridge.example.edu/ob/issuers/default/badges/python-basics/tiers/gold"


def award_made(kind: Kind = "award.made", notification_id: int = 41, **links: str) -> Notification:
    payload = {
        "award": {
            "id": 7,
            "badge_id": "python-basics",
            "badge_name": "Python Basics",
            "badge_description": "Wrote and ran a program.",
            "tier": "gold",
            "awarded_at": "2025-03-04T09:59:00+00:00",
        },
        "learner": {"platform": "moodle1", "lms_user_id": "42", "name": "Ada", "email": "ada@example.edu"},
        "links": {"badge_page": ASSERTION, "assertion": ASSERTION, **links},
    }
    return Notification(notification_id, kind, "xapi", datetime(2025, 3, 4, 10, tzinfo=UTC), payload)


def config(endpoint: str, **overrides: Any) -> XapiConfig:
    values: dict[str, Any] = {
        "endpoint": endpoint + "/xapi/",
        "username": "bridge",
        "password": PASSWORD,
        "homepage": "https://bridge.example.edu",
        "platform_homepages": {"moodle1": "https://moodle.example.edu"},
        "timeout": 5.0,
    }
    return XapiConfig(**(values | overrides))


def structure_problems(statement: dict[str, Any]) -> list[str]:
    """What an LRS would reject (xAPI 1.0.3, Data 2.4): the required parts and their shapes."""
    problems = []
    try:
        if uuid.UUID(statement["id"]).version not in (1, 2, 3, 4, 5):
            problems.append("id is not a UUID")
    except (KeyError, ValueError):
        problems.append("id is not a UUID")
    actor = statement.get("actor", {})
    if sum(key in actor for key in IFIS) != 1:
        problems.append("an Agent has exactly one inverse functional identifier")
    if "account" in actor and set(actor["account"]) != {"homePage", "name"}:
        problems.append("an account has homePage and name")
    if "mbox" in actor and not actor["mbox"].startswith("mailto:"):
        problems.append("mbox is a mailto: IRI")
    verb = statement.get("verb", {})
    if not str(verb.get("id", "")).startswith(("http://", "https://")):
        problems.append("verb id is an IRI")
    target = statement.get("object", {})
    if target.get("objectType", "Activity") != "Activity" or not urlsplit(target.get("id", "")).scheme:
        problems.append("object is an Activity with an absolute IRI")
    definition = target.get("definition", {})
    for key in ("name", "description"):
        if key in definition and not all(isinstance(v, str) for v in definition[key].values()):
            problems.append(f"definition {key} is a language map")
    if "timestamp" in statement:
        datetime.fromisoformat(statement["timestamp"])
    return problems


class FakeLrs:
    """PUT /xapi/statements?statementId=...: 204 when stored (or already stored the same), 409 when that id
    holds a different statement; the first ``fail`` answers are the given statuses."""

    def __init__(self, *fail: int) -> None:
        self.fail = list(fail)
        self.stored: dict[str, dict[str, Any]] = {}

    def __call__(self, request: Received) -> Reply:
        expected = "Basic " + base64.b64encode(f"bridge:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Reply(401)
        if request.headers.get("X-Experience-API-Version") != "1.0.3":
            return Reply(400, body=b"missing or wrong X-Experience-API-Version")
        url = urlsplit(request.path)
        if request.method != "PUT" or url.path != "/xapi/statements":
            return Reply(404)
        statement = json.loads(request.body)
        [statement_id] = parse_qs(url.query)["statementId"]
        problems = structure_problems(statement)
        if problems or statement["id"] != statement_id:
            return Reply(400, body="; ".join(problems or ["statementId differs"]).encode())
        if self.fail:
            return Reply(self.fail.pop(0))
        if statement_id in self.stored and self.stored[statement_id] != statement:
            return Reply(409)
        self.stored[statement_id] = statement
        return Reply(204, {"X-Experience-API-Version": "1.0.3"})


def test_an_award_is_stored_as_one_valid_earned_statement_and_a_retry_sends_the_same_id() -> None:
    lrs = FakeLrs(503)
    with serve(lrs) as peer:
        channel = XapiChannel(config(peer.url))
        with pytest.raises(DeliveryError) as unavailable:
            channel.deliver(award_made(badge_class=BADGE_CLASS))
        assert not unavailable.value.permanent
        channel.deliver(award_made(badge_class=BADGE_CLASS))
        channel.deliver(award_made(badge_class=BADGE_CLASS))  # delivered again (a lost answer): a no-op

    assert len(peer.requests) == 3
    ids = {parse_qs(urlsplit(r.path).query)["statementId"][0] for r in peer.requests}
    assert len(ids) == 1 and list(lrs.stored) == list(ids)
    [statement] = lrs.stored.values()
    assert statement["verb"] == {"id": VERB_EARNED, "display": {"en-US": "earned"}}
    assert statement["actor"] == {
        "objectType": "Agent",
        "name": "Ada",
        "account": {"homePage": "https://moodle.example.edu", "name": "42"},
    }
    assert statement["object"] == {
        "objectType": "Activity",
        "id": BADGE_CLASS,
        "definition": {
            "type": "https://w3id.org/xapi/tla/activity-types/badge",
            "name": {"en": "Python Basics (Gold)"},
            "description": {"en": "Wrote and ran a program."},
        },
    }
    assert statement["result"]["success"] is True
    assert statement["result"]["extensions"] == {
        "http://specification.openbadges.org/xapi/extensions/badgeassertion": {"@id": ASSERTION}
    }
    assert statement["timestamp"] == "2025-03-04T09:59:00+00:00"


def test_statement_ids_are_deterministic_per_notification_and_per_bridge() -> None:
    one = config("https://lrs.example")
    assert build_statement(one, award_made())["id"] == build_statement(one, award_made())["id"]
    assert (
        build_statement(one, award_made())["id"] != build_statement(one, award_made(notification_id=42))["id"]
    )
    other_bridge = config("https://lrs.example", homepage="https://other.example.edu")
    assert build_statement(one, award_made())["id"] != build_statement(other_bridge, award_made())["id"]


def test_a_conflict_on_the_id_means_an_earlier_attempt_was_stored() -> None:
    lrs = FakeLrs()
    with serve(lrs) as peer:
        XapiChannel(config(peer.url)).deliver(award_made())
        # The same notification, its payload rebuilt after the badge was renamed: the LRS keeps the first.
        renamed = award_made()
        renamed.payload["award"]["badge_name"] = "Python Basics II"  # type: ignore[index]
        XapiChannel(config(peer.url)).deliver(renamed)
    assert [r.headers.get("X-Experience-API-Version") for r in peer.requests] == ["1.0.3", "1.0.3"]
    assert len(lrs.stored) == 1


def test_mbox_when_chosen_and_known_and_a_qualified_account_without_a_platform_homepage() -> None:
    by_mail = build_statement(config("https://lrs.example", actor_id="mbox"), award_made())
    assert by_mail["actor"]["mbox"] == "mailto:ada@example.edu" and "account" not in by_mail["actor"]
    bare = build_statement(config("https://lrs.example", platform_homepages={}), award_made())
    assert bare["actor"]["account"] == {"homePage": "https://bridge.example.edu", "name": "moodle1:42"}
    assert bare["object"]["id"] == ASSERTION  # no badge class link: the assertion names the badge
    assert structure_problems(by_mail) == [] and structure_problems(bare) == []


def test_other_kinds_are_not_sent() -> None:
    with serve(FakeLrs()) as peer:
        channel = XapiChannel(config(peer.url))
        for kind in ("award.revoked", "approval.requested", "sync.failed"):
            channel.deliver(award_made(kind=kind))  # type: ignore[arg-type]
    assert peer.requests == []


def test_bad_credentials_are_permanent_and_never_shown() -> None:
    with serve(FakeLrs()) as peer, pytest.raises(DeliveryError) as refused:
        XapiChannel(config(peer.url, password="wrong")).deliver(award_made())
    assert refused.value.permanent and "401" in str(refused.value)
    assert "wrong" not in str(refused.value) and "wrong" not in repr(config(peer.url, password="wrong"))


def test_a_statement_the_lrs_refuses_is_permanent_and_says_why() -> None:
    invalid = Reply(400, body=b"Statement 'actor' is invalid")
    with serve(lambda _r: invalid) as peer, pytest.raises(DeliveryError) as refused:
        XapiChannel(config(peer.url)).deliver(award_made())
    assert refused.value.permanent and "actor' is invalid" in str(refused.value)


def test_an_unreachable_or_slow_lrs_is_retryable() -> None:
    with serve(lambda _r: Reply(204, delay=3.0)) as peer, pytest.raises(DeliveryError) as slow:
        XapiChannel(config(peer.url, timeout=0.3)).deliver(award_made())
    assert not slow.value.permanent and "timed out" in str(slow.value)
    with pytest.raises(DeliveryError) as down:
        XapiChannel(config(peer.url)).deliver(award_made())
    assert not down.value.permanent
