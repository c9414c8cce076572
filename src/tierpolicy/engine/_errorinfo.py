"""A library-neutral description of an error: what classification rules match on.

:class:`ErrorInfo` is built from any exception by duck typing (the engine never imports
``httpx``, ``requests`` or a driver) or from the JSON of an evaluation request. Its
``types`` name the exception's classes, most derived first, each both as defined
(``httpx._exceptions.ConnectTimeout``) and as publicly spelt (``httpx.ConnectTimeout``),
so rules can name classes the way their library documents them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import functools
import math
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final, cast

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from ._exceptions import InvalidRequestError
from ._validation import describe

MAX_MESSAGE_CHARS: Final = 4096
"""Exception text longer than this is cut (rules match on the first part only)."""
MAX_RETRY_AFTER: Final = 366 * 86400.0
"""A larger Retry-After hint is read as junk."""
_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What is known about one error, in the shape classification rules read.

    Attributes:
        types: Qualified class names, most derived first (``httpx.ConnectTimeout``,
            ``TimeoutError``); ``builtins`` classes are named without a module.
        status: The HTTP status the error carries, if any (100-599).
        reason: A machine-readable cause in the AIP-193 ``ErrorInfo`` sense, e.g.
            ``RATE_LIMIT_EXCEEDED``.
        domain: The service or library that defines ``reason``, e.g. ``stripe.com``.
        message: The error's own text. Never shown to users unless the registry entry
            allows it (``expose_detail``).
        operation: The operation that failed, e.g. ``payments.capture``.
        retry_after: The server's hint, in seconds, of when to try again.
        attributes: Further facts for CEL conditions (``error.attributes``).
    """

    types: tuple[str, ...]
    status: int | None = None
    reason: str | None = None
    domain: str | None = None
    message: str = ""
    operation: str | None = None
    retry_after: float | None = None
    attributes: Mapping[str, object] = dataclasses.field(default_factory=lambda: _EMPTY, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attributes, MappingProxyType):
            object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, operation: str | None = None, now: dt.datetime | None = None
    ) -> ErrorInfo:
        """Describe ``exc`` by duck typing; never raises.

        Reads the status from ``exc.status_code``, ``exc.status`` or
        ``exc.response.status_code``; ``reason`` and ``domain`` attributes when they are
        strings; Retry-After from ``exc.retry_after`` or the ``Retry-After`` header of
        ``exc.response`` (delta-seconds or an HTTP-date, relative to ``now``).
        """
        # The hot path of classification: one getattr per attribute inside one try
        # (a foreign property may raise; then every attribute is read one by one,
        # each failure on its own), the class's names from a per-class cache, the
        # conversions skipped for absent attributes, and the frozen value built
        # without the dataclass __init__ (see _build).
        kind = type(exc)
        facts = _CLASS_FACTS.get(kind)
        if facts is None:
            facts = _remember_class(kind)
        names, plain = facts
        if plain:
            # No class in the MRO defines a probed name, and attribute lookup is the
            # standard one: only the instance dict can hold them (often it is empty).
            state = exc.__dict__
            if state:
                get = state.get
                response, raw_status, hint = get("response"), get("status_code"), get("retry_after")
                if raw_status is None:
                    raw_status = get("status")
                reason, domain, attributes = get("reason"), get("domain"), get("attributes")
            else:
                response = raw_status = hint = reason = domain = attributes = None
        else:
            try:
                response = getattr(exc, "response", None)
                raw_status = getattr(exc, "status_code", None)
                if raw_status is None:
                    raw_status = getattr(exc, "status", None)
                hint = getattr(exc, "retry_after", None)
                reason = getattr(exc, "reason", None)
                domain = getattr(exc, "domain", None)
                attributes = getattr(exc, "attributes", None)
            except Exception:  # noqa: BLE001  a property of a foreign object may raise anything
                return cls._from_exception_carefully(exc, operation, now)
        status = None if raw_status is None else _status(raw_status)
        if status is None and raw_status is not None:
            status = _status(_attr(exc, "status"))
        if response is not None:
            if status is None:
                status = _status(_attr(response, "status_code"))
            if hint is None:
                hint = _header(response, "Retry-After")
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001  a foreign __str__ may raise anything
            message = ""
        return _build(
            cls,
            names,
            status,
            None if reason is None else _text(reason),
            None if domain is None else _text(domain),
            message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS],
            operation,
            None if hint is None else parse_retry_after(hint, now=now),
            _EMPTY if attributes is None else _string_keyed(attributes),
        )

    @classmethod
    def _from_exception_carefully(
        cls, exc: BaseException, operation: str | None, now: dt.datetime | None
    ) -> ErrorInfo:
        """:meth:`from_exception` for objects whose attributes raise: each read on its own."""
        response = _attr(exc, "response")
        status = _status(_attr(exc, "status_code"))
        if status is None:
            status = _status(_attr(exc, "status"))
        if status is None and response is not None:
            status = _status(_attr(response, "status_code"))
        hint = _attr(exc, "retry_after")
        if hint is None and response is not None:
            hint = _header(response, "Retry-After")
        return _build(
            cls,
            exception_names(type(exc)),
            status,
            _text(_attr(exc, "reason")),
            _text(_attr(exc, "domain")),
            _message(exc),
            operation,
            parse_retry_after(hint, now=now),
            _string_keyed(_attr(exc, "attributes")),
        )

    @classmethod
    def from_json(cls, data: object, *, location: str = "error") -> ErrorInfo:
        """Build from the ``error`` member of an evaluation request.

        Raises:
            InvalidRequestError: Naming the field that is malformed.
        """
        if not isinstance(data, dict):
            raise InvalidRequestError(f"expected a JSON object; found {describe(data)}", location=location)
        try:
            parsed = ErrorInfoIn.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = location + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            if first["type"] == "extra_forbidden":
                raise InvalidRequestError("unknown field", location=where) from None
            if first["type"] == "missing":
                raise InvalidRequestError("required field is missing", location=where) from None
            message = first["msg"].rstrip(".")
            raise InvalidRequestError(
                f"{message}; found {describe(first.get('input'))}", location=where
            ) from None
        return cls(
            types=tuple(parsed.types),
            status=parsed.status,
            reason=parsed.reason,
            domain=parsed.domain,
            message=parsed.message[:MAX_MESSAGE_CHARS],
            operation=parsed.operation,
            retry_after=None if parsed.retry_after is None else float(parsed.retry_after),
            attributes=parsed.attributes,
        )

    def with_operation(self, operation: str | None) -> ErrorInfo:
        """This error as failed by ``operation``: ``dataclasses.replace`` at a fraction of the cost."""
        if operation == self.operation:
            return self
        return _build(
            type(self),
            self.types,
            self.status,
            self.reason,
            self.domain,
            self.message,
            operation,
            self.retry_after,
            self.attributes,
        )

    def to_json(self) -> dict[str, object]:
        """Return the JSON form :meth:`from_json` reads."""
        return {
            "types": list(self.types),
            "status": self.status,
            "reason": self.reason,
            "domain": self.domain,
            "message": self.message,
            "operation": self.operation,
            "retry_after": self.retry_after,
            "attributes": dict(self.attributes),
        }


