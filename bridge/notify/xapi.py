"""xAPI: an "earned" statement per award, stored in a Learning Record Store (xAPI 1.0.3, basic auth).

Only ``award.made`` is sent; other kinds are not learning experiences and ``deliver`` ignores them.

The statement is PUT to ``<endpoint>/statements?statementId=<id>`` where the id is a UUID 5 of this bridge's
homepage and the notification id: every retry sends the same statement with the same id, so the LRS stores it
once (it answers 204 to a repeat, or 409 when it already holds that id: both mean "stored"). The statement
holds nothing that changes between attempts (its timestamp is the award's), for the same reason.

Vocabulary (no IRI here is ours):
- verb ``http://id.tincanapi.com/verb/earned`` ("earned"), the registry's verb for earning a badge, used by
  the LRS reporting tools we know of; ``http://activitystrea.ms/schema/1.0/earn`` is not an Activity Streams
  verb, and 1EdTech's Open Badges xAPI vocabulary is an unapproved prototype;
- activity type ``https://w3id.org/xapi/tla/activity-types/badge`` (ADL's TLA profile);
- the assertion URL in ``result.extensions`` under 1EdTech's prototype ``badgeassertion`` extension IRI, so
  a reader can fetch and verify the credential behind the statement.

The actor has exactly one identifier, as xAPI requires of an Agent (an LRS rejects two): the LMS account
(``homePage`` + ``lms_user_id``), or with ``actor_id="mbox"`` the learner's email when known.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from bridge.notify.messages import ChannelName, DeliveryError, Notification
from bridge.notify.webhook import plain_session, raise_for_delivery

log = logging.getLogger(__name__)

XAPI_VERSION = "1.0.3"
VERB_EARNED = "http://id.tincanapi.com/verb/earned"
ACTIVITY_TYPE_BADGE = "https://w3id.org/xapi/tla/activity-types/badge"
EXTENSION_ASSERTION = "http://specification.openbadges.org/xapi/extensions/badgeassertion"


@dataclass(frozen=True, slots=True)
class XapiConfig:
    """An LRS. ``homepage``: this bridge's public URL, the account ``homePage`` for platforms without one in
    ``platform_homepages`` (platform id → the LMS's base URL, e.g. Moodle's wwwroot)."""

    endpoint: str  # the LRS base; statements go to <endpoint>/statements
    username: str
    password: str = field(repr=False)  # repr=False: a logged config shows no secret
    homepage: str
    platform_homepages: Mapping[str, str] = field(default_factory=dict)
    actor_id: Literal["account", "mbox"] = "account"
    language: str = "en"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        urls = {"endpoint": self.endpoint, "homepage": self.homepage}
        urls |= {f"platform_homepages.{p}": url for p, url in self.platform_homepages.items()}
        for key, url in urls.items():
            if not str(url).startswith(("https://", "http://")):
                raise ValueError(f"xapi {key} must be an http(s) URL")
        if self.actor_id not in ("account", "mbox"):
            raise ValueError("xapi actor_id must be account or mbox")
        if self.timeout <= 0:
            raise ValueError("xapi timeout must be positive")

    @property
    def statements_url(self) -> str:
        return self.endpoint.rstrip("/") + "/statements"


def statement_id(config: XapiConfig, notification: Notification) -> str:
    """Deterministic: the same notification gives the same id on every attempt; two bridges sharing an LRS
    (each numbering its own notifications) do not collide, since the homepage is part of the name."""
    name = f"{config.homepage.rstrip('/')}/notifications/{notification.id}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _part(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, Mapping) else {}


def actor(config: XapiConfig, learner: Mapping[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = {"objectType": "Agent"}
    if learner.get("name"):
        agent["name"] = str(learner["name"])
    if config.actor_id == "mbox" and learner.get("email"):
        agent["mbox"] = f"mailto:{learner['email']}"
        return agent
    platform, user = str(learner.get("platform") or ""), str(learner.get("lms_user_id") or "")
    if not user:
        raise DeliveryError("xapi: the learner has no lms_user_id", permanent=True)
    known = config.platform_homepages.get(platform)
    # Under the bridge's own homepage, user ids of two platforms could clash: qualify them with the platform.
    if known:
        agent["account"] = {"homePage": known, "name": user}
    else:
        agent["account"] = {"homePage": config.homepage, "name": f"{platform}:{user}"}
    return agent


def build_statement(config: XapiConfig, notification: Notification) -> dict[str, Any]:
    payload = notification.payload
    award, learner, links = _part(payload, "award"), _part(payload, "learner"), _part(payload, "links")
    # The object is the badge earned: its class when the payload has that link, else the assertion.
    object_id = links.get("badge_class") or links.get("assertion") or links.get("badge_page")
    if not object_id:
        raise DeliveryError("xapi: the award has no badge or assertion URL", permanent=True)
    lang, name, tier = (
        config.language,
        str(award.get("badge_name") or award.get("badge_id")),
        award.get("tier"),
    )
    # Named as the badge class names a tier: "Python Basics (Gold)".
    definition: dict[str, Any] = {
        "type": ACTIVITY_TYPE_BADGE,
        "name": {lang: f"{name} ({str(tier).capitalize()})" if tier else name},
    }
    if award.get("badge_description"):
        definition["description"] = {lang: str(award["badge_description"])}
    result: dict[str, Any] = {"success": True, "completion": True}
    extensions: dict[str, Any] = {}
    if links.get("assertion"):
        extensions[EXTENSION_ASSERTION] = {"@id": links["assertion"]}
    if extensions:
        result["extensions"] = extensions
    statement: dict[str, Any] = {
        "id": statement_id(config, notification),
        "actor": actor(config, learner),
        "verb": {"id": VERB_EARNED, "display": {"en-US": "earned"}},
        "object": {"objectType": "Activity", "id": str(object_id), "definition": definition},
        "result": result,
    }
    awarded_at = award.get("awarded_at")
    if awarded_at:
        statement["timestamp"] = str(awarded_at)
    return statement


class XapiChannel:
    """Stores an "earned" statement per ``award.made`` in one LRS."""

    name: ChannelName = "xapi"

    def __init__(self, config: XapiConfig, *, session: requests.Session | None = None) -> None:
        self.config = config
        self._session = session or plain_session()  # no internal retry: the outbox retries (see webhook.py)

    def deliver(self, notification: Notification) -> None:
        if notification.kind != "award.made":
            return
        statement = build_statement(self.config, notification)
        headers = {"X-Experience-API-Version": XAPI_VERSION, "Content-Type": "application/json"}
        try:
            response = self._session.put(
                self.config.statements_url,
                params={"statementId": statement["id"]},
                json=statement,
                headers=headers,
                auth=(self.config.username, self.config.password),
                timeout=self.config.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            self._failed(notification, "timeout")
            raise DeliveryError(f"xapi LRS timed out after {self.config.timeout:g}s") from None
        except requests.RequestException as error:  # its text may hold the URL: name the type only
            self._failed(notification, type(error).__name__)
            raise DeliveryError(f"xapi LRS unreachable ({type(error).__name__})") from None
        with response:
            if response.status_code == 409:
                # The LRS holds a statement with this id: an earlier attempt was stored, or its answer lost.
                log.info("xapi.already_stored", extra={"notification": notification.id})
                return
            try:
                raise_for_delivery(response, "xapi LRS", explain=True)
            except DeliveryError:
                self._failed(notification, str(response.status_code))
                raise
        log.info("xapi.sent", extra={"notification": notification.id, "statement": statement["id"]})

    @staticmethod
    def _failed(notification: Notification, reason: str) -> None:
        log.warning("xapi.failed", extra={"notification": notification.id, "reason": reason})

    def close(self) -> None:
        self._session.close()
