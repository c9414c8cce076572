"""The FastAPI adapter: rate-limit routes, derive the client address safely, answer with problems.

Needs the ``fastapi`` extra (``pip install 'tierpolicy[fastapi]'``)::

    from typing import Annotated

    from fastapi import Depends, FastAPI, Request

    import tierpolicy
    from tierpolicy.adapters import rate_limit_store
    from tierpolicy.adapters.fastapi import RateLimit, install_problem_handler

    limiter = tierpolicy.RateLimiter(
        tierpolicy.load("policies/"), rate_limit_store("redis://localhost:6379/0")
    )


    def seller_context(request: Request) -> dict[str, object]:
        return {"seller": {"id": request.state.seller_id, "tier": request.state.seller_tier}}


    rate_limit = RateLimit(limiter, context=seller_context, trusted_proxies=["10.0.0.0/8"])
    app = FastAPI()
    install_problem_handler(app)  # refusals as application/problem+json


    @app.get("/api/marketplace/seller/listings", dependencies=[Depends(rate_limit)])
    async def listings() -> list[str]:
        return []

Allowed requests carry ``RateLimit-Policy`` and ``RateLimit``; refused ones get 429 (or
503 when a ``fail_closed`` limit's store is down) with ``Retry-After`` and an RFC 9457
body. See ``docs/fastapi.md``.
"""

from ._client import TrustedProxies, client_address
from ._problem import PROBLEM_MEDIA_TYPE, ProblemException, install_problem_handler, problem_exception_handler
from ._ratelimit import RateLimit, RateLimitExceeded, RateLimitKeyError, route_template

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemException",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitKeyError",
    "TrustedProxies",
    "client_address",
    "install_problem_handler",
    "problem_exception_handler",
    "route_template",
]