class _Unfrozen:
    """ErrorInfo's slot layout without the frozen ``__setattr__``: a value under construction.

    :func:`_build` fills one in with plain slot stores and then makes it an
    :class:`ErrorInfo` by assigning ``__class__`` (allowed: the layouts are identical).
    """

    __slots__ = ErrorInfo.__slots__  # the dataclass makes them

    types: tuple[str, ...]
    status: int | None
    reason: str | None
    domain: str | None
    message: str
    operation: str | None
    retry_after: float | None
    attributes: Mapping[str, object]


def _build(
    cls: type[ErrorInfo],
    types: tuple[str, ...],
    status: int | None,
    reason: str | None,
    domain: str | None,
    message: str,
    operation: str | None,
    retry_after: float | None,
    attributes: Mapping[str, object],
) -> ErrorInfo:
    """Build an ErrorInfo from checked values, as ``cls(...)`` would, at a fraction of the cost.

    ``attributes`` must already be read-only (a ``MappingProxyType``). The frozen
    dataclass ``__init__`` sets each field through ``object.__setattr__`` and then runs
    ``__post_init__`` (about 1.2 us); filling an :class:`_Unfrozen` and retyping it gives
    an equal, equally frozen value in about 0.15 us. Subclasses go through their own
    ``__init__``.
    """
    if cls is not ErrorInfo or not _RETYPING_WORKS:
        return cls(types, status, reason, domain, message, operation, retry_after, attributes)
    info = _Unfrozen()
    info.types = types
    info.status = status
    info.reason = reason
    info.domain = domain
    info.message = message
    info.operation = operation
    info.retry_after = retry_after
    info.attributes = attributes
    info.__class__ = ErrorInfo  # type: ignore[assignment]  # same slots: see _Unfrozen
    return cast("ErrorInfo", info)


