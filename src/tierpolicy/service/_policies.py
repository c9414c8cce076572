"""Policy versions: upload, activate, roll back, and every replica serving the active one.

An uploaded bundle (``{"files": {"tiers.yaml": "...", ...}}``) is checked by the engine
exactly as ``tierpolicy check`` checks a directory; a bundle with errors is refused with
every diagnostic and nothing is stored. Activating a version (or rolling back to the
previous one) writes it to the database and then makes this replica serve it; with
Redis, the version is published on the policy channel, and every replica, subscribed
since it started, loads the database's active version and swaps it in atomically.

A replica that cannot load the active version (a bundle broken behind the service's
back, say, written straight into the database) keeps serving the version it has,
counts the failure in ``tierpolicy_policy_reload_failures_total`` and reports it in
``/health/ready`` (``checks.policy.reload_failed``); it stays ready, since it serves.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor

from tierpolicy.adapters.sqlalchemy import ConflictError, NotFoundError
from tierpolicy.engine._engine import Engine
from tierpolicy.engine._loader import SourceFile, check_files, load_files

from ._auth import Principal, require_roles
from ._envelope import envelope
from ._problems import PROBLEM_RESPONSES, ServiceError, semantic_refusal
from ._responses import ACTIVATED, ERROR_REGISTRY, UPLOADED, VERSION, VERSIONS, success
from ._sellers import audit_of, iso_or_none

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tierpolicy.adapters.sqlalchemy import Database, PolicyVersionSummary
    from tierpolicy.engine._engine import PolicyHolder

logger = logging.getLogger("tierpolicy.service")

Version = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class _VersionConvertor(Convertor[str]):
    """Routes only hex ids to ``{version}``, so ``/policy/versions/rollback`` is never a version.

    Without it a GET there reached the one-version route (a 422) and a 405 there
    advertised GET in ``Allow``.
    """

    regex = "[0-9a-f]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("policy_version", _VersionConvertor())

Reader = Depends(require_roles("admin", "service"))
Admin = Depends(require_roles("admin"))

MAX_FILES = 200
MAX_FILE_BYTES = 1_048_576
# Relative paths whose every segment starts with a letter, digit, _ or -: no "..", no
# "." segments, no leading "/", no empty segment, so a bundle name never leaves its root.
_FILE_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*\.ya?ml$"


class BundleIn(BaseModel):
    """A policy bundle: file name to YAML text."""

    model_config = ConfigDict(extra="forbid")

    files: dict[
        Annotated[str, Field(min_length=1, max_length=200, pattern=_FILE_NAME)],
        Annotated[str, Field(max_length=MAX_FILE_BYTES)],
    ] = Field(
        min_length=1,
        max_length=MAX_FILES,
        # pydantic renders a key pattern as patternProperties, which lets other keys through
        # in the schema; propertyNames says what the service really accepts.
        json_schema_extra={"propertyNames": {"minLength": 1, "maxLength": 200, "pattern": _FILE_NAME}},
    )
    activate: bool = False


class Reloader:
    """Makes one replica serve the database's active policy version.

    Args:
        holder: The replica's policy holder.
        database: The store holding the versions.
        on_serving: Called with each version the replica starts serving.
        on_failure: Called when a version cannot be loaded.
    """

    def __init__(
        self, holder: PolicyHolder, database: Database, on_serving: object, on_failure: object
    ) -> None:
        self.holder = holder
        self.database = database
        self._on_serving = on_serving
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self.failed: dict[str, str] | None = None
        """The version that last failed to load and why, until one loads again."""

    def reload(self) -> str:
        """Serve the active version of the database (if any, and if it loads); return the version served."""
        with self._lock:  # one load at a time: the channel's thread and a request may race
            record = self.database.active_policy_version()
            current = self.holder.engine
            if record is None or record.version == current.version:
                return current.version
            try:
                policy_set = load_files(dict(record.files), root=f"store:{record.version}")
                engine = Engine(policy_set, clock=current._clock)  # noqa: SLF001  keep the injected clock
            except Exception as exc:  # any failure keeps the running version (logged below)
                self.failed = {"version": record.version, "error": type(exc).__name__}
                logger.exception(
                    "policy version %s does not load; still serving %s", record.version, current.version
                )
                self._on_failure()  # type: ignore[operator]  # a plain callable
                return current.version
            self.holder.swap(engine)
            self.failed = None
            self._on_serving(engine.version)  # type: ignore[operator]  # a plain callable
            logger.info("now serving policy version %s", engine.version)
            return engine.version


def _summary_json(summary: PolicyVersionSummary) -> dict[str, object]:
    return {
        "version": summary.version,
        "digest": summary.digest,
        "author": summary.author,
        "created_at": iso_or_none(summary.created_at),
        "activated_at": iso_or_none(summary.activated_at),
        "active": summary.active,
    }


def _activated(app: FastAPI, version: str) -> str:
    """After the database changed: serve the active version here, and tell the other replicas."""
    reloader: Reloader = app.state.reloader
    served = reloader.reload()
    channel = app.state.channel
    if channel is not None:
        try:
            channel.publish(version)
        except Exception:  # the database is the truth; replicas catch up when they reconnect
            logger.exception("could not publish policy version %s on the channel", version)
    return served


def router() -> APIRouter:
    """The policy-version and error-registry routes, under the service prefix."""
    from ._app import PREFIX  # noqa: PLC0415  _app imports this module

    api = APIRouter(prefix=PREFIX, tags=["policy versions"], responses=PROBLEM_RESPONSES)

    @api.get(
        "/policy/versions",
        summary="Stored policy versions, newest upload first (admin, service)",
        response_model=None,
        responses=success(VERSIONS, "The stored versions, newest upload first."),
    )
    def list_versions(request: Request, principal: Annotated[Principal, Reader]) -> Response:
        del principal
        database: Database = request.app.state.database
        return envelope(request, [_summary_json(v) for v in database.list_policy_versions()])

    @api.get(
        "/policy/versions/{version:policy_version}",
        summary="One stored version with its files (admin, service)",
        response_model=None,
        responses=success(VERSION, "The version with its files."),
    )
    def get_version(request: Request, version: Version, principal: Annotated[Principal, Reader]) -> Response:
        del principal
        database: Database = request.app.state.database
        try:
            record = database.get_policy_version(version)
        except NotFoundError:
            raise ServiceError("NOT_FOUND", f"no policy version {version!r}", status=404) from None
        return envelope(request, {**_summary_json(record), "files": dict(record.files)})

    @api.post(
        "/policy/versions",
        status_code=201,
        summary="Upload a policy bundle (admin)",
        response_model=None,
        responses={
            **success(UPLOADED, "The version stored, with the check's warnings.", 201),
            **semantic_refusal("the bundle does not load; `diagnostics` lists every problem"),
        },
    )
    def upload(request: Request, body: BundleIn, principal: Annotated[Principal, Admin]) -> Response:
        sources = [SourceFile(name, text.encode()) for name, text in sorted(body.files.items())]
        result = check_files(sources, root="upload")
        if result.policy_set is None:
            diagnostics = [d.to_json() for d in result.diagnostics]
            first = next(d for d in result.diagnostics if d.severity == "error")
            raise ServiceError(
                "VALIDATION_FAILED",
                f"the bundle does not load: {first.format()}",
                status=422,
                extra={"diagnostics": diagnostics},
            )
        database: Database = request.app.state.database
        audit = audit_of(request, principal)
        try:
            record = database.add_policy_version(
                version=result.policy_set.version,
                digest=result.policy_set.digest,
                files=body.files,
                author=principal.subject,
                audit=audit,
            )
        except ConflictError:
            raise ServiceError(
                "CONFLICT", f"policy version {result.policy_set.version} is already stored", status=409
            ) from None
        if body.activate:
            record = database.activate_policy_version(record.version, audit=audit)
            _activated(request.app, record.version)
        return envelope(
            request,
            {
                **_summary_json(record),
                "warnings": [d.to_json() for d in result.diagnostics if d.severity != "error"],
            },
            status=201,
        )

    @api.post(
        "/policy/versions/{version:policy_version}/activate",
        summary="Activate a stored version everywhere (admin)",
        response_model=None,
        responses=success(ACTIVATED, "The version now active, and the one this replica serves."),
    )
    def activate(request: Request, version: Version, principal: Annotated[Principal, Admin]) -> Response:
        database: Database = request.app.state.database
        try:
            record = database.activate_policy_version(version, audit=audit_of(request, principal))
        except NotFoundError:
            raise ServiceError("NOT_FOUND", f"no policy version {version!r}", status=404) from None
        served = _activated(request.app, record.version)
        return envelope(request, {**_summary_json(record), "served": served})

    @api.post(
        "/policy/versions/rollback",
        summary="Activate the previously active version again (admin)",
        response_model=None,
        responses=success(ACTIVATED, "The version now active again, and the one this replica serves."),
    )
    def rollback(request: Request, principal: Annotated[Principal, Admin]) -> Response:
        database: Database = request.app.state.database
        try:
            record = database.rollback_policy_version(audit=audit_of(request, principal))
        except NotFoundError:
            raise ServiceError(
                "CONFLICT", "no other version was ever active: nothing to roll back to", status=409
            ) from None
        served = _activated(request.app, record.version)
        return envelope(request, {**_summary_json(record), "served": served})

    @api.get(
        "/errors",
        summary="The error-code registry of the active policy set",
        response_model=None,
        responses=success(ERROR_REGISTRY, "Every error code of the active policy set, in policy order."),
    )
    def errors(
        request: Request,
        principal: Annotated[Principal, Depends(require_roles("seller", "admin", "service"))],
    ) -> Response:
        del principal
        engine: Engine = request.app.state.holder.engine
        model = engine.errors
        if model is None:
            return envelope(request, {"codes": []})  # the same shape as with a registry
        codes = [
            {
                "code": code.code,
                "category": code.category,
                "status": code.status,
                "retryable": code.retryable,
                "severity": code.severity,
                "title": code.title,
                "type": code.type,
            }
            for code in model.codes.values()
        ]
        return envelope(request, {"codes": codes})

    return api
