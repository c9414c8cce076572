"""Properties of the loader and the engine, checked on generated inputs with Hypothesis.

Bugs these properties found are kept as regression tests (``test_regression_*``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import tierpolicy
from strategies import (
    POLICY_NOW,
    percent_text,
    policy_contexts,
    policy_documents,
    policy_names,
    policy_rollout_basis_points,
    policy_seller_ids,
    yamlish_documents,
)
from support import SMALL_SET
from tierpolicy import Engine, Override
from tierpolicy.engine._documents import FeatureSpec
from tierpolicy.engine._loader import SourceFile, check_files
from tierpolicy.engine._policyset import dump_yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "policies"

_NOWS = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001  hypothesis wants naive bounds
    max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001  same
    timezones=st.just(dt.UTC),
)
_FAST = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def shipped() -> Engine:
    """The shipped marketplace policy set."""
    return tierpolicy.load(SHIPPED)


@pytest.fixture(scope="module")
def small() -> Engine:
    """The small test policy set (every tiers feature), loaded from memory."""
    return Engine(tierpolicy.load_files({"policy.yaml": SMALL_SET}, root="small"))


def _environment(engine: Engine) -> dict[str, object]:
    return dict(engine.policy_set.environment)


def _with_tier(context: dict[str, object], tier: str) -> dict[str, object]:
    seller = context["seller"]
    assert isinstance(seller, dict)
    return {**context, "seller": {**seller, "tier": tier}}


def _outcome(call):
    """Return ``("ok", value)`` or ``("error", type, message)`` for a call."""
    try:
        return ("ok", call())
    except tierpolicy.TierpolicyError as exc:
        return ("error", type(exc), str(exc))


def _render(documents: list[object], *, style: str = "block") -> bytes:
    if style == "json":
        return "\n---\n".join(json.dumps(d, ensure_ascii=False) for d in documents).encode()
    return dump_yaml(documents, flow=style == "flow").encode()


# --------------------------------------------------------------------------- tier monotonicity


@settings(_FAST, max_examples=150)
@given(data=st.data(), now=_NOWS)
def test_shipped_set_is_monotone_in_the_tier(shipped, data, now):
    """In the shipped set, a `from:` feature allowed at a tier is allowed at every higher one, and no limit shrinks."""
    [tiers_document] = [d for d in shipped.policy_set.documents if d.kind == "Tiers"]
    monotone = [name for name, f in tiers_document.spec.features.items() if f.from_ is not None]
    assert monotone, "the shipped set has no `from:` features"
    context = data.draw(policy_contexts(_environment(shipped), shipped.tiers))
    at = [_with_tier(context, tier) for tier in shipped.tiers]
    pairs = list(itertools.combinations(range(len(at)), 2))
    for feature in monotone:
        decisions = [shipped.check(feature, c, now=now) for c in at]
        for i, j in pairs:
            assert decisions[j].allowed or not decisions[i].allowed, (decisions[i], decisions[j])
    for limit in shipped.limits:
        values = [shipped.limit(limit, c, now=now).value for c in at]
        ranks = [math.inf if v is None else v for v in values]
        for i, j in pairs:
            assert ranks[i] <= ranks[j], (limit, list(zip(shipped.tiers, values, strict=True)))


# --------------------------------------------------------------------------- rollouts


def _rollout_engine(feature: str, basis_points: int) -> Engine:
    source = (
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: rollout}\nspec:\n"
        "  tiers: [{name: bronze}]\n  features:\n"
        f"    {feature}: {{from: bronze, rollout: {percent_text(basis_points)}}}\n"
    )
    return Engine(tierpolicy.load_files({"rollout.yaml": source}))


@settings(_FAST, max_examples=100)
@given(
    feature=policy_names,
    seller=policy_seller_ids,
    percentages=st.lists(policy_rollout_basis_points, min_size=2, max_size=2).map(sorted),
)
def test_rollout_is_monotone_and_stable(feature, seller, percentages):
    """Raising a rollout percentage only adds sellers, and two loads of one set decide alike."""
    low_bp, high_bp = percentages
    context = {"seller": {"id": seller, "tier": "bronze"}}
    low = _rollout_engine(feature, low_bp).check(feature, context, now=POLICY_NOW)
    high = _rollout_engine(feature, high_bp).check(feature, context, now=POLICY_NOW)
    again = _rollout_engine(feature, low_bp).check(feature, context, now=POLICY_NOW)
    assert again == low
    assert low.allowed == (tierpolicy.rollout_bucket(feature, seller) < low_bp)
    if low.allowed:
        assert high.allowed, (low, high)


def test_regression_every_two_decimal_rollout_is_accepted():
    """Every percentage from 0.00 to 100.00 with at most two decimals is a valid rollout."""
    policy = (
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n"
        "  tiers: [{name: bronze}]\n  features:\n    f: {from: bronze, rollout: 0.29}\n"
    )
    assert tierpolicy.load_files({"t.yaml": policy}).tiers.features["f"].rollout_bp == 29
    rejected = []
    for basis_points in range(10_001):
        try:
            FeatureSpec.model_validate({"from": "bronze", "rollout": float(percent_text(basis_points))})
        except ValidationError:
            rejected.append(percent_text(basis_points))
    assert not rejected


# --------------------------------------------------------------------------- dump and load


def _without_version(decision):
    return dataclasses.replace(decision, policy_version="", source="")


def _comparable(entitlements: tierpolicy.Entitlements) -> tuple[object, ...]:
    return (
        entitlements.seller_id,
        entitlements.tier,
        {name: _without_version(d) for name, d in entitlements.features.items()},
        {name: _without_version(d) for name, d in entitlements.limits.items()},
    )


def _canonical(policy_set: tierpolicy.PolicySet) -> list[str]:
    return sorted(json.dumps(d.to_data(), sort_keys=True) for d in policy_set.documents)


_FREE_TEXT = st.one_of(
    st.sampled_from(
        [
            "yes",
            "no",
            "on",
            "null",
            "~",
            "true",
            "12",
            "1e3",
            "0o17",
            "0x1F",
            "+.5",
            "1_000",
            "12:30",
            "2026-01-01",
            ".inf",
            "- item",
            "a: b",
            "#hash",
            "'quoted'",
            '"double"',
            "é日🐱",
            " leading",
            "trailing ",
            "multi\nline",
            "tab\there",
            "\x85next",
            "",
        ]
    ),
    st.text(max_size=12),
)
"""Free text for descriptions, reasons and the like, with YAML's usual traps."""


