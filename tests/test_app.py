"""The composition root's response headers: HTML and SVG answers tell browsers not to guess another type
(``X-Content-Type-Options: nosniff``), so a served file is never run as something it was not sent as."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.db.engine import Database
from bridge.settings import Settings
from tests.issuing.support import award
from tests.web.test_badges_public import assertion_path


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/ob/images/welcome.svg", "image/svg+xml"),
        ("/lti/icon.svg", "image/svg+xml"),
        ("/ob/images/welcome.png", "image/png"),
        ("/ob/jwks.json", "application/ld+json"),
        ("/healthz", "application/json"),
        ("/ob/nowhere", "application/json"),
    ],
)
def test_every_answer_says_nosniff(client: FlaskClient, path: str, mimetype: str) -> None:
    response = client.get(path)
    assert response.mimetype == mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_badge_pages_and_baked_svgs_say_nosniff(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    path = assertion_path(app, award(database, settings, "welcome"))
    page = client.get(path, headers={"Accept": "text/html"})
    assert page.mimetype == "text/html"
    baked = client.get(f"{path}/badge.svg")
    assert baked.mimetype == "image/svg+xml"
    for response in (page, baked):
        assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
