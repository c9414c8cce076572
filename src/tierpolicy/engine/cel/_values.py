"""Run-time values and the CEL operations on them.

CEL values are plain Python objects:

============  ===============================================================
CEL type      Python value
============  ===============================================================
bool          ``bool``
int           ``int`` (always within int64; arithmetic checks overflow)
uint          :class:`UInt`, an ``int`` subclass within uint64
double        ``float``
string        ``str``
bytes         ``bytes``
null_type     ``None``
list          ``list`` or ``tuple``
map           any ``Mapping`` (context objects are plain dicts)
timestamp     timezone-aware ``datetime`` in UTC, microsecond precision
duration      ``timedelta``, microsecond precision
============  ===============================================================

Python's ``bool`` is an ``int`` subclass, and ``True == 1`` in Python; CEL keeps the two
apart, so every operation here rules out ``bool`` (and ``UInt``) before it treats a value
as an ``int``.

The functions in this module implement CEL semantics for values of any kind and raise
:class:`~tierpolicy.engine._exceptions.ConditionError` with a human message when an
operation is undefined (CEL's "no matching overload") or fails (overflow, division by
zero, a missing key). The compiler calls them on its slow paths; its fast paths inline
the common cases and fall back here for everything else.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Protocol, TypeGuard

import re2

from tierpolicy.engine._exceptions import ConditionError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1
# Doubles convert to int only strictly inside (-2**63, 2**63), as in the reference runtimes.
_INT_CONVERT_LIMIT: Final = 9.223372036854775808e18
_UINT_CONVERT_LIMIT: Final = 1.8446744073709551616e19

UTC: Final = dt.UTC
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=UTC)
# The range of duration literals (the protobuf Duration range): about ten thousand years.
MAX_DURATION: Final = dt.timedelta(seconds=315_576_000_000)
_ONE_SECOND: Final = dt.timedelta(seconds=1)
_ONE_MICROSECOND: Final = dt.timedelta(microseconds=1)


class UInt(int):
    """A CEL ``uint`` value: an ``int`` in ``[0, 2**64)`` tagged as unsigned.

    CEL keeps ``int`` and ``uint`` apart (``1 + 1u`` is an error), so uint values need a
    distinct Python type. Context attributes declared ``uint`` may be given as plain
    non-negative ints; reading them converts.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"UInt({int(self)})"


MISSING: Final = object()
"""Sentinel returned by :func:`map_lookup` when a key is absent."""

_KINDS: Final[dict[type, str]] = {
    bool: "bool",
    int: "int",
    UInt: "uint",
    float: "double",
    str: "string",
    bytes: "bytes",
    type(None): "null_type",
    list: "list",
    tuple: "list",
    dict: "map",
    MappingProxyType: "map",
    dt.datetime: "timestamp",
    dt.timedelta: "duration",
}
_ORDERED_KINDS: Final = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"}
)


def kind_of(value: object) -> str:
    """Return the CEL type name of a run-time value.

    Subclasses of the standard types (``IntEnum``, ``StrEnum``, ``OrderedDict``) count
    as their base kind; anything else is reported by its Python class name, which then
    fails every operation with a "no matching overload" message that names it.
    """
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    for base, name in (
        (bool, "bool"),
        (UInt, "uint"),
        (int, "int"),
        (float, "double"),
        (str, "string"),
        (bytes, "bytes"),
        (dt.datetime, "timestamp"),
        (dt.timedelta, "duration"),
        (list, "list"),
        (tuple, "list"),
        (Mapping, "map"),
    ):
        if isinstance(value, base):
            return name
    return type(value).__name__


# --------------------------------------------------------------------------- errors


def no_overload(op: str, *values: object) -> ConditionError:
    """Build the error for an operator or function applied to unsupported kinds."""
    kinds = " and ".join(kind_of(v) for v in values)
    return ConditionError(f"no matching overload for {op!r} on {kinds}")


def overflow(op: str) -> ConditionError:
    """Build the error for integer overflow in ``op``."""
    return ConditionError(f"integer overflow in {op!r}")


# --------------------------------------------------------------------------- equality


