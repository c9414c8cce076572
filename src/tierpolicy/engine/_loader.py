"""Loading a policy set: all or nothing, with every problem positioned.

The loader reads every file, validates every document and compiles every condition,
collecting diagnostics instead of stopping at the first; a set with any error
diagnostic is not built at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from . import _validation
from ._compiling import Collector, CompileContext, ParsedDocument
from ._constant_checks import report_constant
from ._context import build_environment
from ._diagnostics import Code, Diagnostic, Position, did_you_mean, sort_key
from ._documents import API_VERSION, Metadata, TiersSpec
from ._exceptions import PolicyLoadError
from ._kinds import KIND_COMPILERS, SINGLETON_KINDS, SPEC_MODELS
from ._noop_checks import override_no_op, rollout_no_op
from ._overrides import Override
from ._policyset import PolicyDocument, PolicySet
from ._progression_checks import RuleInput, progression_findings
from ._rollout import percent_to_basis_points
from ._tiers import CompiledFeature, CompiledLimit, CompiledProgression, CompiledRule, TierModel, iso
from ._yaml import YamlDocument, YamlLimits, read_documents

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

MAX_FILES = 1_000
MAX_SET_BYTES = 16 * 1_048_576
POLICY_SUFFIXES = (".yaml", ".yml")
SKIPPED_DIRECTORIES = frozenset({"tests"})
"""Directories below the policy root that hold test suites, not policies."""


Path_ = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """A policy file's name (relative, POSIX style) and bytes."""

    name: str
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """What checking a policy set found.

    Attributes:
        policy_set: The compiled set, or ``None`` when any error was found.
        diagnostics: Every diagnostic, errors and warnings, in file order.
    """

    policy_set: PolicySet | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        """Whether the set loaded (warnings allowed)."""
        return self.policy_set is not None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The error diagnostics only."""
        return tuple(d for d in self.diagnostics if d.is_error)


# --------------------------------------------------------------------------- entry points


def check(path: str | os.PathLike[str]) -> CheckResult:
    """Read, validate and compile the policy set at ``path`` (a directory or one file).

    Never raises for problems in the policy files: they are all in the diagnostics.
    """
    root = Path(path)
    display = os.fspath(path)
    files, problems = _read_tree(root)
    if problems and not files:
        if not root.exists():  # the path itself is wrong: name it exactly as given
            return CheckResult(
                None, tuple(dataclasses.replace(d, position=Position(display)) for d in problems)
            )
        return CheckResult(None, _display(problems, root, display, ()))
    result = check_files(files, root=display)
    diagnostics = [*problems, *result.diagnostics]
    if problems and any(d.is_error for d in problems):
        return CheckResult(None, _display(diagnostics, root, display, [f.name for f in files]))
    return CheckResult(result.policy_set, _display(diagnostics, root, display, [f.name for f in files]))


def load(path: str | os.PathLike[str]) -> PolicySet:
    """Load the policy set at ``path``, or raise :class:`PolicyLoadError` with every problem."""
    result = check(path)
    if result.policy_set is None:
        raise PolicyLoadError(result.diagnostics)
    return result.policy_set


def load_files(files: Mapping[str, bytes | str], *, root: str = "<memory>") -> PolicySet:
    """Load a policy set from in-memory files (name -> content), e.g. an uploaded bundle.

    Raises:
        PolicyLoadError: When any error diagnostic is found.
    """
    sources = [
        SourceFile(name, content.encode() if isinstance(content, str) else content)
        for name, content in sorted(files.items())
    ]
    result = check_files(sources, root=root)
    if result.policy_set is None:
        raise PolicyLoadError(result.diagnostics)
    return result.policy_set


def check_files(files: Sequence[SourceFile], *, root: str) -> CheckResult:
    """Validate and compile already-read files; positions use the files' own names."""
    out = Collector()
    if not files:
        out.add(
            Position(root),
            Code.NO_POLICY_FILES,
            "no policy files found",
            hint="policy files end in .yaml or .yml",
        )
        return CheckResult(None, tuple(out.items))
    total = sum(len(f.data) for f in files)
    if len(files) > MAX_FILES or total > MAX_SET_BYTES:
        out.add(
            Position(root),
            Code.SET_TOO_LARGE,
            f"the policy set has {len(files)} files and {total:,} bytes; the limits are"
            f" {MAX_FILES:,} files and {MAX_SET_BYTES:,} bytes",
        )
        return CheckResult(None, tuple(out.items))
    parsed, unvalidated = _parse_all(files, out)
    digest = _digest(files)
    version = digest[:16]
    policy_set = _compile(parsed, unvalidated, files, root, digest, version, out)
    ordered = tuple(sorted(out.items, key=sort_key))
    if out.failed or policy_set is None:
        return CheckResult(None, ordered)
    warnings = tuple(d for d in ordered if not d.is_error)
    return CheckResult(dataclasses.replace(policy_set, warnings=warnings), ordered)


