"""``badge-bridge serve``: the app under gunicorn, with worker and scheduler in-process (embedded mode).

gunicorn stays the process manager (workers, restarts, the control socket, TLS files, the
``post_worker_init``/``worker_exit`` hooks that run the embedded worker, sender and scheduler), but its
workers are an event loop, not a pool of threads that each read a request: uvicorn (httptools) through
uvicorn-worker's ``UvicornWorker``, in front of the Flask app through ``bridge.asgi.WsgiOnAsgi``. Under
gthread every socket that has sent a first byte is read by a pool thread until its request is whole, so
twenty clients sending headers or a body slowly took every thread and every other request waited. Here a
connection costs a coroutine until its request is whole; only then does it take a thread (``server.threads``
per worker), for as long as the app works on it.

Slow clients are dropped after bounded times, all explicit here:

- the request line and headers must be whole within ``server.header_timeout_seconds`` of the connection
  (or of the first byte of a later request on it), and at most ``MAX_HEADER_BYTES``; uvicorn itself has no
  such bound (its keep-alive timer stops at the first byte, and httptools caps no header size);
- the body must arrive within ``server.body_timeout_seconds`` (408) and be at most
  ``server.max_request_bytes`` (413), read before the app runs (``bridge.asgi``);
- an idle kept-alive connection closes after ``KEEPALIVE_SECONDS``; a TLS handshake is bounded by
  asyncio's own 60 s; on stopping, requests still running after ``GRACEFUL_SECONDS`` are cancelled (a
  stream ends), before gunicorn's own ``graceful_timeout``.

It is no slower: ``benchmarks/ingest.py``'s real app (2 workers x 4 threads, 16 connections), gthread and
this side by side in alternating rounds on the 2-core machine, served 1.48x the requests a second on
SQLite (server CPU 776 against 1,101 us a request) and 1.14x on PostgreSQL (1,409 against 1,806 us).

Also considered: gunicorn's gevent worker (monkey-patching would stall every request while the embedded
worker's SQLite calls, which never yield, hold the one OS thread, and psycopg 3 and APScheduler's threads
would become greenlets); gunicorn's own ``asgi`` worker (only in its latest releases, young, and with the
same missing header bound); a buffering proxy such as nginx in front (a good addition, but the service
must not fall over without one).

Metrics: prometheus_client's multiprocess mode writes through memory-mapped files. On a full disk a write
to such a page raises SIGBUS, which killed workers in the middle of requests, so the directory lives in
memory (``/dev/shm``, else ``$XDG_RUNTIME_DIR`` if that is a tmpfs), never in ``data_dir``, one per data
directory, removed when the master exits.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from bridge.settings import Settings

log = logging.getLogger("bridge.server")
KEEPALIVE_SECONDS = 2
MAX_HEADER_BYTES = 64 * 1024
GRACEFUL_SECONDS = 10
GUNICORN_GRACEFUL_SECONDS = 20
_MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_OWNER_FILE = "owner.pid"  # not *.db: prometheus_client reads only those


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap for the request line and headers."""

    header_timeout_seconds = 15.0
    _header_timer: Any = None
    _header_bytes = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._start_header_clock()  # a client that connects and says nothing is dropped too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:
            self._start_header_clock()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_header_clock()
        super().on_headers_complete()

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            # Raised in a parser callback, uvicorn answers 400 and closes the connection.
            raise ValueError(f"request line and headers over {MAX_HEADER_BYTES} bytes")

    def _start_header_clock(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_seconds, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else None
            log.info(
                "request.header_timeout", extra={"client": client, "seconds": self.header_timeout_seconds}
            )
            self.transport.close()


class BridgeUvicornWorker(UvicornWorker):  # type: ignore[misc]
    """UvicornWorker that leaves through gunicorn's ``worker_exit`` hook when told to stop.

    uvicorn hands a stop signal back to the handler it found once it has shut down, and
    UvicornWorker leaves SIG_DFL there: the process died by the signal, before ``worker_exit`` could stop
    the embedded worker, sender and scheduler. Here the signal asks uvicorn to stop (or, before it has
    started, leaves at once) and the worker returns normally."""

    _server: Server | None = None

    def init_signals(self) -> None:
        super().init_signals()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop_signal)

    def _stop_signal(self, _signum: int, _frame: Any) -> None:
        self.alive = False
        if self._server is None:
            sys.exit(0)  # still booting (post_worker_init): unwinds through worker_exit
        self._server.should_exit = True

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        self._server = Server(config=self.config)
        self._install_sigquit_handler()
        await self._server.serve(sockets=self.sockets)
        if not self._server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def worker_class(settings: Settings) -> type[BridgeUvicornWorker]:
    """The gunicorn worker class for these settings: uvicorn with our protocol and its bounds."""
    protocol = type(
        "BridgeHttpProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_seconds": settings.server.header_timeout_seconds},
    )
    config = {
        "loop": "asyncio",
        "http": protocol,
        "ws": "none",
        "lifespan": "off",
        "access_log": False,  # the app logs each request as JSON itself
        # X-Forwarded-* are for bridge.web.proxies.TrustedProxies to judge (server.trusted_proxies).
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        # Past this many connections (or requests) a worker answers 503 instead of running out of files.
        "limit_concurrency": 1000,
    }
    return type("BridgeUvicornWorker", (BridgeUvicornWorker,), {"CONFIG_KWARGS": config})


