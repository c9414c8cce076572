"""Bearer-token authentication and roles of the seller service: tokens, problems, dependencies."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

import tierpolicy
from support import NOW
from tierpolicy.service import ServiceError, Settings, create_app
from tierpolicy.service._auth import (
    LEEWAY,
    NO_KEY_DETAIL,
    Authenticator,
    AuthSetupError,
    Principal,
    authenticated,
    mint_token,
    require_roles,
    seller_access,
    seller_not_found,
    seller_scoped,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]
# Test keys, not credentials.
SECRET = "dev-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105  a test key
OTHER_SECRET = "another-secret-0123456789abcdefghijklmnopqrstu"  # noqa: S105  a test key
AUDIENCE = "tierpolicy"
SELLERS = {"s-1", "s-2"}


def clock() -> dt.datetime:
    """The pinned time every test checks tokens at."""
    return NOW


@pytest.fixture(scope="module")
def marketplace() -> tierpolicy.Engine:
    """The shipped marketplace policies (their Errors document gives the problem codes)."""
    return tierpolicy.load(ROOT / "policies")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA key pair made for this test module."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def weak_rsa_key() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key, which the service must refuse."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  deliberately too small


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """``key`` as an unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """The public half of ``key`` as a PEM."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def b64(data: bytes) -> str:
    """Unpadded base64url, as JWS segments are."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: object, payload: object, key: str | bytes = SECRET) -> str:
    """A compact JWS signed by hand (PyJWT refuses to make the hostile ones)."""
    key = key.encode() if isinstance(key, str) else key
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: object) -> dict[str, object]:
    """Valid admin claims at NOW, with ``overrides`` (a value of None drops the claim)."""
    base: dict[str, object] = {
        "sub": "alice",
        "role": "admin",
        "aud": AUDIENCE,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
        "jti": "t-1",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def token(**overrides: object) -> str:
    """An HS256 token with ``claims(**overrides)``, signed with SECRET."""
    return hs256({"alg": "HS256", "typ": "JWT"}, claims(**overrides))


def bearer(value: str) -> dict[str, str]:
    """The Authorization header carrying ``value``."""
    return {"Authorization": f"Bearer {value}"}


def hs_authenticator() -> Authenticator:
    """An HS256 authenticator over SECRET at NOW."""
    return Authenticator(algorithm="HS256", key=SECRET, audience=AUDIENCE, clock=clock)


def guarded_app(engine: tierpolicy.Engine, authenticator: Authenticator | None, **config: object) -> FastAPI:
    """The service with test routes behind each guard (and ``authenticator`` installed, if given)."""
    app = create_app(Settings(**{"database_url": "sqlite://", **config}), engine=engine)  # type: ignore[arg-type]
    if authenticator is not None:
        app.state.authenticator = authenticator

    @app.get("/t/whoami")
    async def whoami(principal: Annotated[Principal, Depends(authenticated)]) -> dict[str, object]:
        return {"subject": principal.subject, "role": principal.role, "seller_id": principal.seller_id}

    @app.get("/t/service")
    async def service_only(
        principal: Annotated[Principal, Depends(require_roles("service"))],
    ) -> dict[str, str]:
        return {"role": principal.role}

    @app.get("/t/admin")
    async def admin_only(principal: Annotated[Principal, Depends(require_roles("admin"))]) -> dict[str, str]:
        return {"role": principal.role}

    @app.get("/t/sellers/{seller_id}")
    async def seller(
        seller_id: str, principal: Annotated[Principal, Depends(seller_scoped)]
    ) -> dict[str, str]:
        if seller_id not in SELLERS:
            raise seller_not_found()
        return {"seller_id": seller_id, "role": principal.role}

    return app


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request to ``app`` in-process (server errors come back as responses, as on a real server)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The response is a problem of ``status`` and ``code`` that carries the request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["request_id"] == response.headers["x-request-id"] != ""
    return problem


def challenge(error: str | None = None) -> str:
    """The start of the WWW-Authenticate header expected for ``error``."""
    value = 'Bearer realm="tierpolicy"'
    return value if error is None else f'{value}, error="{error}", error_description="'


@pytest.fixture(scope="module")
def app(marketplace: tierpolicy.Engine) -> FastAPI:
    """The guarded test application over HS256 at NOW."""
    return guarded_app(marketplace, hs_authenticator())


# --------------------------------------------------------------------------- the matrix

# Each scenario: the Authorization header (None: none sent), then for the service-only,
# admin-only and seller-scoped (/t/sellers/s-1) routes the status and problem code.
OK = (200, None)
FORBIDDEN = (403, "FORBIDDEN")
REQUIRED = (401, "AUTHENTICATION_REQUIRED")
EXPIRED = (401, "AUTHENTICATION_EXPIRED")
HIDDEN = (404, "SELLER_NOT_FOUND")
MATRIX: dict[str, tuple[str | None, tuple[tuple[int, str | None], ...], str | None]] = {
    "seller own": (
        f"Bearer {token(role='seller', sub='u-1', seller_id='s-1')}",
        (FORBIDDEN, FORBIDDEN, OK),
        "insufficient_scope",
    ),
    "seller other": (
        f"Bearer {token(role='seller', sub='u-2', seller_id='s-2')}",
        (FORBIDDEN, FORBIDDEN, HIDDEN),
        "insufficient_scope",
    ),
    "admin": (f"Bearer {token()}", (FORBIDDEN, OK, OK), "insufficient_scope"),
    "service": (f"Bearer {token(role='service', sub='checkout')}", (OK, FORBIDDEN, OK), "insufficient_scope"),
    "none": (None, (REQUIRED,) * 3, None),
    "expired": (f"Bearer {token(exp=int(NOW.timestamp()) - 3600)}", (EXPIRED,) * 3, "invalid_token"),
    "wrong audience": (f"Bearer {token(aud='billing')}", (REQUIRED,) * 3, "invalid_token"),
    "bad signature": (
        f"Bearer {hs256({'alg': 'HS256'}, claims(), OTHER_SECRET)}",
        (REQUIRED,) * 3,
        "invalid_token",
    ),
    "alg none": (
        f"Bearer {b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims()).encode())}.",
        (REQUIRED,) * 3,
        "invalid_token",
    ),
    "not bearer": ("Basic YWxpY2U6c2VjcmV0", (REQUIRED,) * 3, None),
    "bearer without token": ("Bearer", (REQUIRED,) * 3, "invalid_token"),
    "two tokens": (f"Bearer {token()} {token()}", (REQUIRED,) * 3, "invalid_token"),
    "not a jwt": ("Bearer abc.def", (REQUIRED,) * 3, "invalid_token"),
    "missing role": (f"Bearer {token(role=None)}", (REQUIRED,) * 3, "invalid_token"),
    "missing exp": (f"Bearer {token(exp=None)}", (REQUIRED,) * 3, "invalid_token"),
    "missing sub": (f"Bearer {token(sub=None)}", (REQUIRED,) * 3, "invalid_token"),
    "missing aud": (f"Bearer {token(aud=None)}", (REQUIRED,) * 3, "invalid_token"),
    "unknown role": (f"Bearer {token(role='superadmin')}", (REQUIRED,) * 3, "invalid_token"),
    "seller without seller_id": (f"Bearer {token(role='seller')}", (REQUIRED,) * 3, "invalid_token"),
}
ROUTES = ("/t/service", "/t/admin", "/t/sellers/s-1")


@pytest.mark.parametrize("route", range(len(ROUTES)), ids=ROUTES)
@pytest.mark.parametrize("scenario", MATRIX)
def test_auth_matrix(app, scenario, route):
    """Each kind of caller gets the status, code and challenge its role and token deserve, on each guard."""
    authorization, expected, error = MATRIX[scenario]
    status, code = expected[route]
    headers = {} if authorization is None else {"Authorization": authorization}
    response = call(app, "GET", ROUTES[route], headers=headers)
    if code is None:
        assert response.status_code == status, response.text
        return
    assert_problem(response, status, code)
    if status == 404:
        assert "www-authenticate" not in response.headers
    else:
        assert response.headers["www-authenticate"].startswith(challenge(error))
    if authorization is not None:
        for part in authorization.split()[1:]:
            assert part not in response.text
            assert part not in response.headers["www-authenticate" if status != 404 else "content-type"]


def test_a_refusal_never_echoes_the_token_even_in_logs(app, caplog):
    """Neither the body, the headers nor the log of a refused token contain any of it."""
    caplog.set_level(logging.DEBUG)
    bad = hs256({"alg": "HS256"}, claims(), OTHER_SECRET)
    response = call(app, "GET", "/t/admin", headers=bearer(bad))
    assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
    for segment in bad.split("."):
        assert segment not in response.text
        assert segment not in str(response.headers)
        assert segment not in caplog.text


def test_a_good_token_gives_the_route_its_principal(app):
    """The principal carries the subject, role and seller id of the token."""
    seller = token(role="seller", sub="u-1", seller_id="s-1")
    assert call(app, "GET", "/t/whoami", headers=bearer(seller)).json() == {
        "subject": "u-1",
        "role": "seller",
        "seller_id": "s-1",
    }
    assert call(app, "GET", "/t/whoami", headers=bearer(token())).json()["seller_id"] is None


def test_the_scheme_is_case_insensitive(app):
    """`bearer`, `BEARER` and `Bearer` are the same scheme (RFC 7235)."""
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = call(app, "GET", "/t/admin", headers={"Authorization": f"{scheme} {token()}"})
        assert response.status_code == 200


def test_the_details_say_what_is_wrong(app):
    """Details name the failing check, not the token: expiry, signature, audience, claims, syntax."""
    cases = {
        token(exp=int(NOW.timestamp()) - 3600): "the token has expired",
        hs256({"alg": "HS256"}, claims(), OTHER_SECRET): "signature does not verify",
        token(aud="billing"): "not meant for this service",
        token(role=None): "no role claim",
        token(role="superadmin"): "role claim must be one of admin, seller, service",
        token(role="seller"): "a seller token needs a seller_id claim",
        "abc.def": "malformed",
        "a" * 9000: "longer than 8192 characters",
        "a b": "malformed",
        "ab$cd": "malformed",
    }
    for value, detail in cases.items():
        response = call(app, "GET", "/t/admin", headers={"Authorization": f"Bearer {value}"})
        assert detail in str(response.json()["detail"]), (value[:20], response.json())


def test_a_missing_header_has_no_error_code_in_its_challenge(app):
    """RFC 6750 section 3.1: a request with no credentials gets a bare challenge."""
    response = call(app, "GET", "/t/whoami")
    assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
    assert response.headers["www-authenticate"] == 'Bearer realm="tierpolicy"'


def test_the_problem_of_a_401_comes_from_the_errors_policy(app):
    """A refused token's problem carries the registry's type and title."""
    problem = assert_problem(call(app, "GET", "/t/admin"), 401, "AUTHENTICATION_REQUIRED")
    assert problem["type"] == "https://docs.marketplace.example/errors/authentication-required"
    expired = call(app, "GET", "/t/admin", headers=bearer(token(exp=int(NOW.timestamp()) - 60)))
    problem = assert_problem(expired, 401, "AUTHENTICATION_EXPIRED")
    assert problem["title"] == "Session expired"


def test_two_authorization_headers_are_refused(app):
    """A request carrying two Authorization headers is refused, whichever would pass."""
    headers = [("Authorization", f"Bearer {token()}"), ("Authorization", f"Bearer {token()}")]
    response = call(app, "GET", "/t/admin", headers=headers)
    problem = assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
    assert "one Authorization header" in str(problem["detail"])


# --------------------------------------------------------------------------- seller scope


def test_another_sellers_id_is_indistinguishable_from_a_missing_seller(app):
    """A seller asking for another seller gets exactly the problem a missing seller gets."""
    own = bearer(token(role="seller", sub="u-1", seller_id="s-1"))
    existing = call(app, "GET", "/t/sellers/s-2", headers=own).json()
    missing = call(app, "GET", "/t/sellers/s-9", headers=own).json()
    admin_missing = call(app, "GET", "/t/sellers/s-9", headers=bearer(token())).json()
    for problem in (existing, missing, admin_missing):
        del problem["request_id"]
    existing["instance"] = missing["instance"]
    assert existing == missing == admin_missing
    assert existing["code"] == "SELLER_NOT_FOUND"


def test_seller_access_lets_admin_and_service_read_any_seller():
    """seller_access admits admin and service for any seller, a seller for itself only."""
    expires = NOW + dt.timedelta(hours=1)
    admin = Principal(subject="a", role="admin", seller_id=None, token_id=None, expires_at=expires)
    service = dataclasses.replace(admin, role="service")
    seller = dataclasses.replace(admin, role="seller", seller_id="s-1")
    assert seller_access(admin, "s-7") is admin
    assert seller_access(service, "s-7") is service
    assert seller_access(seller, "s-1") is seller
    with pytest.raises(ServiceError) as refused:
        seller_access(seller, "S-1")
    assert (refused.value.code, refused.value.status) == ("SELLER_NOT_FOUND", 404)


def test_require_roles_refuses_nonsense_at_definition():
    """require_roles() without roles, or with an unknown one, is a ValueError when the route is declared."""
    with pytest.raises(ValueError, match="one or more"):
        require_roles()
    with pytest.raises(ValueError, match="one or more"):
        require_roles("root")  # type: ignore[arg-type]


def test_require_roles_admits_any_of_several(marketplace):
    """A route guarded by require_roles('service', 'admin') admits both and refuses a seller."""
    guarded = guarded_app(marketplace, hs_authenticator())

    @guarded.get("/t/evaluate", dependencies=[Depends(require_roles("service", "admin"))])
    async def evaluate() -> dict[str, bool]:
        return {"ok": True}

    assert call(guarded, "GET", "/t/evaluate", headers=bearer(token())).status_code == 200
    assert call(guarded, "GET", "/t/evaluate", headers=bearer(token(role="service"))).status_code == 200
    seller = call(guarded, "GET", "/t/evaluate", headers=bearer(token(role="seller", seller_id="s-1")))
    problem = assert_problem(seller, 403, "FORBIDDEN")
    assert problem["detail"] == "this needs the admin or service role"


# --------------------------------------------------------------------------- time


def test_nbf_iat_and_exp_are_honoured_with_a_small_leeway(app):
    """Clock skew within the leeway is forgiven; beyond it nbf, iat and exp refuse the token."""
    now = int(NOW.timestamp())
    skew = int(LEEWAY) - 1
    for good in (token(nbf=now + skew), token(iat=now + skew), token(exp=now - skew)):
        assert call(app, "GET", "/t/admin", headers=bearer(good)).status_code == 200
    far = int(LEEWAY) + 1
    for bad, detail in (
        (token(nbf=now + far), "not valid yet"),
        (token(iat=now + far), "issued in the future"),
    ):
        problem = assert_problem(
            call(app, "GET", "/t/admin", headers=bearer(bad)), 401, "AUTHENTICATION_REQUIRED"
        )
        assert detail in str(problem["detail"])
    expired = call(app, "GET", "/t/admin", headers=bearer(token(exp=now - far)))
    assert_problem(expired, 401, "AUTHENTICATION_EXPIRED")
    assert expired.headers["www-authenticate"] == (
        'Bearer realm="tierpolicy", error="invalid_token", error_description="the token has expired"'
    )


def test_the_principal_expires_when_the_token_does():
    """Principal.expires_at is the token's exp in UTC; jti becomes token_id."""
    principal = hs_authenticator().decode(token(exp=int(NOW.timestamp()) + 90, jti="abc"))
    assert principal.expires_at == NOW + dt.timedelta(seconds=90)
    assert principal.token_id == "abc"  # noqa: S105  a token id, not a password
    assert hs_authenticator().decode(token(jti=None)).token_id is None


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"exp": "tomorrow"}, "exp claim must be a number"),
        ({"exp": True}, "exp claim must be a number"),
        ({"exp": float("inf")}, "exp claim is out of range"),
        ({"exp": float("nan")}, "exp claim is out of range"),
        ({"exp": 10**400}, "exp claim is out of range"),
        ({"nbf": -1}, "nbf claim is out of range"),
        ({"iat": [1]}, "iat claim must be a number"),
        ({"sub": ""}, "sub claim must be text"),
        ({"sub": "x" * 257}, "sub claim must be text"),
        ({"sub": "alice\nadmin"}, "sub claim must be text"),
        ({"sub": 7}, "malformed"),
        ({"jti": "x" * 257}, "jti claim must be text"),
        ({"jti": 7}, "malformed"),
        ({"role": ["admin"]}, "role claim must be one of"),
        ({"role": "Admin"}, "role claim must be one of"),
        ({"role": "seller", "seller_id": ""}, "seller_id claim must be text"),
        ({"role": "seller", "seller_id": "s" * 129}, "seller_id claim must be text"),
        ({"role": "seller", "seller_id": 42}, "seller_id claim must be text"),
        ({"role": "seller", "seller_id": "s-1\x00"}, "seller_id claim must be text"),
        ({"role": "admin", "seller_id": "s-1"}, "only seller tokens carry a seller_id claim"),
        ({"aud": ["billing", "search"]}, "not meant for this service"),
    ],
)
def test_claims_are_checked_strictly(overrides, detail):
    """Claims of the wrong type, length or content refuse the token, saying which claim."""
    with pytest.raises(ServiceError) as refused:
        hs_authenticator().decode(token(**overrides))
    assert (refused.value.code, refused.value.status) == ("AUTHENTICATION_REQUIRED", 401)
    assert detail in str(refused.value.detail)


