"""The HTTP client every connector shares: one ``requests.Session`` per platform, a timeout on every call,
a User-Agent, tenacity retries with full-jitter exponential backoff that honour ``Retry-After``, pacing when
the LMS says its rate budget runs low, and ``Link``-header pagination.

What a response *means* is the connector's business (Canvas throttles with a 403, Moodle reports errors
with a 200): each connector passes a ``classify`` hook that raises one of the errors below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from bridge import __version__

USER_AGENT = f"lms-badge-bridge/{__version__} (+https://github.com/lms-badge-bridge)"


class LmsError(Exception):
    """Something the LMS answered (or failed to answer); ``detail`` never contains a token."""


class Retryable(LmsError):
    """Transient: throttled, a server error, a timeout, a body that is not JSON. Retried with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PlatformStopped(LmsError):
    """The platform cannot be used until someone acts (bad token, no access): stop its sync, say why."""


class ItemSkipped(LmsError):
    """One item (a course, a learner's record) cannot be read; skip it, record it, go on."""


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    timeout: float = 30.0  # seconds to connect and between bytes read
    attempts: int = 6  # tries per request, the first included
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    # Pause when the LMS's remaining rate budget falls below this (Canvas: X-Rate-Limit-Remaining).
    pace_below: float = 100.0
    pace_refill_per_second: float = 10.0
    concurrency: int = 2


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_url: str | None


Classifier = Callable[[requests.Response], None]


def _no_classifier(_response: requests.Response) -> None:
    return None


