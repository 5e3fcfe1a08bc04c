"""LTI launch benchmark: the tool's server time for a launch beside a plain pylti1p3 launch, in one run.

Both tools are Flask apps handed the same kind of launch: a Moodle-shaped resource link id_token, signed
by a fake platform (tests/lti/platform.py) for the nonce each tool issued at its login. Only the launch
POST is timed (wall and CPU), through Flask's test client, alternating between the two so noise on a
shared machine hits both.

- ours: the bridge's ``create_app`` on a fresh SQLite file (or ``--database-url``): every check of
  ``bridge.lti.launch`` (state row consumed, nonce, aud/azp, key by kid from the cached JWKS, deployment
  approved, version, message, target), the learner and launch stored, a 303 to the course page.
- plain: pylti1p3 2.0.0 as its README sets it up: ``ToolConfDict`` with the platform's key set given
  inline (so it fetches nothing per launch), Flask's cookie session, ``get_launch_data()``, a 200.

Aim: ours / plain <= 1.0 (our checks must not make a launch slower).

    .venv/bin/python benchmarks/lti_launch.py
    .venv/bin/python benchmarks/lti_launch.py --launches 500 --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from pylti1p3.contrib.flask import FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.tool_config import ToolConfDict

from benchmarks.ingest import postgres_database
from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.lti.registry import register
from bridge.settings import load_settings
from tests.lti.platform import FakePlatform, registration_of

AIM = 1.0
BASE = "http://localhost"  # Flask's test client serves http://localhost
LAUNCH_URL = f"{BASE}/lti/launch"


def ours(platform: FakePlatform, directory: Path, database_url: str | None) -> Flask:
    settings = load_settings(
        None,
        data_dir=directory,
        database_url=database_url,
        public_base_url=BASE,
        platforms=[{"id": "moodle1", "kind": "moodle", "base_url": platform.base_url}],
    )
    database = open_database(settings)
    register(database, registration_of(platform, "moodle1"), actor="benchmark", known_platforms={"moodle1"})
    return create_app(settings, database)


def plain(platform: FakePlatform) -> Flask:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    conf = ToolConfDict(
        {
            platform.issuer: [
                {
                    "default": True,
                    "client_id": platform.client_id,
                    "auth_login_url": platform.auth_url,
                    "auth_token_url": platform.token_url,
                    "key_set": platform.jwks(),
                    "deployment_ids": [platform.deployment_id],
                }
            ]
        }
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    conf.set_private_key(platform.issuer, pem.decode(), client_id=platform.client_id)
    app = Flask("plain_pylti1p3")
    app.secret_key = "benchmark"

    @app.route("/lti/login", methods=["GET", "POST"])
    def login() -> Any:
        return FlaskOIDCLogin(FlaskRequest(), conf).redirect(LAUNCH_URL)

    @app.post("/lti/launch")
    def launch() -> Any:
        data = FlaskMessageLaunch(FlaskRequest(), conf).get_launch_data()
        return {"sub": data["sub"]}

    return app


def one_launch(app: Flask, platform: FakePlatform, user: int) -> tuple[float, float, int]:
    """Login and authorize (not timed), then the launch POST: (wall s, CPU s, status).

    Each launch is a new browser (its own cookies): pylti1p3 keeps every launch in the Flask session
    cookie, which in one long-lived client would grow past what browsers keep."""
    client = app.test_client()
    params = platform.login_params({"sub": str(user)}, target_link_uri=LAUNCH_URL)
    started = client.get(f"/lti/login?{urlencode(params)}")
    assert started.status_code == 302, started.get_data(as_text=True)
    action, fields = platform.authorize(started.headers["Location"])
    wall, cpu = time.perf_counter(), time.process_time()
    response = client.post(action.removeprefix(BASE), data=fields)
    return time.perf_counter() - wall, time.process_time() - cpu, response.status_code


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launches", type=int, default=300, help="launches per tool (default 300)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to run the bridge on (a fresh database beside the one named)",
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        platform = stack.enter_context(FakePlatform("moodle", redirect_uris=(LAUNCH_URL,)))
        url = None
        if args.database_url:
            url = stack.enter_context(postgres_database(args.database_url))
            upgrade(Database(url))
        return run(args.launches, platform, ours(platform, Path(directory), url), plain(platform))


def run(launches: int, platform: FakePlatform, our_app: Flask, plain_app: Flask) -> int:
    tools: dict[str, tuple[Flask, int]] = {"ours": (our_app, 303), "plain pylti1p3": (plain_app, 200)}
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    for warm_up in range(20):  # first requests: imports, template compilation, the JWKS fetch
        for app, _ in tools.values():
            one_launch(app, platform, 10_000 + warm_up)
    for n in range(launches):
        for name, (app, expected) in tools.items():
            wall, cpu, status = one_launch(app, platform, n)
            if status != expected:
                print(f"{name}: launch {n} answered {status}, expected {expected}", file=sys.stderr)
                return 1
            timings[name].append((wall, cpu))

    def median(name: str, part: Callable[[tuple[float, float]], float]) -> float:
        return statistics.median(part(t) for t in timings[name]) * 1e6

    print(f"LTI launch, {launches} launches per tool, median µs per launch (server side, in process)")
    print(f"{'tool':<16}{'wall µs':>10}{'CPU µs':>10}")
    for name in tools:
        print(f"{name:<16}{median(name, lambda t: t[0]):>10.0f}{median(name, lambda t: t[1]):>10.0f}")
    ratio = median("ours", lambda t: t[0]) / median("plain pylti1p3", lambda t: t[0])
    cpu_ratio = median("ours", lambda t: t[1]) / median("plain pylti1p3", lambda t: t[1])
    verdict = "OK" if ratio <= AIM else "MISS"
    print(f"ratio ours/plain: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x (aim <= {AIM:.1f}x wall): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