def _is_number(value: object) -> TypeGuard[int | float]:
    """A CEL int, uint or double: bool is an int subclass in Python but not a number in CEL."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def equals(left: object, right: object) -> bool:
    """CEL equality: heterogeneous (different kinds are unequal), numeric across kinds.

    ``1 == 1.0`` and ``1u == 1`` are true; ``true == 1`` is false; lists and maps
    compare element-wise with the same rules; NaN equals nothing.
    """
    if _is_number(left) and _is_number(right):
        return _numeric_cmp(left, right) == 0
    kind = kind_of(left)
    if kind != kind_of(right):
        return False
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(equals(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        if len(left) != len(right):
            return False
        for key, value in left.items():
            other = map_lookup(right, key)
            if other is MISSING or not equals(value, other):
                return False
        return True
    return bool(left == right)


def _numeric_cmp(left: float, right: float) -> int:
    """Compare two numbers of any CEL numeric kinds: -1, 0 or 1 (2 when NaN is involved).

    Integers compare exactly. When a double is involved the integer is converted to
    double first, as the reference implementations do, so ``9223372036854775807 <
    9223372036854775808.0`` is false.
    """
    if not (isinstance(left, int) and isinstance(right, int)):
        left = float(left)
        right = float(right)
        if math.isnan(left) or math.isnan(right):  # NaN is unordered and unequal to everything
            return 2
    return (left > right) - (left < right)


def in_list(item: object, items: Sequence[object]) -> bool:
    """CEL ``item in list``: true when some element equals ``item``."""
    return any(equals(item, element) for element in items)


# --------------------------------------------------------------------------- ordering

_CMP_OPS: Final[dict[str, Callable[[int], bool]]] = {
    "<": lambda c: c == -1,
    "<=": lambda c: c in (-1, 0),
    ">": lambda c: c == 1,
    ">=": lambda c: c in (1, 0),
}


def compare(op: str, left: object, right: object) -> bool:
    """CEL ``<``, ``<=``, ``>``, ``>=`` on same-kind ordered values or any two numbers.

    Raises:
        ConditionError: When the kinds cannot be ordered against each other.
    """
    if _is_number(left) and _is_number(right):
        return _CMP_OPS[op](_numeric_cmp(left, right))
    kind = kind_of(left)
    if kind != kind_of(right) or kind not in _ORDERED_KINDS:
        raise no_overload(op, left, right)
    try:
        less = left < right  # type: ignore[operator]  # same ordered kind, checked above
        greater = left > right  # type: ignore[operator]
    except TypeError:
        # A naive datetime against an aware one; the context is malformed.
        raise no_overload(op, left, right) from None
    return _CMP_OPS[op](bool(greater) - bool(less))


# --------------------------------------------------------------------------- arithmetic


def check_int(value: int, op: str) -> int:
    """Return ``value`` if it fits int64, else raise an overflow error for ``op``."""
    if INT64_MIN <= value <= INT64_MAX:
        return value
    raise overflow(op)


def check_uint(value: int, op: str) -> UInt:
    """Return ``value`` as :class:`UInt` if it fits uint64, else raise an overflow error."""
    if 0 <= value <= UINT64_MAX:
        return UInt(value)
    raise overflow(op)


def check_duration(value: dt.timedelta) -> dt.timedelta:
    """Return a computed duration if it fits int64 nanoseconds, else raise a range error.

    Duration arithmetic (and timestamp - timestamp) works in int64 nanoseconds, about
    292 years either way, as in the language definition and the reference runtimes;
    duration *literals* may be larger (up to :data:`MAX_DURATION`).
    """
    if INT64_MIN <= (value // _ONE_MICROSECOND) * 1000 <= INT64_MAX:
        return value
    raise ConditionError("duration out of range")


def _timestamp_shift(ts: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    try:
        return ts + delta
    except OverflowError:
        raise ConditionError("timestamp out of range") from None


def add(left: object, right: object) -> object:
    """CEL ``+``: numbers of one kind, strings, bytes, lists, timestamps and durations."""
    match left, right:
        case (bool(), _) | (_, bool()):
            pass
        case UInt(), UInt():
            return check_uint(left + right, "+")
        case (UInt(), _) | (_, UInt()):
            pass
        case int(), int():
            return check_int(left + right, "+")
        case float(), float():
            return left + right
        case str(), str():
            return left + right
        case bytes(), bytes():
            return left + right
        case ((list() | tuple()), (list() | tuple())):
            return [*left, *right]
        case dt.datetime(), dt.timedelta():
            return _timestamp_shift(left, right)
        case dt.timedelta(), dt.datetime():
            return _timestamp_shift(right, left)
        case dt.timedelta(), dt.timedelta():
            return check_duration(left + right)
    raise no_overload("+", left, right)


def subtract(left: object, right: object) -> object:
    """CEL ``-``: numbers of one kind, timestamp - timestamp, timestamp/duration - duration."""
    match left, right:
        case (bool(), _) | (_, bool()):
            pass
        case UInt(), UInt():
            return check_uint(left - right, "-")
        case (UInt(), _) | (_, UInt()):
            pass
        case int(), int():
            return check_int(left - right, "-")
        case float(), float():
            return left - right
        case dt.datetime(), dt.datetime():
            try:
                return check_duration(left - right)
            except TypeError:  # naive against aware
                pass
        case dt.datetime(), dt.timedelta():
            return _timestamp_shift(left, -right)
        case dt.timedelta(), dt.timedelta():
            return check_duration(left - right)
    raise no_overload("-", left, right)


def multiply(left: object, right: object) -> object:
    """CEL ``*`` on two numbers of the same kind."""
    match left, right:
        case (bool(), _) | (_, bool()):
            pass
        case UInt(), UInt():
            return check_uint(left * right, "*")
        case (UInt(), _) | (_, UInt()):
            pass
        case int(), int():
            return check_int(left * right, "*")
        case float(), float():
            return left * right
    raise no_overload("*", left, right)


def divide(left: object, right: object) -> object:
    """CEL ``/``: integer division truncates toward zero; doubles follow IEEE 754."""
    match left, right:
        case (bool(), _) | (_, bool()):
            pass
        case UInt(), UInt():
            if right == 0:
                raise ConditionError("division by zero")
            return UInt(left // right)
        case (UInt(), _) | (_, UInt()):
            pass
        case int(), int():
            if right == 0:
                raise ConditionError("division by zero")
            if left == INT64_MIN and right == -1:
                raise overflow("/")
            quotient = abs(left) // abs(right)
            return quotient if (left < 0) == (right < 0) else -quotient
        case float(), float():
            return _float_divide(left, right)
    raise no_overload("/", left, right)


def _float_divide(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        # Python raises where IEEE 754 (and CEL) give an infinity or NaN.
        if math.isnan(a) or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def modulo(left: object, right: object) -> object:
    """CEL ``%`` on integers; the result takes the sign of the dividend, as in C and Go."""
    match left, right:
        case (bool(), _) | (_, bool()):
            pass
        case UInt(), UInt():
            if right == 0:
                raise ConditionError("modulus by zero")
            return UInt(left % right)
        case (UInt(), _) | (_, UInt()):
            pass
        case int(), int():
            if right == 0:
                raise ConditionError("modulus by zero")
            if left == INT64_MIN and right == -1:
                raise overflow("%")
            remainder = abs(left) % abs(right)
            return remainder if left >= 0 else -remainder
    raise no_overload("%", left, right)


def negate(value: object) -> object:
    """CEL unary ``-`` on int and double (not uint)."""
    if isinstance(value, int) and not isinstance(value, bool | UInt):
        return check_int(-value, "-")
    if isinstance(value, float):
        return -value
    raise no_overload("-", value)


def logical_not(value: object) -> bool:
    """CEL ``!`` on bool."""
    if value is True:
        return False
    if value is False:
        return True
    raise no_overload("!", value)


# --------------------------------------------------------------------------- maps, lists


def map_lookup(mapping: Mapping[object, object], key: object) -> object:
    """Look ``key`` up with CEL key semantics, returning :data:`MISSING` when absent.

    Numeric keys match across int, uint and integral doubles (``m[1.0]`` finds key
    ``1``); bool keys never match the integers 0 and 1, which Python would conflate.
    """
    if isinstance(key, float):
        if not key.is_integer():
            return MISSING
        key = int(key)
    elif not isinstance(key, int | str):  # int covers bool and UInt
        return MISSING
    try:
        value = mapping[key]
    except (KeyError, TypeError):
        return MISSING
    if isinstance(key, int) and key in (0, 1):
        # Python hashes True like 1; make sure the stored key has the asked-for kind.
        want_bool = isinstance(key, bool)
        for stored in mapping:
            if isinstance(stored, bool) == want_bool and stored == key:
                return mapping[stored]
        return MISSING
    return value


def in_map(key: object, mapping: Mapping[object, object]) -> bool:
    """CEL ``key in map``."""
    return map_lookup(mapping, key) is not MISSING


def index(container: object, key: object) -> object:
    """CEL ``container[key]`` on lists (int, uint or integral double index) and maps."""
    if isinstance(container, list | tuple):
        position: int
        if isinstance(key, int) and not isinstance(key, bool):
            position = key
        elif isinstance(key, float) and key.is_integer():
            position = int(key)
        else:
            raise no_overload("[]", container, key)
        if 0 <= position < len(container):
            return container[position]
        raise ConditionError(f"index {position} out of range for a list of size {len(container)}")
    if isinstance(container, Mapping):
        value = map_lookup(container, key)
        if value is MISSING:
            raise ConditionError(f"no such key: {format_key(key)}")
        return value
    raise no_overload("[]", container, key)


def format_key(key: object) -> str:
    """Render a map key for an error message: strings quoted, other scalars as CEL does."""
    if isinstance(key, str):
        return repr(key)
    if isinstance(key, int | float):
        return to_string(key)
    return kind_of(key)


def build_map(entries: list[tuple[object, object]]) -> dict[object, object]:
    """Build a map literal, rejecting unsupported key kinds and repeated keys."""
    result: dict[object, object] = {}
    for key, value in entries:
        if not isinstance(key, int | str):  # int covers bool and UInt
            raise ConditionError(f"unsupported map key type {kind_of(key)}")
        if map_lookup(result, key) is not MISSING:
            raise ConditionError(f"map literal has a repeated key: {format_key(key)}")
        if key in result:
            # Python merges True with 1 (and False with 0); CEL keeps them apart, which a
            # dict cannot represent.
            raise ConditionError("a map cannot mix bool keys with the integer keys 0 and 1")
        result[key] = value
    return result


def size(value: object) -> int:
    """CEL ``size()``: code points of a string, bytes, list elements or map entries."""
    if isinstance(value, str | bytes | list | tuple | Mapping):
        return len(value)
    raise no_overload("size", value)


def has_field(value: object, field: str) -> bool:
    """CEL ``has(value.field)`` on maps and context objects."""
    if isinstance(value, Mapping):
        return field in value
    raise ConditionError(f"has() needs a map or object, not {kind_of(value)}")


def select(value: object, field: str) -> object:
    """CEL ``value.field`` on maps and context objects."""
    if isinstance(value, Mapping):
        try:
            return value[field]
        except KeyError:
            raise ConditionError(f"no such key: {field!r}") from None
    raise ConditionError(f"type {kind_of(value)} does not support field selection")


# --------------------------------------------------------------------------- strings


def _string_args(name: str, target: object, arg: object) -> tuple[str, str]:
    if isinstance(target, str) and isinstance(arg, str):
        return target, arg
    raise no_overload(name, target, arg)


def starts_with(target: object, prefix: object) -> bool:
    """CEL ``string.startsWith(string)``."""
    text, other = _string_args("startsWith", target, prefix)
    return text.startswith(other)


def ends_with(target: object, suffix: object) -> bool:
    """CEL ``string.endsWith(string)``."""
    text, other = _string_args("endsWith", target, suffix)
    return text.endswith(other)


def contains(target: object, part: object) -> bool:
    """CEL ``string.contains(string)``."""
    text, other = _string_args("contains", target, part)
    return other in text


_RE2_OPTIONS: Final = re2.Options()
# Invalid patterns are reported through our own errors; keep RE2 from logging to stderr.
_RE2_OPTIONS.log_errors = False
_REGEX_CACHE: dict[str, Regex] = {}
_REGEX_CACHE_SIZE: Final = 256


class Regex(Protocol):
    """The part of a compiled RE2 pattern this package uses."""

    def search(self, text: str) -> object:
        """Return a match object, or ``None`` when the pattern matches nowhere."""


def compile_regex(pattern: str) -> Regex:
    """Compile an RE2 pattern.

    Raises:
        ValueError: With RE2's explanation when the pattern is invalid (or uses syntax
            RE2 does not support, such as backreferences and lookaround).
    """
    try:
        compiled: Regex = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None
    return compiled


def matches(target: object, pattern: object) -> bool:
    """CEL ``string.matches(regex)``: an unanchored RE2 search.

    Patterns that arrive at run time are compiled once and cached (bounded).
    """
    text, source = _string_args("matches", target, pattern)
    regex = _REGEX_CACHE.get(source)
    if regex is None:
        try:
            regex = compile_regex(source)
        except ValueError as exc:
            raise ConditionError(f"invalid regular expression {source!r}: {exc}") from None
        if len(_REGEX_CACHE) >= _REGEX_CACHE_SIZE:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[source] = regex
    return regex.search(text) is not None


# --------------------------------------------------------------------------- conversions

_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_UINT_TEXT: Final = re.compile(r"\+?[0-9]+")
_DOUBLE_TEXT: Final = re.compile(
    r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\s*",
    re.IGNORECASE,
)
_TRUE_TEXT: Final = frozenset({"1", "t", "true", "TRUE", "True"})
_FALSE_TEXT: Final = frozenset({"0", "f", "false", "FALSE", "False"})


def to_int(value: object) -> int:
    """CEL ``int()`` from int, uint, double (truncating), string and timestamp."""
    if isinstance(value, bool):
        raise no_overload("int", value)
    if isinstance(value, int):
        if value > INT64_MAX:
            raise ConditionError("uint value out of int range")
        return int(value)
    if isinstance(value, float):
        if not -_INT_CONVERT_LIMIT < value < _INT_CONVERT_LIMIT:
            raise ConditionError("double value out of int range")
        return int(value)
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value) is None:
            raise ConditionError(f"cannot convert string {value!r} to int")
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise ConditionError("string value out of int range")
        return number
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // _ONE_SECOND
    raise no_overload("int", value)


def to_uint(value: object) -> UInt:
    """CEL ``uint()`` from int, uint, double (truncating) and string."""
    if isinstance(value, bool):
        raise no_overload("uint", value)
    if isinstance(value, int):
        if value < 0:
            raise ConditionError("int value out of uint range")
        return UInt(value)
    if isinstance(value, float):
        if not 0 <= value < _UINT_CONVERT_LIMIT:
            raise ConditionError("double value out of uint range")
        return UInt(int(value))
    if isinstance(value, str):
        if _UINT_TEXT.fullmatch(value) is None:
            raise ConditionError(f"cannot convert string {value!r} to uint")
        return check_uint(int(value), "uint")
    raise no_overload("uint", value)


def to_double(value: object) -> float:
    """CEL ``double()`` from int, uint, double and string."""
    if isinstance(value, bool):
        raise no_overload("double", value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if _DOUBLE_TEXT.fullmatch(value) is None:
            raise ConditionError(f"cannot convert string {value!r} to double")
        return float(value)
    raise no_overload("double", value)


def to_string(value: object) -> str:
    """CEL ``string()`` from every scalar kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ConditionError("bytes are not valid UTF-8") from None
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    raise no_overload("string", value)


