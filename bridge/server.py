"""``badge-bridge serve``: the app under gunicorn, with worker and scheduler in-process (embedded mode)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from bridge.settings import Settings


def prepare_metrics_dir(data_dir: Path) -> None:
    """Prometheus' multiprocess mode: must be in the environment before prometheus_client is imported."""
    directory = data_dir / "prometheus"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


class BridgeServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, embedded: bool) -> None:
        self.settings = settings
        self.embedded = embedded
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        self.cfg.set("bind", [server.bind])
        self.cfg.set("workers", server.workers)
        self.cfg.set("threads", server.threads)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("timeout", 60)
        self.cfg.set("graceful_timeout", 20)
        self.cfg.set("accesslog", None)  # the app logs each request as JSON itself
        self.cfg.set("logconfig_dict", gunicorn_logging(self.settings.log_level))
        # One control socket per data directory, so two instances on one machine do not collide.
        self.cfg.set("control_socket", str(self.settings.data_dir.resolve() / "gunicorn.ctl"))
        self.cfg.set("child_exit", _child_exit)
        if server.tls_certificate is not None:
            self.cfg.set("certfile", str(server.tls_certificate))
            self.cfg.set("keyfile", str(server.tls_private_key))
        if self.embedded:
            self.cfg.set("post_worker_init", _start_background)
            self.cfg.set("worker_exit", _stop_background)

    def load(self) -> Any:
        from bridge.app import create_app

        return create_app(self.settings)


def gunicorn_logging(level: str) -> dict[str, Any]:
    """gunicorn's own messages as JSON lines too, like everything else the service logs."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "bridge.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False}},
    }


def _start_background(worker: Any) -> None:
    # In each gunicorn worker, after fork: the database decides who processes what, so more than one
    # embedded worker stays correct (SQLite's write lock, PostgreSQL's SKIP LOCKED and the job lease).
    from bridge.notify.channels import start_sender_in_thread
    from bridge.scheduler import Scheduler
    from bridge.worker import start_in_thread

    services = worker.wsgi.extensions["bridge"]
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
    BridgeServer(settings, embedded=embedded).run()
