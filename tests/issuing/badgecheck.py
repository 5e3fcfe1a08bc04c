"""1EdTech's OB 2.0 validator (badgecheck) for the tests: its own venv, and a real local HTTP server.

The venv is built on first use by ``.ci/badgecheck-venv`` (pinned, offline-capable set; see that script).
Tests that need it skip, naming the reason, only when it cannot be built; with
``BRIDGE_REQUIRE_BADGECHECK=1`` (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import REPO

BUILD_SCRIPT = REPO / ".ci" / "badgecheck-venv"
RUNNER = Path(__file__).with_name("badgecheck_runner.py")
REQUIRE_ENV = "BRIDGE_REQUIRE_BADGECHECK"


def badgecheck_python() -> Path:
    """The badgecheck venv's Python, built if missing; skips (or fails under CI) when it cannot be."""
    target = Path(os.environ.get("BRIDGE_BADGECHECK_VENV", REPO / ".venv-badgecheck"))
    try:
        built = subprocess.run(
            [str(BUILD_SCRIPT), str(target)], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        reason = f"could not run {BUILD_SCRIPT.name}: {error}"
    else:
        if built.returncode == 0:
            return target / "bin" / "python"
        reason = f"{BUILD_SCRIPT.name} failed: {built.stderr.strip()[-500:]}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"badgecheck is required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(f"1EdTech's badgecheck venv cannot be built here ({reason})")


def run_badgecheck(python: Path, cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each case's report (``valid`` and ``errors``), by name."""
    done = subprocess.run(
        [str(python), str(RUNNER)],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {result["name"]: result for result in json.loads(done.stdout)}


@dataclass
class Overrides:
    """Documents a test serves instead of the app's at given paths: a broken copy at the real URL."""

    documents: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def serve(self, path: str, document: dict[str, Any], status: int = 200) -> None:
        self.documents[path] = (status, json.dumps(document).encode())


@contextmanager
def live_server(app: Flask, port: int) -> Iterator[Overrides]:
    """``app`` on http://127.0.0.1:<port> in a thread, with per-path overrides."""
    overrides = Overrides()

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        found = overrides.documents.get(environ.get("PATH_INFO", ""))
        if found is None:
            return app.wsgi_app(environ, start_response)
        status, body = found
        start_response(f"{status} X", [("Content-Type", "application/ld+json")])
        return [body]

    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield overrides
    finally:
        server.shutdown()
        thread.join()
