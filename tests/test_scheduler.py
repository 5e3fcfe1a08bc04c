"""Scheduled jobs run on one node at a time, thanks to a lease row in the database."""

from bridge.db.engine import Database
from bridge.scheduler import Scheduler
from bridge.services import leases
from bridge.settings import Settings


def test_a_lease_is_held_by_one_holder_until_released_or_expired(database: Database) -> None:
    assert leases.acquire(database, "nightly", "node-a", ttl_seconds=60)
    assert not leases.acquire(database, "nightly", "node-b", ttl_seconds=60)
    assert leases.acquire(database, "nightly", "node-a", ttl_seconds=60)  # the holder may extend it
    leases.release(database, "nightly", "node-a")
    assert leases.acquire(database, "nightly", "node-b", ttl_seconds=0.0)
    assert leases.acquire(database, "nightly", "node-a", ttl_seconds=60)  # node-b's lease had expired


def test_a_job_runs_only_where_the_lease_is_taken(database: Database, settings: Settings) -> None:
    runs: list[str] = []
    scheduler = Scheduler(database, settings)
    assert leases.acquire(database, "job", "another-node", ttl_seconds=60)
    assert not scheduler.run_leased("job", lambda: runs.append("x"), 60)
    leases.release(database, "job", "another-node")
    assert scheduler.run_leased("job", lambda: runs.append("x"), 60)
    assert runs == ["x"]
    assert leases.acquire(database, "job", "another-node", ttl_seconds=60)  # released after the run


def test_a_failing_job_releases_its_lease(database: Database, settings: Settings) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    scheduler = Scheduler(database, settings)
    assert scheduler.run_leased("job", broken, 60)
    assert leases.acquire(database, "job", "another-node", ttl_seconds=60)