def test_edge_claims_that_are_valid_are_accepted():
    """An aud list naming us, a 128-character seller id, a float exp and a 256-character sub pass."""
    authenticator = hs_authenticator()
    assert authenticator.decode(token(aud=["billing", AUDIENCE])).role == "admin"
    assert authenticator.decode(token(role="seller", seller_id="s" * 128)).seller_id == "s" * 128
    assert authenticator.decode(token(exp=NOW.timestamp() + 0.5)).expires_at > NOW
    assert authenticator.decode(token(sub="x" * 256)).subject == "x" * 256


# --------------------------------------------------------------------------- algorithms and keys


def test_rs256_tokens_verify_with_the_public_key(marketplace, rsa_key):
    """With JWT_PUBLIC_KEY set, tokens signed by the matching private key are accepted."""
    config = Settings(jwt_public_key=public_pem(rsa_key))
    guarded = guarded_app(marketplace, Authenticator.from_settings(config, clock=clock))
    signed = mint_token(
        config, role="service", subject="checkout", private_key=private_pem(rsa_key), clock=clock
    )
    assert call(guarded, "GET", "/t/service", headers=bearer(signed)).json() == {"role": "service"}
    assert jwt.get_unverified_header(signed)["alg"] == "RS256"


def test_an_hs256_token_signed_with_the_public_key_is_refused(marketplace, rsa_key):
    """Algorithm confusion: an HS256 token whose HMAC key is the RS256 public key text is refused."""
    public = public_pem(rsa_key)
    guarded = guarded_app(
        marketplace, Authenticator.from_settings(Settings(jwt_public_key=public), clock=clock)
    )
    for key in (public, public.strip()):
        forged = hs256({"alg": "HS256", "typ": "JWT"}, claims(), key)
        response = call(guarded, "GET", "/t/admin", headers=bearer(forged))
        problem = assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
        assert problem["detail"] == "the token must be signed with RS256"


