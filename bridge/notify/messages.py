"""What a notification says, as the channels receive it: plain data, built when the outbox row is written.

Channels (in-app, email, outbound webhooks, xAPI) each turn one :class:`Notification` into their own
format; the outbox stores its ``payload`` (JSON), so a retry days later sends what was true at the award.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

Kind = Literal["award.made", "award.revoked", "approval.requested", "sync.failed"]
ChannelName = Literal["in-app", "email", "webhook", "xapi"]
KINDS: tuple[Kind, ...] = ("award.made", "award.revoked", "approval.requested", "sync.failed")
CHANNELS: tuple[ChannelName, ...] = ("in-app", "email", "webhook", "xapi")
LEARNER_KINDS: tuple[Kind, ...] = ("award.made", "award.revoked")  # the others alert administrators


@dataclass(frozen=True, slots=True)
class Notification:
    """One outbox row: ``id`` is unique and stable across retries (webhook-id, idempotency keys)."""

    id: int
    kind: Kind
    channel: ChannelName
    created_at: datetime
    payload: Mapping[str, Any]
    target: str | None = None  # the channel's address: an email, a webhook's name; None for in-app
    attempts: int = 0


# The payload of an award notification (``award.made``, ``award.revoked``), as written by the outbox:
# {"award": {"id", "badge_id", "badge_name", "badge_description", "tier", "points", "awarded_at",
#            "revoked_at", "revoked_reason"},
#  "learner": {"platform", "lms_user_id", "name", "email"},
#  "links": {"badge_page", "assertion", "image_png", "credential", "linkedin"}}
# ``approval.requested``: {"approval": {"id", "badge_id", "badge_name", "tier", "course", "earned_at"},
#                          "learner": {...}} (written with the approval's id; the rest added when sent)
# ``sync.failed``: {"platform", "run_id", "error"}


class DeliveryError(Exception):
    """A delivery that did not happen. ``permanent``: retrying cannot help (a refused address, a 4xx
    other than 408/429): the row is parked at once; otherwise it is retried with backoff."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Channel(Protocol):
    """Delivers notifications of one channel. ``deliver`` returns when the receiver has accepted it and
    raises :class:`DeliveryError` otherwise; its messages never contain a secret."""

    name: ChannelName

    def deliver(self, notification: Notification) -> None: ...
