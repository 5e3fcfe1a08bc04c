"""The delivery channels the settings configure, and the sender that uses them (built once per process
that runs a worker)."""

from __future__ import annotations

import threading

from bridge.db.engine import Database
from bridge.issuing.keys import KeyRing
from bridge.issuing.publisher import Publisher
from bridge.notify.email import EmailChannel, EmailConfig
from bridge.notify.messages import Channel
from bridge.notify.render import Renderer
from bridge.notify.sender import Sender
from bridge.notify.webhook import WebhookChannel, WebhookEndpoint
from bridge.notify.xapi import XapiChannel, XapiConfig
from bridge.services.badges import shipped_templates_dir
from bridge.settings import Settings


def build_channels(settings: Settings, renderer: Renderer) -> dict[str, Channel]:
    notifications = settings.notifications
    channels: dict[str, Channel] = {}
    if notifications.email is not None:
        email = notifications.email
        config = EmailConfig(
            host=email.host,
            from_address=email.from_address,
            port=email.port,
            security=email.security,
            username=email.username,
            password=email.password.get_secret_value() if email.password else None,
            reply_to=email.reply_to,
            timeout=email.timeout_seconds,
            templates_dir=email.templates_dir,
        )
        channels["email"] = EmailChannel(config, image=renderer.image)
    if notifications.webhooks:
        endpoints = [
            WebhookEndpoint(
                hook.name,
                str(hook.url),
                hook.secret.get_secret_value(),
                tuple(hook.events),
                timeout=hook.timeout_seconds,
            )
            for hook in notifications.webhooks
        ]
        channels["webhook"] = WebhookChannel(endpoints)
    if notifications.xapi is not None:
        xapi = notifications.xapi
        homepages = {p.id: str(p.base_url).rstrip("/") for p in settings.platforms if p.base_url}
        channels["xapi"] = XapiChannel(
            XapiConfig(
                endpoint=str(xapi.endpoint).rstrip("/"),
                username=xapi.username,
                password=xapi.password.get_secret_value(),
                homepage=str(settings.public_base_url).rstrip("/"),
                platform_homepages=homepages,
                actor_id=xapi.actor_id,
                timeout=xapi.timeout_seconds,
            )
        )
    return channels


def make_sender(database: Database, settings: Settings) -> Sender:
    publisher = Publisher(
        database,
        settings,
        KeyRing.open(settings.data_dir),
        settings.badge_templates_dir or shipped_templates_dir(),
    )
    email = settings.notifications.email
    renderer = Renderer(publisher, email.admin_address if email else None)
    return Sender(database, settings, build_channels(settings, renderer), renderer)


def start_sender_in_thread(
    database: Database, settings: Settings
) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    sender = make_sender(database, settings)
    thread = threading.Thread(target=sender.run, args=(stop,), name="bridge-notifications", daemon=True)
    thread.start()
    return thread, stop
