"""Events per second through the evaluator with 50 badges, and how the cost of an event grows with history.

    .venv/bin/python benchmarks/evaluator.py                # SQLite, up to 1,000,000 stored events
    .venv/bin/python benchmarks/evaluator.py --stored 100000  # quicker
    .venv/bin/python benchmarks/evaluator.py --stored 100000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test   # SQLite and PostgreSQL

A real worker (the same ``Worker.run_once`` the service runs: claim, evaluate, write, mark done)
processes a window of new events in two stores: one with 1,000 events stored before it, and one grown
to ``--stored`` events (all processed, so every learner has history: progress states, awards, course
memberships). Rounds alternate between the two, each on a fresh copy. On SQLite each window ends with a
WAL checkpoint inside its timing. Ingest is not timed. With ``--database-url`` the same stores are also
made on PostgreSQL (fresh databases next to the one named, copied per window with CREATE DATABASE ...
TEMPLATE, dropped at the end) and each round times both databases, so that the hour hits both alike.
The rules are the 20 shipped templates plus 30 generated ones (counts, distinct items and days, sums,
maxima, streaks, windows, filters, tiers).

The events span a year and arrive as an LMS sends them: in time order, some up to a day late (the
nightly sync). It prints events/s for each window and the ratio of per-event cost late vs early (aims:
>= 5,000 events/s per worker; ratio <= 1.2), plus the evaluator alone (in memory, no database) and a
gauge of the machine's speed during the rounds (a fixed piece of Python work, whatever the code does).
"""

from __future__ import annotations

import argparse
import math
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import make_url, update  # noqa: E402

from bridge.bootstrap import open_database  # noqa: E402
from bridge.clock import utcnow  # noqa: E402
from bridge.db.engine import Database  # noqa: E402
from bridge.db.migrate import upgrade  # noqa: E402
from bridge.db.models import Badge  # noqa: E402
from bridge.domain.aggregates import EventFacts  # noqa: E402
from bridge.domain.evaluation import AwardPolicy, LearnerLedger  # noqa: E402
from bridge.domain.events import LearningEvent  # noqa: E402
from bridge.services.badges import load_rulebook, shipped_templates_dir  # noqa: E402
from bridge.services.ingest import Inbox  # noqa: E402
from bridge.settings import Settings, load_settings  # noqa: E402
from bridge.worker import Worker, tune_garbage_collection  # noqa: E402

KINDS = ["login", "module_completed", "activity_completed", "assignment_graded", "quiz_graded", "purchase"]
COURSES = ["DL101", "HS100", "MATH2", "BIO1", "ART3"]
START = datetime(2026, 1, 5, tzinfo=UTC)


def generated_templates(directory: Path) -> None:
    """30 more badges of every shape, beside the shipped 20."""
    shapes = [
        ('kinds = ["login"]\ntarget = {n}', (5, 20, 50, 200)),
        ('kinds = ["module_completed"]\naggregate = "distinct"\nfield = "item"\ntarget = {n}', (3, 10, 25)),
        ('kinds = ["assignment_graded"]\naggregate = "sum"\nfield = "score"\ntarget = {n}', (5, 20, 60)),
        ('kinds = ["quiz_graded"]\naggregate = "max"\nfield = "score"\ntarget = 0.{n}', (5, 7, 95)),
        ('kinds = ["login", "activity_completed"]\naggregate = "streak"\ntarget = {n}', (3, 5, 14, 30)),
        ('kinds = ["activity_completed"]\nper = "week"\ntarget = {n}', (2, 5, 10)),
        ('kinds = ["module_completed"]\nwithin_days = 14\ntarget = {n}', (3, 6)),
        ('kinds = ["assignment_graded"]\nfilter = "score >= 0.8"\ntarget = {n}', (3, 10, 30)),
        ('kinds = ["activity_completed"]\nfilter = \'course == "MATH2"\'\ntarget = {n}', (5, 15)),
        ('kinds = ["login", "purchase"]\naggregate = "distinct"\nfield = "day"\ntarget = {n}', (10, 30, 60)),
    ]
    count = 0
    for shape, sizes in shapes:
        for n in sizes:
            count += 1
            (directory / f"generated-{count:02d}.toml").write_text(
                f'id = "generated-{count:02d}"\nname = "Generated {count}"\ndescription = "Benchmark"\n'
                f'image = "welcome.svg"\npoints = 3\n[[criteria.groups]]\n[[criteria.groups.requirements]]\n'
                + shape.format(n=n)
                + "\n"
            )
    assert count == 30, count


