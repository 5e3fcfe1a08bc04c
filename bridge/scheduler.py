"""Scheduled jobs: APScheduler in each process, a lease row so one node at a time runs each job.

APScheduler 3 does not coordinate several nodes by itself; the lease does.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bridge.db.engine import Database
from bridge.services import leases
from bridge.services.awarding import award_sweep
from bridge.settings import Settings

log = logging.getLogger(__name__)

AWARD_SWEEP_CRON = "17 * * * *"  # hourly, off the top of the hour


class Scheduler:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.add_job("award-sweep", AWARD_SWEEP_CRON, lambda: award_sweep(database, settings))
        self._add_sync_jobs(database, settings)
        from bridge.lti.jobs import schedule_lti_jobs  # the LTI tool's: grade push, rosters

        schedule_lti_jobs(self, database, settings)
        from bridge.services.sync_webhooks import schedule_follow_ups  # reads webhooks implied, retried

        schedule_follow_ups(self, database, settings)

    def _add_sync_jobs(self, database: Database, settings: Settings) -> None:
        """Each Canvas and Moodle platform's sync on its own cron (default: the global nightly one)."""
        from bridge.services.sync import SyncBusy, SyncService

        service = SyncService(database, settings, holder=self.holder)

        def sync(platform_id: str) -> Callable[[], object]:
            def job() -> object:
                try:
                    return service.run(platform_id, trigger="schedule").status
                except SyncBusy:  # run by hand elsewhere just now: that run counts
                    return "skipped"

            return job

        for platform_id in service.platforms():
            platform = settings.platform(platform_id)
            assert platform is not None
            if platform.base_url is None:
                continue  # webhooks only: nothing to poll
            cron = platform.sync_schedule or settings.sync_schedule
            self.add_job(f"nightly-sync:{platform_id}", cron, sync(platform_id), settings.sync.lease_seconds)

    def add_job(self, name: str, cron: str, job: Callable[[], object], lease_seconds: float = 3600) -> None:
        self._scheduler.add_job(
            self.run_leased,
            CronTrigger.from_crontab(cron, timezone="UTC"),
            args=(name, job, lease_seconds),
            id=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=600,
        )

    def run_leased(self, name: str, job: Callable[[], object], lease_seconds: float) -> bool:
        """Run ``job`` if this node takes the lease ``name``; False when another node holds it."""
        if not leases.acquire(self._database, name, self.holder, lease_seconds):
            log.info("job.skipped", extra={"job": name, "reason": "lease held by another node"})
            return False
        try:
            result = job()
            log.info("job.finished", extra={"job": name, "result": result})
        except Exception:
            log.exception("job.failed", extra={"job": name})
        finally:
            leases.release(self._database, name, self.holder)
        return True

    def job_ids(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    def run_now(self, job_id: str) -> bool:
        """Run a scheduled job at once, as its trigger would (lease and all); False if the lease is taken."""
        job = self._scheduler.get_job(job_id)
        if job is None:
            raise KeyError(f"no scheduled job {job_id!r}")
        return bool(job.func(*job.args))

    def start(self) -> None:
        self._scheduler.start()
        log.info("scheduler.started", extra={"jobs": [job.id for job in self._scheduler.get_jobs()]})

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