# --------------------------------------------------------------------------- reading


def _read_tree(root: Path) -> tuple[list[SourceFile], list[Diagnostic]]:
    problems: list[Diagnostic] = []
    if root.is_file():
        if not root.name.endswith(POLICY_SUFFIXES):
            problems.append(
                Diagnostic(
                    Position(root.name),
                    "error",
                    Code.FILE_UNREADABLE,
                    "this is not a policy file: policy files end in .yaml or .yml",
                )
            )
            return [], problems
        return _read_one(root, root.name, problems), problems
    if not root.is_dir():
        problems.append(
            Diagnostic(Position(str(root)), "error", Code.FILE_UNREADABLE, "no such file or directory")
        )
        return [], problems
    resolved_root = root.resolve()
    files: list[SourceFile] = []
    candidates: list[Path] = []
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and not (Path(directory) == root and d in SKIPPED_DIRECTORIES)
        )
        candidates.extend(
            Path(directory, n) for n in names if n.endswith(POLICY_SUFFIXES) and not n.startswith(".")
        )
        if len(candidates) > MAX_FILES:
            break
    for candidate in sorted(candidates):
        relative = candidate.relative_to(root).as_posix()
        if candidate.is_symlink() and not candidate.resolve().is_relative_to(resolved_root):
            problems.append(
                Diagnostic(
                    Position(relative),
                    "error",
                    Code.FILE_UNREADABLE,
                    "this file links outside the policy directory; such links are not followed",
                )
            )
            continue
        files.extend(_read_one(candidate, relative, problems))
    return files, problems


def _read_one(path: Path, name: str, problems: list[Diagnostic]) -> list[SourceFile]:
    limit = YamlLimits().max_file_bytes
    try:
        with path.open("rb") as handle:
            # Read one byte past the limit: enough to know it is too large, no more.
            data = handle.read(limit + 1)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        problems.append(
            Diagnostic(Position(name), "error", Code.FILE_UNREADABLE, f"cannot read the file: {exc.strerror}")
        )
        return []
    if len(data) > limit:
        problems.append(
            Diagnostic(
                Position(name),
                "error",
                Code.FILE_TOO_LARGE,
                f"the file is {size:,} bytes; a policy file may be at most {limit:,} bytes",
                hint="split it into several files",
            )
        )
        return []
    return [SourceFile(name, data)]


def _display(
    diagnostics: Iterable[Diagnostic], root: Path, display: str, names: Iterable[str]
) -> tuple[Diagnostic, ...]:
    """Show positions (and positions quoted in hints) relative to the path the user named."""
    diagnostics = list(diagnostics)
    if root.is_file():
        rename = {root.name: display}
    else:
        prefix = display.rstrip("/\\")
        relative = {*names, *(d.position.file for d in diagnostics if d.position.file != display)}
        rename = {name: f"{prefix}/{name}" for name in relative}
    shown = []
    for d in diagnostics:
        hint = d.hint
        if hint:
            for old, new in rename.items():
                # Hints quote related places as "at FILE:LINE:COL".
                hint = hint.replace(f"at {old}:", f"at {new}:")
        position = dataclasses.replace(d.position, file=rename.get(d.position.file, d.position.file))
        shown.append(dataclasses.replace(d, position=position, hint=hint))
    return tuple(shown)


