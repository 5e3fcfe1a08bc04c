"""``bridge.asgi.WsgiOnAsgi``: the WSGI app behind the event loop, called with ASGI messages as uvicorn
sends them. (The server itself, with real sockets, is tested in test_server_slow_clients.py.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from bridge.asgi import CLIENT_GONE, WsgiOnAsgi

T = TypeVar("T")


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own: the browser tests' Playwright keeps a loop in this one."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as error:  # handed to the test's thread
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


Environ = dict[str, Any]


def scope(
    method: str = "GET", raw_path: bytes = b"/", headers: list[tuple[bytes, bytes]] | None = None
) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": b"a=1",
        "headers": headers or [],
        "server": ("127.0.0.1", 8443),
        "client": ("192.0.2.7", 50123),
    }


class Client:
    """The server's side of one request: body messages to hand out, then a disconnect when told."""

    def __init__(self, *bodies: bytes) -> None:
        self._bodies = list(bodies) or [b""]
        self.leave = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self._bodies:
            body = self._bodies.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(self._bodies)}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def adapter(app: Callable[..., Any], max_body_bytes: int = 100) -> WsgiOnAsgi:
    return WsgiOnAsgi(app, threads=2, max_body_bytes=max_body_bytes, body_timeout_seconds=5)


def echo(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def test_the_app_sees_the_environ_gunicorn_would_build() -> None:
    seen: Environ = {}

    def app(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
        seen.update(environ)
        return echo(environ, start_response)

    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"accept", b"text/html"),
        (b"accept", b"application/json"),
        (b"x_forwarded_for", b"203.0.113.9"),  # underscores: dropped, or it would pass for X-Forwarded-For
    ]
    client = Client(b"{}")
    run_loop(adapter(app)(scope("POST", b"/caf%C3%A9/a%20b", headers), client.receive, client.send))
    assert (client.status, client.body) == (200, b"{}")
    assert seen["PATH_INFO"] == "/café/a b".encode().decode("latin-1")  # WSGI's bytes-as-latin-1
    assert (seen["QUERY_STRING"], seen["RAW_URI"]) == ("a=1", "/caf%C3%A9/a%20b?a=1")
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"], seen["SERVER_PORT"]) == (
        "192.0.2.7",
        "https",
        "8443",
    )
    assert (seen["CONTENT_TYPE"], seen["CONTENT_LENGTH"]) == ("application/json", "2")
    assert seen["HTTP_ACCEPT"] == "text/html,application/json"
    assert "HTTP_X_FORWARDED_FOR" not in seen


def test_a_body_sent_in_pieces_reaches_the_app_whole() -> None:
    client = Client(b'{"a"', b": 1", b"}")
    run_loop(adapter(echo)(scope("POST"), client.receive, client.send))
    assert (client.status, client.body) == (200, b'{"a": 1}')


def test_a_body_over_the_limit_is_refused_without_running_the_app() -> None:
    calls: list[Environ] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
        calls.append(environ)
        return echo(environ, start_response)

    piece = b"x" * 60
    client = Client(piece, piece)  # no Content-Length: the limit is found while reading
    run_loop(adapter(app)(scope("POST"), client.receive, client.send))
    assert client.status == 413 and calls == []
    assert (b"connection", b"close") in client.sent[0]["headers"]


def test_a_stream_ends_and_is_closed_when_its_client_leaves() -> None:
    closed = threading.Event()

    def stream(environ: Environ, start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        try:
            while not environ[CLIENT_GONE]():
                yield b"data: tick\n\n"
                threading.Event().wait(0.01)
        finally:
            closed.set()

    async def run() -> Client:
        client = Client()
        serving = asyncio.create_task(adapter(stream)(scope(), client.receive, client.send))
        while len(client.sent) < 4:  # the start and a few events
            await asyncio.sleep(0.01)
        client.leave.set()
        await asyncio.wait_for(serving, 5)
        return client

    client = run_loop(run())
    assert client.status == 200 and client.body.startswith(b"data: tick\n\n")
    assert closed.wait(5)
