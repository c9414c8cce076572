"""The seller service: policy evaluation and the seller API over HTTP (FastAPI).

Run it with ``tierpolicy serve``; build it in code with :func:`create_app`::

    from tierpolicy.service import Settings, create_app

    app = create_app(Settings(policy_dir="policies/"))

Needs the ``service`` extra (``pip install 'tierpolicy[service]'``).
"""

from ._app import PREFIX, RequestIdMiddleware, create_app
from ._auth import (
    ROLES,
    Authenticator,
    AuthSetupError,
    Principal,
    Role,
    authenticated,
    mint_token,
    require_roles,
    seller_access,
    seller_not_found,
    seller_scoped,
)
from ._envelope import envelope
from ._problems import SERVICE_DOMAIN, ServiceError, build_problem
from ._settings import Settings

__all__ = [
    "PREFIX",
    "ROLES",
    "SERVICE_DOMAIN",
    "AuthSetupError",
    "Authenticator",
    "Principal",
    "RequestIdMiddleware",
    "Role",
    "ServiceError",
    "Settings",
    "authenticated",
    "build_problem",
    "create_app",
    "envelope",
    "mint_token",
    "require_roles",
    "seller_access",
    "seller_not_found",
    "seller_scoped",
]
