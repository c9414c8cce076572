"""Test suites: the YAML format, reading and validating it with positioned diagnostics.

A suite is a YAML document of kind ``TestSuite`` in ``<policy dir>/tests/*_test.yaml``
(the policy loader never reads the ``tests/`` folder, so suites and policies cannot be
mistaken for each other). Reading a suite checks its shape with pydantic models (unknown
keys rejected) through the engine's own YAML reader, then checks every name it uses
against the loaded policy set: fixtures, features, limits, tiers, error codes, reasons.
Every problem is a :class:`~tierpolicy.engine._diagnostics.Diagnostic` at its place.
See ``docs/testing.md``.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from tierpolicy.engine import _validation
from tierpolicy.engine._classification import ErrorModel
from tierpolicy.engine._compiling import Collector
from tierpolicy.engine._context import coerce_context
from tierpolicy.engine._decisions import Reason
from tierpolicy.engine._diagnostics import Code, Diagnostic, Position, did_you_mean, sort_key
from tierpolicy.engine._documents import (
    API_VERSION,
    LimitValue,
    Metadata,
    Name,
    SpecModel,
    TierName,
    Timestamp,
)
from tierpolicy.engine._errorinfo import ErrorInfo, exception_names
from tierpolicy.engine._overrides import Override
from tierpolicy.engine._ratelimits import RateLimitsModel
from tierpolicy.engine._retry import RetryReason
from tierpolicy.engine._schema import SCHEMA_BASE, SCHEMA_DIALECT, _tighten
from tierpolicy.engine._yaml import YamlDocument, YamlLimits, read_documents
from tierpolicy.engine.cel import ObjectType

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Mapping, Sequence

    from tierpolicy.engine._policyset import PolicySet

SUITE_KIND = "TestSuite"
SUITES_DIRECTORY = "tests"
SUITE_SUFFIXES = ("_test.yaml", "_test.yml")
MAX_HITS = 100_000
"""Most rate-limit hits one test may make (every ``count`` added up)."""

Path_ = tuple[str | int, ...]
FixtureName = Name
Text = Annotated[StrictStr, Field(min_length=1, max_length=512)]
# The bounds on each member, not on the union: pydantic writes a union's as keywords
# JSON Schema does not know, which editors would ignore.
Seconds = (
    Annotated[StrictFloat, Field(ge=0, le=31_536_000, allow_inf_nan=False)]
    | Annotated[StrictInt, Field(ge=0, le=31_536_000)]
)


# --------------------------------------------------------------------------- the format


class SellerFixture(SpecModel):
    """A seller: tier, seller attributes, metrics and request facts.

    The evaluation context is ``{"seller": {"id", "tier", **attributes}, "metrics":
    metrics, "request": request}``.
    """

    id: Text | None = Field(default=None, description="The seller id (default: the fixture name).")
    tier: TierName = Field(description="The tier the seller holds.")
    attributes: dict[StrictStr, Any] = Field(
        default_factory=dict, description="Further seller.* attributes (verified, kyc_level, joined_at ...)."
    )
    metrics: dict[StrictStr, Any] = Field(default_factory=dict, description="metrics.* attributes.")
    request: dict[StrictStr, Any] = Field(
        default_factory=dict, description="request.* attributes (role, client_ip ...), for rate limits."
    )
    description: StrictStr = ""


class ErrorFixture(SpecModel):
    """An error to classify, in the shape of the evaluation request's ``error``."""

    types: list[Text] = Field(
        default_factory=list,
        description="Exception class names, most derived first; Python built-in exceptions get their bases added.",
    )
    status: Annotated[StrictInt, Field(ge=100, le=599)] | None = None
    reason: Text | None = None
    domain: Text | None = None
    message: Annotated[StrictStr, Field(max_length=65536)] = ""
    operation: Text | None = None
    retry_after: Seconds | None = None
    attributes: dict[StrictStr, Any] = Field(default_factory=dict)
    description: StrictStr = ""


