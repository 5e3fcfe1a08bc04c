"""End to end, SQLite beside PostgreSQL: events posted over HTTP in batches, until every one is evaluated.

    .venv/bin/python benchmarks/evaluator_e2e.py                      # SQLite alone
    .venv/bin/python benchmarks/evaluator_e2e.py \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test   # SQLite and PostgreSQL

For each database, the real app under gunicorn (``badge-bridge serve --no-embedded-worker``, 2 workers)
and one worker process (``badge-bridge worker``) on a fresh database, with the 50 badges of
``evaluator.py`` (backdated, as there: the steady state). Client threads post the events of
``evaluator.events`` (5,000 learners, six kinds, in time order, some late) to ``POST /api/v1/events`` in
batches of ``--batch`` (each thread its share, in order); the clock runs from the first post until the
worker has marked every event done (the database polled every 20 ms). A first ``--warm-up`` events
are posted and processed untimed (learners, their states, course memberships). Rounds alternate the
databases; each round is a fresh database and fresh processes.

It prints events/s end to end (posted, stored, evaluated, awards and notifications written) for each
database, and PostgreSQL's time over SQLite's (aim: at most 1.5). Awards made must be the same on both
databases (the same events, the same rules), and every event must end done: exit status 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from evaluator import events, generated_templates, machine_gauge
from sqlalchemy import create_engine, make_url, text

from bridge.services.badges import shipped_templates_dir

_CONFIG = """\
# Written by benchmarks/evaluator_e2e.py.
data_dir = {data_dir}
badge_templates_dir = {templates}
api_access = "write"
log_level = "WARNING"
{database_line}
[server]
bind = {bind}
workers = 2
embedded_worker = false

[rate_limits]
api = "100000000/minute"