@settings(_FAST, max_examples=80)
@given(documents=policy_documents(text=_FREE_TEXT), data=st.data())
def test_dump_then_load_decides_identically(documents, data):
    """load(dump(set)) has the same canonical documents and decides exactly like the set."""
    original = tierpolicy.load_files({"policy.yaml": _render(documents)})
    reloaded = tierpolicy.load_files(original.dump())
    assert _canonical(reloaded) == _canonical(original)
    first, second = Engine(original), Engine(reloaded)
    assert (first.tiers, first.features, first.limits) == (second.tiers, second.features, second.limits)
    contexts = data.draw(st.lists(policy_contexts(_environment(first), first.tiers), min_size=1, max_size=3))
    for context in contexts:
        now = data.draw(_NOWS)
        assert _comparable(first.entitlements(context, now=now)) == _comparable(
            second.entitlements(context, now=now)
        )
        if original.tiers is not None and original.tiers.progression is not None:
            assert _without_version(first.qualify(context, now=now)) == _without_version(
                second.qualify(context, now=now)
            )


@settings(_FAST, max_examples=30)
@example(text="1e3")
@given(
    text=st.one_of(
        st.sampled_from(["1e3", "0o17", "1.5e3", "+.5", "-.5", "1E10", "true", "null", "12", "~", ".inf"]),
        st.from_regex(r"[-+]?[0-9]{1,3}(\.[0-9]{0,2})?[eE][-+]?[0-9]{1,2}", fullmatch=True),
        st.from_regex(r"0o[0-7]{1,4}", fullmatch=True),
    )
)
def test_regression_dump_keeps_number_like_text(text):
    """Free text that YAML 1.2 would read as a number or constant survives dump and reload as text."""
    document = {
        "apiVersion": "tierpolicy/v1",
        "kind": "Tiers",
        "metadata": {"name": "t", "description": text},
        "spec": {
            "tiers": [{"name": "bronze"}],
            "limits": {"x": {"values": {"bronze": 1}, "unit": text}},
            "overrides": [
                {"seller": text, "tier": "bronze", "reason": text, "expires": "2099-01-01T00:00:00Z"}
            ],
        },
    }
    original = tierpolicy.load_files({"t.yaml": _render([document], style="json")})
    reloaded = tierpolicy.load_files(original.dump())
    assert _canonical(reloaded) == _canonical(original)


# --------------------------------------------------------------------------- determinism


def _request(engine: Engine, context: dict[str, object]) -> dict[str, object]:
    queries: list[dict[str, object]] = [{"kind": "feature", "name": f} for f in engine.features]
    queries += [{"kind": "limit", "name": n} for n in engine.limits]
    queries += [
        {"kind": "tier"},
        {"kind": "entitlements"},
        {"kind": "feature", "name": "promotd"},
        {"kind": "limit", "name": "listing"},
        {"kind": "feature"},
        {"kind": "bogus"},
    ]
    return {"context": context, "queries": queries, "trace": True}