class OverrideFixture(SpecModel):
    """An override a test may apply, as the service's database would pass it."""

    seller: FixtureName = Field(description="The seller fixture it applies to.")
    feature: Name | None = None
    limit: Name | None = None
    tier: TierName | None = None
    value: StrictBool | LimitValue | None = None
    reason: StrictStr = "test override"
    starts: Timestamp | None = None
    expires: Timestamp


class HitSpec(SpecModel):
    """``count`` requests at ``at`` seconds after the test's first request."""

    at: Seconds = 0
    count: Annotated[StrictInt, Field(ge=1, le=MAX_HITS)] = 1


class FeatureExpect(SpecModel):
    """A feature decision: the outcome and, optionally, the reason and rule."""

    allowed: StrictBool
    reason: StrictStr | None = None
    rule: StrictStr | None = None


FeatureExpectation = Literal["allow", "deny"] | FeatureExpect


class TierExpect(SpecModel):
    """A tier qualification; every key given must match."""

    qualified: TierName | None = None
    effective: TierName | None = None
    action: Literal["keep", "upgrade", "downgrade_pending", "downgrade"] | None = None
    next: TierName | Literal["none"] | None = None
    missing: list[StrictStr] | None = Field(
        default=None,
        description="Exactly the clauses missing for the next tier, each by attribute or clause text.",
    )
    reason: StrictStr | None = None


class ClassificationExpect(SpecModel):
    """A classification; every key given must match."""

    code: StrictStr | None = None
    status: StrictInt | None = None
    retryable: StrictBool | None = None
    category: StrictStr | None = None
    rule: StrictStr | None = Field(default=None, description="The rule's name, e.g. payment-timeout.")


class RetryExpect(SpecModel):
    """The retry plan after one failed attempt; every key given must match."""

    retry: StrictBool | None = None
    delay: Seconds | None = None
    reason: StrictStr | None = None


class RateLimitExpect(SpecModel):
    """The outcome of a sequence of hits."""

    denied: list[Annotated[StrictInt, Field(ge=1)]] = Field(
        description="Exactly the hits (numbered from 1) that are denied; every other hit is allowed."
    )
    remaining: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None, description="Units left in the deciding window after the last hit."
    )
    limit: Name | None = Field(default=None, description="The limit that decided the last hit.")


class Expect(SpecModel):
    """What a test expects; only what is given is evaluated and compared."""

    features: dict[Name, FeatureExpectation] = Field(default_factory=dict)
    limits: dict[Name, LimitValue] = Field(default_factory=dict)
    tier: TierExpect | None = None
    classification: ClassificationExpect | None = None
    retry: list[RetryExpect] | None = Field(
        default=None, description="One plan per failed attempt, from attempt 1; delays add to elapsed."
    )
    rate_limit: RateLimitExpect | None = None


class TestSpec(SpecModel):
    """One test; with several sellers, errors or operations, one case per combination."""

    name: Text
    description: StrictStr = ""
    now: Timestamp | None = None
    seller: FixtureName | None = None
    sellers: list[FixtureName] | None = None
    error: FixtureName | None = None
    errors: list[FixtureName] | None = None
    operation: Text | None = None
    operations: list[Text] | None = None
    overrides: list[FixtureName] = Field(default_factory=list)
    route: Text | None = Field(default=None, description="The route the rate-limit hits request.")
    hits: list[HitSpec] | None = None
    expect: Expect | None = None
    expect_by: dict[StrictStr, Expect] = Field(
        default_factory=dict, description="Per fixture (or operation) name: expectations for its cases."
    )


class TestSuiteSpec(SpecModel):
    """Fixtures and tests."""

    now: Timestamp | None = Field(default=None, description="The evaluation time of every test.")
    sellers: dict[FixtureName, SellerFixture] = Field(default_factory=dict)
    errors: dict[FixtureName, ErrorFixture] = Field(default_factory=dict)
    overrides: dict[FixtureName, OverrideFixture] = Field(default_factory=dict)
    tests: list[TestSpec] = Field(min_length=1)


