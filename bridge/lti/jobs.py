"""The LTI tool's scheduled jobs: badge points to gradebooks every minute, rosters with the nightly sync.

Both run under the scheduler's lease, so one node at a time runs each; both report failures in their
result instead of raising (the scheduler logs the result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.db.engine import Database
from bridge.issuing.keys import KeyRing, SigningKey
from bridge.lti.advantage import AccessTokenCache
from bridge.lti.grades import Grades
from bridge.lti.roster import Rosters
from bridge.settings import Settings

if TYPE_CHECKING:  # bridge.scheduler may import this module
    from bridge.scheduler import Scheduler

GRADES_CRON = "*/1 * * * *"
# A push is short when nothing changed; a long one (a platform slow to answer) must not be run twice.
GRADES_LEASE_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class LtiServices:
    rosters: Rosters
    grades: Grades


def lti_services(
    database: Database, settings: Settings, tokens: AccessTokenCache | None = None
) -> LtiServices:
    """Rosters and grades with the tool's own key ring (``<data_dir>/keys/lti``, the key the platforms
    have in their registrations) and one token cache: pass the process's, to share its tokens."""
    keys = KeyRing.open_directory(settings.data_dir / "keys" / "lti", ("RS256",))

    def signing_key() -> SigningKey:
        return keys.active("RS256")  # read per use: `keys rotate` in another process takes effect

    tokens = tokens or AccessTokenCache()
    return LtiServices(
        Rosters(database, settings, signing_key, tokens), Grades(database, settings, signing_key, tokens)
    )


def schedule_lti_jobs(
    scheduler: Scheduler, database: Database, settings: Settings, services: LtiServices | None = None
) -> LtiServices:
    """Add the jobs ``lti-grades`` (every minute) and ``lti-rosters`` (on ``sync_schedule``)."""
    services = services or lti_services(database, settings)
    scheduler.add_job("lti-grades", GRADES_CRON, services.grades.push, GRADES_LEASE_SECONDS)
    scheduler.add_job(
        "lti-rosters", settings.sync_schedule, services.rosters.refresh_all, settings.sync.lease_seconds
    )
    return services
