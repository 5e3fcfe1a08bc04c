"""Start-up benchmark: how long the CLI and the service take to start, side by side in one run.

Each target is a fresh process, timed by the wall clock from spawn to exit (or, for the service, to its
first 200 on ``/healthz``):

- gauge: ``python -c pass``, the bare interpreter's start (the machine, not the code);
- ``badge-bridge --version``, ``badge-bridge --help`` and ``badge-bridge events failed --help``: the CLI's
  own start (aim: at most 0.5 s each);
- ``badge-bridge events failed`` on a SQLite data directory made by an earlier run: a typical command
  (settings, database, schema check, badge templates; no aim was set, it is shown for scale);
- ``badge-bridge serve`` on a free 127.0.0.1 port, polled every 10 ms until ``GET /healthz`` answers
  200, then stopped with SIGTERM (aim: at most 1.5 s).

A first command and a first start on a fresh data directory (creating the database, generating keys) are
run once before the rounds, reported, and not counted. Rounds alternate between the targets so that noise
on a shared machine hits all of them; the median counts. Everything runs in a temporary directory (the
working directory too) with the ``BRIDGE_*`` variables of the caller removed.

    .venv/bin/python benchmarks/startup.py                 # about 30 s
    .venv/bin/python benchmarks/startup.py --rounds 9

Exit status: 0 for a clean run, whether or not the aims are met (it is a benchmark, not a test); 2 when a
target fails or the service does not start (its output is printed).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLI_AIM = 0.5
SERVE_AIM = 1.5


class BenchError(Exception):
    pass


@dataclass
class Target:
    name: str
    aim: float | None
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def cli_command() -> list[str]:
    """The console script beside this interpreter, as an operator runs it; else its equivalent."""
    script = Path(sys.executable).parent / "badge-bridge"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from bridge.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_DATA_DIR"] = str(data_dir)
    env["BRIDGE_LOG_LEVEL"] = "WARNING"
    return env


def timed_run(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def timed_serve(cli: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> float:
    """Seconds from spawning ``badge-bridge serve`` to its first 200 on /healthz; then it is stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    log = cwd / "serve.log"
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*cli, "serve", "--bind", f"127.0.0.1:{port}"],
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while True:
                elapsed = time.perf_counter() - started
                if process.poll() is not None:
                    raise BenchError(f"serve exited with {process.returncode}:\n{_tail(log)}")
                if elapsed > timeout:
                    raise BenchError(
                        f"serve did not answer 200 on {url} within {timeout:.0f} s:\n{_tail(log)}"
                    )
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            return time.perf_counter() - started
                except (urllib.error.HTTPError, OSError):
                    pass
                time.sleep(0.01)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the session is the master's and its workers
            process.wait()


def _tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(no output)"


def run(rounds: int) -> int:
    cli = cli_command()
    with tempfile.TemporaryDirectory(prefix="bridge-startup-") as tmp:
        work = Path(tmp)
        env = clean_env(work / "data")
        gauge = Target("python -c pass (gauge)", None)
        version = Target("badge-bridge --version", CLI_AIM)
        help_ = Target("badge-bridge --help", CLI_AIM)
        command_help = Target("badge-bridge events failed --help", CLI_AIM)
        command = Target("badge-bridge events failed", None)
        serve = Target("badge-bridge serve: start to first 200", SERVE_AIM)

        first_command = timed_run([*cli, "events", "failed"], env, work)
        first_serve = timed_serve(cli, env, work)
        steps = [
            (gauge, lambda: timed_run([sys.executable, "-c", "pass"], env, work)),
            (version, lambda: timed_run([*cli, "--version"], env, work)),
            (help_, lambda: timed_run([*cli, "--help"], env, work)),
            (command_help, lambda: timed_run([*cli, "events", "failed", "--help"], env, work)),
            (command, lambda: timed_run([*cli, "events", "failed"], env, work)),
            (serve, lambda: timed_serve(cli, env, work)),
        ]
        for _ in range(rounds):
            for target, measure in steps:
                target.times.append(measure())

    print(f"start-up, median of {rounds} rounds ({' '.join(cli)})")
    print(f"  {'target':42} {'median s':>9} {'x gauge':>8} {'aim s':>6} {'ratio':>6}  result   rounds")
    for target, _ in steps:
        aim = f"{target.aim:.1f}" if target.aim else "-"
        ratio = f"{target.median / target.aim:.2f}" if target.aim else "-"
        result = ("met" if target.median <= target.aim else "MISS") if target.aim else ""
        each = " ".join(f"{t:.2f}" for t in target.times)
        print(
            f"  {target.name:42} {target.median:9.3f} {target.median / gauge.median:8.1f} "
            f"{aim:>6} {ratio:>6}  {result:7}  {each}"
        )
    fresh = f"the first command {first_command:.2f} s, the first serve {first_serve:.2f} s"
    print(f"  not counted, on a fresh data dir: {fresh}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over every target (default 5)")
    args = parser.parse_args()
    try:
        return run(max(1, args.rounds))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
