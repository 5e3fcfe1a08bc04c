"""Cursor paging for every list of the REST API: ``?limit=``, ``?order=newest|oldest`` and ``?cursor=``.

A list answers ``next_cursor``: pass it back as ``cursor`` for the next page; it is null after the last
page. The cursor is opaque to clients (base64url of the list's name, the order and the last id seen);
one that does not decode, or was given out by another list or for the other order, is a 400 naming it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import request

from bridge.services.paging import Keyset, Page
from bridge.web.errors import ApiError
from bridge.web.inputs import query_choice, query_int

ORDERS = ("newest", "oldest")


def keyset(list_name: str, *, limit: int = 100, maximum: int = 1000, order: str = "newest") -> Keyset:
    """The page asked for in the query string."""
    size = query_int("limit", limit, maximum=maximum)
    asked_order = request.args.get("order")
    chosen = query_choice("order", order, ORDERS)
    cursor = request.args.get("cursor")
    if cursor is None:
        return Keyset(size, None, chosen == "newest")
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        raw = cursor.encode("ascii")
        decoded = json.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
        name, cursor_order, after = decoded["l"], decoded["o"], decoded["a"]
        valid = name == list_name and cursor_order in ORDERS and type(after) is int and 0 < after < 2**63
    except (UnicodeError, ValueError, binascii.Error, TypeError, KeyError, RecursionError):
        valid = False
    if not valid:
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this list gave out (use its next_cursor)")
    if asked_order is not None and asked_order != cursor_order:
        message = f"cursor: it continues a list in order={cursor_order}, not order={chosen}"
        raise ApiError(400, "invalid_cursor", message)
    return Keyset(size, after, cursor_order == "newest")


def next_cursor(list_name: str, page: Page[Any], keyset: Keyset) -> str | None:
    if page.last_id is None:
        return None
    document = {"l": list_name, "o": "newest" if keyset.newest_first else "oldest", "a": page.last_id}
    encoded = base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode())
    return encoded.rstrip(b"=").decode("ascii")
