"""``X-Forwarded-*`` is believed only from the proxies ``server.trusted_proxies`` names."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient

from bridge.web.proxies import TrustedProxies

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "badges.example.org",
    "X-Forwarded-For": "203.0.113.9",
}


def client_behind(networks: Iterable[str]) -> FlaskClient:
    app = Flask(__name__)

    @app.get("/where")
    def where() -> object:
        return jsonify(
            secure=request.is_secure,
            host_url=request.host_url,
            url=request.url,
            remote_addr=request.remote_addr,
        )

    app.wsgi_app = TrustedProxies(app.wsgi_app, [ipaddress.ip_network(n) for n in networks])  # type: ignore[method-assign]
    return app.test_client()


def seen(client: FlaskClient, remote_addr: str, headers: dict[str, str] = FORWARDED) -> dict[str, object]:
    response = client.get("/where", headers=headers, environ_base={"REMOTE_ADDR": remote_addr})
    return response.get_json()


@pytest.mark.parametrize("proxy", ["10.0.0.5", "10.255.1.1", "127.0.0.1", "fd00::7"])
def test_a_trusted_proxy_makes_the_request_https_on_the_public_host(proxy: str) -> None:
    client = client_behind(["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"])
    assert seen(client, proxy) == {
        "secure": True,
        "host_url": "https://badges.example.org/",
        "url": "https://badges.example.org/where",
        "remote_addr": "203.0.113.9",
    }


def test_a_trusted_proxy_that_forwards_nothing_changes_nothing() -> None:
    where = seen(client_behind(["10.0.0.0/8"]), "10.0.0.5", headers={})
    assert where["secure"] is False and where["host_url"] == "http://localhost/"


@pytest.mark.parametrize("client_address", ["203.0.113.9", "11.0.0.1", "::1", "fe80::1"])
def test_forwarded_headers_from_anyone_else_are_ignored(client_address: str) -> None:
    where = seen(client_behind(["10.0.0.0/8", "127.0.0.1/32"]), client_address)
    assert where["secure"] is False
    assert where["host_url"] == "http://localhost/"
    assert where["remote_addr"] == client_address


def test_with_no_trusted_proxies_configured_the_headers_are_always_ignored() -> None:
    client = client_behind([])
    for address in ("127.0.0.1", "10.0.0.5", "203.0.113.9"):
        where = seen(client, address)
        assert (where["secure"], where["host_url"]) == (False, "http://localhost/")


@pytest.mark.parametrize("remote_addr", ["", "unix:/run/gunicorn.sock", "10.0.0.5:443"])
def test_a_remote_address_that_is_not_an_ip_is_not_trusted(remote_addr: str) -> None:
    where = seen(client_behind(["10.0.0.0/8"]), remote_addr)
    assert (where["secure"], where["host_url"]) == (False, "http://localhost/")


def test_only_the_nearest_forwarded_for_entry_is_believed() -> None:
    headers = {**FORWARDED, "X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    assert seen(client_behind(["10.0.0.0/8"]), "10.0.0.5", headers)["remote_addr"] == "203.0.113.9"
