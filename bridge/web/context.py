"""What the composition root hands to the views."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from bridge.db.engine import Database
from bridge.issuing.publisher import Publisher
from bridge.lti.tool import LtiTool
from bridge.metrics import QueueCollector
from bridge.services.api_keys import ApiKeyVerifier
from bridge.services.badge_admin import BadgeAdmin
from bridge.services.ingest import Inbox
from bridge.services.manual_awards import ManualAwards
from bridge.services.sync import Connectors
from bridge.services.sync_webhooks import WebhookFetches
from bridge.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: Database
    inbox: Inbox
    api_keys: ApiKeyVerifier
    queue_collector: QueueCollector
    badge_admin: BadgeAdmin
    manual_awards: ManualAwards
    publisher: Publisher
    connectors: Connectors  # one per LMS platform: its HTTP session and JWKS cache
    webhook_fetches: WebhookFetches
    lti: LtiTool


def services() -> Services:
    return current_app.extensions["bridge"]
