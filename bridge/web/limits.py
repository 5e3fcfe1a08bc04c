"""Rate limits: per API key on ``/api/v1``, per platform on the LMS webhooks.

Fixed windows, counted in the process's memory by default (one process), or in Redis through the
``limits`` library (the engine of flask-limiter) when ``rate_limits.storage_url`` is set, so that every
process and node shares one count. Should Redis become unreachable the counts go on in memory rather
than refusing requests, and come back to Redis once it answers (asked after 1, 2, 4 ... 32 s, then from
1 s again). Beyond a limit the answer is 429 with ``Retry-After`` (whole seconds until the window resets).

Counting keys are the API key's id, the client's address, or the platform id: never a bearer key,
which must not reach the limiter's logs or Redis. In Redis a count is ``LIMITER/badge-bridge/<key>/<scope>/
<amount>/<multiples>/<granularity>``, the key flask-limiter wrote, so counts carry over an upgrade.

Why not flask-limiter itself (which this module used until issue 18): every request paid for it resolving
which of its limits apply (decorated, blueprint, default and application limits, exemptions, ordered
sets), and ``limits``' own memory storage starts a timer thread every 10 ms while requests come, to
expire its counts: together about a third of an ingest request's time in the app. Here a request finds
its one budget by its route's prefix and counts it in a dictionary under a lock (``_Windows``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from bridge.settings import RateLimitSettings
from bridge.web.access import API_PREFIX
from bridge.web.errors import error_response

WEBHOOKS_PREFIX = "/webhooks/"
KEY_PREFIX = "badge-bridge"
MAX_BACKEND_CHECKS = 5  # while Redis is away it is asked again after 2**n seconds, n up to this
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Budget:
    scope: str  # "api", "api-without-key", "webhooks": part of the counting key
    items: tuple[RateLimitItem, ...]  # the rate(s), narrowest window first
    message: str  # the 429's message


class _Counter(Protocol):
    def hit(self, item: RateLimitItem, *identifiers: str) -> bool: ...

    def reset_at(self, item: RateLimitItem, *identifiers: str) -> float: ...


class _Windows:
    """Fixed windows in this process's memory: a window opens at its first request and closes ``expiry``
    seconds later, as with ``limits``' MemoryStorage. Closed windows are swept once a minute."""

    SWEEP_SECONDS = 60.0

    def __init__(self) -> None:
        self._windows: dict[tuple[int | str, ...], list[float]] = {}  # key -> [closes at, count]
        self._lock = threading.Lock()
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        key = (id(item), *identifiers)  # the items live as long as the limiter
        now = time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                window = self._windows[key] = [now + item.get_expiry(), 0]
                if now >= self._next_sweep:
                    self._sweep(now)
            window[1] += 1
            return window[1] <= item.amount

    def reset_at(self, item: RateLimitItem, *identifiers: str) -> float:
        window = self._windows.get((id(item), *identifiers))
        return window[0] if window is not None else time.time() + item.get_expiry()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        for key in [key for key, window in self._windows.items() if window[0] <= now]:
            del self._windows[key]


class _Shared:
    """Fixed windows in a shared storage (Redis), as flask-limiter counted them."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._strategy = FixedWindowRateLimiter(storage)

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        return self._strategy.hit(item, *identifiers)

    def reset_at(self, item: RateLimitItem, *identifiers: str) -> float:
        return self._strategy.get_window_stats(item, *identifiers).reset_time


class RateLimiter:
    """The app's ``before_request`` check: at most one budget applies to a request, found by its route."""

    def __init__(self, config: RateLimitSettings) -> None:
        def budget(scope: str, rate: str, message: str) -> _Budget:
            return _Budget(scope, tuple(sorted(parse_many(rate))), f"{message}: at most {rate}")

        self.per_key = budget("api", config.api, "too many requests for this API key")
        without_key = "too many requests without a valid API key from this address"
        self.per_address = budget("api-without-key", config.api_anonymous, without_key)
        self.per_platform = budget("webhooks", config.webhooks, "too many webhooks for this platform")
        url = config.storage_url
        self._shared = _Shared(storage_from_string(url.get_secret_value())) if url is not None else None
        self._counter: _Counter = self._shared or _Windows()
        self._fallback = _Windows()
        self._storage_dead = False
        self._checks = 0
        self._last_check = time.time()
        self._lock = threading.Lock()

    def check(self) -> Response | None:
        rule = request.url_rule
        if rule is None:
            return None  # no route: a 404 or 405 costs nothing to count
        path = rule.rule
        if path.startswith(API_PREFIX):
            caller = g.get("api_caller")
            if caller is not None:
                budget, key = self.per_key, f"key:{caller.id}"
            else:
                budget, key = self.per_address, f"address:{request.remote_addr or 'unknown'}"
        elif path.startswith(WEBHOOKS_PREFIX):
            budget, key = self.per_platform, f"platform:{(request.view_args or {}).get('platform_id', '')}"
        else:
            return None
        breached = self._hit(budget, key)
        return None if breached is None else self._too_many(budget, key, breached)

    def _hit(self, budget: _Budget, key: str) -> RateLimitItem | None:
        """Count one request against each rate of ``budget``; the first rate it goes beyond, if any."""
        try:
            return self._count(self._current(), budget, key)
        except Exception as error:  # the shared storage failed (Redis away): count in memory meanwhile
            if self._storage_dead:
                raise
            log.warning("rate_limit.storage_unreachable", extra={"error": type(error).__name__})
            with self._lock:
                self._storage_dead = True
                self._last_check = time.time()
            return self._count(self._fallback, budget, key)

    @staticmethod
    def _count(counter: _Counter, budget: _Budget, key: str) -> RateLimitItem | None:
        for item in budget.items:
            if not counter.hit(item, KEY_PREFIX, key, budget.scope):
                return item
        return None

    def _current(self) -> _Counter:
        if not self._storage_dead:
            return self._counter
        with self._lock:
            due = time.time() - self._last_check > 2**self._checks
            if due:
                self._last_check = time.time()
                self._checks = 0 if self._checks >= MAX_BACKEND_CHECKS else self._checks + 1
        if due and self._shared is not None and self._shared.storage.check():
            log.info("rate_limit.storage_recovered")
            with self._lock:
                self._storage_dead, self._checks = False, 0
            return self._counter
        return self._fallback

    def _too_many(self, budget: _Budget, key: str, breached: RateLimitItem) -> Response:
        counter = self._fallback if self._storage_dead else self._counter
        try:
            reset_at = counter.reset_at(breached, KEY_PREFIX, key, budget.scope)
        except Exception:  # the storage went away between the count and this read: a window's worth
            reset_at = time.time() + breached.get_expiry()
        # Until the window resets: never more than the window, never 0.
        wait = min(max(1, math.ceil(reset_at - time.time())), breached.get_expiry())
        log.info("rate_limit.exceeded", extra={"scope": budget.scope, "counted_as": key})
        response, status = error_response(429, "rate_limited", budget.message, retry_after=wait)
        response.status_code = status
        response.headers["Retry-After"] = str(wait)
        return response


def install_rate_limits(app: Flask, config: RateLimitSettings) -> RateLimiter | None:
    """Add the limiter's check as the app's next ``before_request`` hook (after ``access.identify``, which
    tells it the key); None when ``rate_limits.enabled`` is false."""
    if not config.enabled:
        return None
    limiter = RateLimiter(config)
    app.before_request(limiter.check)
    return limiter