@settings(_FAST, max_examples=60)
@given(data=st.data(), now=_NOWS)
def test_decisions_are_deterministic_in_one_process(small, data, now):
    """The same set and context give equal answers on repeated calls and from two separately loaded engines."""
    other = Engine(tierpolicy.load_files({"policy.yaml": SMALL_SET}, root="small"))
    context = data.draw(policy_contexts(_environment(small), small.tiers))
    request = _request(small, context)
    first = _outcome(lambda: tierpolicy.evaluate(small, request, now=now))
    assert _outcome(lambda: tierpolicy.evaluate(small, request, now=now)) == first
    assert _outcome(lambda: tierpolicy.evaluate(other, request, now=now)) == first
    for feature in small.features:
        assert small.check(feature, context, now=now) == other.check(feature, context, now=now)


_FIXED_CONTEXT = {
    "seller": {
        "id": "s-1",
        "tier": "gold",
        "verified": True,
        "joined_at": "2026-01-01T00:00:00Z",
        "below_since": "2026-10-01T00:00:00Z",
    },
    "metrics": {"orders": 50, "rating": 4.7},
}
_FIXED_OVERRIDES = [
    {
        "seller_id": "s-1",
        "kind": "feature",
        "target": "onboarding",
        "value": True,
        "reason": "support ticket",
        "expires_at": "2027-01-01T00:00:00Z",
        "id": 7,
    }
]


