"""RFC 9457 problem responses (``application/problem+json``) raised from FastAPI dependencies.

A dependency cannot return a response, only raise. :class:`ProblemException` is an
``HTTPException`` that carries a problem body; :func:`install_problem_handler` registers
the handler that renders it as ``application/problem+json`` with its headers. The
exception is an ``HTTPException`` so that an application that has not installed the
handler still answers with the right status and headers (FastAPI's default handler then
wraps the problem in ``{"detail": ...}`` as plain JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from fastapi import HTTPException
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
"""The media type of RFC 9457 problem details in JSON."""

DEFAULT_TYPE_BASE: Final = "urn:tierpolicy:error:"
"""The start of the problem ``type`` URIs of this adapter (as the Errors kind's default ``type_base``)."""


class ProblemException(HTTPException):
    """An HTTP error answered with an RFC 9457 problem body.

    Args:
        problem: The problem members: at least ``type``, ``title``, ``status`` (an int,
            which is also the response status) and ``detail``; extension members may follow.
        headers: Response headers (``Retry-After``...).

    Attributes:
        problem: The problem members.
    """

    def __init__(self, problem: Mapping[str, object], *, headers: Mapping[str, str] | None = None) -> None:
        status = problem.get("status")
        if type(status) is not int:
            msg = f"a problem's status must be an int, not {status!r}"
            raise TypeError(msg)
        self.problem: dict[str, object] = dict(problem)
        super().__init__(status_code=status, detail=self.problem, headers=dict(headers or {}))

    def response(self) -> JSONResponse:
        """The ``application/problem+json`` response for this problem."""
        return JSONResponse(
            self.problem, status_code=self.status_code, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE
        )


async def problem_exception_handler(request: Request, exc: Exception) -> Response:  # noqa: ARG001  Starlette's handler signature; async so Starlette does not use a thread
    """The Starlette exception handler for :class:`ProblemException` (see :func:`install_problem_handler`).

    Raises:
        TypeError: ``exc`` is not a :class:`ProblemException` (the handler was
            registered for another exception class).
    """
    if not isinstance(exc, ProblemException):
        msg = f"problem_exception_handler handles ProblemException, not {type(exc).__name__}"
        raise TypeError(msg) from exc
    return exc.response()


def install_problem_handler(app: Starlette) -> None:
    """Answer every :class:`ProblemException` (rate-limit denials included) as ``application/problem+json``.

    Call once on the application: ``install_problem_handler(app)``. It registers
    :func:`problem_exception_handler` for :class:`ProblemException`, which Starlette
    prefers over the generic ``HTTPException`` handler because it is the more
    specific class.
    """
    app.add_exception_handler(ProblemException, problem_exception_handler)