def metrics_dir_for(data_dir: Path) -> tuple[Path, bool]:
    """Where this data directory's multiprocess metrics live, and whether that place is in memory."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    name = f"badge-bridge-metrics-{os.getuid()}-{digest}"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    for base in (Path("/dev/shm"), Path(runtime) if runtime else None):
        if base is not None and base.is_dir() and os.access(base, os.W_OK) and _in_memory(base):
            return base / name, True
    return Path(tempfile.gettempdir()) / name, False


def _in_memory(path: Path) -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    resolved = path.resolve()
    best, kind = Path("/"), ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if resolved.is_relative_to(point) and len(point.parts) >= len(best.parts):
            best, kind = point, fields[2]
    return kind in _MEMORY_FILESYSTEMS


def prepare_metrics_dir(data_dir: Path) -> Path:
    """Prometheus' multiprocess mode: must be in the environment before prometheus_client is imported.

    Emptied at start (counters of a previous run are not this run's), removed when this process exits,
    and only by this process: gunicorn's workers are its forks and leave through the same code. A master
    killed outright cannot remove it; the next start on this machine removes those its owner left."""
    directory, _in_ram = metrics_dir_for(data_dir)
    _remove_abandoned(directory.parent)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    (directory / _OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    atexit.register(remove_metrics_dir, directory, os.getpid())
    return directory


def _remove_abandoned(parent: Path) -> None:
    for directory in parent.glob(f"badge-bridge-metrics-{os.getuid()}-*"):
        try:
            owner = int((directory / _OWNER_FILE).read_text(encoding="ascii"))
            os.kill(owner, 0)  # raises if no such process: the directory was left behind
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge (no owner file yet, or another user's process)


def remove_metrics_dir(directory: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)


class BridgeServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, embedded: bool) -> None:
        self.settings = settings
        self.embedded = embedded
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        self.cfg.set("bind", [server.bind])
        self.cfg.set("workers", server.workers)
        self.cfg.set("worker_class", worker_class(self.settings))
        self.cfg.set("keepalive", KEEPALIVE_SECONDS)
        self.cfg.set("timeout", 60)
        self.cfg.set("graceful_timeout", GUNICORN_GRACEFUL_SECONDS)
        self.cfg.set("accesslog", None)  # the app logs each request as JSON itself
        self.cfg.set("logconfig_dict", gunicorn_logging(self.settings.log_level))
        # gunicorn's control socket (gunicornc) is not part of how the bridge is run: without it, nodes or
        # containers sharing a data directory cannot remove each other's socket.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("on_starting", _log_metrics_dir)
        self.cfg.set("child_exit", _child_exit)
        if server.tls_certificate is not None:
            self.cfg.set("certfile", str(server.tls_certificate))
            self.cfg.set("keyfile", str(server.tls_private_key))
        if self.embedded:
            self.cfg.set("post_worker_init", _start_background)
            self.cfg.set("worker_exit", _stop_background)

    def load(self) -> Any:
        gc.disable()  # in each worker, after fork: see ``started``
        from bridge.app import create_app
        from bridge.asgi import WsgiOnAsgi
        from bridge.bootstrap import connect_database

        server = self.settings.server
        # The master checked the schema and loaded the templates before forking (see ``serve``).
        app = WsgiOnAsgi(
            create_app(self.settings, connect_database(self.settings)),
            threads=server.threads,
            max_body_bytes=server.max_request_bytes,
            body_timeout_seconds=server.body_timeout_seconds,
        )
        started()
        return app


def started() -> None:
    """Start-up is done: collect cyclic garbage from now on, but never again look at what start-up made.

    Importing the app and its libraries makes about a million objects that live as long as the process;
    with the collector on, each full collection walked all of them again while they were being made (a
    fifth of the service's start). Frozen, they stay out of every later collection, and pages a forked
    worker shares with the master are not written to by the collector's bookkeeping.
    """
    gc.freeze()
    gc.enable()


def gunicorn_logging(level: str) -> dict[str, Any]:
    """gunicorn's and uvicorn's own messages as JSON lines too, like everything else the service logs."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "bridge.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False}},
    }


def _log_metrics_dir(_server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if _in_memory(Path(directory)):
        log.info("metrics.directory", extra={"path": directory, "in_memory": True})
    else:
        log.warning(
            "metrics.directory_on_disk",
            extra={
                "path": directory,
                "in_memory": False,
                "why": "no /dev/shm or tmpfs $XDG_RUNTIME_DIR: a full disk there can crash workers (SIGBUS)",
            },
        )


def _start_background(worker: Any) -> None:
    # In each gunicorn worker, after fork: the database decides who processes what, so more than one
    # embedded worker stays correct (SQLite's write lock, PostgreSQL's SKIP LOCKED and the job lease).
    from bridge.notify.channels import start_sender_in_thread
    from bridge.scheduler import Scheduler
    from bridge.worker import start_in_thread

    services = worker.wsgi.app.extensions["bridge"]
    worker.bridge_worker = start_in_thread(services.database, services.settings)
    worker.bridge_sender = start_sender_in_thread(services.database, services.settings)
    worker.bridge_scheduler = Scheduler(services.database, services.settings)
    worker.bridge_scheduler.start()


def _stop_background(_server: Any, worker: Any) -> None:
    if hasattr(worker, "bridge_worker"):
        for thread, stop in (worker.bridge_worker, worker.bridge_sender):
            stop.set()
            thread.join(timeout=15)
        worker.bridge_scheduler.shutdown()


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(settings: Settings, *, embedded: bool) -> None:
    prepare_metrics_dir(settings.data_dir)
    from bridge.bootstrap import open_database

    # Once in the master, before forking: a schema or template problem stops start-up here, with its
    # message, instead of in every worker; and workers never race to migrate.
    open_database(settings).dispose()
    started()
    BridgeServer(settings, embedded=embedded).run()
