"""Reading request bodies and query strings, with errors that name the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from bridge.web.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)


def json_body() -> Any:
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type application/json, got {request.mimetype or 'none'!r}",
        )
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None


def field_name(location: tuple[Any, ...]) -> str:
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validated(model: type[Model], body: Any, code: str = "invalid_request") -> Model:
    """``body`` as ``model``, or a 422 naming the first bad field (all of them in ``fields``)."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        fields = [{"field": field_name(e["loc"]), "message": e["msg"]} for e in error.errors()]
        first = fields[0]
        raise ApiError(422, code, f"{first['field']}: {first['message']}", fields=fields) from None


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