def _subprocess_env(**extra: str) -> dict[str, str]:
    source = str(Path(tierpolicy.__file__).resolve().parents[1])
    env = {**os.environ, "NO_COLOR": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return env


def test_decisions_agree_across_processes_and_hash_seeds(tmp_path, small):
    """`tierpolicy eval` in a process with another PYTHONHASHSEED answers exactly as this process does."""
    (tmp_path / "policy.yaml").write_text(SMALL_SET)
    request = {
        **_request(small, _FIXED_CONTEXT),
        "now": "2026-11-28T12:00:00Z",
        "overrides": _FIXED_OVERRIDES,
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    engine = tierpolicy.load(tmp_path / "policy.yaml")
    expected = json.loads(json.dumps(tierpolicy.evaluate(engine, request, now=POLICY_NOW)))
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    completed = subprocess.run(  # noqa: S603  a fixed command line with the test's own interpreter
        [
            sys.executable,
            "-m",
            "tierpolicy.cli",
            "eval",
            "--policies",
            str(tmp_path / "policy.yaml"),
            "--input",
            str(tmp_path / "request.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=_subprocess_env(PYTHONHASHSEED=seed),
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer == expected
    assert [r["status"] for r in answer["results"]].count("error") == 4


def test_regression_far_future_below_since_does_not_crash(small):
    """A request whose below_since plus the grace period passes year 9999 gets an answer, not a crash."""
    request = {
        "context": {
            **_FIXED_CONTEXT,
            "seller": {**_FIXED_CONTEXT["seller"], "below_since": "9999-12-31T00:00:00Z"},
        },
        "queries": [{"kind": "tier"}],
    }
    answer = tierpolicy.evaluate(small, request, now=POLICY_NOW)
    assert answer["results"][0]["status"] in {"ok", "error"}


# --------------------------------------------------------------------------- loader robustness


def _assert_robust(files: dict[str, bytes]) -> None:
    """check_files never raises and positions everything; load_files raises only PolicyLoadError."""
    result = check_files([SourceFile(name, data) for name, data in sorted(files.items())], root="fuzz")
    for diagnostic in result.diagnostics:
        assert diagnostic.position.line >= 1, diagnostic.format()
        assert diagnostic.position.column >= 1, diagnostic.format()
        assert diagnostic.message.strip(), diagnostic
    assert (result.policy_set is None) == any(d.is_error for d in result.diagnostics)
    raised: tuple[tierpolicy.Diagnostic, ...] = ()
    try:
        policy_set = tierpolicy.load_files(files, root="fuzz")
    except tierpolicy.PolicyLoadError as exc:
        policy_set, raised = None, exc.diagnostics
    if policy_set is None:
        assert result.policy_set is None
        assert {d.code for d in raised} == {d.code for d in result.diagnostics}
        return
    assert result.policy_set is not None
    engine = Engine(policy_set)
    if engine.tiers:
        context = {"seller": {"id": "s-1", "tier": engine.tiers[-1]}}
        engine.entitlements(context, now=POLICY_NOW)
        if policy_set.tiers is not None and policy_set.tiers.progression is not None:
            engine.qualify(context, now=POLICY_NOW)


_STYLES = st.sampled_from(["block", "flow", "json"])


@settings(_FAST, max_examples=300)
@given(documents=yamlish_documents, style=_STYLES)
def test_loader_never_crashes_on_policy_like_documents(documents, style):
    """Policy-like documents load or raise PolicyLoadError, and every diagnostic has line and column >= 1."""
    _assert_robust({"policy.yaml": _render(documents, style=style)})


@st.composite
def _edited_text(draw: st.DrawFn) -> bytes:
    """A valid policy file with a few characters inserted, deleted or replaced."""
    documents = draw(policy_documents())
    text = _render(documents, style=draw(st.sampled_from(["block", "flow"]))).decode()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        junk = draw(
            st.sampled_from(["", " ", "\t", ":", "-", "[", "{", "'", '"', "&a", "*a", "!!", "#", "\n"])
        )
        cut = draw(st.integers(0, 3))
        text = text[:at] + junk + text[at + cut :]
    return text.encode()


@settings(_FAST, max_examples=300)
@given(data=st.one_of(st.text(max_size=300).map(str.encode), st.binary(max_size=300), _edited_text()))
def test_loader_never_crashes_on_random_text(data):
    """Random text, random bytes and hand-edited policy files load or raise PolicyLoadError, positioned."""
    _assert_robust({"policy.yaml": data})


@pytest.mark.parametrize(
    "condition",
    ["seller.country.matches('^[A-Z]{2}$')", '{"a": true}["a"]', "seller.country in {'DE': 1}"],
)
def test_conditions_with_braces_load(condition):
    """A valid condition containing '{' or '}' loads, and its feature decides."""
    policy = {
        "apiVersion": "tierpolicy/v1",
        "kind": "Tiers",
        "metadata": {"name": "t"},
        "spec": {"tiers": [{"name": "bronze"}], "features": {"f": {"from": "bronze", "when": condition}}},
    }
    context_document = {
        "apiVersion": "tierpolicy/v1",
        "kind": "Context",
        "metadata": {"name": "c"},
        "spec": {"attributes": {"seller": {"country": "string"}}},
    }
    result = check_files([SourceFile("t.yaml", _render([context_document, policy]))], root="m")
    assert result.policy_set is not None, [d.format() for d in result.diagnostics]
    decision = Engine(result.policy_set).check(
        "f", {"seller": {"id": "s", "tier": "bronze", "country": "DE"}}
    )
    assert decision.allowed


# --------------------------------------------------------------------------- fast path = traced path


@st.composite
def _runtime_overrides(draw: st.DrawFn, engine: Engine, seller_id: str) -> list[Override]:
    overrides = []
    for _ in range(draw(st.integers(0, 3))):
        kinds = ["tier", *(["feature"] if engine.features else []), *(["limit"] if engine.limits else [])]
        kind = draw(st.sampled_from(kinds))
        if kind == "feature":
            target, value = draw(st.sampled_from(engine.features)), draw(st.booleans())
        elif kind == "limit":
            target, value = draw(st.sampled_from(engine.limits)), draw(st.none() | st.integers(0, 10**6))
        else:
            target, value = draw(st.sampled_from(engine.tiers)), None
        overrides.append(
            Override(
                seller_id=draw(st.just(seller_id) | policy_seller_ids),
                kind=kind,
                target=target,
                value=value,
                reason=draw(st.text(min_size=1, max_size=8)),
                expires_at=(expires := draw(_NOWS)),
                starts_at=draw(st.none() | _NOWS.filter(lambda moment, end=expires: moment < end)),
                rule=f"override:db-{len(overrides)}",
            )
        )
    return overrides


def _untraced(decision):
    return dataclasses.replace(decision, trace=())


@settings(_FAST, max_examples=150)
@given(data=st.data(), now=_NOWS, which=st.sampled_from(["small", "shipped"]))
def test_traced_decisions_equal_fast_decisions(small, shipped, data, now, which):
    """Asking for a trace changes nothing but the trace, for features, limits, tiers and entitlements."""
    engine = small if which == "small" else shipped
    context = data.draw(policy_contexts(_environment(engine), engine.tiers))
    seller = context["seller"]
    assert isinstance(seller, dict)
    overrides = data.draw(_runtime_overrides(engine, seller["id"]))
    options = {"now": now, "overrides": overrides}
    for feature in engine.features:
        traced = engine.check(feature, context, trace=True, **options)
        assert _untraced(traced) == engine.check(feature, context, **options)
    for limit in engine.limits:
        traced = engine.limit(limit, context, trace=True, **options)
        assert _untraced(traced) == engine.limit(limit, context, **options)
    fast = _outcome(lambda: engine.qualify(context, **options))
    slow = _outcome(lambda: engine.qualify(context, trace=True, **options))
    if slow[0] == "ok":
        slow = ("ok", _untraced(slow[1]))
    assert slow == fast
    traced_all = engine.entitlements(context, trace=True, **options)
    plain_all = engine.entitlements(context, **options)
    assert {n: _untraced(d) for n, d in traced_all.features.items()} == dict(plain_all.features)
    assert {n: _untraced(d) for n, d in traced_all.limits.items()} == dict(plain_all.limits)