def to_bool(value: object) -> bool:
    """CEL ``bool()`` from bool and the strings ``true``/``false``/``t``/``f``/``1``/``0``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE_TEXT:
            return True
        if value in _FALSE_TEXT:
            return False
        raise ConditionError(f"cannot convert string {value!r} to bool")
    raise no_overload("bool", value)


def to_bytes(value: object) -> bytes:
    """CEL ``bytes()`` from bytes and string (UTF-8)."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise no_overload("bytes", value)


def to_timestamp(value: object) -> dt.datetime:
    """CEL ``timestamp()`` from an RFC 3339 string, Unix seconds or a timestamp."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, int) and not isinstance(value, bool | UInt):
        try:
            return EPOCH + dt.timedelta(seconds=value)
        except OverflowError:
            raise ConditionError("timestamp out of range") from None
    raise no_overload("timestamp", value)


def to_duration(value: object) -> dt.timedelta:
    """CEL ``duration()`` from a duration string or a duration."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise no_overload("duration", value)


def format_double(number: float) -> str:
    """Format a double as CEL's ``string()`` does (Go's ``%g``, shortest round trip).

    Fixed notation for exponents from -4 to 5, scientific (``1e+06``) otherwise.
    """
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(number)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent = int(exponent) + len(digit_tuple) - len(digits)
    point = len(digits) + exponent  # digits before the decimal point
    head = "-" if sign else ""
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{head}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{head}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return head + digits + "0" * (point - len(digits))
    return f"{head}{digits[:point]}.{digits[point:]}"


