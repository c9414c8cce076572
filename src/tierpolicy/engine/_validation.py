"""Turn pydantic validation errors into diagnostics a product manager can act on."""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ._diagnostics import Code, closest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic_core import ErrorDetails

_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping of keys to values",
    "list_type": "a list",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "datetime_type": "a timestamp such as 2026-12-31T00:00:00Z",
    "datetime_parsing": "a timestamp such as 2026-12-31T00:00:00Z",
    "datetime_from_date_parsing": "a timestamp such as 2026-12-31T00:00:00Z",
    "literal_error": "",
}


def describe(value: object) -> str:
    """Say what a YAML value is, for "found ..." messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def data_path(loc: Sequence[int | str], data: object) -> tuple[str | int, ...]:
    """Keep the prefix of a pydantic ``loc`` that names real places in ``data``.

    Pydantic appends union-branch labels (``constrained-int``, ``literal['x']``) and
    validator names to ``loc``; they are not keys of the document and have no position.
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        found, child = _child(node, part)
        if found:
            node = child
        elif isinstance(node, dict) and isinstance(part, str) and part.startswith("["):
            continue
        else:
            # An extra/missing key is named by the last element: keep it for the message.
            if isinstance(node, dict) and isinstance(part, str) and not _is_branch_label(part):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


def _child(node: object, part: int | str) -> tuple[bool, object]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _is_branch_label(part: str) -> bool:
    return part.startswith(("constrained-", "literal[", "function-", "lax-", "strict-")) or part in {
        "str",
        "int",
        "bool",
        "float",
        "dict",
        "list",
        "dict[str,any]",
        "datetime",
        "none",
    }


def allowed_keys(model: type[BaseModel], path: Sequence[str | int]) -> list[str] | None:
    """Return the keys a mapping at ``path`` (inside ``model``) accepts, if it is a model."""
    annotation: object = model
    for part in path:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    target = _model_of(annotation)
    if target is None:
        return None
    return [field.alias or name for name, field in target.model_fields.items()]


def _step(annotation: object, part: str | int) -> object:
    annotation = _unwrap(annotation)
    model = _model_of(annotation)
    if model is not None:
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


def _unwrap(annotation: object) -> object:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _model_of(annotation: object) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def translate(
    errors: Sequence[ErrorDetails], data: object, model: type[BaseModel], where: str
) -> list[tuple[tuple[str | int, ...], Code, str, str | None, bool]]:
    """Translate pydantic errors into ``(path, code, message, hint, at_key)`` tuples.

    Errors for the same place (one per union branch) are merged into one message.

    Args:
        errors: ``ValidationError.errors()``.
        data: The validated input, to tell real keys from union labels.
        model: The model validated, to list the keys a mapping accepts.
        where: A prefix naming the document part, e.g. ``spec``.
    """
    grouped: dict[tuple[str | int, ...], list[ErrorDetails]] = {}
    for error in errors:
        grouped.setdefault(data_path(error["loc"], data), []).append(error)
    results = []
    for path, group in grouped.items():
        results.append(_one(path, group, model, where))
    return results


def _one(
    path: tuple[str | int, ...],
    group: list[ErrorDetails],
    model: type[BaseModel],
    where: str,
) -> tuple[tuple[str | int, ...], Code, str, str | None, bool]:
    first = group[0]
    kind = first["type"]
    place = _dotted(where, path)
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = allowed_keys(model, path[:-1]) or []
        close = closest(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else None
        if allowed:
            listed = ", ".join(allowed)
            hint = f"{hint} " if hint else ""
            hint += f"allowed here: {listed}"
        parent = _dotted(where, path[:-1])
        return path, Code.UNKNOWN_KEY, f"unknown key {key!r} in {parent}", hint, True
    if kind == "missing":
        key = str(path[-1])
        parent = _dotted(where, path[:-1])
        return (
            path[:-1],
            Code.MISSING_KEY,
            f"{parent} is missing the required key {key!r}",
            None,
            False,
        )
    found = describe(first.get("input"))
    expected = [_expected(e) for e in group]
    expected_words = [e for e in expected if e]
    if expected_words and all(e["type"] in _TYPE_WORDS for e in group):
        unique = list(dict.fromkeys(expected_words))
        text = " or ".join(unique)
        return path, Code.WRONG_TYPE, f"{place} should be {text}, found {found}", None, False
    messages = list(dict.fromkeys(_value_message(e) for e in group))
    text = f"{place}: {'; or '.join(messages)}"
    if not isinstance(first.get("input"), (dict, list)):
        # For a whole mapping or list, "found a mapping" says nothing the reader lacks.
        text += f" (found {found})"
    return path, Code.INVALID_VALUE, text, None, False


def _expected(error: ErrorDetails) -> str:
    if error["type"] == "literal_error":
        ctx = error.get("ctx") or {}
        return str(ctx.get("expected", "")).replace("'", "")
    return _TYPE_WORDS.get(error["type"], "")


def _value_message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        if "[.-]" in pattern:
            return (
                "names use lowercase letters, digits and '_', start with a letter, and may be"
                " dotted like 'analytics.advanced'"
            )
        return "names use lowercase letters, digits and '_', and start with a letter"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        bound = next(iter(ctx.values()), "")
        word = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        return f"must be {word} {bound}"
    if kind in {"too_short", "string_too_short"}:
        return "must not be empty"
    if kind in {"too_long", "string_too_long"}:
        return f"is too long (at most {ctx.get('max_length')})"
    return str(error["msg"]).rstrip(".").lower()


def _dotted(where: str, path: Sequence[str | int]) -> str:
    text = where
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
