"""Ingest benchmark: ``POST /api/v1/events`` of the real app against a hand-written insert.

The reference is a minimal Flask app that parses the JSON body and INSERTs the event into the same
``events`` table of the same database (``sqlite3`` on SQLite; plain psycopg on PostgreSQL, one
connection per thread), and answers ``202 {"id": ..., "status": "accepted"}``. Both run under the same
server: gunicorn with the real app's uvicorn worker class, ``bridge.asgi.WsgiOnAsgi`` and the settings
``badge-bridge serve`` gives it (``bridge.server.BridgeServer``), the reference only swapping the app.
``wrk`` posts new events (a unique ``event_key`` each); rounds alternate between the two targets so that
noise on a small shared machine hits both alike. The real app runs without its embedded worker, so only
ingest is measured. Two modes: one event per request, and batches of 100 events per request.

    .venv/bin/python benchmarks/ingest.py
    .venv/bin/python benchmarks/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Exit status: 0 when the run was clean, whether or not the aims are reached (this is a benchmark, not a
test); 1 when responses or stored events were wrong; 2 when it could not run (wrk missing, a server
that did not start).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from evaluator import machine_gauge  # the same gauge as the evaluator's benchmarks (this folder)

AIM = 0.90  # real app / hand-written insert, requests a second, one event per request
BATCH_AIM = 7000  # events a second through the real app in batches of 100
PLATFORM = "bench"  # the real app's platform; the reference stores its events as "reference"
REFERENCE_PLATFORM = "reference"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_CONFIG = """\
# Written by benchmarks/ingest.py.
data_dir = {data_dir}
api_access = "write"
log_level = "INFO"
{database_line}
[server]
bind = {bind}
workers = {workers}
threads = {threads}
embedded_worker = false

# The limiter runs on every request as deployed; the budget is set above what the benchmark sends.
[rate_limits]
api = "100000000/minute"

[[platforms]]
id = "{platform}"
kind = "custom"
name = "Benchmark"
"""

# The reference: what a hand-written endpoint storing an event costs. Same table, same database, the
# same connection settings as the app's engine (bridge.db.engine), no validation, auth, logs or metrics.
_REFERENCE_APP = """\
import json
import threading
from datetime import UTC, datetime

from flask import Flask, jsonify, request

COLUMNS = (
    "platform, event_key, kind, learner, course, item, score, occurred_at, received_at, data, status, "
    "attempts, next_attempt_at"
)


def make_app(database_url):
    app = Flask("reference")
    local = threading.local()
    if database_url.startswith("sqlite"):
        import sqlite3

        path = database_url.split("///", 1)[1]
        insert = f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join(['?'] * 13)}) " \\
            "ON CONFLICT (platform, event_key) DO NOTHING RETURNING id"
        begin = "BEGIN IMMEDIATE"

        def connect():
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
                connection.execute(f"PRAGMA {pragma}")
            return connection

        def now():
            return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

        def encode_data(value):
            return json.dumps(value)
    else:
        import psycopg
        from psycopg.types.json import Jsonb

        conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        insert = f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join(['%s'] * 13)}) " \\
            "ON CONFLICT (platform, event_key) DO NOTHING RETURNING id"
        begin = "BEGIN"

        def connect():
            return psycopg.connect(conninfo, autocommit=True)

        def now():
            return datetime.now(UTC)

        encode_data = Jsonb

    def row(event, at):
        occurred = event.get("occurred_at") or at
        return (
            "reference", event["event_key"], event["kind"], event["learner"], event.get("course"),
            event.get("item"), event.get("score"), occurred, at, encode_data(event.get("data") or {}),
            "pending", 0, at,
        )

    @app.post("/api/v1/events")
    def events():
        body = request.get_json()
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = connect()
        at = now()
        cursor = connection.cursor()
        if "events" not in body:
            found = cursor.execute(insert, row(body, at)).fetchone()
            return jsonify(id=found[0], status="accepted"), 202
        cursor.execute(begin)
        ids = [cursor.execute(insert, row(event, at)).fetchone()[0] for event in body["events"]]
        cursor.execute("COMMIT")
        results = [{"id": i, "status": "accepted"} for i in ids]
        return jsonify(results=results, accepted=len(ids), duplicates=0), 202

    return app