def _digest(files: Sequence[SourceFile]) -> str:
    digest = hashlib.sha256(b"tierpolicy/set/v1\x00")
    for source in sorted(files, key=lambda f: f.name):
        digest.update(source.name.encode() + b"\x00" + str(len(source.data)).encode() + b"\x00")
        digest.update(source.data)
    return digest.hexdigest()


# --------------------------------------------------------------------------- documents


def _parse_all(
    files: Sequence[SourceFile], out: Collector
) -> tuple[list[ParsedDocument], list[tuple[YamlDocument, tuple[str, ...]]]]:
    """Validate every document; also return the Tiers documents that failed validation.

    Their conditions are still compiled later, so a structural mistake in one feature
    does not hide a misspelt attribute in another until the next run.
    """
    parsed: list[ParsedDocument] = []
    unvalidated: list[tuple[YamlDocument, tuple[str, ...]]] = []
    for source in files:
        documents, problems = read_documents(source.data, source.name)
        out.items.extend(problems)
        if problems:
            continue
        lines = tuple(source.data.decode("utf-8-sig").splitlines())
        for doc in documents:
            result = _parse_document(source.name, doc, lines, out)
            if result is not None:
                parsed.append(result)
            elif isinstance(doc.value, dict) and doc.value.get("kind") == "Tiers":
                unvalidated.append((doc, lines))
    return parsed, unvalidated


def _parse_document(
    file: str, doc: YamlDocument, lines: tuple[str, ...], out: Collector
) -> ParsedDocument | None:
    value = doc.value
    if value is None:
        out.add(doc.start, Code.EMPTY_DOCUMENT, "this document is empty", severity="warning")
        return None
    if not isinstance(value, dict):
        out.add(
            doc.start,
            Code.NOT_A_MAPPING,
            f"a policy document is a mapping with apiVersion, kind, metadata and spec; found {_validation.describe(value)}",
        )
        return None
    ok = True
    for key in value:
        if key not in {"apiVersion", "kind", "metadata", "spec"}:
            out.add(
                doc.key_position_of((key,)),
                Code.UNKNOWN_KEY,
                f"unknown top-level key {key!r}",
                hint=_hint_with(
                    did_you_mean(key, ["apiVersion", "kind", "metadata", "spec"]),
                    "allowed here: apiVersion, kind, metadata, spec",
                ),
            )
            ok = False
    api_version = value.get("apiVersion")
    if api_version is None:
        out.add(
            doc.start,
            Code.MISSING_API_VERSION,
            "the document does not say its format version",
            hint=f"add 'apiVersion: {API_VERSION}'",
        )
        ok = False
    elif api_version != API_VERSION:
        out.add(
            doc.position_of(("apiVersion",)),
            Code.UNSUPPORTED_API_VERSION,
            f"format version {api_version!r} is not supported by this release",
            hint=f"this release reads {API_VERSION}",
        )
        ok = False
    kind = value.get("kind")
    if kind is None:
        out.add(
            doc.start,
            Code.MISSING_KIND,
            "the document does not say what kind it is",
            hint=f"add 'kind:' with one of {', '.join(sorted(SPEC_MODELS))}",
        )
        return None
    if not isinstance(kind, str) or kind not in SPEC_MODELS:
        out.add(
            doc.position_of(("kind",)),
            Code.UNKNOWN_KIND,
            f"unknown document kind {kind!r}",
            hint=_hint_with(did_you_mean(str(kind), SPEC_MODELS), f"kinds: {', '.join(sorted(SPEC_MODELS))}"),
        )
        return None
    metadata = _validate(Metadata, value.get("metadata"), "metadata", doc, out, ("metadata",))
    if "metadata" not in value:
        out.add(doc.start, Code.MISSING_KEY, "the document is missing 'metadata' (with at least a name)")
    if "spec" not in value:
        out.add(doc.start, Code.MISSING_KEY, f"the document is missing 'spec' (the {kind} itself)")
        return None
    spec = _validate(SPEC_MODELS[kind], value["spec"], "spec", doc, out, ("spec",))
    if not ok or metadata is None or spec is None:
        return None
    assert isinstance(metadata, Metadata)  # noqa: S101  validated as Metadata just above
    return ParsedDocument(file, doc, lines, kind, metadata.name, metadata, spec)


