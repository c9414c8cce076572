"""Tests of ErrorInfo: describing exceptions by duck typing, Retry-After, and its JSON form."""

from __future__ import annotations

import datetime as dt

import pytest

from tierpolicy import ErrorInfo, InvalidRequestError
from tierpolicy.engine._errorinfo import MAX_MESSAGE_CHARS, exception_names, parse_retry_after

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


class TransportError(Exception):
    """Stands in for a library base class."""


class ConnectTimeout(TransportError):  # noqa: N818  named as httpx names it
    """Stands in for a library's connect timeout, as if defined in a private module."""


ConnectTimeout.__module__ = "fakehttp._exceptions"
TransportError.__module__ = "fakehttp._exceptions"


class Response:
    """A response object of the shape httpx and requests use."""

    def __init__(self, status_code: object, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class StatusError(Exception):
    """An exception carrying a response."""

    def __init__(self, message: str, response: object) -> None:
        super().__init__(message)
        self.response = response


class HostileError(Exception):
    """Every attribute access and str() raise."""

    def __getattribute__(self, name: str) -> object:
        if name in {"__class__", "__traceback__"}:
            return object.__getattribute__(self, name)
        raise RuntimeError(name)

    def __str__(self) -> str:
        raise RuntimeError("str")


def test_names_keep_the_defined_and_the_public_spelling():
    """Private module segments are dropped in a second spelling, most derived class first."""
    assert exception_names(ConnectTimeout) == (
        "fakehttp._exceptions.ConnectTimeout",
        "fakehttp.ConnectTimeout",
        "fakehttp._exceptions.TransportError",
        "fakehttp.TransportError",
        "Exception",
        "BaseException",
    )


def test_builtin_names_have_no_module():
    """Built-in exceptions are named as Python spells them, without builtins."""
    assert exception_names(ConnectionRefusedError) == (
        "ConnectionRefusedError",
        "ConnectionError",
        "OSError",
        "Exception",
        "BaseException",
    )


def test_status_from_status_code_status_and_response():
    """The status is read from status_code, then status, then response.status_code."""
    first = Exception("x")
    first.status_code = 503  # type: ignore[attr-defined]
    second = Exception("x")
    second.status = 404  # type: ignore[attr-defined]
    assert ErrorInfo.from_exception(first).status == 503
    assert ErrorInfo.from_exception(second).status == 404
    assert ErrorInfo.from_exception(StatusError("x", Response(429))).status == 429


@pytest.mark.parametrize("value", [True, 99, 600, "503", 503.0, None])
def test_status_ignores_values_that_are_not_http_statuses(value):
    """Booleans, out-of-range numbers, strings and floats are not statuses."""
    assert ErrorInfo.from_exception(StatusError("x", Response(value))).status is None


def test_reason_domain_message_and_operation():
    """Reason and domain come from string attributes; operation from the caller."""
    exc = Exception("card declined")
    exc.reason = "CARD_DECLINED"  # type: ignore[attr-defined]
    exc.domain = "pay.example"  # type: ignore[attr-defined]
    exc.attributes = {"attempt": 2, 3: "dropped"}  # type: ignore[attr-defined]
    info = ErrorInfo.from_exception(exc, operation="payments.capture")
    assert (info.reason, info.domain, info.message, info.operation) == (
        "CARD_DECLINED",
        "pay.example",
        "card declined",
        "payments.capture",
    )
    assert dict(info.attributes) == {"attempt": 2}


def test_long_messages_are_cut():
    """Exception text is kept up to MAX_MESSAGE_CHARS."""
    info = ErrorInfo.from_exception(ValueError("x" * (MAX_MESSAGE_CHARS + 10)))
    assert len(info.message) == MAX_MESSAGE_CHARS


def test_hostile_exception_never_raises():
    """Attributes and str() that raise give an ErrorInfo with nothing read."""
    info = ErrorInfo.from_exception(HostileError())
    assert info.types[0].endswith("HostileError")
    assert (info.status, info.reason, info.message, info.retry_after) == (None, None, "", None)


def test_retry_after_from_attribute_and_header():
    """Retry-After comes from exc.retry_after or the response's Retry-After header."""
    exc = Exception("slow down")
    exc.retry_after = 2.5  # type: ignore[attr-defined]
    assert ErrorInfo.from_exception(exc).retry_after == 2.5
    header = StatusError("x", Response(429, {"Retry-After": "120"}))
    assert ErrorInfo.from_exception(header).retry_after == 120.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        (b"5", 5.0),
        (0, 0.0),
        (1.5, 1.5),
        (dt.timedelta(minutes=2), 120.0),
        ("Sun, 01 Mar 2026 12:01:30 GMT", 90.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),
        ("-5", None),
        (-1, None),
        ("soon", None),
        ("", None),
        ("1e3", None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        (None, None),
        ("9" * 80, None),
        (10**9, None),
        (object(), None),
    ],
)
def test_parse_retry_after(value, seconds):
    """Delta-seconds and HTTP-dates are read; junk gives None and never raises."""
    assert parse_retry_after(value, now=NOW) == seconds


