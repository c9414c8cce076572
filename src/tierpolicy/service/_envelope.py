"""The service's success envelope and its JSON body reader.

Successful answers are ``{"data": ..., "meta": {"request_id": ..., "policy_version": ...}}``;
request bodies are read as UTF-8 JSON, bad ones refused as 400 problems naming where
they break.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import orjson
from fastapi.responses import Response

from ._problems import ServiceError, counted_headers, request_id

if TYPE_CHECKING:
    from fastapi import Request

    from tierpolicy.engine._engine import Engine


def envelope(request: Request, data: object, status: int = 200) -> Response:
    """``{"data": data, "meta": {"request_id": ..., "policy_version": ...}}`` as a JSON response.

    Serialised here with orjson: FastAPI would otherwise walk the whole answer with
    ``jsonable_encoder`` first, which cost the evaluate endpoint more than the
    evaluation itself, and the standard library's encoder took a tenth of what was left
    (see docs/benchmarks.md). ``data`` must be plain JSON values (timestamps as RFC 3339
    text); anything else is a bug and fails loudly. Headers dependencies leave in
    ``request.state.answer_headers`` (the rate limits', see :func:`counted_headers`) are set.
    """
    engine: Engine = request.app.state.holder.engine
    body = {"data": data, "meta": {"request_id": request_id(request), "policy_version": engine.version}}
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=counted_headers(request),
        media_type="application/json",
    )


class _NotJsonNumberError(ValueError):
    """A number the standard library reads but JSON does not have (``NaN``, ``Infinity``, ``1e999``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _constant(text: str) -> float:
    raise _NotJsonNumberError(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJsonNumberError(text)
    return value


# The standard library's reader (orjson reads integers beyond 64 bits as floats, and the
# context's integers must stay exact), refusing what RFC 8259 has no number for: such a
# value would otherwise reach the answer, which no JSON can carry.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite)

# Skips strings, so a match of the second group is the number itself.
_NUMBER_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')


def _where(text: str, number: str) -> str:
    """`` at line L column C`` of ``number``'s first occurrence outside strings, or ``""``."""
    for match in _NUMBER_TOKEN.finditer(text):
        if match.group(1) == number:
            offset = match.start(1)
            line = text.count("\n", 0, offset) + 1
            column = offset - text.rfind("\n", 0, offset)
            return f" at line {line} column {column}"
    return ""


async def read_json(request: Request) -> object:
    """The request body as JSON (its size is bounded by :class:`BodyLimitMiddleware`).

    Raises:
        ServiceError: ``MALFORMED_REQUEST`` (400), naming where the JSON breaks.
    """
    body = await request.body()
    try:
        # Decoded here: json.loads(bytes) would guess UTF-16 or UTF-32 from a byte order mark.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceError(
            "MALFORMED_REQUEST", f"the body is not UTF-8 (byte {exc.start})", status=400
        ) from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ServiceError("MALFORMED_REQUEST", "the JSON body is nested too deeply", status=400) from None
    except _NotJsonNumberError as exc:
        shown = exc.text if len(exc.text) <= 24 else f"{exc.text[:21]}..."
        why = (
            "JSON has no NaN or infinity"
            if exc.text.lstrip("-") in ("NaN", "Infinity")
            else "out of range of a double, whose largest is about 1.8e308"
        )
        raise ServiceError(
            "MALFORMED_REQUEST",
            f"the body is not JSON this service reads: {shown} ({why}){_where(text, exc.text)}",
            status=400,
        ) from None
    except json.JSONDecodeError as exc:
        raise ServiceError(
            "MALFORMED_REQUEST",
            f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            status=400,
        ) from None


def inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with its ``$defs`` references inlined (OpenAPI cannot see ``#/$defs``)."""
    defs = schema.pop("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved = resolve(schema)
    assert isinstance(resolved, dict)  # noqa: S101  a dict in, a dict out
    return resolved
