"""The service's settings, read from the environment (pydantic-settings).

Names follow the seller platform's conventions (``DATABASE_URL``, ``REDIS_URL``,
``JWT_SECRET`` ...). With nothing set, the service runs on embedded defaults: a SQLite
file, in-memory rate-limit counters, and the policies in ``./policies``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    Attributes:
        database_url: SQLAlchemy URL of the store (default: ``sqlite:///tierpolicy.db``).
        redis_url: Redis URL for shared rate limits, breakers and the policy channel;
            unset means in-memory stores (one replica).
        policy_dir: The policy directory served at startup when the store has no
            active version (``POLICY_DIR``, default ``policies``).
        jwt_secret: HS256 secret for bearer tokens.
        jwt_public_key: RS256 public key (PEM) for bearer tokens, instead of a secret.
        jwt_audience: The audience tokens must name.
        rate_limit_max_requests: Requests per minute per client on routes no rate-limit
            policy names.
        seller_cache_ttl: Seconds cached entitlements live (invalidated at once on a tier,
            override or policy change).
        seller_api_base_url: The public base URL of the seller API (links in responses).
        log_level: ``debug``, ``info``, ``warning``, ``error``.
        sentry_dsn: Sentry DSN; errors are reported there when set.
        host: Interface ``tierpolicy serve`` binds.
        port: Port ``tierpolicy serve`` listens on.
        trusted_proxies: Comma-separated proxy addresses or networks whose forwarding
            headers are believed.
        max_body_bytes: The largest request body accepted.
        migrate_on_startup: Apply the store's migrations at startup: ``always``,
            ``never``, or ``auto`` (the default: only for a SQLite database, the
            embedded default; run ``tierpolicy db upgrade`` for a shared database).
    """

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    database_url: str = "sqlite:///tierpolicy.db"
    redis_url: str | None = None
    policy_dir: Path = Path("policies")
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwt_audience: str = "tierpolicy"
    rate_limit_max_requests: int = Field(default=600, ge=1, le=1_000_000)
    seller_cache_ttl: float = Field(default=30.0, ge=0, le=86400)
    seller_api_base_url: str = "http://127.0.0.1:8000"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sentry_dsn: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    trusted_proxies: str = ""
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    migrate_on_startup: Literal["auto", "always", "never"] = "auto"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        # Checked here so a bad entry stops the service at startup, naming the variable.
        from tierpolicy.adapters.fastapi import TrustedProxies  # noqa: PLC0415  keeps settings importable alone

        TrustedProxies(p.strip() for p in value.split(",") if p.strip())
        return value

    @property
    def proxies(self) -> list[str]:
        """``trusted_proxies`` as a list."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]
