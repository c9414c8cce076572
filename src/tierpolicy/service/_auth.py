"""Bearer-token authentication and roles for the seller service (JWT, RFC 6750).

A caller sends ``Authorization: Bearer <JWT>``. The token is checked against the one
key the service is configured with (``JWT_SECRET`` for HS256 or ``JWT_PUBLIC_KEY`` for
RS256); the algorithm is pinned to that key's, so ``alg: none`` and HS256 tokens
"signed" with an RS256 public key are refused. ``exp``, ``sub``, ``aud`` and ``role``
are required, ``nbf`` and ``iat`` are honoured with a small leeway, and the claims are
checked strictly before a :class:`Principal` is handed to a route.

Roles: ``seller`` (its own seller id only), ``admin`` (manages), ``service`` (evaluates).
Every refusal is a problem (:mod:`._problems`): 401 ``AUTHENTICATION_REQUIRED`` or
``AUTHENTICATION_EXPIRED`` with a ``WWW-Authenticate`` challenge, 403 ``FORBIDDEN`` for
a wrong role, 404 ``SELLER_NOT_FOUND`` when a seller asks for another seller (so the
answer does not reveal that the other seller exists). The token is never echoed.

With no key configured the service still starts, and every authenticated route answers
401 saying so: authentication is never silently disabled. See ``docs/auth.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
import threading
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple, cast, get_args

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from fastapi import Depends, Path, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from jwt.algorithms import HMACAlgorithm
from pydantic import SecretStr
from starlette.requests import HTTPConnection  # noqa: TC002  FastAPI resolves dependency annotations

from tierpolicy.engine._exceptions import TierpolicyError

from ._problems import ServiceError
from ._settings import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Clock = Callable[[], dt.datetime]

logger = logging.getLogger("tierpolicy.service")

Role = Literal["seller", "admin", "service"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
"""The roles a token may carry."""

REALM: Final = "tierpolicy"
"""The ``realm`` of the ``WWW-Authenticate`` challenge."""

LEEWAY: Final = 30.0
"""Seconds of clock skew allowed when checking ``exp``, ``nbf`` and ``iat``."""

VERIFIED_CACHE_SIZE = 4096
"""Verified tokens remembered per authenticator (the claims of each, a few hundred bytes)."""
MAX_TOKEN_LENGTH: Final = 8192
"""Longer bearer tokens are refused before they are parsed."""

MIN_SECRET_BYTES: Final = 32
"""RFC 7518 section 3.2: an HS256 key is at least as long as the hash (256 bits)."""

MIN_RSA_BITS: Final = 2048

SELLER_ID_LENGTH: Final = 128
"""The longest seller id (the store's id columns)."""

NAME_LENGTH: Final = 256
"""The longest ``sub`` and ``jti`` (the audit log's actor column)."""

NO_KEY_DETAIL: Final = (
    "the service has no JWT key configured (set JWT_SECRET for HS256 or JWT_PUBLIC_KEY for RS256)"
)

# RFC 6750 section 2.1: b64token. A JWT (base64url segments and dots) always matches.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Control characters and lone surrogates: never part of an id, and kept out of logs.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E.
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
# The largest NumericDate a datetime can hold (9999-12-31T23:59:59Z).
_MAX_TIMESTAMP: Final = 253_402_300_799


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthSetupError(TierpolicyError, ValueError):
    """A JWT key, a setting or an argument of :func:`mint_token` is not usable."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: the checked claims of a bearer token.

    Attributes:
        subject: The ``sub`` claim (a user or client id; the audit log's actor).
        role: ``seller``, ``admin`` or ``service``.
        seller_id: The seller a ``seller`` token acts for; ``None`` for other roles.
        token_id: The ``jti`` claim, when the token has one.
        expires_at: When the token expires (UTC).
    """

    subject: str
    role: Role
    seller_id: str | None
    token_id: str | None
    expires_at: dt.datetime


# --------------------------------------------------------------------------- refusals


def _challenge(error: str | None, description: str) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a refusal (RFC 6750 section 3).

    Without an ``error`` (no credentials, or another scheme) the challenge is bare, as
    section 3.1 asks; the description then lives in the problem's ``detail`` only.
    """
    value = f'Bearer realm="{REALM}"'
    if error is not None:
        value += f', error="{error}", error_description="{_NOT_IN_DESCRIPTION.sub("?", description)}"'
    return {"WWW-Authenticate": value}


def _unauthenticated(detail: str, *, error: str | None = "invalid_token") -> ServiceError:
    """A 401 ``AUTHENTICATION_REQUIRED`` problem with its challenge."""
    return ServiceError("AUTHENTICATION_REQUIRED", detail, status=401, headers=_challenge(error, detail))


def seller_not_found() -> ServiceError:
    """The 404 ``SELLER_NOT_FOUND`` problem, exactly as a seller that does not exist gets it.

    Routes answer a missing seller with this same error, so a seller token asking for
    another seller cannot tell whether that seller exists.
    """
    return ServiceError("SELLER_NOT_FOUND", status=404)


# --------------------------------------------------------------------------- claims


def _text(value: object, claim: str, limit: int) -> str:
    """``value`` as a claim of 1 to ``limit`` printable characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= limit or _UNPRINTABLE.search(value):
        raise _unauthenticated(f"the token's {claim} claim must be text of 1 to {limit} printable characters")
    return value


def _role(value: object) -> Role:
    if not isinstance(value, str) or value not in ROLES:
        raise _unauthenticated(f"the token's role claim must be one of {', '.join(sorted(ROLES))}")
    return value


def _seller_id(role: Role, value: object) -> str | None:
    """The seller id of a ``role`` token: required for sellers, refused for the others."""
    if role != "seller":
        if value is not None:
            # An admin or service token with a seller id is ambiguous: refuse it rather
            # than guess which identity a route should trust.
            raise _unauthenticated("only seller tokens carry a seller_id claim")
        return None
    if value is None:
        raise _unauthenticated("a seller token needs a seller_id claim")
    return _text(value, "seller_id", SELLER_ID_LENGTH)


def _numeric_date(claims: dict[str, Any], claim: str) -> float | None:
    """A NumericDate claim (RFC 7519 section 2) as seconds, or ``None`` when absent."""
    value = claims.get(claim)
    if value is None:
        return None
    # bool is an int in Python, and JSON's true is no date.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _unauthenticated(f"the token's {claim} claim must be a number of seconds")
    # One comparison refuses NaN, infinities and integers too large for a float alike.
    if not 0 <= value <= _MAX_TIMESTAMP:
        raise _unauthenticated(f"the token's {claim} claim is out of range")
    return float(value)


# --------------------------------------------------------------------------- keys


def _secret_bytes(secret: SecretStr | str | bytes, what: str) -> bytes:
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    key = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(key) < MIN_SECRET_BYTES:
        raise AuthSetupError(
            f"{what} is {len(key)} bytes long; HS256 needs at least {MIN_SECRET_BYTES} "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)
    except jwt.InvalidKeyError:
        # PyJWT refuses PEM and SSH keys as HMAC secrets (the algorithm-confusion guard):
        # say so now rather than refusing every token later.
        raise AuthSetupError(
            f"{what} looks like a PEM or SSH key; an RS256 public key goes in JWT_PUBLIC_KEY"
        ) from None
    return key


def _pem(value: SecretStr | str | bytes) -> bytes:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if "\n" not in text and "\\n" in text:
        # Environment variables often carry a PEM with its newlines escaped.
        text = text.replace("\\n", "\n")
    return text.strip().encode("utf-8")


def _public_key(value: SecretStr | str | bytes) -> RSAPublicKey:
    pem = _pem(value)
    if b"PRIVATE KEY" in pem:
        raise AuthSetupError("JWT_PUBLIC_KEY holds a private key; give the service only the public key")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise AuthSetupError("JWT_PUBLIC_KEY is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise AuthSetupError("JWT_PUBLIC_KEY is not an RSA key (RS256 needs one)")
    if key.key_size < MIN_RSA_BITS:
        raise AuthSetupError(f"JWT_PUBLIC_KEY has {key.key_size} bits; RS256 needs at least {MIN_RSA_BITS}")
    return key


def _private_key(value: str | bytes) -> RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_pem(value), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted; a token command cannot ask for its password.
        raise AuthSetupError("the private key is not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise AuthSetupError("the private key is not an RSA key (RS256 needs one)")
    if key.key_size < MIN_RSA_BITS:
        raise AuthSetupError(f"the private key has {key.key_size} bits; RS256 needs at least {MIN_RSA_BITS}")
    return key


# --------------------------------------------------------------------------- the authenticator


class Authenticator:
    """Checks bearer tokens against one key, with the algorithm pinned to it.

    Args:
        algorithm: ``HS256`` or ``RS256``; ``None`` when no key is configured (every
            token is then refused, saying so).
        key: The HS256 secret (at least 32 bytes) or the RS256 public key.
        audience: The ``aud`` every token must name.
        leeway: Seconds of clock skew allowed for ``exp``, ``nbf`` and ``iat``.
        clock: The current time (tests pin it).

    Raises:
        AuthSetupError: The key does not suit the algorithm.
    """

    def __init__(
        self,
        *,
        algorithm: Literal["HS256", "RS256"] | None,
        key: str | bytes | RSAPublicKey | None,
        audience: str = "tierpolicy",
        leeway: float = LEEWAY,
        clock: Clock = _utcnow,
    ) -> None:
        self.algorithm = algorithm
        self.audience = audience
        self.leeway = leeway
        self._clock = clock
        # Tokens whose signature verified, with their claims: a caller sends the same
        # token many times, and verifying it is most of the cost of authenticating.
        self._verified: dict[str, _Parsed] = {}
        self._verified_lock = threading.Lock()
        self._key: bytes | RSAPublicKey | None
        if algorithm is None:
            self._key = None
        elif algorithm == "HS256":
            if not isinstance(key, str | bytes):
                raise AuthSetupError("HS256 needs a secret")
            self._key = _secret_bytes(key, "the HS256 secret")
        else:
            self._key = key if isinstance(key, RSAPublicKey) else _public_key(key or b"")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, leeway: float = LEEWAY, clock: Clock = _utcnow
    ) -> Authenticator:
        """The authenticator ``settings`` configure: ``JWT_SECRET`` or ``JWT_PUBLIC_KEY``.

        Args:
            settings: The service's settings.
            leeway: Seconds of clock skew allowed.
            clock: The current time (tests pin it).

        Raises:
            AuthSetupError: Both keys are set, or the one set is not usable.
        """
        secret, public = settings.jwt_secret, settings.jwt_public_key
        if secret is not None and public is not None:
            raise AuthSetupError("set JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256), not both")
        algorithm: Literal["HS256", "RS256"] | None
        key: bytes | RSAPublicKey | None
        if secret is not None:
            algorithm, key = "HS256", _secret_bytes(secret, "JWT_SECRET")
        elif public is not None:
            algorithm, key = "RS256", _public_key(public)
        else:
            logger.warning(
                "no JWT key configured (JWT_SECRET or JWT_PUBLIC_KEY): authenticated routes answer 401"
            )
            algorithm, key = None, None
        return cls(algorithm=algorithm, key=key, audience=settings.jwt_audience, leeway=leeway, clock=clock)

    @property
    def configured(self) -> bool:
        """Whether a key is configured (without one every token is refused)."""
        return self._key is not None

    def authenticate(self, authorization: list[str]) -> Principal:
        """The principal of a request's ``Authorization`` header values.

        Args:
            authorization: Every ``Authorization`` header of the request (usually one).

        Raises:
            ServiceError: 401 ``AUTHENTICATION_REQUIRED`` or ``AUTHENTICATION_EXPIRED``.
        """
        if self._key is None:
            raise _unauthenticated(NO_KEY_DETAIL, error=None)
        if not authorization:
            raise _unauthenticated("this needs a bearer token (Authorization: Bearer <token>)", error=None)
        if len(authorization) > 1:
            raise _unauthenticated("send one Authorization header, not several")
        scheme, _, token = authorization[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            # RFC 6750 section 3.1: an unsupported scheme gets the challenge without an error code.
            raise _unauthenticated("the Authorization header must use the Bearer scheme", error=None)
        token = token.strip(" ")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _unauthenticated(f"the bearer token is longer than {MAX_TOKEN_LENGTH} characters")
        if not _B64TOKEN.fullmatch(token):
            raise _unauthenticated("the bearer token is malformed")
        return self.decode(token)

    def decode(self, token: str) -> Principal:
        """Check one token and return its principal.

        Raises:
            ServiceError: 401 ``AUTHENTICATION_REQUIRED`` (``AUTHENTICATION_EXPIRED`` once
                ``exp`` has passed); the detail says why, never quoting the token.
        """
        if self._key is None:
            raise _unauthenticated(NO_KEY_DETAIL, error=None)
        verified = self._verified.get(token)
        if verified is not None:
            # The signature and the claims do not change; the times are checked every call.
            return self._in_time(verified)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[cast("str", self.algorithm)],
                audience=self.audience,
                options={
                    "require": ["exp", "sub", "aud", "role"],
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_sub": True,
                    "verify_jti": True,
                    # Checked below with the injectable clock instead of PyJWT's wall clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidAlgorithmError:
            raise _unauthenticated(f"the token must be signed with {self.algorithm}") from None
        except jwt.InvalidSignatureError:
            raise _unauthenticated("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthenticated(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated(
                f"the token is not meant for this service (its aud must name {self.audience})"
            ) from None
        except jwt.PyJWTError:
            # PyJWT's own messages may quote pieces of the token: never sent.
            raise _unauthenticated("the bearer token is malformed") from None
        parsed = self._parsed(claims)
        principal = self._in_time(parsed)
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest: tokens are short-lived
            self._verified[token] = parsed
        return principal

    @staticmethod
    def _parsed(claims: dict[str, Any]) -> _Parsed:
        """The principal of verified claims, with the times it is valid between."""
        expires = cast("float", _numeric_date(claims, "exp"))  # required: decode checked it is there
        not_before = _numeric_date(claims, "nbf")
        issued = _numeric_date(claims, "iat")
        subject = _text(claims["sub"], "sub", NAME_LENGTH)
        role = _role(claims["role"])
        seller_id = _seller_id(role, claims.get("seller_id"))
        token_id = claims.get("jti")
        if token_id is not None:
            token_id = _text(token_id, "jti", NAME_LENGTH)
        principal = Principal(
            subject=subject,
            role=role,
            seller_id=seller_id,
            token_id=token_id,
            expires_at=dt.datetime.fromtimestamp(expires, dt.UTC),
        )
        return _Parsed(principal, not_before, issued, expires)

    def _in_time(self, parsed: _Parsed) -> Principal:
        """The principal, if the token is valid now (``nbf``, ``iat`` and ``exp`` with the leeway)."""
        now = self._clock().timestamp()
        if parsed.not_before is not None and parsed.not_before > now + self.leeway:
            raise _unauthenticated("the token is not valid yet (nbf)")
        if parsed.issued is not None and parsed.issued > now + self.leeway:
            raise _unauthenticated("the token was issued in the future (iat)")
        if parsed.expires <= now - self.leeway:
            raise ServiceError(
                "AUTHENTICATION_EXPIRED",
                "the token has expired",
                status=401,
                headers=_challenge("invalid_token", "the token has expired"),
            )
        return parsed.principal


class _Parsed(NamedTuple):
    principal: Principal
    not_before: float | None
    issued: float | None
    expires: float


# --------------------------------------------------------------------------- FastAPI dependencies


def authenticator_of(request: HTTPConnection) -> Authenticator:
    """The application's authenticator (``app.state.authenticator``), built from its settings once.

    Set ``app.state.authenticator`` when building the app so that a bad key stops the
    service at startup; otherwise the first authenticated request builds it.
    """
    state = request.app.state
    authenticator = getattr(state, "authenticator", None)
    if not isinstance(authenticator, Authenticator):
        authenticator = Authenticator.from_settings(state.settings)
        state.authenticator = authenticator
    return authenticator


class BearerAuthentication(SecurityBase):
    """The FastAPI dependency that authenticates a request (and documents it in OpenAPI).

    Use the module's :data:`authenticated` instance; it is a security scheme, so every
    route that depends on it, directly or through :func:`require_roles`, shows the
    bearer requirement in ``/docs``.
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="JWT",
            description="A JWT with the claims sub, role, aud, exp (and seller_id for sellers); see docs/auth.md.",
        )
        self.scheme_name = "bearer"

    async def __call__(self, request: Request) -> Principal:
        """The request's principal, also kept in ``request.state.principal``.

        Raises:
            ServiceError: 401 when the request is not authenticated.
        """
        checked = getattr(request.state, "principal", None)
        if isinstance(checked, Principal):  # the rate limits checked the token already
            return checked
        principal = authenticator_of(request).authenticate(request.headers.getlist("authorization"))
        request.state.principal = principal
        return principal


authenticated = BearerAuthentication()
"""``Depends(authenticated)``: the caller's :class:`Principal`, or a 401 problem."""


def role_gate(*roles: Role) -> Callable[[Principal], Principal]:
    """A check admitting only principals with one of ``roles``, for code that is not a dependency.

    Args:
        *roles: The roles admitted.

    Returns:
        A function giving back the principal it is passed, or raising 403 ``FORBIDDEN``.

    Raises:
        ValueError: No role, or one that does not exist (when the gate is made).
    """
    if not roles or any(role not in ROLES for role in roles):
        raise ValueError(f"require_roles takes one or more of {', '.join(ROLES)}, not {roles!r}")
    allowed = frozenset(roles)
    needed = f"this needs the {' or '.join(sorted(allowed))} role"

    def gate(principal: Principal) -> Principal:
        if principal.role not in allowed:
            raise ServiceError(
                "FORBIDDEN", needed, status=403, headers=_challenge("insufficient_scope", needed)
            )
        return principal

    return gate


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only principals with one of ``roles`` (see :func:`role_gate`).

    Args:
        *roles: The roles admitted.

    Returns:
        A dependency giving the :class:`Principal`, for ``Depends(...)``.

    Raises:
        ValueError: No role, or one that does not exist (at route definition).
    """
    gate = role_gate(*roles)

    async def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        return gate(principal)

    dependency.__name__ = f"require_{'_or_'.join(sorted(set(roles)))}"
    return dependency


def seller_access(principal: Principal, seller_id: str) -> Principal:
    """Check that ``principal`` may read seller ``seller_id``.

    Admin and service principals may read any seller; a seller only itself.

    Raises:
        ServiceError: 404 ``SELLER_NOT_FOUND`` (the very problem a missing seller gets)
            when a seller token asks for another seller, so it learns nothing about
            whether that seller exists.
    """
    if principal.role == "seller" and principal.seller_id != seller_id:
        raise seller_not_found()
    return principal


async def seller_scoped(
    seller_id: Annotated[str, Path(description="The seller's id.")],
    principal: Annotated[Principal, Depends(authenticated)],
) -> Principal:
    """The dependency of routes under ``/sellers/{seller_id}``: :func:`seller_access` on the path's id."""
    return seller_access(principal, seller_id)


# --------------------------------------------------------------------------- minting


def mint_token(
    settings_or_secret: Settings | SecretStr | str | bytes | None,
    *,
    role: str,
    subject: str,
    seller_id: str | None = None,
    ttl: float = 3600,
    audience: str | None = None,
    token_id: str | None = None,
    private_key: str | bytes | None = None,
    clock: Clock = _utcnow,
) -> str:
    """A signed token the service accepts (for development, tests and ``tierpolicy token``).

    HS256 with the secret (``settings_or_secret`` is the settings with ``JWT_SECRET``, or
    the secret itself); RS256 only with ``private_key``, since the service's public key
    cannot sign.

    Args:
        settings_or_secret: The service's settings, or the HS256 secret; ``None`` with
            ``private_key``.
        role: ``seller``, ``admin`` or ``service``.
        subject: The ``sub`` claim.
        seller_id: The seller of a ``seller`` token (required for sellers only).
        ttl: Seconds until the token expires (at least 1).
        audience: The ``aud`` claim (default: the settings' ``JWT_AUDIENCE``, else ``tierpolicy``).
        token_id: The ``jti`` claim (default: a random one).
        private_key: An unencrypted RSA private key (PEM) to sign RS256 with.
        clock: The current time.

    Raises:
        AuthSetupError: No usable key, or a claim the service would refuse.
    """
    settings = settings_or_secret if isinstance(settings_or_secret, Settings) else None
    key: bytes | RSAPrivateKey
    if private_key is not None:
        if settings_or_secret is not None and settings is None:
            raise AuthSetupError("give a secret (HS256) or a private key (RS256), not both")
        key = _private_key(private_key)
        if settings is not None:
            if settings.jwt_public_key is None:
                raise AuthSetupError("the service is not configured for RS256 (JWT_PUBLIC_KEY is not set)")
            # A token the service would refuse is no use: the key pair must match.
            if key.public_key().public_numbers() != _public_key(settings.jwt_public_key).public_numbers():
                raise AuthSetupError("the private key does not match JWT_PUBLIC_KEY")
        algorithm = "RS256"
    else:
        secret: SecretStr | str | bytes | None
        if settings is None:
            secret = cast("SecretStr | str | bytes | None", settings_or_secret)
        elif settings.jwt_secret is None:
            raise AuthSetupError(
                "minting RS256 tokens needs the private key"
                if settings.jwt_public_key is not None
                else "no JWT_SECRET is configured to sign tokens with"
            )
        else:
            secret = settings.jwt_secret
        if secret is None:
            raise AuthSetupError("give the HS256 secret, or a private key for RS256")
        key = _secret_bytes(secret, "the HS256 secret")
        algorithm = "HS256"
    if not (math.isfinite(ttl) and ttl >= 1):
        raise AuthSetupError(f"ttl must be at least 1 second, not {ttl}")
    now = clock().timestamp()
    if now + ttl > _MAX_TIMESTAMP:
        raise AuthSetupError("ttl reaches past the year 9999")
    claims: dict[str, object] = {
        "sub": subject,
        "role": role,
        "aud": audience or (settings.jwt_audience if settings is not None else "tierpolicy"),
        "iat": int(now),
        "exp": int(now + ttl),
        "jti": token_id if token_id is not None else uuid.uuid4().hex,
    }
    if seller_id is not None:
        claims["seller_id"] = seller_id
    try:
        # The same checks the service makes, so a minted token is always accepted.
        checked_role = _role(role)
        _seller_id(checked_role, seller_id)
        _text(subject, "sub", NAME_LENGTH)
        _text(claims["jti"], "jti", NAME_LENGTH)
    except ServiceError as exc:
        raise AuthSetupError(exc.detail) from None
    return jwt.encode(claims, key, algorithm=algorithm)


__all__ = [
    "LEEWAY",
    "NO_KEY_DETAIL",
    "REALM",
    "ROLES",
    "AuthSetupError",
    "Authenticator",
    "BearerAuthentication",
    "Principal",
    "Role",
    "authenticated",
    "authenticator_of",
    "mint_token",
    "require_roles",
    "seller_access",
    "seller_not_found",
    "seller_scoped",
]
