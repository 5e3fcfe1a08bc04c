"""Public ``/ob/`` URLs naming numbers no award can have: a 404 like any unknown address, never a 500.

Award ids are 64-bit (both databases refuse a larger integer outright), so a status list beyond the one
holding the largest id, or an assertion id that is not the id and MAC the bridge writes, is not there."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.db.engine import Database
from bridge.domain import ob3
from bridge.settings import Settings
from tests.issuing.support import award
from tests.web.test_badges_public import assertion_path

LAST_LIST = (2**63 - 1) // ob3.STATUS_LIST_BITS - 1  # see badges_public.status_list


@pytest.mark.parametrize("accept", ["application/json", "application/vc+jwt"])
@pytest.mark.parametrize(
    "number",
    [2**63, 2**64 + 5, 2**63 // ob3.STATUS_LIST_BITS, LAST_LIST + 1, pytest.param(10**4000, id="10**4000")],
)
def test_a_status_list_past_the_largest_award_id_is_a_404(
    client: FlaskClient, number: int, accept: str
) -> None:
    response = client.get(f"/ob/issuers/default/status/{number}", headers={"Accept": accept})
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "not_found"


def test_the_last_status_list_is_served(client: FlaskClient) -> None:
    response = client.get(f"/ob/issuers/default/status/{LAST_LIST}")
    assert response.status_code == 200
    assert response.get_json()["id"].endswith(f"/ob/issuers/default/status/{LAST_LIST}")


@pytest.mark.parametrize(
    "tail", ["", "/credential", "/credential.jwt", "/assertion.jws", "/badge.png", "/credential.svg"]
)
@pytest.mark.parametrize(
    "public_id",
    [
        "1-\u00e9",  # compared with hmac.compare_digest, which refuses non-ASCII text (a TypeError)
        "\u00b2-0123456789abcdef0123",  # '²'.isdigit() is true but int('²') fails
        f"{2**63}-0123456789abcdef0123",
        pytest.param("9" * 400, id="400 nines"),
    ],
)
def test_an_assertion_id_the_bridge_never_writes_is_a_404(
    client: FlaskClient, public_id: str, tail: str
) -> None:
    response = client.get(f"/ob/assertions/{public_id}{tail}")
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "unknown_assertion"


def test_an_assertion_the_bridge_wrote_is_still_found(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    path = assertion_path(app, award(database, settings, "welcome"))
    assert client.get(path).status_code == 200
    assert client.get(path + "x").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/ob/issuers/default/badges/%00",
        "/ob/issuers/default/badges/welcome/tiers/%00",
        "/ob/images/%00.svg",
        "/ob/images/welcome%00.png",
        "/ob/profiles/%00",
        "/ob/issuers/%00",
        "/ob/keys/%00",
    ],
)
def test_a_path_with_nul_names_nothing_and_is_a_404(client: FlaskClient, path: str) -> None:
    # PostgreSQL refuses NUL in text: looking such a name up was a 500 there.
    response = client.get(path)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "not_found"
