"""Faults for end-to-end tests: a whole server killed, a throwaway PostgreSQL crashed, and the LMS that
keeps posting through them, retrying as a real one retries a webhook."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import requests

from tests.e2e.processes import wait_until

# --- Processes --------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (gunicorn's workers below its master), from /proc."""
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # gone already
        return []
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def alive(pid: int) -> bool:
    """Running, not gone and not a zombie (an orphan's zombie waits for whoever reaps it here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_server_hard(master: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL a gunicorn master and then its workers, as a machine losing power would; returns the
    workers' pids, all gone when this returns. The master first: dead, it cannot start new workers."""
    workers = descendants(master.pid)
    assert workers, "the server has no worker processes to kill"
    os.kill(master.pid, signal.SIGKILL)
    for pid in workers:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    master.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in workers), 10, "the killed server's workers to die")
    return workers


# --- The LMS ----------------------------------------------------------------------------------------

# Payload sizes the LMS sends in turn: mostly single events, some batches.
SEND_SIZES = (1, 1, 1, 1, 1, 5, 10)
# Waits between retries: short, so a test stays short; a 503's Retry-After caps the wait, never extends it.
RETRY_PAUSE_SECONDS = 0.1
MAX_RETRY_AFTER_WAIT_SECONDS = 1.0


@dataclass
class Deliveries:
    """What one LMS connection saw, send after send."""

    delivered: int = 0  # events answered 2xx
    answers: Counter[int] = field(default_factory=Counter)  # status -> how many
    connection_errors: int = 0  # nobody listening, or the connection cut
    timeouts: int = 0  # no answer within the request timeout: a hang
    unavailable: list[requests.Response] = field(default_factory=list)  # the 503s, to inspect
    unexpected: list[str] = field(default_factory=list)
    failure: str | None = None  # the thread itself broke, or ran out of time


class RetryingLms:
    """Posts ``events`` to ``POST /api/v1/events`` over ``connections`` keep-alive connections side by side,
    singly and in batches, each send repeated with the same event keys until it is answered 2xx, as an
    LMS retries a webhook: after a connection error, a timeout or a 503 (waiting as its Retry-After
    says, capped), or any other answer (recorded as unexpected)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        events: Sequence[dict[str, Any]],
        *,
        connections: int = 4,
        pause_seconds: float = 0.05,
        request_timeout: float = 20.0,
        deadline_seconds: float = 120.0,
    ) -> None:
        self.url = f"{base_url}/api/v1/events"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.pause_seconds = pause_seconds
        self.request_timeout = request_timeout
        self.deadline = time.monotonic() + deadline_seconds
        share = -(-len(events) // connections)
        self.sends = [_sends(events[start : start + share]) for start in range(0, len(events), share)]
        self.seen = [Deliveries() for _ in self.sends]
        self.threads = [
            threading.Thread(target=self._post_all, args=(sends, seen), name=f"lms-{n}", daemon=True)
            for n, (sends, seen) in enumerate(zip(self.sends, self.seen, strict=True))
        ]

    def __enter__(self) -> RetryingLms:
        """Starts posting, on every connection at once."""
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.deadline = 0  # on an early exit, the threads give up at their next retry
        for thread in self.threads:
            thread.join(timeout=self.request_timeout + 5)

    @property
    def delivered(self) -> int:
        return sum(seen.delivered for seen in self.seen)

    @property
    def finished(self) -> bool:
        return not any(thread.is_alive() for thread in self.threads)

    def wait(self, timeout: float) -> None:
        wait_until(lambda: self.finished, timeout, "the LMS to deliver every event")

    def count(self, name: str) -> int:
        """``connection_errors`` or ``timeouts``, over every connection."""
        return sum(getattr(seen, name) for seen in self.seen)

    @property
    def answers(self) -> Counter[int]:
        return sum((seen.answers for seen in self.seen), Counter())

    @property
    def unavailable(self) -> list[requests.Response]:
        return [response for seen in self.seen for response in seen.unavailable]

    @property
    def unexpected(self) -> list[str]:
        return [answer for seen in self.seen for answer in seen.unexpected]

    @property
    def failures(self) -> list[str]:
        return [seen.failure for seen in self.seen if seen.failure is not None]

    def _post_all(self, sends: list[dict[str, Any]], seen: Deliveries) -> None:
        try:
            with requests.Session() as session:
                for body in sends:
                    self._deliver(session, body, seen)
                    time.sleep(self.pause_seconds)
        except Exception as error:  # reported by the test, not lost in a thread
            seen.failure = f"{type(error).__name__}: {error}"

    def _deliver(self, session: requests.Session, body: dict[str, Any], seen: Deliveries) -> None:
        count = len(body["events"]) if "events" in body else 1
        while True:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"gave up on a send of {count} event(s) at the deadline")
            try:
                response = session.post(
                    self.url, json=body, headers=self.headers, timeout=self.request_timeout
                )
            except requests.Timeout:  # before ConnectionError: a connect timeout is both
                seen.timeouts += 1
                continue
            except requests.ConnectionError:
                seen.connection_errors += 1
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            seen.answers[response.status_code] += 1
            if response.status_code in (200, 202):
                answered = response.json()
                results = answered["results"] if "events" in body else [answered]
                assert len(results) == count and all(
                    r["status"] in ("accepted", "duplicate") for r in results
                )
                seen.delivered += count
                return
            if response.status_code == 503:
                seen.unavailable.append(response)
                wait = float(response.headers.get("Retry-After", RETRY_PAUSE_SECONDS))
                time.sleep(min(wait, MAX_RETRY_AFTER_WAIT_SECONDS))
                continue
            seen.unexpected.append(f"{response.status_code}: {response.text[:300]}")
            time.sleep(RETRY_PAUSE_SECONDS)


def _sends(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` cut into the bodies an LMS posts: one event alone, or ``{"events": [...]}``."""
    sends: list[dict[str, Any]] = []
    start, sizes = 0, cycle(SEND_SIZES)
    while start < len(events):
        size = next(sizes)
        chunk = list(events[start : start + size])
        sends.append(chunk[0] if size == 1 else {"events": chunk})
        start += size
    return sends


# --- A throwaway PostgreSQL -------------------------------------------------------------------------


def postgres_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``; None when there is none."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).parent] if on_path else []
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(
        debian, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True
    )
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on 127.0.0.1:``port``, trust
    authentication, no fsync. Run as the ``postgres`` user when we are root (the server refuses root)."""

    def __init__(self, binaries: Path, port: int) -> None:
        self.binaries = binaries
        self.port = port
        self.home = Path(tempfile.mkdtemp(prefix="bridge-pg-"))  # not under pytest's root-only tmp dir
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")  # KeyError: no such user, said by the caller
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.home}'",
            "fsync": "off",
            "max_connections": "100",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop at once, as a crash does: no checkpoint, clients cut; the next start recovers from WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop", check=False
            )
        shutil.rmtree(self.home, ignore_errors=True)

    def log_tail(self) -> str:
        with suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [*self._as_postgres, str(self.binaries / program), *args]
        done = subprocess.run(command, capture_output=True, timeout=120, check=False, cwd=self.home)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}\n"
                f"{self.log_tail()}"
            )


@contextmanager
def throwaway_postgres(binaries: Path, port: int) -> Iterator[ThrowawayPostgres]:
    """A started throwaway cluster; stopped and removed when the block ends, whatever happened in it."""
    cluster = ThrowawayPostgres(binaries, port)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
