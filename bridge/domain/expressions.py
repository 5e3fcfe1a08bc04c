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
_CACHE_LIMIT = 4096


class EventFilter:
    """A compiled expression; ``matches`` is False when it cannot be evaluated for an event.

    Results are remembered by the values of the names the expression mentions: rule-engine evaluates
    in tens of microseconds, and the same few courses and scores come back again and again. Expressions
    on ``data`` are not remembered (its values need not be hashable).
    """

    __slots__ = ("_cache", "_names", "_rule", "text")

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
        names = tuple(sorted(set(_NAMES.findall(text))))  # may over-count (a name in a string): harmless
        self._names = None if "data" in names else names
        self._cache: dict[tuple[Any, ...], bool] = {}

    def matches(self, context: Mapping[str, Any]) -> bool:
        if self._names is None:
            return self._evaluate(context)
        key = tuple(context[name] for name in self._names)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[key] = self._evaluate(context)
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
