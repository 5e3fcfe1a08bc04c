"""The service as users run it: gunicorn on 127.0.0.1, events over HTTP, awards by the embedded worker."""

import json
from pathlib import Path

import requests

from bridge.db.engine import Database
from bridge.services.api_keys import create_key
from tests.conftest import free_port, process_env, write_config
from tests.e2e.processes import BADGE_BRIDGE, http_ready, running, wait_until


def test_events_posted_over_http_become_awards(database: Database, database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path, extra="points_per_badge = 1")
    key = create_key(database, "e2e")
    base = f"http://127.0.0.1:{free_port()}"
    command = [BADGE_BRIDGE, "serve", "--bind", base.removeprefix("http://"), "--workers", "2"]
    with running(command, process_env(config), tmp_path / "serve.log"):
        wait_until(http_ready(f"{base}/healthz"), 30, "the server to answer")
        headers = {"Authorization": f"Bearer {key}"}
        event = {"platform": "demo", "event_key": "e2e-1", "kind": "login", "learner": "77"}
        first = requests.post(f"{base}/api/v1/events", json=event, headers=headers, timeout=5)
        again = requests.post(f"{base}/api/v1/events", json=event, headers=headers, timeout=5)
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["id"] == again.json()["id"]

        def awarded() -> bool:
            found = requests.get(f"{base}/api/v1/awards?learner=77", headers=headers, timeout=5).json()
            return [a["badge_id"] for a in found["awards"]] == ["welcome"]

        wait_until(awarded, 20, "the embedded worker to award the badge")
        status = requests.get(f"{base}/api/v1/events/{first.json()['id']}", headers=headers, timeout=5).json()
        assert status["status"] == "done"

        bad = requests.post(
            f"{base}/api/v1/events",
            data="{",
            headers={**headers, "Content-Type": "application/json"},
            timeout=5,
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"

        health = requests.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["queue"]["pending"] == 0
        # Counters from both gunicorn workers and the embedded worker, aggregated across processes.
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert 'bridge_events_received_total{outcome="accepted",platform="demo"} 1.0' in text
        assert 'bridge_events_received_total{outcome="duplicate",platform="demo"} 1.0' in text
        assert 'bridge_awards_total{badge="welcome"} 1.0' in text
    log = (tmp_path / "serve.log").read_text()
    assert key not in log
    entries = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
    assert {"award.made", "request", "worker.started"} <= {e["event"] for e in entries}
    assert any(e["logger"] == "gunicorn.error" for e in entries)