def _hint_with(first: str | None, second: str) -> str:
    return f"{first} {second}" if first else second


def _validate(
    model: type[BaseModel],
    data: object,
    where: str,
    doc: YamlDocument,
    out: Collector,
    prefix: Path_,
) -> BaseModel | None:
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for path, code, message, hint, at_key in _validation.translate(exc.errors(), data, model, where):
            full = (*prefix, *path)
            position = doc.key_position_of(full) if at_key else doc.position_of(full)
            out.add(position, code, message, hint)
        return None


# --------------------------------------------------------------------------- compiling


def _compile(
    parsed: list[ParsedDocument],
    unvalidated: list[tuple[YamlDocument, tuple[str, ...]]],
    files: Sequence[SourceFile],
    root: str,
    digest: str,
    version: str,
    out: Collector,
) -> PolicySet | None:
    compiler = CompileContext(parsed, out, version)
    seen: dict[tuple[str, str], ParsedDocument] = {}
    for item in parsed:
        key = (item.kind, item.name)
        first = seen.get(key)
        if first is not None:
            out.add(
                item.doc.position_of(("metadata", "name")),
                Code.DUPLICATE_NAME,
                f"a {item.kind} document named {item.name!r} already exists",
                hint=f"first defined at {first.doc.start}",
            )
        else:
            seen[key] = item
    for kind in SINGLETON_KINDS:
        of_kind = [p for p in parsed if p.kind == kind]
        for extra in of_kind[1:]:
            out.add(
                extra.doc.start,
                Code.DUPLICATE_DOCUMENT,
                f"a policy set has at most one {kind} document",
                hint=f"the first is at {of_kind[0].doc.start}; merge them",
            )
    contexts = [p for p in parsed if p.kind == "Context"]
    environment, problems = build_environment(
        [(p.spec.attributes, _key_locator(p)) for p in contexts]  # type: ignore[attr-defined]
    )
    for problem, position in problems:
        out.add(position, problem.code, problem.message, problem.hint)
    compiler.environment = environment
    tiers_docs = [p for p in parsed if p.kind == "Tiers"]
    tier_model = _compile_tiers(compiler, tiers_docs[0]) if tiers_docs else None
    for doc, lines in unvalidated:
        for path, text in _raw_conditions(doc.value):
            compiler.expression_in(doc, lines, path, text)
    models = {
        kind: compile_kind(compiler, [p for p in parsed if p.kind == kind])
        for kind, compile_kind in KIND_COMPILERS.items()
        if any(p.kind == kind for p in parsed)
    }
    if out.failed:
        return None
    return PolicySet(
        version=version,
        digest=digest,
        root=root,
        files=tuple(f.name for f in files),
        documents=tuple(
            PolicyDocument(p.kind, p.name, p.file, p.doc.start, p.metadata, p.spec) for p in parsed
        ),
        environment=environment,
        tiers=tier_model,
        models=models,
        warnings=(),
    )


def _raw_conditions(value: object) -> list[tuple[Path_, str]]:
    """The ``when`` conditions of a Tiers document that did not validate, with their paths."""
    found: list[tuple[Path_, str]] = []
    spec = value.get("spec") if isinstance(value, dict) else None
    if not isinstance(spec, dict):
        return found
    features = spec.get("features")
    for name, feature in features.items() if isinstance(features, dict) else ():
        if isinstance(feature, dict) and isinstance(feature.get("when"), str):
            found.append((("spec", "features", name, "when"), feature["when"]))
    progression = spec.get("progression")
    rules = progression.get("rules") if isinstance(progression, dict) else None
    for tier, rule in rules.items() if isinstance(rules, dict) else ():
        if isinstance(rule, dict) and isinstance(rule.get("when"), str):
            found.append((("spec", "progression", "rules", tier, "when"), rule["when"]))
    return found