def test_an_rs256_token_is_refused_by_an_hs256_service(rsa_key):
    """The algorithm is pinned both ways: an HS256 service refuses RS256 tokens."""
    signed = mint_token(None, role="admin", subject="a", private_key=private_pem(rsa_key), clock=clock)
    with pytest.raises(ServiceError, match="signed with HS256"):
        hs_authenticator().decode(signed)


@pytest.mark.parametrize("alg", ["none", "None", "HS384", "HS512", "RS256", "ES256", ""])
def test_only_the_configured_algorithm_is_accepted(alg):
    """Tokens naming any other algorithm in their header are refused before their claims are read."""
    forged = hs256({"alg": alg}, claims())
    with pytest.raises(ServiceError) as refused:
        hs_authenticator().decode(forged)
    assert refused.value.detail == "the token must be signed with HS256"


def test_the_public_key_may_come_with_escaped_newlines(rsa_key):
    r"""A PEM in an environment variable with literal \n sequences is understood."""
    escaped = public_pem(rsa_key).replace("\n", "\\n")
    authenticator = Authenticator.from_settings(Settings(jwt_public_key=escaped), clock=clock)
    signed = mint_token(None, role="admin", subject="a", private_key=private_pem(rsa_key), clock=clock)
    assert authenticator.decode(signed).subject == "a"
    assert authenticator.algorithm == "RS256"