def test_from_json_reads_every_field():
    """The JSON form gives the same ErrorInfo as the constructor."""
    data = {
        "types": ["httpx.ReadTimeout", "TimeoutError"],
        "status": 504,
        "reason": "R",
        "domain": "d",
        "message": "m",
        "operation": "search.query",
        "retry_after": 3,
        "attributes": {"k": [1, 2]},
    }
    info = ErrorInfo.from_json(data)
    assert info == ErrorInfo(
        types=("httpx.ReadTimeout", "TimeoutError"),
        status=504,
        reason="R",
        domain="d",
        message="m",
        operation="search.query",
        retry_after=3.0,
        attributes={"k": [1, 2]},
    )
    assert info.to_json() == {**data, "retry_after": 3.0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "error: expected a JSON object; found a list"),
        ({"statu": 500}, "error.statu: unknown field"),
        ({"status": "500"}, "error.status: Input should be a valid integer; found the text '500'"),
        ({"status": 99}, "error.status: Input should be greater than or equal to 100; found the number 99"),
        (
            {"types": "TimeoutError"},
            "error.types: Input should be a valid list; found the text 'TimeoutError'",
        ),
        (
            {"retry_after": -1},
            "error.retry_after: Input should be greater than or equal to 0; found the number -1",
        ),
    ],
)
def test_from_json_rejects_malformed_errors(data, message):
    """Malformed error descriptions raise InvalidRequestError naming the field."""
    with pytest.raises(InvalidRequestError) as info:
        ErrorInfo.from_json(data)
    assert str(info.value) == message


def test_error_info_is_frozen():
    """ErrorInfo is immutable, attributes included."""
    info = ErrorInfo(types=("X",), attributes={"a": 1})
    with pytest.raises(AttributeError):
        info.status = 500  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.attributes["a"] = 2  # type: ignore[index]


# --------------------------------------------------------------------------- the fast path


class StatusPropertyError(Exception):
    """The status comes from a property (a class-level name): read with getattr."""

    @property
    def status(self) -> int:
        """Always 409."""
        return 409


class DynamicError(Exception):
    """Attributes come from __getattr__: read with getattr."""

    def __getattr__(self, name: str) -> object:
        return {"status_code": 418, "reason": "TEAPOT"}.get(name)


class RaisingReasonError(Exception):
    """One property raises: the others are still read, one by one."""

    def __init__(self) -> None:
        super().__init__("partly hostile")
        self.status_code = 503

    @property
    def reason(self) -> str:
        """Raises."""
        raise RuntimeError("reason")


class FullError(Exception):
    """Every attribute from_exception reads, in the instance dict."""

    def __init__(self) -> None:
        super().__init__("full")
        self.status_code = "not a status"
        self.status = 404
        self.reason = "NOT_FOUND"
        self.domain = "shop.example"
        self.retry_after = dt.timedelta(seconds=3)
        self.attributes = {"sku": "A-1", 7: "dropped"}


