"""Who may call the REST API, decided in one place for every ``/api/v1`` route.

Each API view declares what it needs with ``@needs("read" | "write" | "admin")`` under its route
decorator (``@needs("public")`` for one that needs no key); views do not check keys themselves. Two
hooks around the rate limiter do the rest:

- ``identify`` reads the bearer key (its SHA-256 is looked up, the key itself is never kept or logged) and
  remembers the caller, or why there is none, so that the limiter counts requests per key;
- ``enforce`` refuses, in this order: the API disabled (403), no or a bad key (401), a change while
  ``api_access = "read"`` (403), a key without the scope the route needs (403 naming the scope), and a key
  bound to one platform asking for another (403), or for a route that acts on every platform (403).

``check_declared`` makes ``create_app`` fail at start-up if an ``/api/v1`` route declares nothing.
Inside a view, ``actor()`` names the caller for the audit log and ``platform_filter`` and
``check_platform`` keep a platform-bound key to its platform where the platform is in a body or implied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from flask import Flask, Request, current_app, g, request

from bridge.services.api_keys import ApiCaller
from bridge.web.context import services
from bridge.web.errors import ApiError

API_PREFIX = "/api/v1/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Scope = Literal["read", "write", "admin", "public"]
View = TypeVar("View", bound=Callable[..., object])
_NEED = "_api_need"


@dataclass(frozen=True)
class Need:
    scope: Scope  # "public": no key needed (a document about the API itself, such as its description)
    every_platform: bool  # acts on every platform at once: a key bound to one platform may not call it


def needs(scope: Scope, *, every_platform: bool = False) -> Callable[[View], View]:
    """Declare the scope a view needs; put it under the route decorator, so that the view it marks is
    the one registered."""

    def declare(view: View) -> View:
        setattr(view, _NEED, Need(scope, every_platform))
        return view

    return declare


def need_of(app: Flask, endpoint: str | None) -> Need | None:
    return getattr(app.view_functions.get(endpoint or ""), _NEED, None)


def api_endpoints(app: Flask) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules() if rule.rule.startswith(API_PREFIX)}


def check_declared(app: Flask) -> None:
    """Refuse to build an app with an API route whose view does not say what it needs."""
    missing = sorted(e for e in api_endpoints(app) if need_of(app, e) is None)
    if missing:
        names = ", ".join(missing)
        raise RuntimeError(f"API views without @needs(scope): {names} (see bridge/web/access.py)")


_NOT_API = Need("public", False)  # what _api_need answers outside /api/v1: nothing to check


def _api_need(current: Request) -> Need | None:
    """The need the API route of this request declared (``_NOT_API`` outside the API; None if it declared
    none). Read from the request object itself: these hooks run on every request, and each lookup through
    Flask's context proxies costs about a microsecond."""
    rule = current.url_rule
    if rule is None or not rule.rule.startswith(API_PREFIX):
        return _NOT_API
    return need_of(current_app, current.endpoint)


def identify() -> None:
    """Before the rate limiter: who is calling (``g.api_caller``), or why nobody is (``g.api_refusal``)."""
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    need = _api_need(current)
    if need is not None and need.scope == "public":
        return
    found = services()
    if found.settings.api_access == "disabled":
        message = "the REST API is disabled (set api_access to 'read' or 'write')"
        g.api_refusal = ApiError(403, "api_disabled", message)
        return
    scheme, _, key = current.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        message = "send an API key as 'Authorization: Bearer <key>'"
        g.api_refusal = ApiError(401, "missing_credentials", message)
        return
    verdict = found.api_keys.verify(key)
    if verdict.caller is not None:
        g.api_caller = verdict.caller
    elif verdict.refusal == "expired":
        g.api_refusal = ApiError(401, "expired_credentials", "the API key has expired")
    else:
        g.api_refusal = ApiError(401, "invalid_credentials", "the API key is unknown or revoked")


def enforce() -> None:
    """After the rate limiter: refuse what the caller may not do, or let the view run."""
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    need = _api_need(current)
    if need is not None and need.scope == "public":
        return
    context = g._get_current_object()  # type: ignore[attr-defined]
    refusal: ApiError | None = context.pop("api_refusal", None)
    if refusal is not None:
        raise refusal
    if need is None:  # check_declared makes this unreachable; refuse rather than allow if it is not
        raise ApiError(403, "forbidden", "this route declares no access rule")
    found: ApiCaller = context.api_caller
    if current.method not in SAFE_METHODS and services().settings.api_access != "write":
        raise ApiError(403, "api_read_only", "the REST API is read-only here (api_access = 'read')")
    if not found.allows(need.scope):
        message = f"scope: this call needs a key with the {need.scope!r} scope; this key has {found.scope!r}"
        raise ApiError(403, "insufficient_scope", message, required_scope=need.scope)
    if found.platform is None:
        return
    if need.every_platform:
        message = f"this call acts on every platform; the key is limited to platform {found.platform!r}"
        raise ApiError(403, "platform_key", message)
    view_args = current.view_args or {}
    for where, asked in (("path", view_args.get("platform")), ("query", current.args.get("platform"))):
        if isinstance(asked, str) and asked.strip() and asked.strip() != found.platform:
            raise _other_platform(f"platform ({where})", asked)


def _other_platform(field: str, asked: str) -> ApiError:
    bound = g.api_caller.platform
    message = f"{field}: the key is limited to platform {bound!r}, not {asked[:64]!r}"
    return ApiError(403, "other_platform", message)


def caller() -> ApiCaller:
    """The key calling this view (``enforce`` let it in)."""
    return g.api_caller


def actor() -> str:
    """Who is acting, for the audit log: the calling key's name."""
    return caller().name


def bound_platform() -> str | None:
    return caller().platform


def platform_filter(asked: str | None) -> str | None:
    """The platform a listing is narrowed to: the key's own if it is bound to one, else ``asked``."""
    return bound_platform() or asked


def check_platform(platform: str, field: str = "platform") -> None:
    """A platform named in a body: a key bound to another platform may not act on it (403)."""
    bound = bound_platform()
    if bound is not None and platform != bound:
        raise _other_platform(field, platform)