def test_an_authenticator_takes_a_key_object_or_pem(rsa_key):
    """Authenticator(algorithm='RS256', key=...) takes the key itself or its PEM."""
    signed = mint_token(None, role="admin", subject="a", private_key=private_pem(rsa_key), clock=clock)
    for key in (rsa_key.public_key(), public_pem(rsa_key), public_pem(rsa_key).encode()):
        assert Authenticator(algorithm="RS256", key=key, clock=clock).decode(signed).subject == "a"


def test_unusable_keys_stop_the_service_at_setup(rsa_key, weak_rsa_key):
    """Bad keys are AuthSetupErrors naming the problem, not 401s on every request later."""
    curve = ec.generate_private_key(ec.SECP256R1())
    cases = [
        ({"jwt_secret": "short"}, "JWT_SECRET is 5 bytes long"),
        ({"jwt_secret": public_pem(rsa_key)}, "looks like a PEM"),
        ({"jwt_public_key": private_pem(rsa_key)}, "holds a private key"),
        ({"jwt_public_key": "not a key at all"}, "not a PEM public key"),
        ({"jwt_public_key": public_pem(weak_rsa_key)}, "1024 bits"),
        ({"jwt_public_key": public_pem(curve)}, "not an RSA key"),
        ({"jwt_secret": SECRET, "jwt_public_key": public_pem(rsa_key)}, "not both"),
    ]
    for values, message in cases:
        config = Settings(**values)  # type: ignore[arg-type]
        with pytest.raises(AuthSetupError, match=message):
            Authenticator.from_settings(config)
    with pytest.raises(AuthSetupError, match="HS256 needs a secret"):
        Authenticator(algorithm="HS256", key=None)
    with pytest.raises(AuthSetupError, match="not a PEM public key"):
        Authenticator(algorithm="RS256", key=None)