"""

# The same gunicorn application class as ``badge-bridge serve`` (worker class, keep-alive, timeouts,
# logging, uvicorn settings, WsgiOnAsgi with the same threads and bounds), serving the reference app.
_REFERENCE_SERVER = """\
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bridge.asgi import WsgiOnAsgi
from bridge.server import BridgeServer, prepare_metrics_dir
from bridge.settings import load_settings

import reference_app


class ReferenceServer(BridgeServer):
    def load(self):
        server = self.settings.server
        return WsgiOnAsgi(
            reference_app.make_app(sys.argv[2]),
            threads=server.threads,
            max_body_bytes=server.max_request_bytes,
            body_timeout_seconds=server.body_timeout_seconds,
        )


settings = load_settings(sys.argv[1])
prepare_metrics_dir(settings.data_dir)
ReferenceServer(settings, embedded=False).run()
"""

# A dynamic request() makes wrk build every request in Lua, so each event carries its own event_key. The
# per-status counts need response(), which costs wrk a little CPU, but the same for both targets.
_WRK_SCRIPT = """\
local threads = {}
local next_id = 0

-- Globals on purpose: setup() runs in wrk's main Lua state and hands each thread its id with
-- thread:set(); done() reads each thread's counters back with thread:get().
function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

function init(args)
  run = args[1]
  platform = args[3]
  batch = tonumber(args[4])
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  sent = 0
  statuses = {}
end

local function event(n, j)
  return string.format(
    '{"platform":"%s","event_key":"%s-%d-%d-%d","kind":"login","learner":"%d"}',
    platform, run, thread_id, n, j, (n * batch + j) % 1000)
end

function request()
  sent = sent + 1
  local body
  if batch == 1 then
    body = event(sent, 0)
  else
    local events = {}
    for j = 1, batch do
      events[j] = event(sent, j)
    end
    body = '{"events":[' .. table.concat(events, ",") .. ']}'
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total_sent = 0
  local counts = {}
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    for status, n in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%s":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"sent":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"p50_us":%.0f,"p99_us":%.0f}\\n',
    summary.requests, summary.duration, total_sent, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class WrkRun:
    target: str
    requests: int
    seconds: float
    sent: int
    statuses: dict[int, int]
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu_seconds: float = 0.0  # the server's processes (gunicorn master and workers), user + system

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds * 1e6 / max(1, self.requests)

    @property
    def in_flight(self) -> int:
        """Requests wrk sent but stopped waiting for when its time was up."""
        return max(0, self.sent - sum(self.statuses.values()))

    @property
    def unexpected(self) -> dict[str, int]:
        bad = {f"HTTP {s}": n for s, n in sorted(self.statuses.items()) if s != 202}
        bad.update({f"socket {k}": n for k, n in self.errors.items() if n})
        return bad


@dataclass
class Target:
    name: str
    url: str
    platform: str
    server: Server
    runs: list[WrkRun] = field(default_factory=list)  # measured rounds only
    warmup: list[WrkRun] = field(default_factory=list)

    @property
    def median_rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def median_cpu_us(self) -> float:
        return statistics.median(r.cpu_us_per_request for r in self.runs)


class Server:
    """A gunicorn master in its own session: Ctrl-C reaches only this script, which then stops it."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means gunicorn is serving
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"{self.name} did not answer {url} within {timeout:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the master and its workers so far, from /proc (Linux)."""
        pids = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _stat_fields(entry.name)[1:2] == [str(self.process.pid)]:
                pids.append(int(entry.name))
        ticks = 0
        for pid in pids:
            fields = _stat_fields(str(pid))
            if len(fields) > 12:
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn's graceful shutdown: requests in hand are finished
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the session is the master's and its workers
                self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(no output)"


def _stat_fields(pid: str) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ..., utime (11), stime (12)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env() -> dict[str, str]:
    # BRIDGE_* variables override the config file; the benchmark must run the settings it wrote.
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


