"""The tool as a platform meets it: ``badge-bridge serve`` (gunicorn) over HTTPS on 127.0.0.1, registered
with a fake Moodle and a fake Canvas (tests.lti.platform), and a browser-like client that runs the OIDC
flow against both (login initiation, the platform's authorization, the form_post launch)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy import create_engine, func, make_url, select, text

from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.db.models import Learner
from bridge.db.models_lti import LtiDeployment, LtiLaunch, LtiUser
from bridge.lti.registry import register
from tests.conftest import TEST_DATABASE_ENV, free_port, process_env
from tests.e2e.processes import BADGE_BRIDGE, running, wait_until
from tests.lti.platform import FakePlatform, registration_of
from tests.lti.tls import self_signed_certificate

SECOND_CANVAS_CLIENT = "10000000000002"


@dataclass
class ToolServer:
    base: str
    config: Path
    ca_bundle: str
    database: Database
    moodle: FakePlatform
    canvas: FakePlatform
    log: Path

    def platform(self, kind: str) -> FakePlatform:
        return self.moodle if kind == "moodle" else self.canvas

    def browser(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
        session.verify = self.ca_bundle
        return session

    def login(
        self,
        browser: requests.Session,
        kind: str = "moodle",
        claims: Mapping[str, Any] | None = None,
        *,
        method: str = "GET",
        **options: Any,
    ) -> requests.Response:
        """OIDC step 1: the platform sends the browser to the tool's login; its redirect is returned."""
        params = self.platform(kind).login_params(claims, **options)
        if method == "POST":
            return browser.post(f"{self.base}/lti/login", data=params, allow_redirects=False, timeout=10)
        return browser.get(f"{self.base}/lti/login?{urlencode(params)}", allow_redirects=False, timeout=10)

    def launch(
        self,
        browser: requests.Session | None = None,
        kind: str = "moodle",
        claims: Mapping[str, Any] | None = None,
        *,
        login: Mapping[str, Any] | None = None,
        token_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> requests.Response:
        """The whole flow; ``token_options`` shape the id_token (attacks), ``login`` the step-1 claims."""
        browser = browser or self.browser()
        started = self.login(browser, kind, login if login is not None else claims, **options)
        assert started.status_code == 302, started.text
        action, fields = self.platform(kind).authorize(
            started.headers["Location"], claims, **(token_options or {})
        )
        return browser.post(action, data=fields, allow_redirects=False, timeout=10)

    def stored(self) -> dict[str, int]:
        """What launches leave behind: launches, learners, LTI users, deployments."""
        with self.database.read() as session:
            return {
                table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
                for table in (LtiLaunch, Learner, LtiUser, LtiDeployment)
            }


@contextmanager
def _database_url(directory: Path) -> Iterator[str]:
    """A database of the suite's own: a new SQLite file, or a new PostgreSQL database beside the named one."""
    server_url = os.environ.get(TEST_DATABASE_ENV)
    if not server_url:
        yield f"sqlite:///{directory / 'bridge.sqlite3'}"
        return
    name = f"bridge_lti_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def tool_server(directory: Path, *, moodle_site: str | None = None) -> Iterator[ToolServer]:
    """``moodle_site``: the address the Moodle platform's pages are served from (a test's own host page,
    which must be allowed to frame the tool); by default the fake platform's."""
    cert, key = self_signed_certificate(directory / "tls")
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    launch_url = f"{base}/lti/launch"
    with ExitStack() as stack:
        url = stack.enter_context(_database_url(directory))
        database = Database(url)
        stack.callback(database.dispose)
        upgrade(database)
        platforms = {}
        for kind in ("moodle", "canvas"):
            platform = FakePlatform(
                kind,  # type: ignore[arg-type]
                redirect_uris=(launch_url,),
                target_link_uri=launch_url,
                tool_jwks_url=f"{base}/lti/jwks.json",
                ca_bundle=cert,
            )
            platforms[kind] = stack.enter_context(platform)
        config = directory / "bridge.toml"
        config.write_text(
            f'data_dir = "{(directory / "data").as_posix()}"\ndatabase_url = "{url}"\napi_access = "write"\n'
            f'public_base_url = "{base}"\n'
            "[lti]\ntimeout_seconds = 2.0\njwks_refetch_seconds = 1.0\n"
            f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 1\ntls_certificate = "{cert}"\n'
            f'tls_private_key = "{key}"\n'
            f'[[platforms]]\nid = "moodle1"\nkind = "moodle"\n'
            f'base_url = "{moodle_site or platforms["moodle"].base_url}"\n'
            f'[[platforms]]\nid = "canvas1"\nkind = "canvas"\nbase_url = "{platforms["canvas"].base_url}"\n'
            # A second Canvas tenant: the same issuer, another client id.
            f'[[platforms]]\nid = "canvas2"\nkind = "canvas"\nbase_url = "{platforms["canvas"].base_url}"\n',
            encoding="utf-8",
        )
        for platform_id, platform in (("moodle1", platforms["moodle"]), ("canvas1", platforms["canvas"])):
            new = registration_of(platform, platform_id)
            register(database, new, actor="test", known_platforms={"moodle1", "canvas1"})
        second = replace(registration_of(platforms["canvas"], "canvas2"), client_id=SECOND_CANVAS_CLIENT)
        register(database, second, actor="test", known_platforms={"canvas2"})
        log = directory / "serve.log"
        stack.enter_context(running([BADGE_BRIDGE, "serve"], process_env(config), log))

        def ready() -> bool:
            try:
                return requests.get(f"{base}/healthz", verify=cert, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 30, "the tool to answer over HTTPS")
        yield ToolServer(base, config, cert, database, platforms["moodle"], platforms["canvas"], log)