def _by_init(exc: BaseException, **kwargs: object) -> ErrorInfo:
    """The same ErrorInfo rebuilt through the dataclass __init__."""
    info = ErrorInfo.from_exception(exc, **kwargs)  # type: ignore[arg-type]
    return ErrorInfo(
        types=info.types,
        status=info.status,
        reason=info.reason,
        domain=info.domain,
        message=info.message,
        operation=info.operation,
        retry_after=info.retry_after,
        attributes=dict(info.attributes),
    )


def test_fast_path_reads_the_instance_dict():
    """Every attribute set on a plain exception is read, with the same checks as before."""
    info = ErrorInfo.from_exception(FullError(), operation="shop.get")
    assert (info.status, info.reason, info.domain, info.retry_after, dict(info.attributes)) == (
        404,
        "NOT_FOUND",
        "shop.example",
        3.0,
        {"sku": "A-1"},
    )
    assert (info.message, info.operation) == ("full", "shop.get")


def test_class_level_attributes_are_read_with_getattr():
    """Properties and __getattr__ are honoured: such classes skip the instance-dict path."""
    assert ErrorInfo.from_exception(StatusPropertyError()).status == 409
    dynamic = ErrorInfo.from_exception(DynamicError("x"))
    assert (dynamic.status, dynamic.reason) == (418, "TEAPOT")


def test_a_raising_property_spoils_only_itself():
    """When one attribute raises, the others are still read."""
    info = ErrorInfo.from_exception(RaisingReasonError())
    assert (info.status, info.reason, info.message) == (503, None, "partly hostile")


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError("timed out"),
        ConnectionRefusedError(111, "refused"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        FullError(),
        StatusPropertyError("x"),
        DynamicError("y"),
        RaisingReasonError(),
        HostileError(),
        StatusError("x", Response(429, {"Retry-After": "7"})),
    ],
    ids=lambda exc: type(exc).__qualname__,
)
def test_fast_path_equals_the_dataclass_init(exc):
    """from_exception's value is equal, equally hashed and equally frozen as one built by __init__."""
    fast = ErrorInfo.from_exception(exc, operation="op")
    slow = _by_init(exc, operation="op")
    assert type(fast) is ErrorInfo
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert type(fast.attributes) is type(slow.attributes)
    with pytest.raises(AttributeError):
        fast.status = 500  # type: ignore[misc]


def test_subclasses_are_built_by_their_own_init():
    """ErrorInfo subclasses keep their own __init__ on the fast path."""

    class Tagged(ErrorInfo):
        __slots__ = ()

    info = Tagged.from_exception(TimeoutError("x"))
    assert (type(info), info.types[0], info.message) == (Tagged, "TimeoutError", "x")


def test_class_facts_are_bounded():
    """The per-class cache never grows past its bound."""
    from tierpolicy.engine import _errorinfo  # noqa: PLC0415  white-box check of the cache

    for i in range(_errorinfo._MAX_REMEMBERED + 10):
        ErrorInfo.from_exception(type(f"Made{i}", (Exception,), {})("x"))
    assert len(_errorinfo._CLASS_FACTS) <= _errorinfo._MAX_REMEMBERED


def test_with_operation_equals_replace():
    """with_operation gives what dataclasses.replace gives, and the same object when unchanged."""
    import dataclasses  # noqa: PLC0415  only this test compares with it

    info = ErrorInfo(types=("X",), status=503, retry_after=1.5, attributes={"a": 1})
    moved = info.with_operation("search.query")
    assert moved == dataclasses.replace(info, operation="search.query")
    assert (moved.operation, dict(moved.attributes), type(moved)) == ("search.query", {"a": 1}, ErrorInfo)
    assert moved.with_operation("search.query") is moved
