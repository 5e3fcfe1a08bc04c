"""Who may call the REST API: the ``api_access`` setting and bearer API keys."""

from __future__ import annotations

from flask import request

from bridge.web.context import services
from bridge.web.errors import ApiError


def authorise(*, write: bool) -> str:
    """The name of the calling API key, or an ApiError (403 disabled or read-only, 401 no valid key)."""
    access = services().settings.api_access
    if access == "disabled":
        raise ApiError(403, "api_disabled", "the REST API is disabled (set api_access to 'read' or 'write')")
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "missing_credentials", "send an API key as 'Authorization: Bearer <key>'")
    holder = services().api_keys.holder(key.strip())
    if holder is None:
        raise ApiError(401, "invalid_credentials", "the API key is unknown or revoked")
    if write and access != "write":
        raise ApiError(403, "api_read_only", "the REST API is read-only here (api_access = 'read')")
    return holder
