"""Reading request bodies and query strings, with errors that name the field."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from bridge.domain.text import TextRefused, check_data
from bridge.web.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


# RFC 8259 JSON: Python's json module also reads NaN, Infinity and numbers that overflow to infinity,
# which PostgreSQL's jsonb refuses (a 500 when stored), as does any strict reader. Only floats pay.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def json_body() -> Any:
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type application/json, got {request.mimetype or 'none'!r}",
        )
    raw = request.get_data(cache=False)
    try:
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except ValueError as error:  # UnicodeDecodeError included
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply to be read") from None


def field_name(location: tuple[Any, ...]) -> str:
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validated(
    model: type[Model], body: Any, code: str = "invalid_request", *, text_checked: bool = False
) -> Model:
    """``body`` as ``model``, or a 422 naming the first bad field (all of them in ``fields``).

    ``text_checked``: the model itself refuses every string ``storable`` would (the events' models do,
    field by field: walking a batch of 100 again cost ~0.4 ms)."""
    try:
        given = model.model_validate(body)
    except ValidationError as error:
        fields = [{"field": field_name(e["loc"]), "message": e["msg"]} for e in error.errors()]
        first = fields[0]
        raise ApiError(422, code, f"{first['field']}: {first['message']}", fields=fields) from None
    if not text_checked:
        storable(body, code)
    return given


def storable(body: Any, code: str) -> None:
    """A 422 naming the first key or string of ``body`` that neither database can hold (NUL, a lone
    surrogate; see bridge.domain.text), whichever field it is in: a model's own checks name theirs first."""
    try:
        check_data(body, "")
    except TextRefused as error:
        raise ApiError(422, code, f"{error.where or 'body'}: {error.reason}") from None


def query_int(name: str, default: int, *, minimum: int = 1, maximum: int = 1000) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_query", f"{name}: expected a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ApiError(422, "invalid_query", f"{name}: expected a number from {minimum} to {maximum}")
    return value


def query_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = request.args.get(name, default)
    if value not in choices:
        raise ApiError(422, "invalid_query", f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value
