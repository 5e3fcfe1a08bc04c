"""Believing ``X-Forwarded-*`` only from the proxies the settings name (``server.trusted_proxies``).

Behind a TLS-terminating proxy the app sees plain HTTP; without the proxy's word it would build ``http``
URLs (a platform then refuses our redirect_uri) and could not set the ``Secure`` cookies an LMS iframe
needs. From anyone else the headers are ignored, or any client could claim to be on HTTPS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix


class TrustedProxies:
    def __init__(self, app: Any, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._app = app
        self._networks = tuple(networks)
        self._fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self._trusted(environ.get("REMOTE_ADDR", "")):
            return self._fixed(environ, start_response)
        return self._app(environ, start_response)

    def _trusted(self, address: str) -> bool:
        try:
            remote = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(remote in network for network in self._networks)