def test_setup_errors_are_tierpolicy_errors():
    """AuthSetupError is a TierpolicyError (tierpolicy serve reports it) and a ValueError."""
    assert issubclass(AuthSetupError, tierpolicy.TierpolicyError)
    assert issubclass(AuthSetupError, ValueError)


# --------------------------------------------------------------------------- no key configured


def test_without_a_key_authenticated_routes_answer_401_saying_why(marketplace, monkeypatch, caplog):
    """No JWT_SECRET and no JWT_PUBLIC_KEY: public routes work, guarded ones are 401 naming the settings."""
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    guarded = guarded_app(marketplace, None)
    assert call(guarded, "GET", "/health/live").status_code == 200
    assert call(guarded, "GET", "/openapi.json").status_code == 200
    for headers in ({}, bearer(token())):
        response = call(guarded, "GET", "/t/admin", headers=headers)
        problem = assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
        assert problem["detail"] == NO_KEY_DETAIL
        assert response.headers["www-authenticate"] == 'Bearer realm="tierpolicy"'
    assert "no JWT key configured" in caplog.text
    assert not guarded.state.authenticator.configured
    with pytest.raises(ServiceError, match="no JWT key"):
        guarded.state.authenticator.decode(token())


def test_the_authenticator_is_built_from_the_apps_settings_once(marketplace, monkeypatch):
    """Without app.state.authenticator, the first request builds one from the settings and keeps it."""
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    guarded = guarded_app(marketplace, None, jwt_secret=SECRET)
    signed = mint_token(guarded.state.settings, role="admin", subject="a")  # signed at the real time
    assert call(guarded, "GET", "/t/admin", headers=bearer(signed)).status_code == 200
    built = guarded.state.authenticator
    assert built.configured
    call(guarded, "GET", "/t/admin", headers=bearer(signed))
    assert guarded.state.authenticator is built


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_documents_the_bearer_scheme_on_guarded_routes(app):
    """Guarded routes list the JWT bearer scheme in OpenAPI; public routes do not."""
    schema = call(app, "GET", "/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path in ("/t/whoami", "/t/admin", "/t/sellers/{seller_id}"):
        assert schema["paths"][path]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health/live"]["get"]


# --------------------------------------------------------------------------- minting


def test_minted_tokens_carry_the_claims_and_are_accepted():
    """mint_token makes an HS256 token with sub, role, aud, iat, exp and jti that the service accepts."""
    config = Settings(jwt_secret=SECRET, jwt_audience="sellers")
    signed = mint_token(config, role="seller", subject="u-1", seller_id="s-1", ttl=120, clock=clock)
    decoded = jwt.decode(
        signed,
        SECRET,
        algorithms=["HS256"],
        audience="sellers",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded["exp"] - decoded["iat"] == 120
    assert {decoded["sub"], decoded["role"], decoded["seller_id"], decoded["aud"]} == {
        "u-1",
        "seller",
        "s-1",
        "sellers",
    }
    assert len(decoded["jti"]) == 32
    principal = Authenticator.from_settings(config, clock=clock).decode(signed)
    assert (principal.role, principal.seller_id, principal.expires_at) == (
        "seller",
        "s-1",
        NOW + dt.timedelta(seconds=120),
    )


def test_mint_takes_a_secret_and_an_audience():
    """A secret (str, bytes or SecretStr) and an explicit audience and jti are used as given."""
    for secret in (SECRET, SECRET.encode(), SecretStr(SECRET)):
        signed = mint_token(
            secret,
            role="admin",
            subject="ops",
            audience="billing",
            token_id="j",  # noqa: S106  a token id, not a password
            clock=clock,
        )
        decoded = jwt.decode(
            signed,
            SECRET,
            algorithms=["HS256"],
            audience="billing",
            options={"verify_exp": False, "verify_iat": False},
        )
        assert (decoded["aud"], decoded["jti"]) == ("billing", "j")
    default = mint_token(SECRET, role="admin", subject="ops", clock=clock)
    assert jwt.decode(default, options={"verify_signature": False})["aud"] == "tierpolicy"


def test_mint_refuses_what_it_cannot_sign_or_the_service_would_refuse(rsa_key, weak_rsa_key):
    """mint_token explains instead of making a token the service would refuse."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_settings = Settings(jwt_public_key=public_pem(rsa_key))
    cases = [
        ((Settings(),), {}, "no JWT_SECRET"),
        ((rs_settings,), {}, "needs the private key"),
        ((None,), {}, "give the HS256 secret"),
        ((SECRET,), {"private_key": private_pem(rsa_key)}, "not both"),
        ((Settings(jwt_secret=SECRET),), {"private_key": private_pem(rsa_key)}, "not configured for RS256"),
        ((rs_settings,), {"private_key": private_pem(other)}, "does not match"),
        ((None,), {"private_key": "nope"}, "not an unencrypted PEM private key"),
        ((None,), {"private_key": private_pem(ec.generate_private_key(ec.SECP256R1()))}, "not an RSA key"),
        ((None,), {"private_key": private_pem(weak_rsa_key)}, "1024 bits"),
        ((SECRET,), {"ttl": 0}, "at least 1 second"),
        ((SECRET,), {"ttl": float("nan")}, "at least 1 second"),
        ((SECRET,), {"ttl": 1e12}, "year 9999"),
        ((SECRET,), {"role": "root"}, "role claim must be one of"),
        ((SECRET,), {"role": "seller"}, "needs a seller_id"),
        ((SECRET,), {"seller_id": "s-1"}, "only seller tokens"),
        ((SECRET,), {"subject": ""}, "sub claim"),
        ((SECRET,), {"token_id": ""}, "jti claim"),
    ]
    for args, kwargs, message in cases:
        options = {"role": "admin", "subject": "ops", "clock": clock, **kwargs}
        with pytest.raises(AuthSetupError, match=message):
            mint_token(*args, **options)  # type: ignore[arg-type]


def test_mint_with_matching_settings_signs_rs256(rsa_key):
    """With settings whose public key matches, mint_token signs RS256 with the private key."""
    config = Settings(jwt_public_key=public_pem(rsa_key), jwt_audience="sellers")
    signed = mint_token(
        config, role="admin", subject="ops", private_key=private_pem(rsa_key).encode(), clock=clock
    )
    assert Authenticator.from_settings(config, clock=clock).decode(signed).subject == "ops"


def test_an_encrypted_private_key_is_refused(rsa_key):
    """A password-protected private key cannot be used (the command cannot ask for the password)."""
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(AuthSetupError, match="unencrypted"):
        mint_token(None, role="admin", subject="ops", private_key=encrypted, clock=clock)


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=300))
def test_any_header_value_is_a_401_never_an_error(value):
    """Whatever text the Authorization header holds, the authenticator answers a 401 problem."""
    with pytest.raises(ServiceError) as refused:
        hs_authenticator().authenticate([value])
    assert refused.value.status == 401
    if len(value.strip()) >= 12:  # shorter strings may occur in any message by chance
        assert value.strip() not in f"{refused.value.detail} {refused.value.headers}"


@settings(max_examples=60, deadline=None)
@given(value=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200))
def test_any_bearer_token_over_http_is_a_401(app, value):
    """Any printable string sent as a bearer token gets a 401 problem, never a 500."""
    response = call(app, "GET", "/t/admin", headers=bearer(value))
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_REQUIRED"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
header_names = st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jku", "x5u", "cty"])
claim_names = st.sampled_from(["sub", "role", "aud", "exp", "nbf", "iat", "jti", "seller_id", "iss"])


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(header_names, json_values, max_size=4),
    payload=st.dictionaries(claim_names, json_values, max_size=9) | json_values,
    alg=st.sampled_from(["HS256", None]),
)
def test_correctly_signed_hostile_tokens_are_answered_not_crashed(header, payload, alg):
    """Properly signed tokens with arbitrary headers and claims give a principal or a 401, nothing else."""
    if alg is not None:
        header["alg"] = alg
    principal: Principal | None = None
    refused: ServiceError | None = None
    try:
        principal = hs_authenticator().decode(hs256(header, payload))
    except ServiceError as exc:
        refused = exc
    if refused is not None:
        assert refused.status == 401
        assert refused.code in {"AUTHENTICATION_REQUIRED", "AUTHENTICATION_EXPIRED"}
    else:
        assert principal is not None
        assert principal.role in {"seller", "admin", "service"}
        assert (principal.role == "seller") == (principal.seller_id is not None)


def test_the_real_clock_is_the_default():
    """Without a clock, the authenticator and mint_token use the real time (a fresh token passes)."""
    signed = mint_token(SECRET, role="service", subject="ops")
    assert Authenticator(algorithm="HS256", key=SECRET).decode(signed).role == "service"


# --------------------------------------------------------------------------- verified tokens


def test_a_remembered_token_is_still_checked_against_the_clock():
    """A token verified once is remembered, but its expiry and not-before are checked on every use."""
    now = [NOW]
    authenticator = Authenticator(algorithm="HS256", key=SECRET, audience=AUDIENCE, clock=lambda: now[0])
    value = token(exp=int(NOW.timestamp()) + 60)
    assert authenticator.decode(value).subject == "alice"
    assert value in authenticator._verified
    now[0] = NOW + dt.timedelta(seconds=60 + LEEWAY + 1)
    with pytest.raises(ServiceError) as info:
        authenticator.decode(value)
    assert info.value.code == "AUTHENTICATION_EXPIRED"


def test_only_tokens_that_verify_are_remembered_and_the_memory_is_bounded(monkeypatch):
    """Refused tokens are not remembered; past the bound the oldest verified token is forgotten."""
    monkeypatch.setattr("tierpolicy.service._auth.VERIFIED_CACHE_SIZE", 3)
    authenticator = hs_authenticator()
    forged = hs256({"alg": "HS256", "typ": "JWT"}, claims(), key=OTHER_SECRET)
    with pytest.raises(ServiceError):
        authenticator.decode(forged)
    assert authenticator._verified == {}
    values = [token(jti=f"t-{i}") for i in range(4)]
    for value in values:
        authenticator.decode(value)
    assert list(authenticator._verified) == values[1:]
    with pytest.raises(ServiceError):  # a remembered payload under another signature is not the same token
        authenticator.decode(values[3].rsplit(".", 1)[0] + "." + forged.rsplit(".", 1)[1])
