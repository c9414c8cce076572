"""A typed HTTP client of the seller service, for services that do not embed the engine.

:class:`ServiceClient` (sync) and :class:`AsyncServiceClient` (asyncio) speak to
``tierpolicy serve``: :meth:`~ServiceClient.evaluate` (the ``tierpolicy eval`` request
and answer), :meth:`~ServiceClient.entitlements` and :meth:`~ServiceClient.tier` of a
seller. They return the ``data`` of the service's envelope and raise the service's
problems as the library's own exceptions (:class:`~tierpolicy.ServiceProblemError`
and its subclasses, by status); a service that cannot be reached raises
:class:`~tierpolicy.ServiceUnavailableError` from httpx's error. Request building and
answer reading are shared (:class:`_Protocol`); the two shells only send.

Needs the ``client`` extra (``pip install 'tierpolicy[client]'``)::

    from tierpolicy.client import ServiceClient

    with ServiceClient("http://policy.internal:8000", token=token) as client:
        answer = client.evaluate({"context": {...}, "queries": [...]})
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import httpx

from .engine._exceptions import (
    AuthenticationFailedError,
    PermissionDeniedError,
    ProblemNotFoundError,
    RateLimitedError,
    ServiceProblemError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

PREFIX = "/api/marketplace/seller"
DEFAULT_TIMEOUT = 5.0

__all__ = ["AsyncServiceClient", "ServiceClient"]

_BY_STATUS: dict[int, type[ServiceProblemError]] = {
    401: AuthenticationFailedError,
    403: PermissionDeniedError,
    404: ProblemNotFoundError,
    429: RateLimitedError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


class _Protocol:
    """The I/O-free half: what to send, and what an answer means."""

    def __init__(self, base_url: str, token: str | None) -> None:
        if not base_url.startswith(("http://", "https://")):
            msg = f"the service URL must start with http:// or https://, not {base_url!r}"
            raise ValueError(msg)
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json, application/problem+json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    @staticmethod
    def seller_path(seller_id: str, what: str) -> str:
        if not seller_id:
            msg = "a seller id is required"
            raise ValueError(msg)
        return f"{PREFIX}/sellers/{quote(seller_id, safe='')}/{what}"

    @staticmethod
    def data(response: httpx.Response) -> Any:  # noqa: ANN401  JSON of the service
        """The envelope's ``data``, or the problem raised."""
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if response.is_success and isinstance(body, dict) and "data" in body:
            return body["data"]
        problem: Mapping[str, object] = body if isinstance(body, dict) else {}
        status = response.status_code
        detail = (
            problem.get("detail") or problem.get("title") or response.reason_phrase or "the service refused"
        )
        error_type = _BY_STATUS.get(status, ServiceProblemError)
        if response.is_success:  # a 2xx that is not an envelope: not the service we expect
            error_type = ServiceProblemError
            detail = "the answer is not a tierpolicy envelope"
        raw_retry = response.headers.get("retry-after", "")
        retry_after = float(raw_retry) if raw_retry.isdigit() else None
        error = error_type(
            str(detail),
            status=status,
            code=str(problem.get("code", "")),
            problem=dict(problem),
            request_id=str(problem.get("request_id") or response.headers.get("x-request-id", "")),
        )
        if retry_after is not None and math.isfinite(retry_after):
            error.retry_after = retry_after
        raise error


class ServiceClient:
    """A sync client of the seller service.

    Args:
        base_url: The service's address, e.g. ``http://policy.internal:8000``.
        token: A bearer token (``service`` role for evaluation; see ``docs/auth.md``).
        timeout: Seconds for each request.
        transport: An httpx transport (tests, proxies); httpx's default otherwise.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._protocol = _Protocol(base_url, token)
        self._http = httpx.Client(
            base_url=self._protocol.base_url,
            headers=self._protocol.headers,
            timeout=timeout,
            transport=transport,
        )

    def _send(self, method: str, path: str, payload: object = None) -> Any:  # noqa: ANN401  JSON of the service
        try:
            response = self._http.request(method, path, json=payload)
        except httpx.HTTPError as exc:
            msg = f"the service at {self._protocol.base_url} cannot be reached: {type(exc).__name__}"
            raise ServiceUnavailableError(msg) from exc
        return self._protocol.data(response)

    def evaluate(self, request: Mapping[str, object]) -> dict[str, Any]:
        """Answer an evaluation request (see ``docs/evaluation.md``): ``{"policy_version", "results"}``."""
        answer: dict[str, Any] = self._send("POST", f"{PREFIX}/policy/evaluate", request)
        return answer

    def entitlements(self, seller_id: str) -> dict[str, Any]:
        """Every feature and limit of a seller, as the service stores it."""
        answer: dict[str, Any] = self._send("GET", _Protocol.seller_path(seller_id, "entitlements"))
        return answer

    def tier(self, seller_id: str) -> dict[str, Any]:
        """A seller's tier, what its metrics qualify for, and its tier history."""
        answer: dict[str, Any] = self._send("GET", _Protocol.seller_path(seller_id, "tier"))
        return answer

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncServiceClient:
    """The asyncio client of the seller service (see :class:`ServiceClient`)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._protocol = _Protocol(base_url, token)
        self._http = httpx.AsyncClient(
            base_url=self._protocol.base_url,
            headers=self._protocol.headers,
            timeout=timeout,
            transport=transport,
        )

    async def _send(self, method: str, path: str, payload: object = None) -> Any:  # noqa: ANN401  JSON of the service
        try:
            response = await self._http.request(method, path, json=payload)
        except httpx.HTTPError as exc:
            msg = f"the service at {self._protocol.base_url} cannot be reached: {type(exc).__name__}"
            raise ServiceUnavailableError(msg) from exc
        return self._protocol.data(response)

    async def evaluate(self, request: Mapping[str, object]) -> dict[str, Any]:
        """Answer an evaluation request: ``{"policy_version", "results"}``."""
        answer: dict[str, Any] = await self._send("POST", f"{PREFIX}/policy/evaluate", request)
        return answer

    async def entitlements(self, seller_id: str) -> dict[str, Any]:
        """Every feature and limit of a seller, as the service stores it."""
        answer: dict[str, Any] = await self._send("GET", _Protocol.seller_path(seller_id, "entitlements"))
        return answer

    async def tier(self, seller_id: str) -> dict[str, Any]:
        """A seller's tier, what its metrics qualify for, and its tier history."""
        answer: dict[str, Any] = await self._send("GET", _Protocol.seller_path(seller_id, "tier"))
        return answer

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
