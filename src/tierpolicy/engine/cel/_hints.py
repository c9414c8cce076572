"""Hints for the mistakes policy authors make most: other languages' spellings and bad constants.

Policy authors come from SQL, Python and JavaScript, so they write ``a and b``,
``x is null``, ``a <> b`` or ``True``; and ``duration("90d")`` because days are the
natural unit of a grace period. The lexer, parser, checker and compiler turn those into
errors whose hint names the CEL spelling, written ``CEL writes 'and' as '&&'``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Final

from tierpolicy.engine._exceptions import ConditionError

from ._values import parse_duration, parse_timestamp

FOREIGN_OPERATORS: Final = {"===": "==", "!==": "!=", "<>": "!=", "=>": ">=", "=<": "<="}
"""Operators of other languages that are never valid CEL, longest first, to their CEL spelling."""

FOREIGN_LOGIC: Final = {"and": "&&", "or": "||", "not": "!"}
"""Logical operators spelt as words (any case), to their CEL spelling."""

FOREIGN_LITERALS: Final = {
    "True": "true",
    "TRUE": "true",
    "False": "false",
    "FALSE": "false",
    "None": "null",
    "NULL": "null",
    "Null": "null",
    "nil": "null",
    "undefined": "null",
}
"""Other languages' names for true, false and null, to the CEL literal."""


def cel_writes(foreign: str, cel: str) -> str:
    """The hint for a foreign spelling: ``CEL writes 'and' as '&&'``."""
    return f"CEL writes {foreign!r} as {cel!r}"


def logic_word(text: str) -> str | None:
    """The CEL operator for ``and``, ``or`` or ``not`` in any case, else ``None``."""
    return FOREIGN_LOGIC.get(text.lower())


# --------------------------------------------------------------------------- constants

_DURATION_UNITS: Final = "CEL durations use h, m, s, ms, us, ns"
_DURATION_EXAMPLES: Final = f'{_DURATION_UNITS}, as in "90s", "1h30m" or "2160h" (90 days)'
_CEL_DURATION: Final = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|ms|s|m|h))+")
_LOOSE_DURATION: Final = re.compile(
    r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*"
    r"(weeks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|ms|m|seconds?|secs?|s|us|µs|ns)",
    re.IGNORECASE,
)
_LOOSE_SECONDS: Final = {
    "w": 604_800,
    "d": 86_400,
    "h": 3_600,
    "m": 60,
    "s": 1,
}
_SUBSECOND: Final = {
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
    "µs": Decimal("0.000001"),
    "ns": Decimal("1e-9"),
}
_LONG_UNITS: Final = {"w": "week", "d": "day"}
_TIMESTAMP_EXAMPLE: Final = '"2026-03-01T00:00:00Z"'
_RFC3339: Final = f"timestamps are RFC 3339, as in {_TIMESTAMP_EXAMPLE}"
_LOOSE_TIMESTAMP: Final = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?)?"
    r"\s*(Z|z|UTC|[+-]\d{2}:?\d{2})?\s*"
)
_RELATIVE_TIMES: Final = frozenset({"now", "today", "yesterday", "tomorrow"})
_WHOLE: Final = re.compile(r"[+-]?[0-9]+")
_UNSIGNED: Final = re.compile(r"\+?[0-9]+")


def conversion_hint(function: str, value: object) -> str | None:
    """A hint for ``function(value)`` of a constant that failed to convert, or ``None``.

    Args:
        function: The conversion function (``duration``, ``timestamp``, ``int``, ...).
        value: The constant argument that did not convert.
    """
    if not isinstance(value, str):
        return None  # out-of-range numbers and mismatched kinds: the message says it all
    if function == "duration":
        return _duration_hint(value)
    if function == "timestamp":
        return _timestamp_hint(value)
    if function == "int" and _WHOLE.fullmatch(value) is None:
        return 'int() reads a whole number such as "42" or "-7"'
    if function == "uint" and _UNSIGNED.fullmatch(value) is None:
        return 'uint() reads a whole number without a sign such as "42"'
    if function == "double":
        return 'double() reads a decimal number such as "4.5" or "1e3"'
    if function == "bool":
        return 'bool() reads "true" or "false"'
    return None  # a number out of range


def _duration_hint(text: str) -> str | None:
    """Suggest the CEL spelling of a duration written with days, weeks, spaces or long units."""
    body = text.strip()
    sign = body[:1] if body[:1] in ("+", "-") else ""
    body = body[len(sign) :]
    if _CEL_DURATION.fullmatch(body) is not None:
        return None  # well formed: only the range is wrong, and the message says so
    seconds = Decimal(0)
    units: set[str] = set()
    position = 0
    while position < len(body) or position == 0:
        match = _LOOSE_DURATION.match(body, position)
        if match is None:
            return _DURATION_EXAMPLES
        number, unit = Decimal(match.group(1)), match.group(2).lower()
        if unit in _SUBSECOND:
            seconds += number * _SUBSECOND[unit]
        else:
            unit = unit[0]
            seconds += number * _LOOSE_SECONDS[unit]
        units.add(unit)
        position = match.end()
    fix = ("-" if sign == "-" else "") + _go_duration(seconds)
    try:
        parse_duration(fix)
    except ConditionError:
        return _DURATION_EXAMPLES  # out of range however it is written
    if len(units) == 1 and (unit := next(iter(units))) in _LONG_UNITS:
        count = _plain(seconds / _LOOSE_SECONDS[unit])
        name = _LONG_UNITS[unit] + ("" if count == "1" else "s")
        return f'{_DURATION_UNITS}: write "{fix}" for {"-" if sign == "-" else ""}{count} {name}'
    return f'{_DURATION_UNITS}: write "{fix}" instead of "{text}"'


def _go_duration(seconds: Decimal) -> str:
    """Format a non-negative number of seconds as CEL duration text: ``2160h``, ``1h30m``, ``1.5s``.

    Whole seconds carry their fraction (``1.5s``); a fraction alone takes the largest unit
    that keeps it whole (``250ms``, ``5us``).
    """
    whole = int(seconds)
    hours, rest = divmod(whole, 3_600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - whole
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not (parts or fraction):
        parts.append(f"{_plain(secs + fraction)}s")
    elif fraction:
        unit = next((u for u in ("ms", "us") if (fraction / _SUBSECOND[u]) % 1 == 0), "ns")
        parts.append(f"{_plain(fraction / _SUBSECOND[unit])}{unit}")
    return "".join(parts)


def _plain(number: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``90``, ``1.5``."""
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _timestamp_hint(text: str) -> str:
    """Suggest the RFC 3339 spelling of a date, a time without zone, or a relative time."""
    if text.strip().lower() in _RELATIVE_TIMES:
        return (
            "timestamp() takes a fixed time; for one relative to the evaluation use the now"
            ' attribute, as in now - duration("24h")'
        )
    match = _LOOSE_TIMESTAMP.fullmatch(text)
    if match is None:
        return _RFC3339
    year, month, day, clock, seconds, zone = match.groups()
    try:
        dt.date(int(year), int(month), int(day))
    except ValueError:
        return f"{year}-{month}-{day} is not a date in the calendar; {_RFC3339}"
    if zone is None or zone.upper() in ("Z", "UTC"):
        zone = "Z"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    fix = f"{year}-{month}-{day}T{clock or '00:00'}{seconds or ':00'}{zone}"
    try:
        parse_timestamp(fix)
    except ConditionError:
        return _RFC3339
    return f'timestamps are RFC 3339: write "{fix}"'