[[platforms]]
id = "demo"
kind = "custom"
name = "Benchmark"
"""


class BenchError(Exception):
    pass


def _badge_bridge() -> str:
    beside = Path(sys.executable).parent / "badge-bridge"
    found = str(beside) if beside.exists() else shutil.which("badge-bridge")
    if found is None:
        raise BenchError("badge-bridge not found: install the project (.venv/bin/pip install -e '.[test]')")
    return found


def _env() -> dict[str, str]:
    # BRIDGE_* variables override the config file; the benchmark must run the settings it wrote.
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


def _cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [_badge_bridge(), "--config", str(config), *args], capture_output=True, text=True, env=_env()
    )
    if done.returncode != 0:
        raise BenchError(f"badge-bridge {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    """A child in its own session (gunicorn and its workers, or the worker), stopped with its session."""

    def __init__(self, command: list[str], log: Path) -> None:
        self._log = log.open("wb")
        self.log = log
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Target:
    """One database: its fresh store (made per round), the app and its worker."""

    def __init__(self, name: str, workdir: Path, templates: Path, admin_url: str | None) -> None:
        self.name = name
        self._workdir = workdir
        self._templates = templates
        self._admin_url = admin_url
        self._made: list[str] = []

    def start(self, round_number: int) -> tuple[str, str, str, list[Process]]:
        """A fresh database and the app and worker on it: (base URL, API key, database URL, processes)."""
        data_dir = self._workdir / f"{self.name}-{round_number}"
        data_dir.mkdir()
        database_url = None
        if self._admin_url:
            database_url = self._new_postgres_database()
        port = _free_port()
        config = data_dir / "config.toml"
        config.write_text(
            _CONFIG.format(
                data_dir=json.dumps(data_dir.as_posix()),
                templates=json.dumps(self._templates.as_posix()),
                database_line=f"database_url = {json.dumps(database_url)}" if database_url else "",
                bind=json.dumps(f"127.0.0.1:{port}"),
            ),
            encoding="utf-8",
        )
        if database_url:
            _cli(config, "db", "upgrade")  # only the embedded SQLite default upgrades itself
        key = _cli(config, "api-keys", "create", "bench", "--scope", "write").splitlines()[-1]
        effective_url = database_url or f"sqlite:///{data_dir / 'bridge.sqlite3'}"
        # The steady state, as in evaluator.py: the rules long predate these learners.
        engine = create_engine(effective_url)
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE badges SET criteria_since = :at"), {"at": "2000-01-01 00:00:00.000000"}
            )
        engine.dispose()
        app = Process(
            [_badge_bridge(), "--config", str(config), "serve", "--no-embedded-worker"], data_dir / "app.log"
        )
        worker = Process([_badge_bridge(), "--config", str(config), "worker"], data_dir / "worker.log")
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/healthz", app)
        return base, key, effective_url, [app, worker]

    def _new_postgres_database(self) -> str:
        import psycopg

        url = make_url(self._admin_url)  # type: ignore[arg-type]
        name = f"bridge_e2e_{secrets.token_hex(4)}"
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self._made.append(name)
        return url.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        if not self._made:
            return
        import psycopg

        url = make_url(self._admin_url)  # type: ignore[arg-type]
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as admin:
            for name in self._made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_ready(url: str, process: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise BenchError(f"the app exited: see {process.log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"the app did not answer {url} within {timeout:.0f} s: see {process.log}")


def _bodies(first: int, count: int, batch: int, minutes_apart: float) -> list[bytes]:
    made = events(first, count, 5000, seed=first, minutes_apart=minutes_apart)
    rows = [
        {
            "platform": e.platform, "event_key": e.event_key, "kind": e.kind, "learner": e.learner,
            "course": e.course, "item": e.item, "score": e.score, "occurred_at": e.occurred_at.isoformat(),
        }
        for e in made
    ]  # fmt: skip
    return [json.dumps({"events": rows[i : i + batch]}).encode() for i in range(0, len(rows), batch)]


def _post_all(base: str, key: str, bodies: list[bytes], threads: int) -> None:
    """Each thread posts its share of the bodies, in order (as one LMS sends them)."""
    failures: list[str] = []

    def post(share: list[bytes]) -> None:
        for body in share:
            request = urllib.request.Request(
                f"{base}/api/v1/events",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    if answer.status not in (200, 202):
                        failures.append(f"HTTP {answer.status}")
            except (urllib.error.URLError, OSError) as error:
                failures.append(str(error))

    shares = [bodies[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=post, args=(share,)) for share in shares]
    for each in workers:
        each.start()
    for each in workers:
        each.join()
    if failures:
        raise BenchError(f"{len(failures)} posts failed, e.g. {failures[0]}")


def _wait_done(database_url: str, expected: int, timeout: float) -> dict[str, int]:
    """Polls until ``expected`` events are stored and none is pending; the counts by status, and awards."""
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        with engine.connect() as connection:
            while True:
                statuses = dict(
                    connection.execute(text("SELECT status, count(*) FROM events GROUP BY status")).all()
                )
                connection.rollback()
                if sum(statuses.values()) >= expected and not statuses.get("pending"):
                    awards = connection.execute(text("SELECT count(*) FROM awards")).scalar_one()
                    connection.rollback()
                    return {**statuses, "awards": awards}
                if time.monotonic() > deadline:
                    raise BenchError(f"not done within {timeout:.0f} s: {statuses}")
                time.sleep(0.02)
    finally:
        engine.dispose()


def run_round(target: Target, round_number: int, args: argparse.Namespace) -> tuple[float, dict[str, int]]:
    minutes_apart = 365 * 24 * 60 / (args.warm_up + args.events)
    warm = _bodies(0, args.warm_up, args.batch, minutes_apart)
    timed = _bodies(args.warm_up, args.events, args.batch, minutes_apart)
    base, key, database_url, processes = target.start(round_number)
    try:
        _post_all(base, key, warm, args.threads)
        _wait_done(database_url, args.warm_up, timeout=600)
        started = time.perf_counter()
        _post_all(base, key, timed, args.threads)
        posted = time.perf_counter() - started
        counts = _wait_done(database_url, args.warm_up + args.events, timeout=1800)
        # When the last post was answered: how much of the time ingest took (the worker runs alongside).
        counts["posted_ms"] = round(posted * 1000)
        return time.perf_counter() - started, counts
    finally:
        for process in processes:
            process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events timed in each round")
    parser.add_argument("--warm-up", type=int, default=2_000, help="events processed before the clock")
    parser.add_argument("--batch", type=int, default=100, help="events per POST")
    parser.add_argument("--threads", type=int, default=4, help="client threads posting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="also PostgreSQL: a postgresql+psycopg:// URL")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bridge-e2e-"))
    templates = workdir / "templates"
    shutil.copytree(shipped_templates_dir(), templates)
    generated_templates(templates)
    targets = [Target("SQLite", workdir, templates, None)]
    if args.database_url:
        targets.append(Target("PostgreSQL", workdir, templates, args.database_url))
    seconds: dict[str, list[float]] = {t.name: [] for t in targets}
    outcomes: dict[str, list[dict[str, int]]] = {t.name: [] for t in targets}
    gauges = []
    ok = True
    try:
        print(
            f"{args.events:,} events per round ({args.warm_up:,} before, untimed), batches of {args.batch}, "
            f"{args.threads} client threads; gunicorn 2 workers, 1 worker process",
            flush=True,
        )
        for round_number in range(args.rounds):
            gauges.append(machine_gauge())
            for target in targets:
                elapsed, counts = run_round(target, round_number, args)
                seconds[target.name].append(elapsed)
                outcomes[target.name].append(counts)
                print(
                    f"  round {round_number + 1} {target.name:10} {args.events / elapsed:8,.0f} events/s  "
                    f"{counts}",
                    flush=True,
                )
        print(f"\n{'':12}{'events/s':>10}{'seconds':>10}{'posted s':>10}   awards")
        for target in targets:
            median = statistics.median(seconds[target.name])
            awards = sorted({c["awards"] for c in outcomes[target.name]})
            posted = statistics.median(c["posted_ms"] for c in outcomes[target.name]) / 1000
            print(f"{target.name:12}{args.events / median:10,.0f}{median:10.2f}{posted:10.2f}   {awards}")
            if any(c.get("failed") or c.get("pending") for c in outcomes[target.name]):
                print(f"CHECK FAILED: {target.name} left events failed or pending")
                ok = False
        print(f"machine gauge (fixed Python work) {statistics.median(gauges):.1f} ms")
        if len(targets) == 2:
            ratio = statistics.median(seconds["PostgreSQL"]) / statistics.median(seconds["SQLite"])
            print(
                f"PostgreSQL time / SQLite time: {ratio:.2f}  aim <= 1.5  {'OK' if ratio <= 1.5 else 'MISS'}"
            )
            if {c["awards"] for c in outcomes["SQLite"]} != {c["awards"] for c in outcomes["PostgreSQL"]}:
                print("CHECK FAILED: the databases made different awards from the same events")
                ok = False
        return 0 if ok else 1
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for target in targets:
            target.close()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


if __name__ == "__main__":
    raise SystemExit(main())
