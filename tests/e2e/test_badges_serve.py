"""Badges from the service as users run it: gunicorn with several workers makes one key set on first
start, serves the badge over HTTP, and picks up `badge-bridge keys rotate` without a restart."""

import stat
import subprocess
from pathlib import Path

import pytest
import requests

from bridge.db.engine import Database
from bridge.domain.openbadges import public_award_id
from bridge.issuing.signing import verify_vc_jwt
from bridge.services.api_keys import create_key
from tests.conftest import free_port, process_env, write_config
from tests.e2e.processes import BADGE_BRIDGE, http_ready, running, wait_until

pytestmark = pytest.mark.slow


def test_a_served_badge_verifies_before_and_after_a_key_rotation(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", database_url, data, extra=f'public_base_url = "{base}"')
    key = create_key(database, "e2e")
    headers = {"Authorization": f"Bearer {key}"}
    command = [BADGE_BRIDGE, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "3"]
    with running(command, process_env(config), tmp_path / "serve.log"):
        wait_until(http_ready(f"{base}/healthz"), 30, "the server to answer")
        event = {"platform": "demo", "event_key": "e2e-ob-1", "kind": "login", "learner": "77"}
        assert (
            requests.post(f"{base}/api/v1/events", json=event, headers=headers, timeout=5).status_code == 202
        )

        def awarded() -> bool:
            found = requests.get(f"{base}/api/v1/awards?learner=77", headers=headers, timeout=5).json()
            return len(found["awards"]) == 1

        wait_until(awarded, 20, "the embedded worker to award the badge")
        award_id = requests.get(f"{base}/api/v1/awards?learner=77", headers=headers, timeout=5).json()[
            "awards"
        ]
        keys = data / "keys"
        assert len(list(keys.glob("*.pem"))) == 2  # three workers started, one key set made
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.glob("*.pem"))
        assertion_url = (
            f"{base}/ob/assertions/{public_award_id((keys / 'secret.bin').read_bytes(), award_id[0]['id'])}"
        )

        assertion = requests.get(assertion_url, timeout=5)
        assert assertion.status_code == 200 and assertion.json()["id"] == assertion_url
        page = requests.get(assertion_url, headers={"Accept": "text/html"}, timeout=5)
        assert page.headers["Content-Type"].startswith("text/html") and "Welcome" in page.text
        before = requests.get(f"{assertion_url}/credential.jwt?alg=EdDSA", timeout=5).text
        kid_sets = {
            tuple(k["kid"] for k in requests.get(f"{base}/ob/jwks.json", timeout=5).json()["keys"])
            for _ in range(9)
        }
        assert len(kid_sets) == 1 and len(next(iter(kid_sets))) == 2  # every worker serves the same keys

        rotated = subprocess.run(
            [BADGE_BRIDGE, "keys", "rotate"],
            env=process_env(config),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rotated.returncode == 0, rotated.stderr
        for _ in range(9):  # whichever worker answers has seen the rotation
            jwks = requests.get(f"{base}/ob/jwks.json", timeout=5).json()
            assert len(jwks["keys"]) == 4
            assert verify_vc_jwt(before, jwks)["jti"] == f"{assertion_url}/credential"
        after = requests.get(f"{assertion_url}/credential.jwt?alg=EdDSA", timeout=5).text
        assert after != before and verify_vc_jwt(after, jwks)["jti"] == f"{assertion_url}/credential"
