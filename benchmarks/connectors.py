"""Connector benchmark: the Canvas nightly sync of one course of 500 students x 40 assignments.

A fake Canvas (tests/e2e/fake_lms.py: a real threaded HTTP server on 127.0.0.1) answers every request
after a fixed latency (50 ms by default). The real sync service runs against it, storing every event in
a fresh SQLite (or, with --database-url, PostgreSQL) database, once per concurrency setting. Two ratios:

- LMS calls used / the minimum (every list read in full pages of 100): aim <= 1.05.
- wall time / (calls x latency / concurrency): the time the requests alone would take if the sync kept
  every allowed connection busy; above 1 is waiting the requests do not explain (storing, parsing,
  the enrollments read that must come first).

    .venv/bin/python benchmarks/connectors.py
    .venv/bin/python benchmarks/connectors.py --latency-ms 50 --concurrency 1 2 4

Exit status: 0 when every run stored exactly the expected events (whatever the ratios); 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bridge.bootstrap import open_database
from bridge.db.models import Event
from bridge.services.sync import SyncService
from bridge.settings import load_settings
from tests.e2e.fake_lms import FakeCanvas

CALLS_AIM = 1.05
_TEMPLATE = """\
id = "grader"
name = "Grader"
description = "Benchmark badge: criteria that need no module items"
image = "grader.svg"
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["assignment_graded"]
aggregate = "count"
target = 10
"""


@dataclass
class Result:
    concurrency: int
    calls: int
    minimum: int
    seconds: float
    ideal_seconds: float
    events: int
    correct: bool


def run_once(args: argparse.Namespace, concurrency: int, workdir: Path) -> Result:
    fake = FakeCanvas(
        course="101", students=args.students, assignments=args.assignments, latency=args.latency_ms / 1000
    )
    templates = workdir / "badges"
    templates.mkdir(exist_ok=True)
    (templates / "grader.toml").write_text(_TEMPLATE)
    (templates / "grader.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    data_dir = workdir / f"c{concurrency}"
    # A platform of its own per run: on a shared PostgreSQL database earlier runs' events stay apart.
    platform = f"bench-{concurrency}-{time.time_ns() % 10**9}"
    with fake.running() as base_url:
        settings = load_settings(
            None,
            data_dir=data_dir,
            database_url=args.database_url,
            badge_templates_dir=templates,
            platforms=[
                {"id": platform, "kind": "canvas", "base_url": base_url, "token": "t", "courses": ["101"]}
            ],
            sync={"concurrency": concurrency, "timeout_seconds": 30},
        )
        database = open_database(settings)
        started = time.perf_counter()
        record = SyncService(database, settings).run(platform, full=True)
        seconds = time.perf_counter() - started
        with database.read() as session:
            keys = list(session.scalars(select(Event.event_key).where(Event.platform == platform)))
        database.dispose()
    expected = fake.expected_keys()
    correct = record.status == "succeeded" and len(keys) == len(set(keys)) and set(keys) == expected
    ideal = record.calls * (args.latency_ms / 1000) / concurrency
    return Result(concurrency, record.calls, fake.minimum_calls(), seconds, ideal, record.events, correct)


def report(args: argparse.Namespace, results: list[Result]) -> None:
    print()
    print(
        f"LMS Badge Bridge connector benchmark: Canvas nightly sync of one course, "
        f"{args.students} students x {args.assignments} assignments"
    )
    print(
        f"  fake Canvas on 127.0.0.1, {args.latency_ms:.0f} ms per request, pages of 100; "
        f"database: {args.database_url or 'SQLite (temporary file)'}"
    )
    print()
    header = "  concurrency   calls  minimum  calls/min   wall s  ideal s  wall/ideal   events  correct"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in results:
        print(
            f"  {r.concurrency:>11}  {r.calls:>6}  {r.minimum:>7}  {r.calls / r.minimum:>9.3f}  "
            f"{r.seconds:>7.2f}  {r.ideal_seconds:>7.2f}  {r.seconds / r.ideal_seconds:>10.2f}  "
            f"{r.events:>7}  {'yes' if r.correct else 'NO'}"
        )
    worst = max(r.calls / r.minimum for r in results)
    verdict = "met" if worst <= CALLS_AIM else "MISSED"
    print()
    print(f"  calls/minimum: {worst:.3f}   aim <= {CALLS_AIM:.2f}   {verdict}")
    print("  ideal s = calls x latency / concurrency; the enrollments list is read first, alone, because the")
    print("  submissions are asked for by student (at most 100 ids a request, Canvas's limit)")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--assignments", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # one summary table, not a log line per page
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-connectors-") as directory:
        for concurrency in args.concurrency:
            print(f"sync with concurrency {concurrency} ...", flush=True)
            results.append(run_once(args, concurrency, Path(directory)))
    report(args, results)
    return 0 if all(r.correct for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