# --------------------------------------------------------------------------- compiled


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One runnable case of a test: a test, or one cell of its matrix.

    Attributes:
        suite: The suite's name.
        test: The test's name.
        label: The matrix cell (``seller=gold-top``), empty for a plain test.
        source: Where the test is (``FILE:LINE:COL``).
        now: The evaluation time.
        seller: The seller fixture name, if any.
        context: The evaluation context (coerced), if a seller is given.
        error: The error fixture name, if any.
        info: The error, if any.
        operation: The operation, if any.
        overrides: The overrides applied.
        route: The rate-limited route, if any.
        hits: ``(offset seconds, count)`` of each group of hits.
        expect: The merged expectation.
    """

    suite: str
    test: str
    label: str
    source: str
    now: dt.datetime | None
    seller: str | None
    context: Mapping[str, object] | None
    error: str | None
    info: ErrorInfo | None
    operation: str | None
    overrides: tuple[Override, ...]
    route: str | None
    hits: tuple[tuple[float, int], ...]
    expect: Expect

    @property
    def name(self) -> str:
        """``suite/test [cell]``: unique within a run."""
        cell = f" [{self.label}]" if self.label else ""
        return f"{self.suite}/{self.test}{cell}"


@dataclasses.dataclass(frozen=True, slots=True)
class Suite:
    """A validated suite.

    Attributes:
        name: ``metadata.name``.
        file: The file, as displayed.
        cases: Every case, in file order (matrix cells in the order written).
    """

    name: str
    file: str
    cases: tuple[Case, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class SuiteLoad:
    """What reading the suites of a directory found.

    Attributes:
        suites: The suites that are valid.
        diagnostics: Every problem; any error means the run fails.
        files: The suite files read, as displayed.
    """

    suites: tuple[Suite, ...]
    diagnostics: tuple[Diagnostic, ...]
    files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether no error was found."""
        return not any(d.is_error for d in self.diagnostics)


# --------------------------------------------------------------------------- reading