class HttpClient:
    """Requests to one LMS. Thread-safe: a connector may fetch several pages at once."""

    def __init__(
        self,
        base_url: str,
        policy: HttpPolicy,
        *,
        headers: Mapping[str, str] | None = None,
        classify: Classifier = _no_classifier,
        sleep: Callable[[float], None] = time.sleep,
        any_origin: bool = False,
    ) -> None:
        """``any_origin=True`` lets :meth:`request` call hosts other than ``base_url``'s: for clients whose
        URLs are handed in by a caller that vouches for them (LTI service URLs from a validated launch,
        whose token endpoint is often on another host). Pagination still never leaves the first URL's host.
        """
        self.base_url = base_url.rstrip("/") + "/"
        self.policy = policy
        self._origin = _origin(self.base_url)
        self._any_origin = any_origin
        self._classify = classify
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT  # Canvas refuses requests without one (2026)
        self._session.headers["Accept"] = "application/json"
        self._session.headers.update(headers or {})
        # requests' default pool keeps 10 connections per host; more concurrent callers would reconnect.
        adapter = HTTPAdapter(pool_maxsize=max(10, policy.concurrency))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()
        self._not_before = 0.0  # monotonic time before which no request starts (pacing)
        self.calls = 0
        self.retries = 0

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        decode: bool = True,
    ) -> tuple[Any, requests.Response]:
        """The decoded JSON body and the response, after retries; raises an :class:`LmsError`.

        ``headers`` add to (or override) the session's for this request only. ``retry=False`` makes one
        attempt, for a caller that retries a larger unit itself (see :meth:`retrying`). ``decode=False``
        returns ``None`` for the body and leaves the response to the caller: for answers that may be
        empty, or whose body must never appear in an error message (an access token).
        """
        if not self._any_origin and _origin(url) != self._origin:
            # Pagination links are opaque; never send this platform's credentials anywhere else.
            raise PlatformStopped(f"refusing to follow a link off the platform's host: {_origin(url)}")
        arguments = (method, url, params, data, json, headers, decode)
        return self.retrying()(self._once, *arguments) if retry else self._once(*arguments)

    def retrying(self) -> Retrying:
        """This client's retry loop (policy, backoff, ``Retry-After``, sleep), to wrap a unit of several
        requests that must be retried together, e.g. "look the item up, create it if missing": retrying the
        creation alone after a timeout could create it twice.
        """
        return Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(Retryable),
            sleep=self._sleep,
            before_sleep=self._count_retry,
            reraise=True,
        )

    def paginate(self, url: str, params: Any = None) -> Iterator[Page]:
        """Pages of a list, following ``Link: rel="next"`` until there is none.

        The next link carries every parameter, so it is requested as it stands.
        """
        next_url: str | None = url
        while next_url is not None:
            if _origin(next_url) != _origin(url):
                raise PlatformStopped(
                    f"refusing to follow a link off the platform's host: {_origin(next_url)}"
                )
            body, response = self.request("GET", next_url, params=params)
            params = None
            next_url = response.links.get("next", {}).get("url")
            yield Page(body if isinstance(body, list) else [body], next_url)

    def close(self) -> None:
        self._session.close()

    def _once(
        self,
        method: str,
        url: str,
        params: Any,
        data: Any,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        decode: bool = True,
    ) -> tuple[Any, requests.Response]:
        self._wait_for_pace()
        with self._lock:
            self.calls += 1
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=data,
                json=json,
                headers=dict(headers) if headers else None,
                timeout=self.policy.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise Retryable(f"{method} {_path(url)}: no answer within {self.policy.timeout}s") from None
        except requests.ConnectionError as error:
            raise Retryable(f"{method} {_path(url)}: connection failed ({type(error).__name__})") from None
        self._pace(response)
        self._classify(response)
        status = response.status_code
        if status == 429:
            raise Retryable(f"{method} {_path(url)}: throttled (429)", retry_after(response))
        if status >= 500:
            raise Retryable(f"{method} {_path(url)}: server error {status}", retry_after(response))
        if status >= 400 or 300 <= status < 400:
            raise ItemSkipped(f"{method} {_path(url)}: HTTP {status}: {_snippet(response)}")
        if not decode:
            return None, response
        try:
            return response.json(), response
        except ValueError:
            # A PHP notice before the JSON, a proxy's HTML page, a body cut short: try again later.
            raise Retryable(f"{method} {_path(url)}: the body is not JSON: {_snippet(response)}") from None

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.policy.backoff_max))
        # Full jitter: uniform(0, min(cap, base * 2**n)) spreads clients apart (AWS architecture blog).
        jitter = wait_random_exponential(multiplier=self.policy.backoff_base, max=self.policy.backoff_max)
        return float(jitter(state))

    def _count_retry(self, _state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1

    def _pace(self, response: requests.Response) -> None:
        remaining = response.headers.get("X-Rate-Limit-Remaining")  # header names are case-insensitive
        if remaining is None:
            return
        try:
            left = float(remaining)
        except ValueError:
            return
        if left >= self.policy.pace_below:
            return
        # Canvas's bucket leaks ~10 units/s (doc/api/throttling.md): wait until it is back above the mark.
        pause = (self.policy.pace_below - left) / self.policy.pace_refill_per_second
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + pause)

    def _wait_for_pace(self) -> None:
        with self._lock:
            delay = self._not_before - time.monotonic()
        if delay > 0:
            self._sleep(delay)


def retry_after(response: requests.Response) -> float | None:
    """Seconds the server asks us to wait (``Retry-After``: seconds or an HTTP date), if it says."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _path(url: str) -> str:
    """The URL without its query string: Canvas pagination links may carry an access token."""
    return urlsplit(url).path


def _snippet(response: requests.Response) -> str:
    return response.text[:200].replace("\n", " ").strip()


def php_params(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Form parameters in PHP's bracket encoding, as Moodle's web services read them.

    ``{"options": [{"name": "onlyactive", "value": True}]}`` becomes
    ``options[0][name]=onlyactive&options[0][value]=1`` (moodle/moodle: webservice/rest/locallib.php).
    """
    pairs: list[tuple[str, str]] = []

    def add(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for name, inner in value.items():
                add(f"{key}[{name}]", inner)
        elif isinstance(value, list | tuple):
            for index, inner in enumerate(value):
                add(f"{key}[{index}]", inner)
        elif isinstance(value, bool):
            pairs.append((key, "1" if value else "0"))
        elif value is not None:
            pairs.append((key, str(value)))

    for name, value in values.items():
        add(name, value)
    return pairs