def events(first: int, count: int, learners: int, seed: int, minutes_apart: float) -> list[LearningEvent]:
    """``count`` events numbered from ``first``, over ``learners`` learners.

    They arrive as an LMS sends them: in time order, ``minutes_apart`` apart on average, each up to a
    day late (webhooks at once, the nightly sync a day later).
    """
    rng = random.Random(seed)
    made = []
    for n in range(first, first + count):
        kind = rng.choice(KINDS)
        late = rng.random() < 0.3  # a share comes with the nightly sync
        made.append(
            LearningEvent(
                platform="demo",
                event_key=f"e{n}",
                kind=kind,
                learner=str(rng.randrange(learners)),
                occurred_at=START
                + timedelta(minutes=n * minutes_apart - (rng.uniform(0, 24 * 60) if late else 0)),
                course=rng.choice(COURSES),
                item=f"module-{rng.randrange(30)}",
                score=round(rng.random(), 2) if kind in ("assignment_graded", "quiz_graded") else None,
            )
        )
    return made


def store(inbox: Inbox, batch: list[LearningEvent]) -> None:
    for start in range(0, len(batch), 1000):
        inbox.store(batch[start : start + 1000])


def process(worker: Worker) -> int:
    total = 0
    while claimed := worker.run_once():
        total += claimed
    return total


def timed_window(
    settings: Settings, place: Place, first: int, size: int, learners: int, minutes_apart: float
) -> float:
    """Seconds a fresh worker takes for ``size`` new events in ``place``, ingested beforehand.

    On SQLite the window starts on an empty WAL and ends with a checkpoint inside the timing: every
    window pays for writing the pages it changed into the database file once, as a running service
    does. (Without that, a window that happens to stop short of SQLite's automatic checkpoint looks
    cheaper.) On PostgreSQL the window starts after a CHECKPOINT; the server's checkpointer and
    background writer write pages out in processes of their own, as they do in service.
    """
    database = open_database(settings)
    try:
        store(Inbox(database), events(first, size, learners, seed=first, minutes_apart=minutes_apart))
        place.settle()
        worker = Worker(database, settings)
        started = time.perf_counter()
        done = process(worker)
        place.finish()
        elapsed = time.perf_counter() - started
    finally:
        database.dispose()
    assert done == size, (done, size)
    return elapsed


def _checkpoint(db_file: Path) -> None:
    with sqlite3.connect(db_file) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


class Place:
    """Where a database's stores live and a window runs: ``url``, and named copies of it."""

    name: str
    url: str

    def save(self, copy: str) -> None:  # the working database as ``copy`` (no connection open to it)
        raise NotImplementedError

    def restore(self, copy: str) -> None:  # the working database made a fresh copy of ``copy``
        raise NotImplementedError

    def settle(self) -> None:  # before a window, untimed
        pass

    def finish(self) -> None:  # at the end of a window, timed
        pass

    def close(self) -> None:
        pass


class SqliteFiles(Place):
    name = "SQLite"

    def __init__(self, workdir: Path) -> None:
        self.directory = workdir
        self.db_file = workdir / "bench.sqlite3"
        self.url = f"sqlite:///{self.db_file}"

    def save(self, copy: str) -> None:
        _copy_database(self.db_file, self.directory / f"{copy}.sqlite3")

    def restore(self, copy: str) -> None:
        _copy_database(self.directory / f"{copy}.sqlite3", self.db_file)

    def settle(self) -> None:
        _checkpoint(self.db_file)

    def finish(self) -> None:
        _checkpoint(self.db_file)


