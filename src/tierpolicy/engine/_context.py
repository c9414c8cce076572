"""The context schema: which attributes conditions may read, and of which type.

Every policy set has the built-in attributes ``seller.id`` (string), ``seller.tier``
(string) and ``now`` (timestamp); ``Context`` documents add the rest. The schema is what
conditions are type-checked against at load time, so a misspelt attribute is a load
error, not a silent deny.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from ._diagnostics import Code, Position
from ._exceptions import ConditionError, ExpressionTypeError
from .cel import (
    BOOL,
    DOUBLE,
    DURATION,
    INT,
    STRING,
    TIMESTAMP,
    UINT,
    CelType,
    ListType,
    MapType,
    ObjectType,
    parse_type,
)
from .cel import _values as cel_values
from .cel._lexer import RESERVED

if TYPE_CHECKING:
    from collections.abc import Callable


_IDENTIFIER = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
# CEL's reserved words and literals (langdef "Syntax") cannot be field names in selections.
_RESERVED = RESERVED | {"true", "false", "null", "in"}

BUILTIN_SELLER_FIELDS: Mapping[str, CelType] = MappingProxyType({"id": STRING, "tier": STRING})
BUILTIN_ROOTS: Mapping[str, CelType] = MappingProxyType({"now": TIMESTAMP})


@dataclasses.dataclass(frozen=True, slots=True)
class Declaration:
    """One declared attribute: its dotted path, type, and where it was declared."""

    path: str
    type: CelType
    position: Position | None


class SchemaError(Exception):
    """A problem in a Context document, reported by the loader as a diagnostic."""

    def __init__(
        self, message: str, path: tuple[str, ...], hint: str | None = None, *, code: Code = Code.INVALID_VALUE
    ) -> None:
        self.message = message
        self.path = path
        self.hint = hint
        self.code = code
        super().__init__(message)


def build_environment(
    attributes: list[tuple[Mapping[str, object], Callable[[tuple[str, ...]], Position]]],
) -> tuple[dict[str, CelType], list[tuple[SchemaError, Position]]]:
    """Merge Context documents into one CEL environment.

    Args:
        attributes: For each Context document, its ``attributes`` mapping and a function
            giving the position of a path inside it.

    Returns:
        The root-variable environment and the problems found, each with its position.
    """
    declared: dict[str, Declaration] = {}
    objects: dict[str, Position] = {}
    problems: list[tuple[SchemaError, Position]] = []
    for tree, where in attributes:
        stack: list[tuple[tuple[str, ...], Mapping[str, object]]] = [((), tree)]
        while stack:
            prefix, node = stack.pop()
            for key, value in node.items():
                path = (*prefix, key)
                if not _IDENTIFIER.fullmatch(key) or key in _RESERVED:
                    problems.append(
                        (
                            SchemaError(
                                f"attribute name {key!r} cannot be used in conditions",
                                path,
                                hint="use letters, digits and '_', starting with a letter or '_';"
                                " CEL reserved words such as 'in' or 'null' are not allowed",
                                code=Code.INVALID_VALUE,
                            ),
                            where(path),
                        )
                    )
                    continue
                if isinstance(value, dict):
                    objects.setdefault(".".join(path), where(path))
                    if not value:
                        problems.append(
                            (
                                SchemaError("an object needs at least one attribute", path),
                                where(path),
                            )
                        )
                    stack.append((path, value))
                    continue
                _declare(declared, path, value, where, problems)
    problems.extend(_shape_conflicts(declared, objects))
    return _assemble(declared), problems


def _shape_conflicts(
    declared: Mapping[str, Declaration], objects: Mapping[str, Position]
) -> list[tuple[SchemaError, Position]]:
    """Find names declared both as an attribute with a type and as an object."""
    builtin_leaves = {"now", *(f"seller.{name}" for name in BUILTIN_SELLER_FIELDS)}
    conflicts = []
    for dotted, declaration in declared.items():
        if dotted in objects or dotted == "seller":
            where = objects.get(dotted) or declaration.position
            assert where is not None  # noqa: S101  every declaration from a document has a position
            message = (
                f"{dotted!r} is declared both as an object and as an attribute of type {declaration.type}"
            )
            conflicts.append(
                (SchemaError(message, tuple(dotted.split(".")), code=Code.CONTEXT_CONFLICT), where)
            )
    for dotted, position in objects.items():
        if dotted in builtin_leaves:
            message = (
                f"{dotted!r} is built in as {_builtin_type(tuple(dotted.split('.')))}; it cannot be an object"
            )
            conflicts.append(
                (SchemaError(message, tuple(dotted.split(".")), code=Code.CONTEXT_CONFLICT), position)
            )
    return conflicts


def _declare(
    declared: dict[str, Declaration],
    path: tuple[str, ...],
    value: object,
    where: Callable[[tuple[str, ...]], Position],
    problems: list[tuple[SchemaError, Position]],
) -> None:
    dotted = ".".join(path)
    if not isinstance(value, str):
        problems.append(
            (
                SchemaError(
                    f"attribute {dotted!r} needs a type name such as int, double, string",
                    path,
                    code=Code.INVALID_TYPE_NAME,
                ),
                where(path),
            )
        )
        return
    try:
        cel_type = parse_type(value)
    except ExpressionTypeError as exc:
        problems.append((SchemaError(exc.message, path, exc.hint, code=Code.INVALID_TYPE_NAME), where(path)))
        return
    builtin = _builtin_type(path)
    if builtin is not None and builtin != cel_type:
        problems.append(
            (
                SchemaError(
                    f"attribute {dotted!r} is built in with type {builtin}; it cannot be"
                    f" redeclared as {cel_type}",
                    path,
                    code=Code.CONTEXT_CONFLICT,
                ),
                where(path),
            )
        )
        return
    previous = declared.get(dotted)
    if previous is not None and previous.type != cel_type:
        problems.append(
            (
                SchemaError(
                    f"attribute {dotted!r} is declared twice with different types"
                    f" ({previous.type} and {cel_type})",
                    path,
                    code=Code.CONTEXT_CONFLICT,
                    hint=f"first declared at {previous.position}" if previous.position else None,
                ),
                where(path),
            )
        )
        return
    declared[dotted] = Declaration(dotted, cel_type, where(path))


def _builtin_type(path: tuple[str, ...]) -> CelType | None:
    if len(path) == 2 and path[0] == "seller":
        return BUILTIN_SELLER_FIELDS.get(path[1])
    if len(path) == 1:
        return BUILTIN_ROOTS.get(path[0])
    return None


def _assemble(declared: Mapping[str, Declaration]) -> dict[str, CelType]:
    """Turn dotted declarations into nested ObjectTypes, with the built-ins added."""
    tree: dict[str, object] = {"seller": dict(BUILTIN_SELLER_FIELDS), **BUILTIN_ROOTS}
    for dotted, declaration in declared.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                # A leaf and an object of the same name: the leaf was declared first.
                break
            node = child
        else:
            existing = node.get(leaf)
            if not isinstance(existing, dict):
                node[leaf] = declaration.type
    return {name: _to_type(name, node) for name, node in tree.items()}


def _to_type(name: str, node: object) -> CelType:
    if isinstance(node, dict):
        return ObjectType(name, {key: _to_type(f"{name}.{key}", child) for key, child in node.items()})
    assert isinstance(node, CelType)  # noqa: S101  built only from CelType leaves above
    return node


def coerce_context(context: Mapping[str, object], env: Mapping[str, CelType]) -> dict[str, object]:
    """Convert JSON context values to the runtime types the schema declares.

    JSON has no timestamp or duration, so attributes declared with those types arrive
    as strings (RFC 3339 and CEL duration syntax); this converts them once per request.
    Other values are left alone here; the CEL runtime converts the lossless cases when it
    reads an attribute (a whole number in a ``double`` attribute, a non-negative one in a
    ``uint`` attribute), and a value of any other wrong type makes the condition that
    reads it fail with a clear message, as CEL prescribes. To convert many contexts of
    one schema, make a :class:`ContextCoercion` once.

    Raises:
        ValueError: When a timestamp or duration string is malformed; the message names
            the attribute.
    """
    return ContextCoercion(env)(context)


class ContextCoercion:
    """:func:`coerce_context` for one schema, planned once.

    The plan holds only the attributes whose declared type needs converting
    (timestamps and durations, and the objects, lists and maps holding them), so a
    context is walked along those paths alone, and only the objects on them are
    copied; the result is a new top-level mapping either way.

    Args:
        env: The context schema (a policy set's ``environment``).
    """

    __slots__ = ("_plan",)

    def __init__(self, env: Mapping[str, CelType]) -> None:
        self._plan = _plan_fields(env)

    def __call__(self, context: Mapping[str, object]) -> dict[str, object]:
        """The context with its values converted (see :func:`coerce_context`).

        Raises:
            ValueError: A timestamp or duration string is malformed; the message names
                the attribute.
        """
        if self._plan is None:
            return dict(context)
        return self._plan(context, "")  # type: ignore[return-value]  # a mapping in, a dict out


def _plan(declared: CelType) -> Callable[[object, str], object] | None:
    """How to convert a value of type ``declared`` at a path, or ``None`` when nothing needs to."""
    if isinstance(declared, ObjectType):
        return _plan_fields(declared.fields)
    if declared == TIMESTAMP:
        return _timestamp
    if declared == DURATION:
        return _duration
    if isinstance(declared, ListType):
        return _plan_list(declared)
    if isinstance(declared, MapType):
        return _plan_map(declared)
    return None


def _plan_fields(fields: Mapping[str, CelType]) -> Callable[[object, str], object] | None:
    steps = tuple((key, step) for key, declared in fields.items() if (step := _plan(declared)) is not None)
    if not steps:
        return None

    def convert(item: object, path: str) -> object:
        if not isinstance(item, Mapping):
            return item
        result = dict(item)
        for key, step in steps:
            if key in result:
                result[key] = step(result[key], f"{path}.{key}" if path else key)
        return result

    return convert


def _plan_list(declared: ListType) -> Callable[[object, str], object] | None:
    step = _plan(declared.elem)
    if step is None:
        return None

    def convert(item: object, path: str) -> object:
        if not isinstance(item, list):
            return item
        return [step(element, f"{path}[{i}]") for i, element in enumerate(item)]

    return convert


def _plan_map(declared: MapType) -> Callable[[object, str], object] | None:
    step = _plan(declared.value)
    if step is None:
        return None

    def convert(item: object, path: str) -> object:
        if not isinstance(item, Mapping):
            return item
        return {key: step(value, f"{path}[{key!r}]") for key, value in item.items()}

    return convert


def _timestamp(item: object, path: str) -> object:
    return parse_timestamp(item, path) if isinstance(item, str) else item


def _duration(item: object, path: str) -> object:
    return parse_duration(item, path) if isinstance(item, str) else item


def value_problem(value: object, declared: CelType, path: str) -> str | None:
    """What is wrong with a JSON value for an attribute of type ``declared``, or ``None``.

    The JSON forms the evaluation accepts: ``bool``; a whole number for ``int`` (and a
    non-negative one for ``uint``); any number for ``double``; text for ``string``, and
    RFC 3339 or CEL duration text for ``timestamp`` and ``duration`` (parsed values
    pass too); a list, a map or an object of fitting values. ``dyn``, ``bytes`` and
    ``null_type`` accept anything (JSON cannot say more). Used to refuse, when it is
    stored, a value every condition reading it would fail on.

    Args:
        value: The value, as decoded from JSON.
        declared: The attribute's declared type.
        path: Where the value is, for the message (``seller.kyc_level``).
    """
    expected = _JSON_FORMS.get(declared)
    if expected is not None:
        kinds, wanted = expected
        # bool is an int in Python, never a number in JSON.
        fits = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
        if fits and declared == UINT and isinstance(value, int) and value < 0:
            fits = False
        return None if fits else f"{path}: expected {wanted}, found {_json_kind(value)}"
    if declared in (TIMESTAMP, DURATION):
        if isinstance(value, str):
            try:
                (parse_timestamp if declared == TIMESTAMP else parse_duration)(value, path)
            except ValueError as exc:
                return str(exc)
            return None
        kind = dt.datetime if declared == TIMESTAMP else dt.timedelta
        return (
            None
            if isinstance(value, kind)
            else f"{path}: expected {declared} text, found {_json_kind(value)}"
        )
    if isinstance(declared, ListType):
        if not isinstance(value, list):
            return f"{path}: expected a list, found {_json_kind(value)}"
        return next(
            (p for i, item in enumerate(value) if (p := value_problem(item, declared.elem, f"{path}[{i}]"))),
            None,
        )
    if isinstance(declared, (MapType, ObjectType)):
        if not isinstance(value, Mapping):
            return f"{path}: expected an object, found {_json_kind(value)}"
        if isinstance(declared, MapType):
            return next(
                (p for k, v in value.items() if (p := value_problem(v, declared.value, f"{path}[{k!r}]"))),
                None,
            )
        for key, item in value.items():
            field = declared.fields.get(key)
            if field is None:
                return f"{path}.{key}: not declared in the context schema"
            problem = value_problem(item, field, f"{path}.{key}")
            if problem is not None:
                return problem
    return None


_JSON_FORMS: Mapping[CelType, tuple[tuple[type, ...], str]] = {
    BOOL: ((bool,), "true or false"),
    INT: ((int,), "a whole number"),
    UINT: ((int,), "a whole number of 0 or more"),
    DOUBLE: ((int, float), "a number"),
    STRING: ((str,), "text"),
}


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"{value!r} (text)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def parse_timestamp(text: str, where: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp (as CEL's ``timestamp()`` does), naming ``where`` on failure."""
    try:
        return cel_values.parse_timestamp(text)
    except ConditionError:
        msg = f"{where}: expected an RFC 3339 timestamp such as 2026-01-31T12:00:00Z, found {text!r}"
        raise ValueError(msg) from None


def parse_duration(text: str, where: str) -> dt.timedelta:
    """Parse a CEL duration string (``90s``, ``1h30m``, ``2160h``), naming ``where`` on failure."""
    try:
        return cel_values.parse_duration(text)
    except ConditionError:
        msg = f"{where}: expected a duration such as 90s, 36h or 1h30m, found {text!r}"
        raise ValueError(msg) from None