def suite_files(policy_dir: str | os.PathLike[str]) -> list[Path]:
    """The suite files of a policy directory: ``tests/**/*_test.yaml``, sorted."""
    root = Path(policy_dir) / SUITES_DIRECTORY
    if not root.is_dir():
        return []
    found = [
        path
        for path in root.rglob("*")
        if path.name.endswith(SUITE_SUFFIXES)
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return sorted(found)


def load_suites(policy_dir: str | os.PathLike[str], policy_set: PolicySet) -> SuiteLoad:
    """Read and validate every suite of ``policy_dir`` against ``policy_set``.

    File names in diagnostics are shown as ``policy_dir`` was given plus the relative
    path, as ``tierpolicy check`` shows policy files.
    """
    display = os.fspath(policy_dir).rstrip("/\\")
    sources: list[tuple[str, bytes]] = []
    out = Collector()
    paths = suite_files(policy_dir)
    if not paths:
        out.add(
            Position(f"{display}/{SUITES_DIRECTORY}"),
            Code.NO_TEST_SUITES,
            "no test suites found",
            hint=f"suites are files named *_test.yaml in {display}/{SUITES_DIRECTORY}/",
        )
    limit = YamlLimits().max_file_bytes
    for path in paths:
        name = f"{display}/{path.relative_to(Path(policy_dir)).as_posix()}"
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            out.add(Position(name), Code.FILE_UNREADABLE, f"cannot read the file: {exc.strerror}")
            continue
        if len(data) > limit:
            out.add(Position(name), Code.FILE_TOO_LARGE, f"a suite file may be at most {limit:,} bytes")
            continue
        sources.append((name, data))
    result = read_suite_sources(sources, policy_set)
    return SuiteLoad(
        result.suites,
        tuple(sorted([*out.items, *result.diagnostics], key=sort_key)),
        tuple(n for n, _ in sources),
    )


def read_suite_sources(sources: Sequence[tuple[str, bytes]], policy_set: PolicySet) -> SuiteLoad:
    """Validate suites given as ``(file name, bytes)``; names are used as given in positions."""
    out = Collector()
    suites: list[Suite] = []
    seen: dict[str, Position] = {}
    for name, data in sources:
        documents, problems = read_documents(data, name)
        out.items.extend(problems)
        if problems:
            continue
        for doc in documents:
            parsed = _parse(doc, out)
            if parsed is None:
                continue
            metadata, spec = parsed
            first = seen.get(metadata.name)
            if first is not None:
                out.add(
                    doc.position_of(("metadata", "name")),
                    Code.DUPLICATE_NAME,
                    f"a test suite named {metadata.name!r} already exists",
                    hint=f"first defined at {first}",
                )
                continue
            seen[metadata.name] = doc.position_of(("metadata", "name"))
            suite = _Checker(doc, metadata.name, spec, policy_set, out).suite()
            if suite is not None:
                suites.append(suite)
    return SuiteLoad(tuple(suites), tuple(sorted(out.items, key=sort_key)), tuple(n for n, _ in sources))


def _parse(doc: YamlDocument, out: Collector) -> tuple[Metadata, TestSuiteSpec] | None:
    value = doc.value
    if value is None:
        out.add(doc.start, Code.EMPTY_DOCUMENT, "this document is empty", severity="warning")
        return None
    if not isinstance(value, dict):
        out.add(
            doc.start,
            Code.NOT_A_MAPPING,
            f"a test suite is a mapping with apiVersion, kind, metadata and spec; found {_validation.describe(value)}",
        )
        return None
    ok = True
    allowed = ["apiVersion", "kind", "metadata", "spec"]
    for key in value:
        if key not in allowed:
            out.add(
                doc.key_position_of((key,)),
                Code.UNKNOWN_KEY,
                f"unknown top-level key {key!r}",
                hint=_joined(did_you_mean(key, allowed), "allowed here: apiVersion, kind, metadata, spec"),
            )
            ok = False
    if value.get("apiVersion") != API_VERSION:
        where = doc.position_of(("apiVersion",)) if "apiVersion" in value else doc.start
        out.add(
            where,
            Code.UNSUPPORTED_API_VERSION if "apiVersion" in value else Code.MISSING_API_VERSION,
            f"a test suite needs 'apiVersion: {API_VERSION}'",
        )
        ok = False
    if value.get("kind") != SUITE_KIND:
        where = doc.position_of(("kind",)) if "kind" in value else doc.start
        out.add(
            where,
            Code.UNKNOWN_KIND if "kind" in value else Code.MISSING_KIND,
            f"files in tests/ are test suites: 'kind: {SUITE_KIND}'",
            hint="policy documents belong outside the tests/ folder",
        )
        return None
    metadata = _validate(Metadata, value.get("metadata"), "metadata", doc, out)
    spec = _validate(TestSuiteSpec, value.get("spec"), "spec", doc, out)
    for key in ("metadata", "spec"):
        if key not in value:
            out.add(doc.start, Code.MISSING_KEY, f"the test suite is missing {key!r}")
    if not ok or not isinstance(metadata, Metadata) or not isinstance(spec, TestSuiteSpec):
        return None
    return metadata, spec


def _validate(model: type[BaseModel], data: object, where: str, doc: YamlDocument, out: Collector) -> object:
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for path, code, message, hint, at_key in _validation.translate(exc.errors(), data, model, where):
            full = (where, *path)
            out.add(doc.key_position_of(full) if at_key else doc.position_of(full), code, message, hint)
        return None


def _joined(first: str | None, second: str) -> str | None:
    return " ".join(part for part in (first, second) if part) or None


_REASONS = tuple(r.value for r in Reason)
_RETRY_REASONS = tuple(r.value for r in RetryReason)


def expand_types(types: Iterable[str]) -> tuple[str, ...]:
    """Exception names as rules see them: a built-in exception brings its base classes."""
    names: list[str] = []
    for name in types:
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            names.extend(exception_names(kind))
        else:
            names.append(name)
    return tuple(dict.fromkeys(names))


class _Checker:
    """Checks one suite's names against the policy set and builds its cases."""

    def __init__(
        self, doc: YamlDocument, name: str, spec: TestSuiteSpec, policy_set: PolicySet, out: Collector
    ) -> None:
        self.doc = doc
        self.name = name
        self.spec = spec
        self.policy_set = policy_set
        self.out = out
        self.errors_before = len([d for d in out.items if d.is_error])
        tiers = policy_set.tiers
        self.tiers = tiers.tiers if tiers is not None else ()
        self.features = tuple(tiers.features) if tiers is not None else ()
        self.limits = tuple(tiers.limits) if tiers is not None else ()
        self.progression = tiers.progression if tiers is not None else None
        errors = policy_set.models.get("Errors")
        self.error_model = errors if isinstance(errors, ErrorModel) else None
        rate_limits = policy_set.models.get("RateLimits")
        self.rate_limits = (
            tuple(p.name for p in rate_limits.limits) if isinstance(rate_limits, RateLimitsModel) else ()
        )

    def add(
        self, path: Path_, code: Code, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        full = ("spec", *path)
        position = self.doc.key_position_of(full) if key else self.doc.position_of(full)
        self.out.add(position, code, message, hint)

    def known(
        self, value: str, choices: Sequence[str], path: Path_, code: Code, what: str, *, key: bool = False
    ) -> bool:
        if value in choices:
            return True
        listed = ", ".join(choices) if choices else "none"
        self.add(
            path,
            code,
            f"unknown {what} {value!r}",
            _joined(did_you_mean(value, choices), f"{what}s: {listed}" if len(choices) <= 12 else ""),
            key=key,
        )
        return False

    def suite(self) -> Suite | None:
        contexts = self.seller_contexts()
        infos = self.error_infos()
        overrides = self.overrides()
        cases: list[Case] = []
        names: dict[str, int] = {}
        for i, test in enumerate(self.spec.tests):
            if test.name in names:
                self.add(
                    ("tests", i, "name"),
                    Code.DUPLICATE_NAME,
                    f"a test named {test.name!r} already exists in this suite",
                    hint=f"first defined at {self.doc.position_of(('spec', 'tests', names[test.name]))}",
                )
                continue
            names[test.name] = i
            cases.extend(self.test_cases(i, test, contexts, infos, overrides))
        if len([d for d in self.out.items if d.is_error]) > self.errors_before:
            return None
        return Suite(self.name, self.doc.start.file, tuple(cases))

    # ---------------------------------------------------------------- fixtures

    def seller_contexts(self) -> dict[str, dict[str, object]]:
        contexts: dict[str, dict[str, object]] = {}
        environment = self.policy_set.environment
        for name, seller in self.spec.sellers.items():
            base: Path_ = ("sellers", name)
            if self.tiers and not self.known(
                seller.tier, self.tiers, (*base, "tier"), Code.UNKNOWN_TIER, "tier"
            ):
                continue
            ok = True
            for part, values in (
                ("seller", seller.attributes),
                ("metrics", seller.metrics),
                ("request", seller.request),
            ):
                declared = environment.get(part)
                fields = declared.fields if isinstance(declared, ObjectType) else {}
                key = "attributes" if part == "seller" else part
                for attribute in values:
                    if attribute in {"id", "tier"} and part == "seller":
                        self.add(
                            (*base, key, attribute),
                            Code.INVALID_VALUE,
                            f"seller.{attribute} is set by the fixture's own {attribute!r} key",
                            key=True,
                        )
                        ok = False
                    elif attribute not in fields:
                        self.add(
                            (*base, key, attribute),
                            Code.UNKNOWN_ATTRIBUTE,
                            f"{part}.{attribute} is not declared in the policy set's Context",
                            _joined(did_you_mean(attribute, list(fields)), "declared: " + ", ".join(fields)),
                            key=True,
                        )
                        ok = False
            if not ok:
                continue
            raw: dict[str, object] = {
                "seller": {"id": seller.id or name, "tier": seller.tier, **seller.attributes},
                "metrics": dict(seller.metrics),
                "request": dict(seller.request),
            }
            try:
                contexts[name] = coerce_context(raw, environment)
            except ValueError as exc:
                self.add(base, Code.WRONG_TYPE, f"seller fixture {name!r}: {exc}")
        return contexts

    def error_infos(self) -> dict[str, ErrorInfo]:
        return {
            name: ErrorInfo(
                types=expand_types(error.types),
                status=error.status,
                reason=error.reason,
                domain=error.domain,
                message=error.message,
                operation=error.operation,
                retry_after=None if error.retry_after is None else float(error.retry_after),
                attributes=error.attributes,
            )
            for name, error in self.spec.errors.items()
        }

    def overrides(self) -> dict[str, Override]:
        found: dict[str, Override] = {}
        for name, entry in self.spec.overrides.items():
            base: Path_ = ("overrides", name)
            if not self.known(
                entry.seller,
                list(self.spec.sellers),
                (*base, "seller"),
                Code.UNKNOWN_FIXTURE,
                "seller fixture",
            ):
                continue
            targets = [
                (k, v)
                for k, v in (("feature", entry.feature), ("limit", entry.limit), ("tier", entry.tier))
                if v is not None
            ]
            if len(targets) != 1:
                self.add(base, Code.INVALID_VALUE, "an override names exactly one of feature, limit or tier")
                continue
            kind, target = targets[0]
            choices = {"feature": self.features, "limit": self.limits, "tier": self.tiers}[kind]
            code = {"feature": Code.UNKNOWN_FEATURE, "limit": Code.UNKNOWN_LIMIT, "tier": Code.UNKNOWN_TIER}[
                kind
            ]
            if not self.known(target, choices, (*base, kind), code, kind):
                continue
            seller = self.spec.sellers[entry.seller]
            value: bool | int | None = None if entry.value == "unlimited" else entry.value
            try:
                found[name] = Override(
                    seller_id=seller.id or entry.seller,
                    kind=kind,  # type: ignore[arg-type]
                    target=target,
                    value=value,
                    reason=entry.reason,
                    expires_at=entry.expires,
                    starts_at=entry.starts,
                    rule=f"override:{name}",
                    source=str(self.doc.position_of(("spec", *base))),
                )
            except ValueError as exc:
                self.add((*base, "value"), Code.INVALID_VALUE, f"override {name!r}: {exc}")
        return found

    # ---------------------------------------------------------------- tests

    def test_cases(
        self,
        i: int,
        test: TestSpec,
        contexts: Mapping[str, Mapping[str, object]],
        infos: Mapping[str, ErrorInfo],
        overrides: Mapping[str, Override],
    ) -> list[Case]:
        base: Path_ = ("tests", i)
        before = len(self.out.items)
        dims: list[tuple[str, list[str]]] = []
        for single, plural, fixtures in (
            ("seller", "sellers", self.spec.sellers),
            ("error", "errors", self.spec.errors),
            ("operation", "operations", None),
        ):
            one, many = getattr(test, single), getattr(test, plural)
            if one is not None and many is not None:
                self.add(
                    (*base, plural),
                    Code.INVALID_TEST,
                    f"give either {single!r} or {plural!r}, not both",
                    key=True,
                )
                continue
            names = [one] if one is not None else list(many or [])
            if plural in {"sellers", "errors", "operations"} and many is not None and not many:
                self.add((*base, plural), Code.INVALID_TEST, f"{plural!r} lists nothing")
            if fixtures is not None:
                for k, fixture in enumerate(names):
                    path = (*base, single) if one is not None else (*base, plural, k)
                    self.known(fixture, list(fixtures), path, Code.UNKNOWN_FIXTURE, f"{single} fixture")
            if names:
                dims.append((single, names))
        for k, override in enumerate(test.overrides):
            self.known(
                override,
                list(self.spec.overrides),
                (*base, "overrides", k),
                Code.UNKNOWN_FIXTURE,
                "override fixture",
            )
        labels = {name for _, names in dims for name in names}
        for key in test.expect_by:
            if key not in labels:
                self.add(
                    (*base, "expect_by", key),
                    Code.UNKNOWN_FIXTURE,
                    f"{key!r} is not a seller, error or operation of this test",
                    _joined(
                        did_you_mean(key, sorted(labels)), "expect_by is keyed by the names the test lists"
                    ),
                    key=True,
                )
        if test.expect is None and not test.expect_by:
            self.add(base, Code.INVALID_TEST, f"test {test.name!r} expects nothing: add 'expect'")
        for label, expect in [
            ("expect", test.expect),
            *(((("expect_by", k)), e) for k, e in test.expect_by.items()),
        ]:
            if expect is not None:
                path = (*base, label) if isinstance(label, str) else (*base, *label)
                self.check_expect(path, test, expect, dict(dims))
        if len(self.out.items) > before:
            return []
        cases = []
        kinds = [kind for kind, _ in dims]
        for combination in itertools.product(*(names for _, names in dims)):
            cell = dict(zip(kinds, combination, strict=True))
            expect = _merge([test.expect, *(test.expect_by.get(name) for name in combination)])
            seller = cell.get("seller")
            error = cell.get("error")
            info = infos.get(error) if error is not None else None
            operation = cell.get("operation") or (info.operation if info is not None else None)
            hits: list[tuple[float, int]] = [(float(h.at), h.count) for h in test.hits or ()]
            cases.append(
                Case(
                    suite=self.name,
                    test=test.name,
                    label=", ".join(f"{k}={v}" for k, v in cell.items())
                    if len(combination) and _is_matrix(test)
                    else "",
                    source=str(self.doc.position_of(("spec", *base))),
                    now=test.now or self.spec.now,
                    seller=seller,
                    context=contexts.get(seller) if seller is not None else None,
                    error=error,
                    info=info,
                    operation=operation,
                    overrides=tuple(overrides[name] for name in test.overrides),
                    route=test.route,
                    hits=tuple(hits),
                    expect=expect,
                )
            )
        return cases

    def check_expect(
        self, path: Path_, test: TestSpec, expect: Expect, dims: Mapping[str, list[str]]
    ) -> None:
        has_seller = "seller" in dims
        needs_seller = [k for k in ("features", "limits", "tier", "rate_limit") if getattr(expect, k)]
        if needs_seller and not has_seller:
            self.add(
                (*path, needs_seller[0]),
                Code.INVALID_TEST,
                f"'{needs_seller[0]}' needs a seller: add 'seller' or 'sellers' to the test",
                key=True,
            )
        for name, feature in expect.features.items():
            fpath = (*path, "features", name)
            self.known(name, self.features, fpath, Code.UNKNOWN_FEATURE, "feature", key=True)
            if isinstance(feature, FeatureExpect) and feature.reason is not None:
                self.known(feature.reason, _REASONS, (*fpath, "reason"), Code.INVALID_VALUE, "reason")
        for name in expect.limits:
            self.known(name, self.limits, (*path, "limits", name), Code.UNKNOWN_LIMIT, "limit", key=True)
        if expect.tier is not None:
            tpath = (*path, "tier")
            if self.progression is None:
                self.add(
                    tpath,
                    Code.INVALID_TEST,
                    "the policy set declares no progression rules to qualify by",
                    key=True,
                )
            for key in ("qualified", "effective", "next"):
                value = getattr(expect.tier, key)
                if value is not None and value != "none":
                    self.known(value, self.tiers, (*tpath, key), Code.UNKNOWN_TIER, "tier")
            if expect.tier.reason is not None:
                self.known(expect.tier.reason, _REASONS, (*tpath, "reason"), Code.INVALID_VALUE, "reason")
        if expect.classification is not None or expect.retry is not None:
            key = "classification" if expect.classification is not None else "retry"
            if self.error_model is None:
                self.add(
                    (*path, key),
                    Code.INVALID_TEST,
                    "the policy set has no Errors document to classify by",
                    key=True,
                )
            if "error" not in dims:
                self.add(
                    (*path, key),
                    Code.INVALID_TEST,
                    f"'{key}' needs an error: add 'error' or 'errors' to the test",
                    key=True,
                )
            code = expect.classification.code if expect.classification is not None else None
            if code is not None and self.error_model is not None:
                self.known(
                    code,
                    list(self.error_model.codes),
                    (*path, "classification", "code"),
                    Code.UNKNOWN_ERROR_CODE,
                    "error code",
                )
            rule = expect.classification.rule if expect.classification is not None else None
            if rule is not None and self.error_model is not None:
                self.known(
                    rule,
                    [r.name for r in self.error_model.rules],
                    (*path, "classification", "rule"),
                    Code.INVALID_VALUE,
                    "classification rule",
                )
        if expect.retry is not None:
            errors = [self.spec.errors[e] for e in dims.get("error", []) if e in self.spec.errors]
            if "operation" not in dims and any(e.operation is None for e in errors):
                self.add(
                    (*path, "retry"),
                    Code.INVALID_TEST,
                    "'retry' needs an operation: add 'operation' to the test or the error fixture",
                    key=True,
                )
            for k, step in enumerate(expect.retry):
                if step.reason is not None:
                    self.known(
                        step.reason,
                        _RETRY_REASONS,
                        (*path, "retry", k, "reason"),
                        Code.INVALID_VALUE,
                        "retry reason",
                    )
        if expect.rate_limit is not None:
            rpath = (*path, "rate_limit")
            if not test.hits:
                self.add(rpath, Code.INVALID_TEST, "'rate_limit' needs 'hits' in the test", key=True)
            if test.route is None and "operation" not in dims:
                self.add(
                    rpath,
                    Code.INVALID_TEST,
                    "'rate_limit' needs a 'route' or an 'operation' in the test",
                    key=True,
                )
            total = sum(h.count for h in test.hits or ())
            if total > MAX_HITS:
                self.add(
                    rpath, Code.INVALID_TEST, f"the test makes {total:,} hits; at most {MAX_HITS:,}", key=True
                )
            for k, number in enumerate(expect.rate_limit.denied):
                if number > total:
                    self.add(
                        (*rpath, "denied", k),
                        Code.INVALID_TEST,
                        f"hit {number} is never made: the test makes {total} hits",
                    )
            if expect.rate_limit.limit is not None:
                self.known(
                    expect.rate_limit.limit,
                    self.rate_limits,
                    (*rpath, "limit"),
                    Code.INVALID_VALUE,
                    "rate limit",
                )
        elif test.hits:
            self.add(
                (*path,),
                Code.INVALID_TEST,
                "the test makes rate-limit hits but expects no 'rate_limit'",
                key=True,
            )


def _is_matrix(test: TestSpec) -> bool:
    return any(getattr(test, plural) is not None for plural in ("sellers", "errors", "operations"))


def _merge(expects: Sequence[Expect | None]) -> Expect:
    """Shared expectation first, then each cell's: later keys win, mappings merge by name."""
    merged: dict[str, Any] = {}
    for expect in expects:
        if expect is None:
            continue
        for key in expect.model_fields_set:
            value = getattr(expect, key)
            if key in {"features", "limits"}:
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return Expect.model_construct(**merged)


# --------------------------------------------------------------------------- JSON Schema


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of a whole TestSuite document, for editors (2020-12 dialect)."""
    spec = TestSuiteSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    metadata = Metadata.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = {**spec.pop("$defs", {}), **metadata.pop("$defs", {})}
    defs["Metadata"] = metadata
    defs["TestSuiteSpec"] = spec
    _tighten(defs)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}/testsuite.json",
        "title": "tierpolicy TestSuite document",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION, "description": "The document format version."},
            "kind": {"const": SUITE_KIND},
            "metadata": {"$ref": "#/$defs/Metadata"},
            "spec": {"$ref": "#/$defs/TestSuiteSpec"},
        },
        "$defs": defs,
    }
