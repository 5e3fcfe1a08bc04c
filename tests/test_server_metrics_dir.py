"""Where the multiprocess metrics live: in memory, never on the data disk, gone when the server stops.

prometheus_client writes them through memory-mapped files; on a full disk a write to such a page is a
SIGBUS, which killed gunicorn workers in the middle of requests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import requests

from bridge import server
from bridge.db.engine import Database
from tests.conftest import free_port, process_env, write_config
from tests.e2e.processes import BADGE_BRIDGE, http_ready, running, wait_until

ON_TMPFS = server._in_memory(Path("/dev/shm")) if Path("/dev/shm").is_dir() else False


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # prepare_metrics_dir sets the variable for the process; the other tests must not see it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")


def test_the_directory_is_in_memory_and_not_on_the_data_disk(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    directory = server.prepare_metrics_dir(data_dir)
    try:
        assert directory.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
        assert directory.stat().st_dev != data_dir.stat().st_dev
        assert not directory.is_relative_to(data_dir)
        if ON_TMPFS:
            assert directory.parent == Path("/dev/shm")
    finally:
        server.remove_metrics_dir(directory, os.getpid())


def test_one_directory_per_data_directory(tmp_path: Path) -> None:
    first, _ = server.metrics_dir_for(tmp_path / "a")
    second, _ = server.metrics_dir_for(tmp_path / "b")
    assert first != second
    assert server.metrics_dir_for(tmp_path / "a" / ".." / "a")[0] == first


def test_without_a_memory_filesystem_it_falls_back_to_the_temporary_directory_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "_in_memory", lambda _path: False)
    directory, in_memory = server.metrics_dir_for(tmp_path)
    assert directory.parent == Path(tempfile.gettempdir()) and not in_memory
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    with caplog.at_level(logging.INFO, logger="bridge.server"):
        server._log_metrics_dir(None)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.msg == "metrics.directory_on_disk"


def test_it_is_removed_when_its_process_exits_but_not_when_a_fork_of_it_does(tmp_path: Path) -> None:
    # gunicorn's workers are forks of the master and leave through the same exit handlers.
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from bridge.server import prepare_metrics_dir
        directory = prepare_metrics_dir(Path({str(tmp_path)!r}))
        child = os.fork()
        if child == 0:
            sys.exit(0)
        os.waitpid(child, 0)
        print(directory, directory.is_dir())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    path, there_after_the_fork_left = done.stdout.split()
    assert there_after_the_fork_left == "True"
    assert not Path(path).exists()


def test_a_directory_left_by_a_server_killed_outright_is_removed_at_the_next_start(tmp_path: Path) -> None:
    parent = server.metrics_dir_for(tmp_path)[0].parent
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = parent / f"badge-bridge-metrics-{os.getuid()}-left-by-{gone.pid}"
    in_use = parent / f"badge-bridge-metrics-{os.getuid()}-in-use-by-{os.getpid()}"
    for directory, owner in ((left, gone.pid), (in_use, os.getpid())):
        directory.mkdir()
        (directory / "owner.pid").write_text(str(owner))
    made = server.prepare_metrics_dir(tmp_path / "data")
    try:
        assert not left.exists()
        assert in_use.exists()
    finally:
        shutil.rmtree(in_use, ignore_errors=True)
        shutil.rmtree(left, ignore_errors=True)
        server.remove_metrics_dir(made, os.getpid())


@pytest.mark.slow
def test_the_server_keeps_its_metrics_in_memory_and_removes_them_when_it_stops(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", database_url, data_dir)
    directory, _ = server.metrics_dir_for(data_dir)
    command = [BADGE_BRIDGE, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    with running(command, process_env(config), tmp_path / "serve.log"):
        wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"), 30, "the server to answer")
        session = requests.Session()
        session.trust_env = False
        assert (
            "bridge_http_request_seconds" in session.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        )
        assert list(directory.glob("*.db"))  # the workers' metric files
        assert not (data_dir / "prometheus").exists()
    assert not directory.exists()
    log = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    (entry,) = [e for e in log if e["event"].startswith("metrics.directory")]
    assert entry["path"] == str(directory) and entry["in_memory"] is ON_TMPFS
