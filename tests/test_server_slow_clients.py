"""``badge-bridge serve`` under slow clients: they cost no thread, and are dropped in bounded time.

Slow clients send their headers or their body a byte at a time; under gthread twenty of them held every
thread and every other request timed out. The bounds here are generous: the machine may be small and busy.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bridge.db.engine import Database
from bridge.services.api_keys import create_key
from tests.conftest import free_port, process_env, write_config
from tests.e2e.processes import BADGE_BRIDGE, http_ready, running, wait_until

pytestmark = pytest.mark.slow

TRICKLE_SECONDS = 10.0
TRICKLE_EVERY = 0.5
PROMPT = 5.0  # seconds a normal request may take while the slow clients trickle (it takes milliseconds)


@dataclass
class Server:
    host: str
    port: int
    key: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {self.key}"
        return session

    def connect(self, first_bytes: bytes) -> socket.socket:
        connection = socket.create_connection((self.host, self.port), timeout=10)
        connection.sendall(first_bytes)
        return connection


@contextmanager
def serving(
    database: Database, database_url: str, tmp_path: Path, server_options: str = ""
) -> Iterator[Server]:
    port = free_port()
    config = write_config(
        tmp_path / "c.toml",
        database_url,
        tmp_path / "data",
        # One worker with few threads: the shape slow clients used to exhaust soonest.
        extra=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 1\nthreads = 4\n{server_options}',
    )
    key = create_key(database, "slow-clients")
    log = tmp_path / "serve.log"
    with running([BADGE_BRIDGE, "serve"], process_env(config), log):
        wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"), 30, "the server to answer")
        yield Server("127.0.0.1", port, key, log)


def slow_headers(server: Server) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {server.host}\r\nX-Slow: ".encode()


def slow_body(server: Server, length: int = 100_000) -> bytes:
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {server.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n["
    ).encode()


@dataclass
class Tricklers:
    """Slow clients, each sending one more byte every ``TRICKLE_EVERY`` seconds, from one thread."""

    connections: list[socket.socket]
    dropped: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        alive = list(self.connections)
        while alive and not self.stop.wait(TRICKLE_EVERY):
            for connection in list(alive):
                try:
                    connection.send(b"a" if connection.fileno() % 2 else b" ")
                except OSError:  # the server closed it
                    alive.remove(connection)
                    self.dropped += 1


def test_fifty_slow_clients_of_each_kind_do_not_keep_a_normal_client_waiting(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    with serving(database, database_url, tmp_path) as server:
        connections = [server.connect(slow_headers(server)) for _ in range(50)]
        connections += [server.connect(slow_body(server)) for _ in range(50)]
        tricklers = Tricklers(connections)
        trickling = threading.Thread(target=tricklers.run)
        trickling.start()
        latencies: list[float] = []
        try:
            session = server.session()
            deadline = time.monotonic() + TRICKLE_SECONDS
            n = 0
            while time.monotonic() < deadline:
                n += 1
                started = time.monotonic()
                if n % 2:
                    answer = session.get(f"{server.base}/healthz", timeout=PROMPT)
                    assert answer.status_code == 200, answer.text
                else:
                    event = {"platform": "demo", "event_key": f"normal-{n}", "kind": "login", "learner": "7"}
                    answer = session.post(f"{server.base}/api/v1/events", json=event, timeout=PROMPT)
                    assert answer.status_code == 202, answer.text
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)
        finally:
            tricklers.stop.set()
            trickling.join()
            for connection in connections:
                connection.close()
        assert len(latencies) >= 20, latencies  # answered all along, not once at the end
        assert max(latencies) < PROMPT
        # The slow clients were there the whole time: within their header and body time limits, none was
        # dropped, so the normal client was served beside them, not after them.
        assert tricklers.dropped == 0


def closed_after(connection: socket.socket, trickle: bool) -> tuple[float, bytes]:
    """Seconds until the server closes the connection (sending a byte every half second if ``trickle``),
    and what it answered before closing."""
    connection.settimeout(TRICKLE_EVERY)
    started = time.monotonic()
    answer = b""
    while time.monotonic() - started < 30:
        try:
            if trickle:
                connection.send(b"a")
            chunk = connection.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            break
        if not chunk:
            break
        answer += chunk
    return time.monotonic() - started, answer


def status_and_json(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def strict_server(database: Database, database_url: str, tmp_path: Path) -> Iterator[Server]:
    options = "header_timeout_seconds = 2\nbody_timeout_seconds = 2\n"
    with serving(database, database_url, tmp_path, options) as server:
        yield server


def test_a_client_that_never_finishes_its_headers_is_dropped(strict_server: Server) -> None:
    seconds, answer = closed_after(strict_server.connect(slow_headers(strict_server)), trickle=True)
    assert 1.5 <= seconds < 10 and answer == b""
    log = [json.loads(line) for line in strict_server.log.read_text().splitlines()]
    assert any(entry["event"] == "request.header_timeout" for entry in log)


def test_a_client_that_connects_and_says_nothing_is_dropped(strict_server: Server) -> None:
    seconds, answer = closed_after(strict_server.connect(b""), trickle=False)
    assert 1.5 <= seconds < 10 and answer == b""


def test_a_body_that_does_not_arrive_in_time_is_answered_408(strict_server: Server) -> None:
    seconds, answer = closed_after(strict_server.connect(slow_body(strict_server)), trickle=True)
    assert 1.5 <= seconds < 10
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"] == {
        "code": "request_timeout",
        "message": "the request body did not arrive within 2 seconds",
    }


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(strict_server: Server) -> None:
    # Headers only: the server answers without waiting for a byte of the body.
    connection = strict_server.connect(slow_body(strict_server, length=2 * 1024 * 1024)[:-1])
    seconds, answer = closed_after(connection, trickle=False)
    status, body = status_and_json(answer)
    assert status == 413 and seconds < 2
    assert body["error"] == {
        "code": "payload_too_large",
        "message": "request body is larger than the limit of 1048576 bytes",
    }


def test_a_chunked_body_over_the_limit_is_refused(strict_server: Server) -> None:
    piece = b"[" + b" " * (256 * 1024)
    answer = strict_server.session().post(
        f"{strict_server.base}/api/v1/events",
        data=iter([piece] * 5),  # no length announced: sent chunked, 1.25 MiB in all
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_a_large_batch_sent_in_pieces_is_stored_whole(strict_server: Server) -> None:
    events = [
        {"platform": "demo", "event_key": f"batch-{i}", "kind": "login", "learner": str(i), "data": {"n": i}}
        for i in range(1000)
    ]
    body = json.dumps({"events": events}).encode()
    pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    answer = strict_server.session().post(
        f"{strict_server.base}/api/v1/events",
        data=iter(pieces),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text[:300]
    assert len(answer.json()["results"]) == 1000
