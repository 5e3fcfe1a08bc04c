"""Which text a learning event may carry: what both databases store and read back unchanged.

Decided once, here, so the inbox refuses at the door what would otherwise fail later, in the worker:
- NUL: PostgreSQL's ``text`` and ``jsonb`` cannot hold it, and SQLite hands back a string cut at it (a
  learner ``"\\x00"`` stored, ``""`` read), so a stored event would no longer match its own learner.
- lone surrogates (``"\\ud800"``, which JSON's ``\\u`` escapes can make): not encodable as UTF-8, so
  neither database can store them.
- other control characters (C0, DEL, C1): not in names. An identifier, a course or an item with a line
  break or an escape sequence is a mistake or an attack on whoever reads logs and pages. The free text
  of ``data`` may hold tabs and line breaks.
- lengths: names fit their columns (``platform`` 64, the rest 255).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NAME_LIMITS = {"platform": 64, "event_key": 255, "kind": 64, "learner": 255, "course": 255, "item": 255}
# JSON nested deeper than this in ``data`` is refused: no LMS sends it, and each level costs the stack.
MAX_DATA_DEPTH = 32

_NOT_IN_NAMES = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_TEXT = re.compile(r"[\x00\ud800-\udfff]")


class TextRefused(ValueError):
    """A value the inbox does not accept; the message names the field and the reason."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where} {reason}".lstrip())
        self.where = where
        self.reason = reason


def _describe(character: str) -> str:
    if character == "\x00":
        return "a NUL character"
    if "\ud800" <= character <= "\udfff":
        return f"a lone surrogate (U+{ord(character):04X})"
    return f"a control character (U+{ord(character):04X})"


def name_problem(value: str, limit: int = 255) -> str | None:
    """Why ``value`` cannot be an identifier, course or item, or None when it can."""
    if len(value) > limit:
        return f"is {len(value)} characters long, at most {limit} allowed"
    bad = _NOT_IN_NAMES.search(value)
    return None if bad is None else f"contains {_describe(bad.group())}"


def check_names(
    platform: str, event_key: str, kind: str, learner: str, course: str | None, item: str | None
) -> None:
    """Raise :class:`TextRefused` naming the first of an event's names that is not acceptable."""
    # Every event passes here, the worker's re-reads included: one search over them all when they are
    # fine, which nearly all are, and the field named only when one is not.
    joined = f"{platform}{event_key}{kind}{learner}{course or ''}{item or ''}"
    if _NOT_IN_NAMES.search(joined) is None and (
        len(joined) <= 64  # then every one fits, whatever its limit
        or (
            len(platform) <= 64
            and len(kind) <= 64
            and max(len(event_key), len(learner), len(course or ""), len(item or "")) <= 255
        )
    ):
        return
    values = {"platform": platform, "event_key": event_key, "kind": kind, "learner": learner}
    for field, value in {**values, "course": course, "item": item}.items():
        if value is not None:
            problem = name_problem(value, NAME_LIMITS[field])
            if problem is not None:
                raise TextRefused(field, problem)


def check_data(data: Any, where: str = "data", depth: int = 0) -> None:
    """Raise :class:`TextRefused` if a key or string anywhere in ``data`` cannot be stored, or if it
    nests deeper than :data:`MAX_DATA_DEPTH`; ``where`` names ``data`` in the message."""
    if depth == 0 and isinstance(data, Mapping) and _is_flat_and_clean(data):
        return
    if isinstance(data, str):
        bad = _NOT_IN_TEXT.search(data)
        if bad is not None:
            raise TextRefused(where, f"contains {_describe(bad.group())}")
        return
    if depth >= MAX_DATA_DEPTH and isinstance(data, Mapping | list):
        raise TextRefused(where, f"nests deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(data, Mapping):
        for key, value in data.items():
            check_data(key, f"{where} key {key!r:.40}".lstrip(), depth + 1)
            check_data(value, f"{where}.{key}".lstrip("."), depth + 1)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_data(value, f"{where}[{index}]", depth + 1)


_SCALARS = (int, float, bool, type(None))


def _is_flat_and_clean(data: Mapping[Any, Any]) -> bool:
    """The common ``data``: one level of numbers and clean strings, checked in one search."""
    strings = []
    for key, value in data.items():
        if isinstance(value, str):
            strings.append(value)
        elif not isinstance(value, _SCALARS):
            return False
        strings.append(key)
    return _NOT_IN_TEXT.search("".join(strings)) is None
