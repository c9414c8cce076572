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
