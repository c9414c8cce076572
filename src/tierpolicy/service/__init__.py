"""The seller service: policy evaluation and the seller API over HTTP (FastAPI).

Run it with ``tierpolicy serve``; build it in code with :func:`create_app`::

    from tierpolicy.service import Settings, create_app

    app = create_app(Settings(policy_dir="policies/"))

Needs the ``service`` extra (``pip install 'tierpolicy[service]'``).
"""

from ._app import PREFIX, RequestIdMiddleware, create_app, envelope
from ._problems import SERVICE_DOMAIN, ServiceError, build_problem
from ._settings import Settings

__all__ = [
    "PREFIX",
    "SERVICE_DOMAIN",
    "RequestIdMiddleware",
    "ServiceError",
    "Settings",
    "build_problem",
    "create_app",
    "envelope",
]