def _fraction(micros: int) -> str:
    """Protobuf JSON style: no fraction, or 3 or 6 digits."""
    if micros == 0:
        return ""
    if micros % 1000 == 0:
        return f".{micros // 1000:03d}"
    return f".{micros:06d}"


def format_timestamp(value: dt.datetime) -> str:
    """Format a timestamp as RFC 3339 in UTC (``2009-02-13T23:31:30Z``)."""
    utc = value.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}{_fraction(utc.microsecond)}Z"
    )


def format_duration(value: dt.timedelta) -> str:
    """Format a duration in seconds as CEL does (``90s``, ``1.500s``, ``-0.000001s``)."""
    micros = value // _ONE_MICROSECOND
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{seconds}{_fraction(fraction)}s"


_TIMESTAMP_TEXT: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))"
)


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime.

    Digits beyond microseconds are truncated. A leap second (``:60``) rolls over to the
    next minute, as the reference runtimes do.

    Raises:
        ConditionError: When the text is not RFC 3339 or is outside years 1 to 9999.
    """
    match = _TIMESTAMP_TEXT.fullmatch(text)
    if match is None:
        raise ConditionError(f"invalid timestamp {text!r}; expected RFC 3339")
    year, month, day, hour, minute, second_text, fraction, sign, off_hours, off_minutes = match.groups()
    second = int(second_text)
    leap = second == 60
    offset = None
    if sign is not None:
        hours, minutes = int(off_hours), int(off_minutes)
        if hours >= 24 or minutes > 59:  # an offset is less than a day
            raise _out_of_range(text)
        offset = dt.timedelta(hours=hours, minutes=minutes)
    try:
        result = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if leap else second,
            int(fraction[:6].ljust(6, "0")) if fraction else 0,
            tzinfo=UTC,
        )
        if offset is not None:
            result = result - offset if sign == "+" else result + offset
        return result + _ONE_SECOND if leap else result
    except (ValueError, OverflowError):
        raise _out_of_range(text) from None


def _out_of_range(text: str) -> ConditionError:
    # Built only on failure: an exception with its message costs more than a parse.
    return ConditionError(f"invalid timestamp {text!r}; out of range")


_DURATION_PART: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|ms|s|m|h)")
_UNIT_NANOS: Final = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_DURATION_NANOS: Final = 315_576_000_000 * 1_000_000_000


def parse_duration(text: str) -> dt.timedelta:
    """Parse a CEL duration string such as ``90s``, ``1h30m``, ``-1.5h`` or ``2160h``.

    The syntax is Go's: an optional sign, then one or more decimal numbers each with a
    unit (``h``, ``m``, ``s``, ``ms``, ``us``, ``ns``); ``0`` alone is allowed.
    Sub-microsecond parts are truncated.

    Raises:
        ConditionError: When the text is malformed or outside CEL's duration range.
    """
    body = text[1:] if text[:1] in ("+", "-") else text
    negative = text[:1] == "-"
    nanos = 0
    if body != "0":
        position = 0
        while position < len(body) or position == 0:
            match = _DURATION_PART.match(body, position)
            if match is None or not (match.group(1) or match.group(2)):
                raise ConditionError(f"invalid duration {text!r}; expected e.g. 90s or 1h30m")
            whole, fraction, unit = match.groups()
            scale = _UNIT_NANOS[unit]
            nanos += int(whole or "0") * scale
            if fraction:
                nanos += int(fraction) * scale // 10 ** len(fraction)
            if nanos > _MAX_DURATION_NANOS:
                raise ConditionError(f"duration {text!r} out of range")
            position = match.end()
    micros = nanos // 1000
    return dt.timedelta(microseconds=-micros if negative else micros)


# --------------------------------------------------------------------------- time parts

_OFFSET_TEXT: Final = re.compile(r"([+-]?)(\d{2}):(\d{2})")


def parse_timezone(name: str) -> dt.tzinfo:
    """Resolve a time zone argument: ``UTC`` or a fixed offset such as ``+02:00``.

    IANA names (``Europe/Berlin``) are outside the subset: their rules come from the
    host's time zone database and would make decisions machine-dependent.

    Raises:
        ValueError: For any other name.
    """
    if name == "UTC":
        return UTC
    match = _OFFSET_TEXT.fullmatch(name)
    if match is None:
        raise ValueError(f"unsupported time zone {name!r}; use 'UTC' or a fixed offset such as '+02:00'")
    sign, hours, minutes = match.groups()
    offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
    if offset >= dt.timedelta(hours=24):
        raise ValueError(f"time zone offset {name!r} out of range")
    return dt.timezone(-offset if sign == "-" else offset)


def _local(value: dt.datetime, zone: object) -> dt.datetime:
    if zone is _NO_ZONE:
        return value.astimezone(UTC)
    if not isinstance(zone, str):
        raise no_overload("time zone", zone)
    try:
        return value.astimezone(parse_timezone(zone))
    except ValueError as exc:
        raise ConditionError(str(exc)) from None


def _truncate(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def _duration_micros(value: dt.timedelta) -> int:
    return value // _ONE_MICROSECOND


def _millisecond_of_second(micros: int) -> int:
    # The remainder keeps the sign of the duration, as in the reference runtimes.
    millis = _truncate(micros, 1000)
    return millis - _truncate(millis, 1000) * 1000


TIMESTAMP_PARTS: Final[dict[str, Callable[[dt.datetime], int]]] = {
    "getFullYear": lambda t: t.year,
    "getMonth": lambda t: t.month - 1,
    "getDate": lambda t: t.day,
    "getDayOfMonth": lambda t: t.day - 1,
    "getDayOfWeek": lambda t: (t.weekday() + 1) % 7,
    "getDayOfYear": lambda t: t.timetuple().tm_yday - 1,
    "getHours": lambda t: t.hour,
    "getMinutes": lambda t: t.minute,
    "getSeconds": lambda t: t.second,
    "getMilliseconds": lambda t: t.microsecond // 1000,
}
"""Timestamp accessors; months, days of month and days of year count from 0, as in CEL."""

DURATION_PARTS: Final[dict[str, Callable[[dt.timedelta], int]]] = {
    "getHours": lambda d: _truncate(_duration_micros(d), 3_600_000_000),
    "getMinutes": lambda d: _truncate(_duration_micros(d), 60_000_000),
    "getSeconds": lambda d: _truncate(_duration_micros(d), 1_000_000),
    "getMilliseconds": lambda d: _millisecond_of_second(_duration_micros(d)),
}
"""Duration accessors: whole hours, minutes and seconds; milliseconds of the second."""


_NO_ZONE: Final = object()

_GREGORIAN_CYCLE: Final = dt.timedelta(days=146_097)
"""400 Gregorian years: a whole number of weeks, after which the leap years repeat."""


def _time_part_near_range_end(name: str, value: dt.datetime, zone: object) -> int:
    """A timestamp accessor whose local time falls outside the years 1 to 9999.

    A zone can put the local time of a timestamp within a day of CEL's range ends in
    the year 10000 or the year 0 (CEL's calendar is proleptic Gregorian with a year 0),
    which ``datetime`` cannot hold. The part is taken 400 Gregorian years nearer the
    middle of the range, where the calendar is the same (weekday, leap year, day of
    year, time of day), and the year is moved back.

    Raises:
        ConditionError: If the instant itself is outside the range (a context
            ``datetime`` whose own offset puts it beyond the years 1 to 9999 in UTC).
    """
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ConditionError("timestamp out of range") from None
    cycles = -1 if utc.year > 5000 else 1
    part = TIMESTAMP_PARTS[name](_local(utc + cycles * _GREGORIAN_CYCLE, zone))
    return part - cycles * 400 if name == "getFullYear" else part


def time_part(name: str, value: object, zone: object = _NO_ZONE) -> int:
    """Apply a timestamp or duration accessor such as ``getHours``, in UTC unless ``zone``."""
    if isinstance(value, dt.datetime) and name in TIMESTAMP_PARTS:
        try:
            return TIMESTAMP_PARTS[name](_local(value, zone))
        except OverflowError:
            return _time_part_near_range_end(name, value, zone)
    if isinstance(value, dt.timedelta) and name in DURATION_PARTS and zone is _NO_ZONE:
        return DURATION_PARTS[name](value)
    if zone is _NO_ZONE:
        raise no_overload(name, value)
    raise no_overload(name, value, zone)