def _key_locator(item: ParsedDocument) -> Callable[[tuple[str, ...]], Position]:
    def where(path: tuple[str, ...]) -> Position:
        return item.doc.key_position_of(("spec", "attributes", *path))

    return where


def _compile_tiers(c: CompileContext, item: ParsedDocument) -> TierModel | None:
    spec = item.spec
    assert isinstance(spec, TiersSpec)  # noqa: S101  the Tiers kind validates to TiersSpec
    names: list[str] = []
    for i, tier_spec in enumerate(spec.tiers):
        if tier_spec.name in names:
            c.out.add(
                item.doc.position_of(("spec", "tiers", i, "name")),
                Code.DUPLICATE_TIER,
                f"tier {tier_spec.name!r} is listed twice",
                hint="each tier appears once, lowest first",
            )
        else:
            names.append(tier_spec.name)
    tiers = tuple(names)
    index = {name: i for i, name in enumerate(tiers)}

    def known_tier(name: str, path: Path_) -> int | None:
        if name in index:
            return index[name]
        c.out.add(
            item.doc.position_of(path),
            Code.UNKNOWN_TIER,
            f"unknown tier {name!r}",
            hint=_hint_with(did_you_mean(name, tiers), f"tiers: {', '.join(tiers)}"),
        )
        return None

    features: dict[str, CompiledFeature] = {}
    for name, feature in spec.features.items():
        base: Path_ = ("spec", "features", name)
        grants: list[bool] | None = None
        if feature.from_ is not None:
            minimum = known_tier(feature.from_, (*base, "from"))
            if minimum is not None:
                grants = [i >= minimum for i in range(len(tiers))]
        elif feature.tiers is not None:
            listed = [known_tier(t, (*base, "tiers", k)) for k, t in enumerate(feature.tiers)]
            if None not in listed:
                grants = [i in listed for i in range(len(tiers))]
        condition = c.expression(item, (*base, "when"), feature.when) if feature.when is not None else None
        if grants is None or (feature.when is not None and condition is None):
            continue
        if feature.when is not None:
            report_constant(c, item, (*base, "when"), feature.when)
        no_op = rollout_no_op(name, feature.rollout) if feature.rollout is not None else None
        if no_op is not None:
            c.out.add(
                item.doc.position_of((*base, "rollout")), Code.ROLLOUT_NO_OP, *no_op, severity="warning"
            )
        features[name] = CompiledFeature(
            name=name,
            description=feature.description,
            rule=f"feature:{name}",
            source=c.source(item, base),
            tiers=tiers,
            grants=tuple(grants),
            explicit_tiers=feature.tiers is not None,
            minimum=feature.from_,
            condition=condition,
            rollout_bp=percent_to_basis_points(feature.rollout) if feature.rollout is not None else None,
            enabled=feature.enabled,
            policy_version=c.version,
        )

    limits: dict[str, CompiledLimit] = {}
    for name, limit in spec.limits.items():
        base = ("spec", "limits", name)
        bad = [t for t in limit.values if known_tier(t, (*base, "values", t)) is None]
        if bad or not tiers:
            continue
        if tiers[0] not in limit.values:
            c.out.add(
                item.doc.position_of((*base, "values")),
                Code.MISSING_LIMIT_VALUE,
                f"limit {name!r} has no value for the lowest tier {tiers[0]!r}",
                hint="higher tiers inherit from lower ones, so the lowest tier needs a value",
            )
            continue
        values: list[int | None] = []
        origins: list[str] = []
        for tier in tiers:
            if tier in limit.values:
                raw = limit.values[tier]
                values.append(None if raw == "unlimited" else int(raw))
                origins.append(tier)
            else:
                values.append(values[-1])
                origins.append(origins[-1])
        for i in range(1, len(tiers)):
            lower, higher = values[i - 1], values[i]
            if (lower is None and higher is not None) or (
                lower is not None and higher is not None and higher < lower
            ):
                c.out.add(
                    item.doc.position_of((*base, "values", tiers[i])),
                    Code.LIMIT_NOT_MONOTONE,
                    f"limit {name!r} is lower for {tiers[i]} than for {tiers[i - 1]}",
                    hint="higher tiers usually get at least the limits of lower ones",
                    severity="warning",
                )
        limits[name] = CompiledLimit(
            name=name,
            description=limit.description,
            unit=limit.unit,
            rule=f"limit:{name}",
            source=c.source(item, base),
            tiers=tiers,
            values=tuple(values),
            inherited_from=tuple(origins),
            policy_version=c.version,
        )

    progression = None
    if spec.progression is not None:
        base = ("spec", "progression")
        rules: dict[int, CompiledRule] = {}
        checked: list[RuleInput] = []
        for tier, rule in spec.progression.rules.items():
            position = known_tier(tier, (*base, "rules", tier))
            program = c.expression(item, (*base, "rules", tier, "when"), rule.when)
            if position is None or program is None:
                continue
            if position == 0:
                c.out.add(
                    item.doc.key_position_of((*base, "rules", tier)),
                    Code.FLOOR_RULE,
                    f"{tier!r} is the lowest tier, which every seller qualifies for; its rule is never used",
                    severity="warning",
                )
                continue
            report_constant(c, item, (*base, "rules", tier, "when"), rule.when)
            rules[position] = CompiledRule(
                position, program, f"progression:{tier}", c.source(item, (*base, "rules", tier))
            )
            checked.append(
                RuleInput(position, tier, program, item.doc.key_position_of((*base, "rules", tier)))
            )
        c.out.items.extend(progression_findings(checked, c.environment))
        progression = CompiledProgression(
            tiers=tiers,
            rules=rules,
            window_days=spec.progression.window_days,
            grace=dt.timedelta(days=spec.progression.grace_period_days),
            rule="progression",
            source=c.source(item, base),
            policy_version=c.version,
        )

    overrides: list[Override] = []
    now = dt.datetime.now(dt.UTC)
    for i, entry in enumerate(spec.overrides):
        base = ("spec", "overrides", i)
        if entry.feature is not None:
            kind, target, known = "feature", entry.feature, tuple(spec.features)
            code = Code.UNKNOWN_FEATURE
        elif entry.limit is not None:
            kind, target, known = "limit", entry.limit, tuple(spec.limits)
            code = Code.UNKNOWN_LIMIT
        else:
            kind, target, known = "tier", entry.tier or "", tiers
            code = Code.UNKNOWN_TIER
        if target not in known:
            c.out.add(
                item.doc.position_of((*base, kind)),
                code,
                f"the override names unknown {kind} {target!r}",
                hint=did_you_mean(target, known),
            )
            continue
        override = Override(
            seller_id=entry.seller,
            kind=kind,  # type: ignore[arg-type]
            target=target,
            value=None if entry.value == "unlimited" else entry.value,
            reason=entry.reason,
            expires_at=entry.expires,
            starts_at=entry.starts,
            author=entry.author,
            rule=f"override:{entry.id if entry.id is not None else i}",
            source=c.source(item, base),
        )
        if override.expires_at <= now:
            c.out.add(
                item.doc.position_of((*base, "expires")),
                Code.EXPIRED_OVERRIDE,
                f"this override expired at {iso(override.expires_at)} and no longer applies",
                hint="remove it, or extend 'expires'",
                severity="warning",
            )
        elif (no_op := override_no_op(override, features, limits)) is not None:
            c.out.add(item.doc.position_of((*base, "value")), Code.OVERRIDE_NO_OP, *no_op, severity="warning")
        overrides.append(override)
    by_seller: dict[str, list[Override]] = {}
    for override in overrides:
        by_seller.setdefault(override.seller_id, []).append(override)
    return TierModel(
        tiers=tiers,
        index=index,
        features=features,
        limits=limits,
        progression=progression,
        overrides=tuple(overrides),
        overrides_by_seller={k: tuple(v) for k, v in by_seller.items()},
    )
