"""Platforms' public keys, by key id, from each registration's JWKS URL.

pylti1p3 fetches a JWKS without a timeout and never fetches it again when a token names a key it has
not seen, so a platform that rotates its key breaks launches until a restart. Here: one fetch, cached
for ``cache_seconds``; a key id not in the cache makes one more fetch, at most once per
``refetch_seconds`` for that URL (a stream of tokens with made-up key ids must not become a stream of
requests to the platform); every request has a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from bridge import __version__


class KeyUnavailable(Exception):
    """No usable key: the reason is safe to show and log."""


@dataclass
class _KeySet:
    keys: dict[str, Any]  # kid -> PyJWK
    fetched_at: float


class PlatformKeys:
    def __init__(
        self,
        *,
        timeout: float = 10.0,
        cache_seconds: float = 3600.0,
        refetch_seconds: float = 30.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._refetch_seconds = refetch_seconds
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"lms-badge-bridge/{__version__} (LTI tool)"
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._attempted: dict[str, float] = {}  # when each URL was last requested, whatever came of it
        self._lock = threading.Lock()
        self.fetches = 0

    def key(self, url: str, kid: str) -> Any:
        """The RS256 public key ``kid`` of the JWKS at ``url`` (a ``PyJWK``)."""
        now = self._clock()
        with self._lock:
            cached = self._sets.get(url)
        if cached is not None and now - cached.fetched_at < self._cache_seconds and kid in cached.keys:
            return cached.keys[kid]
        with self._lock:
            attempted = self._attempted.get(url)
        stale = cached.keys.get(kid) if cached is not None else None
        if attempted is not None and now - attempted < self._refetch_seconds:
            # Asked a moment ago (and it failed, or lacked this key): not again yet.
            if stale is not None:
                return stale
            raise KeyUnavailable(f"the platform's key set has no key {kid!r}")
        try:
            fetched = self._fetch(url, now)
        except KeyUnavailable:
            if stale is not None:  # the platform is down: a key it published is still its key
                return stale
            raise
        if kid not in fetched.keys:
            raise KeyUnavailable(f"the platform's key set has no key {kid!r}")
        return fetched.keys[kid]

    def _fetch(self, url: str, now: float) -> _KeySet:
        with self._lock:
            self.fetches += 1
            self._attempted[url] = now
        try:
            response = self._session.get(url, timeout=self._timeout)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise KeyUnavailable(
                f"the platform's key set could not be read: {type(error).__name__}"
            ) from None
        keys = {}
        listed = document.get("keys") if isinstance(document, dict) else None
        for jwk in listed if isinstance(listed, list) else []:
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("alg", "RS256") != "RS256" or jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[jwk["kid"]] = PyJWK(jwk, algorithm="RS256")
            except PyJWTError:
                continue  # one bad key does not spoil the set
        fetched = _KeySet(keys, now)
        with self._lock:
            self._sets[url] = fetched
        return fetched