def badge_bridge() -> str:
    beside = Path(sys.executable).parent / "badge-bridge"
    found = str(beside) if beside.exists() else shutil.which("badge-bridge")
    if found is None:
        raise BenchError("badge-bridge not found: install the project (.venv/bin/pip install -e '.[test]')")
    return found


def run_cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [badge_bridge(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"badge-bridge {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database next to the one ``admin_url`` names; dropped afterwards."""
    import psycopg
    from sqlalchemy import make_url

    url = make_url(admin_url)
    if not url.drivername.startswith("postgresql"):
        raise BenchError("--database-url: expected a postgresql+psycopg:// URL")
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bridge_bench_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_events(database_url: str) -> dict[str, int]:
    """Events stored, by platform (the real app's and the reference's)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT platform, count(*) FROM events GROUP BY platform"))
            return {platform: int(n) for platform, n in rows}
    finally:
        engine.dispose()


def run_wrk(
    target: Target, label: str, key: str, script: Path, args: argparse.Namespace, seconds: int, batch: int
) -> WrkRun:
    command = [
        "wrk",
        f"--threads={args.wrk_threads}",
        f"--connections={args.connections}",
        f"--duration={seconds}s",
        "--timeout=10s",  # a batch on a busy 2-core machine may take longer than wrk's default 2 s
        f"--script={script}",
        target.url,
        "--",
        label,
        key,
        target.platform,
        str(batch),
    ]
    cpu_before = target.server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu_after = target.server.cpu_seconds()
    found = re.search(r"^BENCH-RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise BenchError(f"wrk failed ({done.returncode}) against {target.name}:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(found.group(1))
    return WrkRun(
        target=target.name,
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        sent=result["sent"],
        statuses={int(s): n for s, n in result["statuses"].items()},
        errors=result["errors"],
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        cpu_seconds=cpu_after - cpu_before,
    )


def write_config(data_dir: Path, args: argparse.Namespace, database_url: str | None) -> tuple[Path, int]:
    data_dir.mkdir()
    port = free_port()
    config = data_dir / "config.toml"
    database_line = f"database_url = {json.dumps(database_url)}\n" if database_url else ""
    config.write_text(
        _CONFIG.format(
            data_dir=json.dumps(data_dir.as_posix()),
            database_line=database_line,
            bind=json.dumps(f"127.0.0.1:{port}"),
            workers=args.workers,
            threads=args.threads,
            platform=PLATFORM,
        ),
        encoding="utf-8",
    )
    return config, port


def start_real(
    workdir: Path, args: argparse.Namespace, database_url: str | None, stack: ExitStack
) -> tuple[Target, str, str]:
    data_dir = workdir / "real"
    config, port = write_config(data_dir, args, database_url)
    if database_url:
        run_cli(config, "db", "upgrade")  # only the embedded SQLite default upgrades itself
    key = run_cli(config, "api-keys", "create", "bench", "--scope", "write").splitlines()[-1]
    command = [badge_bridge(), "--config", str(config), "serve", "--no-embedded-worker"]
    server = Server("real app", command, workdir / "real.log", clean_env())
    stack.callback(server.stop)
    server.wait_ready(f"http://127.0.0.1:{port}/healthz")
    effective_url = database_url or f"sqlite:///{data_dir / 'bridge.sqlite3'}"
    return Target("real", f"http://127.0.0.1:{port}/api/v1/events", PLATFORM, server), key, effective_url


def start_reference(workdir: Path, args: argparse.Namespace, database_url: str, stack: ExitStack) -> Target:
    """The hand-written insert, into the real app's database (its events table), under the same server."""
    (workdir / "reference_app.py").write_text(_REFERENCE_APP, encoding="utf-8")
    (workdir / "reference_server.py").write_text(_REFERENCE_SERVER, encoding="utf-8")
    config, port = write_config(workdir / "reference", args, database_url)
    env = clean_env()
    project = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([project, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else project
    command = [sys.executable, str(workdir / "reference_server.py"), str(config), database_url]
    server = Server("reference", command, workdir / "reference.log", env)
    stack.callback(server.stop)
    server.wait_ready(f"http://127.0.0.1:{port}/")
    return Target("ref", f"http://127.0.0.1:{port}/api/v1/events", REFERENCE_PLATFORM, server)


def measure(
    targets: tuple[Target, Target], key: str, script: Path, args: argparse.Namespace, mode: str, batch: int
) -> None:
    for target in targets:
        print(f"{mode}: warm-up {target.name}: {args.warmup} s", flush=True)
        run = run_wrk(target, f"{mode}-w-{target.name}", key, script, args, args.warmup, batch)
        target.warmup.append(run)
    for number in range(1, args.rounds + 1):
        # Alternate who goes first, so neither always runs right after the other.
        order = targets if number % 2 else targets[::-1]
        for target in order:
            run = run_wrk(target, f"{mode}-r{number}-{target.name}", key, script, args, args.duration, batch)
            target.runs.append(run)
            print(
                f"{mode}: round {number} {target.name}: {run.rps * batch:.0f} events/s, "
                f"server CPU {run.cpu_us_per_request:.0f} us/request",
                flush=True,
            )


def report_mode(ref: Target, real: Target, batch: int) -> None:
    unit = "events/s" if batch > 1 else "req/s"
    header = (
        f"  {'target':<7}{'median ' + unit:>16}   {'rounds':<24}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU us/req':>12}{'CPU us/event':>14}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for target in (ref, real):
        rounds = " / ".join(f"{r.rps * batch:.0f}" for r in target.runs)
        p50 = statistics.median(r.p50_ms for r in target.runs)
        p99 = statistics.median(r.p99_ms for r in target.runs)
        cpu = target.median_cpu_us
        print(
            f"  {target.name:<7}{target.median_rps * batch:>16.1f}   {rounds:<24}{p50:>8.2f}{p99:>8.2f}"
            f"{cpu:>12.0f}{cpu / batch:>14.1f}"
        )
    ratio = real.median_rps / ref.median_rps
    cpu_ratio = real.median_cpu_us / ref.median_cpu_us
    print("  (ref: the hand-written insert; p50/p99 and CPU: medians over the rounds; CPU of all gunicorn")
    print("   processes, user + system, from /proc before and after each round)")
    if batch == 1:
        verdict = "OK" if ratio >= AIM else "MISS"
        print(
            f"  ratio real/ref: {ratio:.2f}x req/s   aim >= {AIM:.2f}   {verdict};   "
            f"CPU real/ref {cpu_ratio:.2f}x"
        )
    else:
        events = real.median_rps * batch
        verdict = "OK" if events >= BATCH_AIM else "MISS"
        print(
            f"  real: {events:.0f} events/s in batches of {batch}   aim >= {BATCH_AIM:,}   {verdict};   "
            f"ratio real/ref {ratio:.2f}x, CPU real/ref {cpu_ratio:.2f}x"
        )


def check(targets: dict[str, tuple[Target, Target, int]], stored: dict[str, int]) -> bool:
    clean = True
    for mode, (ref, real, _batch) in targets.items():
        for target in (ref, real):
            bad: dict[str, int] = {}
            for run in target.warmup + target.runs:
                for what, n in run.unexpected.items():
                    bad[what] = bad.get(what, 0) + n
            if bad:
                clean = False
                print(f"  {mode} {target.name}: responses other than 202: {bad}")
    for index, name in ((0, "ref"), (1, "real")):
        platform = REFERENCE_PLATFORM if index == 0 else PLATFORM
        accepted = cut_off = 0
        for ref_real_batch in targets.values():
            target, batch = ref_real_batch[index], ref_real_batch[2]
            runs = target.warmup + target.runs
            accepted += sum(r.statuses.get(202, 0) for r in runs) * batch
            cut_off += sum(r.in_flight for r in runs) * batch
        found = stored.get(platform, 0)
        # wrk stops on a clock and drops the requests in flight; the server may still have stored them.
        consistent = accepted <= found <= accepted + cut_off
        clean = clean and consistent
        print(
            f"  {name}: events stored {found}, accepted by 202 responses {accepted} (warm-up included); "
            f"{found - accepted} stored from the {cut_off} events of requests wrk cut off at its time: "
            f"{'consistent' if consistent else 'INCONSISTENT'}"
        )
    if clean:
        print("  every response: 202")
    return clean


def benchmark(args: argparse.Namespace, workdir: Path) -> bool:
    script = workdir / "events.lua"
    script.write_text(_WRK_SCRIPT, encoding="utf-8")
    load_before = os.getloadavg()[0]
    gauges = [machine_gauge()]
    modes = {"single": 1, "batch": args.batch_size}
    if args.mode != "both":
        modes = {args.mode: modes[args.mode]}
    measured: dict[str, tuple[Target, Target, int]] = {}
    with ExitStack() as database:
        database_url: str | None = None
        if args.database_url:
            database_url = database.enter_context(postgres_database(args.database_url))
        with ExitStack() as servers:
            print("starting gunicorn: the real app, then the reference on its database ...", flush=True)
            real, key, effective_url = start_real(workdir, args, database_url, servers)
            ref = start_reference(workdir, args, effective_url, servers)
            for mode, batch in modes.items():
                pair = (
                    Target(ref.name, ref.url, ref.platform, ref.server),
                    Target(real.name, real.url, real.platform, real.server),
                )
                measure(pair, key, script, args, mode, batch)
                measured[mode] = (*pair, batch)
        # Counted once the servers have stopped, so the requests they still had in hand are stored too;
        # and before a PostgreSQL database is dropped.
        stored = count_events(effective_url)
    gauges.append(machine_gauge())
    where = "PostgreSQL (fresh database)" if database_url else "SQLite (embedded default)"
    print()
    print("LMS Badge Bridge ingest benchmark: POST /api/v1/events, the real app beside a hand-written insert")
    print(
        f"  both: gunicorn + uvicorn workers (bridge.server), {args.workers} workers x {args.threads} "
        f"threads, 127.0.0.1; wrk {args.wrk_threads} threads, {args.connections} connections; "
        f"{args.warmup} s warm-up, then {args.rounds} interleaved rounds of {args.duration} s per target"
    )
    print(f"  database: {where}, {_hide_password(effective_url)}; the same events table for both")
    print("  real app: embedded worker DISABLED (ingest only); API key auth, rate limiter (budget above the")
    print("  load), one JSON log line per request (log_level INFO) into a file, Prometheus metrics")
    # Other work on a shared machine skews both targets; the load before the start shows how much.
    print(
        f"  machine: {os.cpu_count()} CPUs, 1-minute load average {load_before:.2f} before the start; "
        f"gauge {gauges[0]:.0f} ms before, {gauges[1]:.0f} ms after (fixed Python work, lower is faster)"
    )
    for mode, (ref, real, batch) in measured.items():
        print()
        print(f"  {mode}: {'one event' if batch == 1 else f'{batch} events'} per request")
        report_mode(ref, real, batch)
    print()
    clean = check(measured, stored)
    if not clean:
        print(f"  server logs: {workdir} (kept)")
    return clean


def _hide_password(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="run on this PostgreSQL (a fresh database next to it)")
    parser.add_argument("--mode", choices=("single", "batch", "both"), default="both")
    parser.add_argument("--batch-size", type=_positive, default=100, help="events per request in batch mode")
    parser.add_argument("--workers", type=_positive, default=2, help="gunicorn workers, both targets")
    parser.add_argument("--threads", type=_positive, default=4, help="app threads per worker")
    parser.add_argument("--wrk-threads", type=_positive, default=2)
    parser.add_argument("--connections", type=_positive, default=16)
    parser.add_argument("--warmup", type=_positive, default=2, help="seconds per target")
    parser.add_argument("--duration", type=_positive, default=5, help="seconds per round and target")
    parser.add_argument("--rounds", type=_positive, default=3)
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url: expected a postgresql+psycopg:// URL (SQLite is the default)")

    if shutil.which("wrk") is None:
        print("wrk not found: install it: apt-get install -y wrk", file=sys.stderr)
        return 2
    # A plain `kill` should clean up like Ctrl-C does: unwind, stop the servers, drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    keep = False
    try:
        clean = benchmark(args, workdir)
        keep = not clean  # the server logs explain what went wrong
        return 0 if clean else 1
    except BenchError as error:
        keep = True
        print(f"error: {error}\n(server logs and config kept in {workdir})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
