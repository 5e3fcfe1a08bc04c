"""``badge-bridge demo``, the README's first command: sample events become awards on SQLite."""

import os
from pathlib import Path

import requests

from bridge.clock import utcnow
from bridge.demo import sample_events
from tests.conftest import free_port
from tests.e2e.processes import BADGE_BRIDGE, http_ready, running, wait_until


def test_the_demo_serves_sample_events_turned_into_awards(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    bind = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    with running(
        [BADGE_BRIDGE, "demo", "--data-dir", str(data_dir), "--bind", bind], env, tmp_path / "demo.log"
    ):
        wait_until(http_ready(f"http://{bind}/healthz"), 60, "the demo server")
        headers = {"Authorization": f"Bearer {(data_dir / 'demo-api-key').read_text().strip()}"}

        def all_processed() -> bool:
            return requests.get(f"http://{bind}/healthz", timeout=5).json()["queue"]["pending"] == 0

        wait_until(all_processed, 60, "the sample events to be processed")
        awards = requests.get(f"http://{bind}/api/v1/awards?limit=1000", headers=headers, timeout=5).json()
        badges = {a["badge_id"] for a in awards["awards"]}
        assert {"welcome", "level-up", "hundred-purchases"} <= badges
        # Every award is an Open Badge at the demo's own address: JSON-LD for machines, a page for people.
        assertion_url = awards["awards"][0]["assertion"]
        assert assertion_url.startswith(f"http://{bind}/ob/assertions/")
        assertion = requests.get(assertion_url, timeout=5).json()
        assert (assertion["type"], assertion["id"]) == ("Assertion", assertion_url)
        page = requests.get(assertion_url, headers={"Accept": "text/html"}, timeout=5)
        assert page.headers["Content-Type"].startswith("text/html") and "og:title" in page.text
    output = (tmp_path / "demo.log").read_text()
    assert f"http://{bind}/healthz" in output and "award.made" in output
    assert (data_dir / "bridge.sqlite3").is_file()
    assert oct((data_dir / "demo-api-key").stat().st_mode & 0o777) == "0o600"


def test_the_sample_events_are_the_same_every_time() -> None:
    now = utcnow()
    first, second = sample_events(now), sample_events(now)
    assert [e.event_key for e in first] == [e.event_key for e in second]
    assert len({(e.platform, e.event_key) for e in first}) == len(first)
