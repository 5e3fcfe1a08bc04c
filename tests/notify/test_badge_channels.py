"""A badge template may name its own channels (``notification_type = ["in-app"]``): its awards are told by
those instead of the setting's; a channel the settings do not configure is left out. Templates that name
something else are refused with the file, the key and the reason."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.models import Award
from bridge.db.models_notify import OutboxNotification
from bridge.domain.templates import TemplateError, parse_template
from bridge.notify.outbox import routes
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store

HOOK = {
    "name": "crm",
    "url": "http://127.0.0.1:9/hook",
    "secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def template(badge_id: str, channels: str | None) -> str:
    line = f"notification_type = {channels}\n" if channels is not None else ""
    return (
        f'id = "{badge_id}"\nname = "{badge_id.title()}"\ndescription = "Signed in."\n'
        f'image = "{badge_id}.svg"\n'
        f'{line}[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\ntarget = 1\n'
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    badges = tmp_path / "badges"
    badges.mkdir()
    for badge_id, channels in (("quiet", '["in-app"]'), ("loud", '["webhook", "email"]'), ("usual", None)):
        (badges / f"{badge_id}.toml").write_text(template(badge_id, channels))
        (badges / f"{badge_id}.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    return make_settings(
        database_url,
        tmp_path,
        badge_templates_dir=str(badges),
        notification_type=["in-app", "webhook"],
        notifications={"webhooks": [HOOK]},
    )


def told(database: Database) -> dict[str, list[str]]:
    """Each badge's award rows, by channel."""
    with database.read() as session:
        rows = session.execute(
            select(Award.badge_id, OutboxNotification.channel)
            .join(Award, Award.id == OutboxNotification.award_id)
            .order_by(Award.badge_id, OutboxNotification.channel)
        ).all()
    found: dict[str, list[str]] = {}
    for badge_id, channel in rows:
        found.setdefault(badge_id, []).append(channel)
    return found


def test_each_badges_awards_are_told_by_its_own_channels_or_the_settings(settings: Settings) -> None:
    database = open_database(settings)
    store(database, learning_event("login-1"))
    Worker(database, settings).run(threading.Event(), drain=True)
    assert told(database) == {
        "quiet": ["in-app"],
        "loud": ["webhook"],  # email is not configured here: left out
        "usual": ["in-app", "webhook"],  # the setting's
    }


def test_a_channel_the_settings_do_not_configure_is_left_out(settings: Settings) -> None:
    assert routes(settings, "award.made", ("email", "xapi", "in-app")) == [("in-app", None)]
    assert routes(settings, "award.made", ()) == []  # a badge told to nobody


@pytest.mark.parametrize(
    ("channels", "reason"),
    [
        ('"email"', "expected a list of channels"),
        ('["sms"]', "'sms' is not one of"),
        ('["email", "email"]', "named twice"),
    ],
)
def test_a_template_naming_other_channels_is_refused(channels: str, reason: str) -> None:
    raw = tomllib.loads(template("bad", channels))
    with pytest.raises(TemplateError) as refused:
        parse_template(raw, "bad.toml", {"login"}, [100])
    assert refused.value.key == "notification_type" and reason in refused.value.reason