def _retyping_works() -> bool:
    """Whether this interpreter allows :func:`_build`'s ``__class__`` assignment."""
    try:
        probe = _Unfrozen()
        probe.__class__ = ErrorInfo  # type: ignore[assignment]
    except TypeError:  # pragma: no cover  CPython allows it; another runtime might not
        return False
    return True


_RETYPING_WORKS: Final = _retyping_works()


class ErrorInfoIn(BaseModel):
    """The JSON form of an :class:`ErrorInfo` in evaluation requests."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    types: Annotated[
        list[Annotated[StrictStr, Field(min_length=1, max_length=512)]], Field(max_length=64)
    ] = Field(default_factory=list)
    status: Annotated[StrictInt, Field(ge=100, le=599)] | None = None
    reason: Annotated[StrictStr, Field(max_length=256)] | None = None
    domain: Annotated[StrictStr, Field(max_length=256)] | None = None
    message: Annotated[StrictStr, Field(max_length=65536)] = ""
    operation: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    retry_after: (
        Annotated[StrictFloat | StrictInt, Field(ge=0, le=MAX_RETRY_AFTER, allow_inf_nan=False)] | None
    ) = None
    attributes: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- names


def exception_names(kind: type) -> tuple[str, ...]:
    """Qualified names of ``kind`` and its bases, most derived first (``object`` skipped).

    Each class appears as ``module.QualName`` and, when its module path has private
    segments, also with them dropped: ``httpx._exceptions.ConnectTimeout`` then
    ``httpx.ConnectTimeout``. Built-in classes are named without ``builtins.``.
    """
    # mypy sees a class object's __hash__ as unbound; classes are hashable all the same.
    return _names(cast("Hashable", kind))


_PROBED: Final = frozenset(
    {"response", "status_code", "status", "retry_after", "reason", "domain", "attributes"}
)
"""The attributes :meth:`ErrorInfo.from_exception` reads of an exception."""
_STANDARD_LOOKUP: Final = (object, BaseException)
"""The classes whose ``__getattribute__`` is the standard attribute lookup."""
_CLASS_FACTS: dict[type, tuple[tuple[str, ...], bool]] = {}
"""Exception class -> (its :func:`exception_names`, whether it is plain); bounded."""
_MAX_REMEMBERED: Final = 1024


def _remember_class(kind: type) -> tuple[tuple[str, ...], bool]:
    """Work out and remember what :meth:`ErrorInfo.from_exception` needs to know of ``kind``.

    A class is *plain* when its instances look attributes up the standard way (no
    ``__getattr__``, no own ``__getattribute__``) and no class of its MRO defines any
    probed name (no property, slot or class attribute): then a probed attribute can only
    be in the instance ``__dict__``, which is read without any attribute lookup.
    """
    names = exception_names(kind)
    try:
        mro = kind.__mro__
        lookup = next(cls for cls in mro if "__getattribute__" in vars(cls))
        plain = (
            lookup in _STANDARD_LOOKUP
            and not any("__getattr__" in vars(cls) for cls in mro)
            and not any(_PROBED.intersection(vars(cls)) for cls in mro)
            and all("__dict__" not in vars(cls) or cls is BaseException for cls in mro)
        )
    except Exception:  # noqa: BLE001  a foreign metaclass may raise anything
        plain = False
    if len(_CLASS_FACTS) >= _MAX_REMEMBERED:
        _CLASS_FACTS.clear()  # classes made at run time must not grow it without bound
    _CLASS_FACTS[kind] = (names, plain)
    return names, plain


@functools.lru_cache(maxsize=1024)
def _names(kind: Hashable) -> tuple[str, ...]:
    assert isinstance(kind, type)  # noqa: S101  only exception_names calls this
    names: list[str] = []
    for cls in getattr(kind, "__mro__", (kind,)):
        if cls is object:
            continue
        module = str(getattr(cls, "__module__", "") or "")
        qualname = str(getattr(cls, "__qualname__", getattr(cls, "__name__", "?")))
        for name in _spellings(module, qualname):
            if name not in names:
                names.append(name)
    return tuple(names)


def public_name(kind: type) -> str:
    """The name users write for ``kind``: ``httpx.ConnectTimeout``, ``TimeoutError``."""
    module = str(getattr(kind, "__module__", "") or "")
    return _spellings(module, str(getattr(kind, "__qualname__", getattr(kind, "__name__", "?"))))[-1]


def _spellings(module: str, qualname: str) -> tuple[str, ...]:
    if module in {"", "builtins"}:
        return (qualname,)
    full = f"{module}.{qualname}"
    public_parts = [part for part in module.split(".") if not part.startswith("_")]
    public = f"{'.'.join(public_parts)}.{qualname}" if public_parts else qualname
    return (full,) if public == full else (full, public)


# --------------------------------------------------------------------------- retry-after


def parse_retry_after(value: object, *, now: dt.datetime | None = None) -> float | None:
    """Read a Retry-After hint as seconds; ``None`` for anything unreadable.

    Accepts a non-negative number of seconds, an RFC 9110 ``delay-seconds`` string, an
    HTTP-date (seconds from ``now``, default the current time; a past date is 0) and a
    ``timedelta``. Never raises.
    """
    try:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, dt.timedelta):
            return _seconds(value.total_seconds())
        if isinstance(value, (int, float)):
            return _seconds(float(value))
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str):
            return None
        text = value.strip()
        if not text or len(text) > 64:
            return None
        if text.isascii() and text.isdigit():
            return _seconds(float(int(text)))
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        reference = now or dt.datetime.now(dt.UTC)
        return _seconds(max(0.0, (when - reference).total_seconds()))
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


def _seconds(value: float) -> float | None:
    if not math.isfinite(value) or value < 0 or value > MAX_RETRY_AFTER:
        return None
    return value


# --------------------------------------------------------------------------- duck typing


def _attr(obj: object, name: str) -> object:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001  a property of a foreign object may raise anything
        return None


def _header(response: object, name: str) -> object:
    headers = _attr(response, "headers")
    if headers is None:
        return None
    try:
        return headers.get(name)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001  foreign header containers
        return None


def _status(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int(value)
    return None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value[:256]
    return None


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001  a foreign __str__ may raise anything
        return ""
    return text[:MAX_MESSAGE_CHARS]


def _string_keyed(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        return _EMPTY
    try:
        return MappingProxyType({k: v for k, v in value.items() if isinstance(k, str)})
    except Exception:  # noqa: BLE001  a foreign mapping may raise anything
        return _EMPTY