class PostgresDatabases(Place):
    """Fresh databases next to the one ``admin_url`` names: the working one and its saved copies."""

    name = "PostgreSQL"

    def __init__(self, admin_url: str) -> None:
        import psycopg

        url = make_url(admin_url)
        if not url.drivername.startswith("postgresql"):
            raise SystemExit("--database-url: expected a postgresql+psycopg:// URL")
        self._psycopg = psycopg
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._work = f"bridge_bench_{secrets.token_hex(4)}"
        self._made: list[str] = []
        self.url = url.set(database=self._work).render_as_string(hide_password=False)
        self._admin(f'CREATE DATABASE "{self._work}"')
        self._made.append(self._work)
        database = Database(self.url)
        upgrade(database)
        database.dispose()

    def _admin(self, *statements: str) -> None:
        with self._psycopg.connect(self._conninfo, autocommit=True) as admin:
            for statement in statements:
                admin.execute(statement)

    def save(self, copy: str) -> None:
        # As autovacuum leaves a store in service: the visibility map set, the statistics current.
        work = make_url(self._conninfo).set(database=self._work).render_as_string(hide_password=False)
        with self._psycopg.connect(work, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
        name = f"{self._work}_{copy}"
        # The inbox keeps a connection of its own per thread (see bridge.services.ingest), past dispose().
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self._work}' AND pid <> pg_backend_pid()",
            f'CREATE DATABASE "{name}" TEMPLATE "{self._work}"',
        )
        self._made.append(name)

    def restore(self, copy: str) -> None:
        self._admin(
            f'DROP DATABASE IF EXISTS "{self._work}" WITH (FORCE)',
            f'CREATE DATABASE "{self._work}" TEMPLATE "{self._work}_{copy}"',
        )

    def settle(self) -> None:
        self._admin("CHECKPOINT")

    def close(self) -> None:
        self._admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in reversed(self._made)))


def in_memory_rate(settings: Settings, database: object, count: int, learners: int) -> float:
    """The evaluator alone: ledgers in memory, no database, no JSON."""
    with database.read() as session:  # type: ignore[attr-defined]
        rules = load_rulebook(session, settings.track_event_types)
    ledgers = {str(n): LearnerLedger(0, {}, set(), set(), set(), AwardPolicy()) for n in range(learners)}
    batch = events(10_000_000, count, learners, seed=7, minutes_apart=1.0)
    started = time.perf_counter()
    for event in batch:
        ledgers[event.learner].observe(EventFacts(event, settings.zone), rules, lambda _badge: [])
    return count / (time.perf_counter() - started)


def machine_gauge() -> float:
    """Milliseconds for a fixed piece of pure-Python work (the best of three): how fast the machine
    is this hour, whatever the code under test does. (This shared machine's speed moves by up to 2x.)"""
    numbers = random.Random(42).sample(range(10**9), 200_000)
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        index = {number: str(number) for number in numbers}
        sorted(index.values())
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's backup API (the WAL included), replacing ``target``."""
    for stale in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)
    with sqlite3.connect(source) as reading, sqlite3.connect(target) as writing:
        reading.backup(writing)
    writing.close()
    reading.close()


def _verdict(met: bool) -> str:
    return "OK" if met else "MISS"


@dataclass
class Stores:
    """The two stores the windows start from (saved copies in ``place``), and what making them measured."""

    settings: Settings
    place: Place  # where a window runs, on a fresh copy of "early" or "late"
    minutes_apart: float  # between events: the events span a year, whatever --stored is
    badges: int
    grow_rate: float  # events/s while growing, in batches of 1,000
    memory_rate: float  # events/s through the evaluator alone


def prepare(workdir: Path, stored: int, window: int, learners: int, place: Place | None = None) -> Stores:
    """The 50 badges, and the early and late stores in ``place`` (SQLite files in ``workdir`` if None)."""
    templates = workdir / "templates"
    if not templates.exists():
        shutil.copytree(shipped_templates_dir(), templates)
        generated_templates(templates)
    place = place or SqliteFiles(workdir)
    settings = load_settings(
        None,
        data_dir=workdir,
        database_url=place.url,
        badge_templates_dir=templates,
        platforms=[{"id": "demo", "kind": "custom"}],
        log_level="WARNING",
    )
    database = open_database(settings)
    with database.write() as session:
        # Steady state: the rules were in place long before these learners came. (A learner who
        # came within a minute or so of a criteria change is replayed from history once.)
        session.execute(update(Badge).values(criteria_since=utcnow() - timedelta(days=30)))
        badges = len(load_rulebook(session, settings.track_event_types).badges)
    print(
        f"{place.name}: {badges} badges, {learners} learners, windows of {window} events, "
        f"worker batches of {settings.worker.batch_size} (the default)",
        flush=True,
    )
    minutes_apart = 365 * 24 * 60 / (stored + window)
    store(Inbox(database), events(0, 1000, learners, seed=1, minutes_apart=minutes_apart))
    process(Worker(database, settings))
    database.dispose()
    place.save("early")

    print(f"{place.name}: growing the store to {stored:,} processed events ...", flush=True)
    database = open_database(settings)
    inbox = Inbox(database)
    # Growing is not timed: bigger batches get there sooner.
    bulk = Worker(
        database,
        settings.model_copy(update={"worker": settings.worker.model_copy(update={"batch_size": 1000})}),
    )
    next_key = 1000
    grow_started = time.perf_counter()
    while next_key < stored:
        chunk = min(50_000, stored - next_key)
        store(inbox, events(next_key, chunk, learners, seed=next_key, minutes_apart=minutes_apart))
        next_key += chunk
        process(bulk)
    grow_rate = (stored - 1000) / (time.perf_counter() - grow_started)
    memory_rate = in_memory_rate(settings, database, 50_000, learners)
    database.dispose()
    place.save("late")
    return Stores(settings, place, minutes_apart, badges, grow_rate, memory_rate)


