"""Small real HTTP peers on 127.0.0.1 for the channel tests: a threaded ``http.server`` that answers from a
script and keeps every request it got."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering (a slow receiver)


Responder = Callable[[Received], Reply]


@dataclass
class Receiver:
    url: str
    requests: list[Received]


@contextmanager
def serve(respond: Responder) -> Iterator[Receiver]:
    """Run a server answering ``respond(request)``; stop it (releasing slow answers) when the block ends."""
    got: list[Received] = []
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            got.append(request)
            reply = respond(request)
            if reply.delay and stopping.wait(reply.delay):
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # quick shutdown
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", got)
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
