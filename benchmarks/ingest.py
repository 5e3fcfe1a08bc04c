"""Ingest benchmark: ``POST /api/v1/events`` of the real app against a bare Flask endpoint.

Both run under gunicorn with the same settings (gthread, same workers and threads, 127.0.0.1); ``wrk``
posts one new event per request (a unique ``event_key`` each time). Rounds alternate between the two
targets so that noise on a small shared machine hits both alike. The real app runs without its
embedded worker, so only ingest is measured.

    .venv/bin/python benchmarks/ingest.py
    .venv/bin/python benchmarks/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Exit status: 0 when the run was clean, whether or not the ratio reaches the aim (this is a benchmark, not
a test); 1 when responses or stored events were wrong; 2 when it could not run (wrk missing, a server
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

AIM = 0.80
REFERENCE = "(a minimal hand-written SQLite insert reached 0.91x here)"
PLATFORM = "bench"

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

[[platforms]]
id = "{platform}"
kind = "custom"
name = "Benchmark"
"""

_BARE_APP = """\
from flask import Flask, jsonify, request

app = Flask("bare")


@app.post("/api/v1/events")
def events():
    request.get_json()
    return jsonify(id=1, status="accepted"), 202
"""

# A dynamic request() makes wrk build every request in Lua, so each carries its own event_key. The
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
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  sent = 0
  statuses = {}
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"platform":"%s","event_key":"%s-%d-%d","kind":"login","learner":"%d"}',
    "PLATFORM", run, thread_id, sent, sent % 1000)
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
""".replace("PLATFORM", PLATFORM)


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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

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
    runs: list[WrkRun] = field(default_factory=list)  # measured rounds only
    warmup: list[WrkRun] = field(default_factory=list)

    @property
    def median_rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)


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


def count_events(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


def run_wrk(
    target: Target, label: str, key: str, script: Path, args: argparse.Namespace, seconds: int
) -> WrkRun:
    command = [
        "wrk",
        f"--threads={args.wrk_threads}",
        f"--connections={args.connections}",
        f"--duration={seconds}s",
        f"--script={script}",
        target.url,
        "--",
        label,
        key,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
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
    )


def start_real(
    workdir: Path, args: argparse.Namespace, database_url: str | None, stack: ExitStack
) -> tuple[Target, str, str]:
    data_dir = workdir / "real"
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
    if database_url:
        run_cli(config, "db", "upgrade")  # only the embedded SQLite default upgrades itself
    key = run_cli(config, "api-keys", "create", "bench").splitlines()[-1]
    server = Server(
        "real app",
        [
            badge_bridge(),
            "--config",
            str(config),
            "serve",
            "--no-embedded-worker",
            f"--workers={args.workers}",
        ],
        workdir / "real.log",
        clean_env(),
    )
    stack.callback(server.stop)
    server.wait_ready(f"http://127.0.0.1:{port}/healthz")
    effective_url = database_url or f"sqlite:///{data_dir / 'bridge.sqlite3'}"
    return Target("real", f"http://127.0.0.1:{port}/api/v1/events"), key, effective_url


def start_bare(workdir: Path, args: argparse.Namespace, stack: ExitStack) -> Target:
    (workdir / "bare_app.py").write_text(_BARE_APP, encoding="utf-8")
    port = free_port()
    # The settings BridgeServer.load_config gives the real app, as command-line options.
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class=gthread",
        f"--workers={args.workers}",
        f"--threads={args.threads}",
        f"--bind=127.0.0.1:{port}",
        "--timeout=60",
        "--graceful-timeout=20",
        f"--control-socket={workdir / 'bare.ctl'}",
        f"--chdir={workdir}",
        "bare_app:app",
    ]
    server = Server("bare app", command, workdir / "bare.log", clean_env())
    stack.callback(server.stop)
    server.wait_ready(f"http://127.0.0.1:{port}/")
    return Target("bare", f"http://127.0.0.1:{port}/api/v1/events")


def report(
    bare: Target,
    real: Target,
    stored: int,
    args: argparse.Namespace,
    database: str,
    load_before: float,
    workdir: Path,
) -> bool:
    print()
    print("LMS Badge Bridge ingest benchmark: POST /api/v1/events, one new event per request")
    print(
        f"  gunicorn gthread, {args.workers} workers x {args.threads} threads, 127.0.0.1; "
        f"wrk {args.wrk_threads} threads, {args.connections} connections; "
        f"{args.warmup} s warm-up, then {args.rounds} interleaved rounds of {args.duration} s per target"
    )
    print(f"  real app database: {database}")
    print("  real app embedded worker: DISABLED (--no-embedded-worker), so this measures ingest only")
    print("  real app request log: one JSON line per request (log_level INFO, as deployed) into a file")
    # Other work on a shared machine skews both targets; the load before the start shows how much.
    print(f"  machine: {os.cpu_count()} CPUs, 1-minute load average {load_before:.2f} before the start")
    print()
    header = f"  {'target':<7}{'median req/s':>13}   {'rounds req/s':<28}{'p50 ms':>8}{'p99 ms':>8}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for target in (bare, real):
        rounds = " / ".join(f"{r.rps:.0f}" for r in target.runs)
        p50 = statistics.median(r.p50_ms for r in target.runs)
        p99 = statistics.median(r.p99_ms for r in target.runs)
        print(f"  {target.name:<7}{target.median_rps:>13.1f}   {rounds:<28}{p50:>8.2f}{p99:>8.2f}")
    print("  (p50/p99: medians over the rounds of wrk's per-round percentiles)")
    ratio = real.median_rps / bare.median_rps
    verdict = "OK" if ratio >= AIM else "MISS"
    print()
    print(f"  ratio real/bare: {ratio:.2f}x   aim >= {AIM:.2f}   {verdict}")
    print(f"  {REFERENCE}")
    print()

    clean = True
    for target in (bare, real):
        bad: dict[str, int] = {}
        for run in target.warmup + target.runs:
            for what, n in run.unexpected.items():
                bad[what] = bad.get(what, 0) + n
        if bad:
            clean = False
            print(f"  {target.name}: responses other than 202: {bad}")
        else:
            print(f"  {target.name}: non-2xx/other responses: 0")
    real_runs = real.warmup + real.runs
    accepted = sum(r.statuses.get(202, 0) for r in real_runs)
    cut_off = sum(r.in_flight for r in real_runs)
    # wrk stops on a clock and drops the requests in flight; the server may still have stored them.
    consistent = accepted <= stored <= accepted + cut_off
    clean = clean and consistent
    print(
        f"  real: events stored {stored}, 202 responses {accepted} (warm-up included); "
        f"{stored - accepted} stored from the {cut_off} requests wrk cut off when its time was up: "
        f"{'consistent' if consistent else 'INCONSISTENT'}"
    )
    if not clean:
        print(f"  server logs: {workdir} (kept)")
    return clean


def benchmark(args: argparse.Namespace, workdir: Path) -> bool:
    script = workdir / "events.lua"
    script.write_text(_WRK_SCRIPT, encoding="utf-8")
    load_before = os.getloadavg()[0]
    with ExitStack() as database:
        database_url: str | None = None
        if args.database_url:
            database_url = database.enter_context(postgres_database(args.database_url))
        with ExitStack() as servers:
            print("starting gunicorn: the bare Flask endpoint and the real app ...", flush=True)
            bare = start_bare(workdir, args, servers)
            real, key, effective_url = start_real(workdir, args, database_url, servers)
            for target in (bare, real):
                print(f"warm-up {target.name}: {args.warmup} s", flush=True)
                target.warmup.append(run_wrk(target, f"w-{target.name}", key, script, args, args.warmup))
            for number in range(1, args.rounds + 1):
                # Alternate who goes first, so neither always runs right after the other.
                order = (bare, real) if number % 2 else (real, bare)
                for target in order:
                    run = run_wrk(target, f"r{number}-{target.name}", key, script, args, args.duration)
                    target.runs.append(run)
                    print(f"round {number} {target.name}: {run.rps:.0f} req/s", flush=True)
        # Counted once the servers have stopped, so the requests they still had in hand are stored too;
        # and before a PostgreSQL database is dropped.
        stored = count_events(effective_url)
        where = "PostgreSQL (fresh database)" if database_url else "SQLite (embedded default)"
        database_text = f"{where}, {_hide_password(effective_url)}"
        return report(bare, real, stored, args, database_text, load_before, workdir)


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
    parser.add_argument("--database-url", help="run the real app on this PostgreSQL (a fresh database)")
    parser.add_argument("--workers", type=_positive, default=2, help="gunicorn workers, both targets")
    parser.add_argument("--threads", type=_positive, default=4, help="gunicorn threads per worker")
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
