"""Filter expressions over learning events, compiled once with rule-engine and never ``eval``-ed.

rule-engine is a small, non-Turing-complete language (comparisons, boolean logic, ``in``, regular
expressions) with a type checker: a misspelt name or a string compared with a number is an error when
the template loads, not when an event arrives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import rule_engine

_TYPES = {
    "kind": rule_engine.DataType.STRING,
    "course": rule_engine.DataType.STRING,
    "item": rule_engine.DataType.STRING,
    "platform": rule_engine.DataType.STRING,
    "learner": rule_engine.DataType.STRING,
    "score": rule_engine.DataType.FLOAT,
    "data": rule_engine.DataType.MAPPING(rule_engine.DataType.STRING),
}
FILTER_NAMES = tuple(_TYPES)

# data['name'], not data.name: rule-engine 5 deprecates attribute access on mappings (gone in 6), and
# with it off a template using it is refused when it loads instead of breaking on an upgrade.
_CONTEXT = rule_engine.Context(
    type_resolver=rule_engine.type_resolver_from_dict(_TYPES), mapping_attribute_lookup=False
)


class ExpressionError(ValueError):
    pass


_NAMES = re.compile(rf"\b({'|'.join(FILTER_NAMES)})\b")
_DATA = re.compile(r"\bdata\b")
_DATA_KEY = re.compile(r"""\bdata\s*\[\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\]""")
_CACHE_LIMIT = 4096
_ABSENT = object()


class EventFilter:
    """A compiled expression; ``matches`` is False when it cannot be evaluated for an event.

    Results are remembered by the values of the names the expression mentions: rule-engine evaluates
    in tens of microseconds (hundreds with ``data``, which it converts whole), and the same few courses,
    scores and activity types come back again and again. ``data`` is remembered by the keys the
    expression reads, when it reads them only as ``data['key']``, and handed to rule-engine as just those
    keys; an expression that uses ``data`` any other way is evaluated every time.
    """

    __slots__ = ("_cache", "_data_keys", "_names", "_rule", "text")

    def __init__(self, text: str) -> None:
        if not text.strip():
            raise ExpressionError("empty expression")
        try:
            self._rule = rule_engine.Rule(text, context=_CONTEXT)
        except rule_engine.errors.SymbolResolutionError as error:
            raise ExpressionError(
                f"unknown name {error.symbol_name!r}; expected one of {', '.join(FILTER_NAMES)}"
            ) from None
        except rule_engine.errors.RuleSyntaxError as error:
            token = getattr(error.token, "value", None)
            where = f" at {token!r}" if token is not None else " (incomplete expression)"
            raise ExpressionError(f"syntax error{where}") from None
        except rule_engine.errors.EngineError as error:
            message = error.message
            if "attribute access on a MAPPING" in message:
                message = "read event data as data['name'], not data.name"
            raise ExpressionError(message) from None
        self.text = text
        # Either may over-count (a name inside a string, say): a larger key, never a wrong answer.
        names = tuple(sorted(set(_NAMES.findall(text)) - {"data"}))
        data_keys = tuple(sorted({a or b for a, b in _DATA_KEY.findall(text)}))
        only_keyed = len(_DATA.findall(text)) == len(_DATA_KEY.findall(text))
        self._names: tuple[str, ...] | None = names if only_keyed else None
        self._data_keys = data_keys
        self._cache: dict[tuple[Any, ...], bool] = {}

    def matches(self, context: Mapping[str, Any]) -> bool:
        if self._names is None:
            return self._evaluate(context)
        data = context["data"]
        read = tuple(data.get(k, _ABSENT) for k in self._data_keys) if self._data_keys else ()
        # With each data value's type: True and 1 are equal keys, but not equal to rule-engine.
        key = (*(context[name] for name in self._names), *((type(v), v) for v in read))
        try:
            found = self._cache.get(key)
        except TypeError:  # a data value that cannot be a key (a list, say)
            found, key = None, None
        if found is None:
            if self._data_keys:
                wanted = {k: v for k, v in zip(self._data_keys, read, strict=True) if v is not _ABSENT}
                context = {**context, "data": wanted}
            found = self._evaluate(context)
            if key is not None:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[key] = found
        return found

    def _evaluate(self, context: Mapping[str, Any]) -> bool:
        try:
            return bool(self._rule.matches(context))
        except rule_engine.errors.EngineError:
            # e.g. ``score >= 0.9`` on an event without a score, or a ``data`` key it does not carry.
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventFilter) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"EventFilter({self.text!r})"