def arguments(description: str, window: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=1_000_000, help="events stored before the late window")
    parser.add_argument("--window", type=int, default=window, help="events timed in each window")
    parser.add_argument("--learners", type=int, default=5_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed windows at each point; the median counts"
    )
    parser.add_argument(
        "--database-url",
        help="also PostgreSQL: a postgresql+psycopg:// URL; fresh databases are made next to the one named",
    )
    return parser.parse_args()


def all_stores(workdir: Path, args: argparse.Namespace, places: list[Place]) -> list[Stores]:
    """SQLite's stores, and PostgreSQL's with ``--database-url``; each place is added to ``places`` as
    soon as it exists, for the caller to close whatever happens."""
    places.append(SqliteFiles(workdir))
    if args.database_url:
        places.append(PostgresDatabases(args.database_url))
    return [prepare(workdir, args.stored, args.window, args.learners, place) for place in places]


def close_all(places: list[Place]) -> None:
    for place in places:
        place.close()


def main() -> int:
    args = arguments(__doc__ or "", window=10_000)
    tune_garbage_collection()  # as Worker.run does in the service
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    places: list[Place] = []
    try:
        stores = all_stores(workdir, args, places)
        # Early and late rounds alternate, each from its own copy of the same store, so that the
        # machine's drift (a shared machine's speed moves from one minute to the next) hits both; with
        # two databases, each round times both.
        times: dict[tuple[str, str], list[float]] = {}
        gauges = []
        for _ in range(args.rounds):
            gauges.append(machine_gauge())
            for each in stores:
                for side, first in (("early", 1000), ("late", args.stored)):
                    each.place.restore(side)
                    seconds = timed_window(
                        each.settings, each.place, first, args.window, args.learners, each.minutes_apart
                    )
                    times.setdefault((each.place.name, side), []).append(seconds / args.window)

        gauge = statistics.median(gauges)
        rates = {}
        for each in stores:
            name = each.place.name
            early_cost = statistics.median(times[(name, "early")])
            late_cost = statistics.median(times[(name, "late")])
            rows = [
                ("evaluator alone (memory)", stores[0].memory_rate),
                ("worker, 1,000 stored", 1 / early_cost),
                (f"worker, {args.stored:,} stored", 1 / late_cost),
                ("worker growing (batches of 1,000)", each.grow_rate),
            ]
            print(f"\n{name:36}{'events/s':>12}{'µs/event':>12}   rounds (events/s)")
            for label, rate in rows:
                print(f"{label:36}{rate:12,.0f}{1e6 / rate:12.1f}", end="")
                side = {"worker, 1,000 stored": "early"}.get(label, "late" if "stored" in label else "")
                if side:
                    print("   " + ", ".join(f"{1 / cost:,.0f}" for cost in times[(name, side)]), end="")
                print()
            rate, ratio = 1 / early_cost, late_cost / early_cost
            rates[name] = (rate, ratio)
            print(f"events/s per worker (1,000 stored): {rate:,.0f}  aim >= 5,000  {_verdict(rate >= 5000)}")
            late_label = f"per-event cost {args.stored:,} vs 1,000 stored"
            print(f"{late_label}: {ratio:.2f}  aim <= 1.2  {_verdict(ratio <= 1.2)}")
        print(f"\n{'machine gauge (fixed Python work)':36}{gauge:12.1f} ms")
        if "PostgreSQL" in rates:
            pg_rate = rates["PostgreSQL"][0]
            print(
                f"PostgreSQL events/s per worker: {pg_rate:,.0f}  aim >= 3,000  {_verdict(pg_rate >= 3000)}"
            )
            print(f"PostgreSQL / SQLite, early: {pg_rate / rates['SQLite'][0]:.2f}")
        return 0
    finally:
        close_all(places)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
