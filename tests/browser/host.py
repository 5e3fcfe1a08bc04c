"""The LMS side of a browser test: a course page served over HTTPS on 127.0.0.1 that opens the tool in an
iframe through a real LTI launch (the iframe starts at the tool's login, as Moodle's course page does)."""

from __future__ import annotations

import html
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode


@dataclass
class HostPage:
    url: str
    frames: dict[str, str] = field(default_factory=dict)  # path -> the iframe's address

    def course(self, name: str, login_url: str, params: dict[str, str]) -> str:
        """A course page at ``/<name>`` framing the tool's login with ``params``; returns its URL."""
        self.frames[f"/{name}"] = f"{login_url}?{urlencode(params)}"
        return f"{self.url}/{name}"


@contextmanager
def host_page(port: int, cert: str, key: str) -> Iterator[HostPage]:
    page = HostPage(f"https://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            frame = page.frames.get(self.path)
            if frame is None:
                self.send_error(404)
                return
            body = (
                '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Course</title></head>'
                f'<body><h1>Open Badges 101</h1><iframe id="tool" title="Badges" src="{html.escape(frame)}" '
                'style="width: 100%; height: 900px; border: 0"></iframe></body></html>'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield page
    finally:
        server.shutdown()
        server.server_close()


def screenshot(page: Any, frame: Any, name: str) -> None:
    """The course page with the whole tool in view, for docs/: `BRIDGE_SCREENSHOTS=docs pytest tests/browser`
    (nothing when that variable is not set)."""
    directory = os.environ.get("BRIDGE_SCREENSHOTS")
    if not directory:
        return
    height = frame.evaluate("document.documentElement.scrollHeight")
    page.evaluate(f"document.getElementById('tool').style.height = '{height + 16}px'")
    page.screenshot(path=f"{directory}/{name}.png", full_page=True)
