"""The Flask (WSGI) app under an asyncio server: a slow client costs a coroutine, never a thread.

``WsgiOnAsgi`` stands between the event loop (uvicorn in a gunicorn worker, see ``bridge.server``) and the
app's WSGI callable:

- The request body is read whole in the event loop before the app runs: at most ``max_body_bytes`` (413,
  from the ``Content-Length`` alone when it says so, before a byte of the body is read) and within
  ``body_timeout_seconds`` (408 after it). A body that trickles in holds no thread, only its bytes so far.
- The app then runs in a pool of ``threads`` threads, one request per thread at a time, as under gthread. A
  response whose ``Content-Length`` its first chunk fills (nearly all of them) costs one trip to the pool
  and back; a streamed one (server-sent events) costs one trip per chunk, so no thread waits while the
  client reads.
- A streamed response stops when the client leaves: its iterator is closed before the next chunk. A
  stream that waits between chunks asks ``environ["bridge.client_gone"]()`` to stop sooner (the learner's
  notification stream does).
- Every trip of one request runs in one ``contextvars.Context``, so Flask's contexts (and
  ``stream_with_context``) see one request wherever its chunks are made.

Why our own adapter rather than a2wsgi's ``WSGIMiddleware``: a2wsgi reads the body through the loop from
the app's thread (a body held back holds that thread), hands every chunk to the loop and waits for it
(a slow reader holds the thread too, and a send that fails leaves the thread blocked on a full queue),
and does not tell a stream that its client left. Buffering the body in front of it still needs most of
this module, and one trip per request instead of four is what keeps ingest as fast as under gthread.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

log = logging.getLogger("bridge.http")
# environ key: a callable answering True once the client has gone (or the server is stopping).
CLIENT_GONE = "bridge.client_gone"


class WsgiOnAsgi:
    def __init__(
        self, app: WsgiApp, *, threads: int, max_body_bytes: int, body_timeout_seconds: float
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websocket here: the server runs with both off
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        environ = wsgi_environ(scope, body)
        gone = threading.Event()
        environ[CLIENT_GONE] = gone.is_set
        call = _Call(self.app, environ)
        loop = asyncio.get_running_loop()
        try:
            chunk = await loop.run_in_executor(self._pool, call.start)
            await send({"type": "http.response.start", "status": call.status, "headers": call.headers})
            if call.finished:
                await send({"type": "http.response.body", "body": chunk})
                return
            await self._stream(call, chunk, receive, send, gone)
        finally:
            gone.set()  # a request cancelled (the server stopping) ends its stream too
            if not call.finished:
                await loop.run_in_executor(self._pool, call.close)

    async def _stream(
        self, call: _Call, chunk: bytes, receive: Receive, send: Send, gone: threading.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            while not gone.is_set():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if call.finished:
                    await send({"type": "http.response.body", "body": b""})
                    return
                chunk = await loop.run_in_executor(self._pool, call.next_chunk)
        finally:
            watcher.cancel()

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when the request was answered here (413, 408) or the client left."""
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send)
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > self.max_body_bytes:
                            await self._too_large(send)
                            return None
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            client = scope.get("client")
            extra = {"path": scope["path"], "client": client[0] if client else None, "received": size}
            log.info("request.body_timeout", extra=extra)
            message = f"the request body did not arrive within {self.body_timeout_seconds:g} seconds"
            await answer_error(send, 408, "request_timeout", message)
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        # The same answer the app gives (bridge.web.errors), before the body is read.
        message = f"request body is larger than the limit of {self.max_body_bytes} bytes"
        await answer_error(send, 413, "payload_too_large", message)


async def answer_error(send: Send, status: int, code: str, message: str) -> None:
    """A JSON error answered by the server itself; the connection closes after it (the body is unread)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _watch_disconnect(receive: Receive, gone: threading.Event) -> None:
    # Once the body has been read, the server's receive() answers only when the client leaves.
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


class _Call:
    """One request's WSGI call, run in pool threads one step at a time, all in one context."""

    def __init__(self, app: WsgiApp, environ: dict[str, Any]) -> None:
        self._app = app
        self._environ = environ
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()  # close() may be sent while a chunk is still being made
        self._iterable: Iterable[bytes] | None = None
        self._iterator: Iterator[bytes] | None = None
        self._written: list[bytes] = []
        self._length: int | None = None
        self._sent = 0
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False
        self.finished = False

    def start(self) -> bytes:
        return self._step(self._start)

    def next_chunk(self) -> bytes:
        return self._step(self._next)

    def close(self) -> None:
        self._step(self._close)

    def _step(self, action: Callable[[], Any]) -> Any:
        with self._lock:
            return self._context.run(action)

    def _start(self) -> bytes:
        self._iterable = self._app(self._environ, self._start_response)
        self._iterator = iter(self._iterable)
        chunk = self._next()
        if not self.started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        return chunk

    def _next(self) -> bytes:
        assert self._iterator is not None
        try:
            chunk = next(self._iterator)
            while not chunk:  # an empty chunk says nothing: make one that does (or end)
                chunk = next(self._iterator)
        except StopIteration:
            chunk = b""
            self._close()
        if self._written:
            chunk = b"".join([*self._written, chunk])
            self._written.clear()
        self._sent += len(chunk)
        if not self.finished and self._length is not None and self._sent >= self._length:
            self._close()  # the whole body declared is here: no second trip to learn the iterator's end
        return chunk

    def _close(self) -> None:
        if not self.finished:
            self.finished = True
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self._sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = int(status[:3])
        self.headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        self._length = None
        for name, value in headers:
            if name.lower() == "content-length" and value.isdigit():
                self._length = int(value)
        self.started = True
        return self._written.append


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """PEP 3333's environ for an ASGI HTTP scope whose body has been read, as gunicorn builds it."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    host, port = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "RAW_URI": target.decode("latin-1"),
        "REQUEST_URI": target.decode("latin-1"),
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name:
            # gunicorn's rule too: X_Forwarded_For must not pass for X-Forwarded-For.
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
