"""Benchmark of the tierpolicy engine against pycasbin and a plain dict lookup.

One run, one process, one machine state, measures:

1. tierpolicy decisions on a generated policy set that mirrors the marketplace (4 tiers,
   15 features, 5 limits), loaded in memory with ``tierpolicy.load_files``: an
   unconditional ``Engine.check``, a check with a 4-clause condition (every clause
   evaluated), ``Engine.limit`` and ``Engine.entitlements``;
2. the peer, pycasbin: RBAC ``enforce`` on the equivalent model (tiers are roles,
   platinum > gold > silver > bronze by role inheritance, features are objects, action
   ``use``, seller -> tier by ``g``), plain ``Enforcer`` and indexed ``FastEnforcer``; and
   the 4-clause condition with casbin's ABAC (``eval(p.cond)`` policy rules, and the
   condition written into the matcher);
3. a floor: ``allowed[(tier, feature)]`` inside a function call;
4. an unconditional check on sets of 10 to 10,000 features (is the cost flat?);
5. ``load_files`` (parse, validate, compile) of 100, 1,000 and 10,000 features over 10
   tiers (1/4 with a condition, 1/10 with a rollout, one limit per 20 features).

Method: ``timeit.Timer`` with the call inlined in the timing loop and the clocks
(``time.perf_counter_ns`` for wall time, ``time.thread_time_ns`` for the thread's CPU
time) read around each batch; batches of up to 10,000 calls per sample (fewer for slow
calls, so a sample takes about 10 ms), 31 samples after a calibration and a warm-up
batch, the samples of the cases of one group taken in turn so background load hits them
alike. The median, p90 and minimum of the per-call wall time over the samples are
reported, and the median CPU time (which leaves out waits for a CPU on a busy machine).
The garbage collector stays ON (timeit would switch it off; we switch it back on),
because production code runs with it. Inputs are pinned: the same policy sets, contexts
and names in every run.

Usage::

    python benchmarks/bench_engine.py               # full run, ~20-30 s
    python benchmarks/bench_engine.py --quick       # smoke run, < 10 s
    python benchmarks/bench_engine.py --json out.json

Needs ``pip install -e '.[bench]'`` (tierpolicy and casbin). Run from a source checkout
without installing, ``src/`` is put on the path.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

try:
    import casbin
    from casbin.model import FastModel, Model
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    sys.exit("casbin is missing: install the benchmark extra with  pip install -e '.[bench]'")


from _harness import Result, Target, fmt_ns, import_tierpolicy, loadavg, stamp

tierpolicy = import_tierpolicy()

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)

# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """How hard to measure."""

    max_batch: int
    samples: int
    min_samples: int
    sample_ns: int
    case_budget_ns: int
    scaling_sizes: tuple[int, ...]
    compile_runs: dict[int, int]


FULL = Config(
    max_batch=10_000,
    samples=31,
    min_samples=7,
    sample_ns=10_000_000,
    case_budget_ns=4_000_000_000,
    scaling_sizes=(10, 100, 1_000, 10_000),
    compile_runs={100: 7, 1_000: 5, 10_000: 3},
)
QUICK = Config(
    max_batch=2_000,
    samples=9,
    min_samples=3,
    sample_ns=2_000_000,
    case_budget_ns=200_000_000,
    scaling_sizes=(10, 100, 1_000),
    compile_runs={100: 3, 1_000: 1},
)

# --------------------------------------------------------------------------- the marketplace-like set

MARKETPLACE_CONTEXT = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: bench-context}
spec:
  attributes:
    seller:
      verified: bool
      kyc_level: int
      joined_at: timestamp
      country: string
    metrics:
      orders_60d: int
      revenue_60d: double
      rating: double
      claim_rate: double
"""

PROMOTED_CONDITION = (
    "seller.verified && metrics.rating >= 4.5 && metrics.claim_rate < 0.01 && seller.kyc_level >= 2"
)

# name, rule (YAML flow mapping body), in the marketplace's order
MARKETPLACE_FEATURES: tuple[tuple[str, str], ...] = (
    ("listing.create", "from: bronze"),
    ("listing.bulk_upload", "from: silver"),
    ("listing.promoted", f'from: silver, when: "{PROMOTED_CONDITION}"'),
    ("listing.video", "from: gold"),
    ("analytics.basic", "from: bronze"),
    ("analytics.advanced", "from: gold"),
    ("analytics.export", "from: silver"),
    ("api.access", "from: silver"),
    ("api.webhooks", "from: gold"),
    ("support.priority", "from: gold"),
    ("support.dedicated_manager", "from: platinum"),
    ("payouts.daily", """from: silver, when: 'now - seller.joined_at >= duration("2160h")'"""),
    ("payouts.instant", "from: gold, enabled: false"),
    ("checkout.one_page", "from: bronze, rollout: 25"),
    ("onboarding.assistant", "tiers: [bronze, silver]"),
)
MARKETPLACE_LIMITS = """\
    active_listings: {unit: listings, values: {bronze: 500, silver: 5000, gold: 50000, platinum: unlimited}}
    bulk_upload_rows: {unit: rows, values: {bronze: 0, silver: 1000, gold: 10000, platinum: 50000}}
    images_per_listing: {unit: images, values: {bronze: 8, silver: 12, platinum: 24}}
    api_requests_per_minute: {unit: requests/minute, values: {bronze: 0, silver: 60, gold: 300, platinum: 1200}}
    team_members: {unit: users, values: {bronze: 1, silver: 3, gold: 10, platinum: 50}}
"""
TIERS = ("bronze", "silver", "gold", "platinum")
UNCONDITIONAL = "api.access"  # from: silver; the gold seller gets it by inheritance
CONDITIONAL = "listing.promoted"
LIMIT = "active_listings"
SELLER_ID = "s-4711"
SELLER_TIER = "gold"
CONTEXT: dict[str, Any] = {
    "seller": {
        "id": SELLER_ID,
        "tier": SELLER_TIER,
        "verified": True,
        "kyc_level": 2,
        "joined_at": dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
        "country": "DE",
    },
    "metrics": {"orders_60d": 240, "revenue_60d": 18_500.0, "rating": 4.8, "claim_rate": 0.004},
}


def marketplace_files() -> dict[str, str]:
    features = "".join(f"    {name}: {{{rule}}}\n" for name, rule in MARKETPLACE_FEATURES)
    tiers_doc = (
        "apiVersion: tierpolicy/v1\n"
        "kind: Tiers\n"
        "metadata: {name: bench-marketplace}\n"
        "spec:\n"
        f"  tiers: [{', '.join('{name: ' + t + '}' for t in TIERS)}]\n"
        "  features:\n"
        f"{features}"
        "  limits:\n"
        f"{MARKETPLACE_LIMITS}"
    )
    return {"context.yaml": MARKETPLACE_CONTEXT, "tiers.yaml": tiers_doc}


def minimum_tiers(rule: str) -> list[str]:
    """The tiers a feature is granted to directly (casbin policies), from its rule text."""
    if rule.startswith("tiers:"):
        return [t.strip() for t in rule.split("[", 1)[1].split("]", 1)[0].split(",")]
    return [rule.split(",", 1)[0].removeprefix("from:").strip()]


# --------------------------------------------------------------------------- generated large sets

GEN_CONTEXT = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: gen-context}
spec:
  attributes:
    seller: {verified: bool, kyc_level: int}
    metrics: {orders_60d: int, rating: double, claim_rate: double}
"""
GEN_TIERS = 10


def is_conditional(i: int) -> bool:
    return i % 4 == 3


def has_rollout(i: int) -> bool:
    return i % 10 == 7


def gen_condition(i: int) -> str:
    kind = (i // 4) % 4
    if kind == 0:
        return f"metrics.rating >= {3 + (i % 20) / 10:.1f}"
    if kind == 1:
        return f"seller.verified && metrics.orders_60d >= {i % 500}"
    if kind == 2:
        return f"seller.kyc_level >= {i % 4} && metrics.claim_rate < 0.0{i % 9 + 1}"
    return (
        f"seller.verified && metrics.rating >= {3 + (i % 20) / 10:.1f}"
        f" && metrics.claim_rate < 0.0{i % 9 + 1} && seller.kyc_level >= {i % 4}"
    )


def generated_files(n_features: int, n_tiers: int = GEN_TIERS) -> dict[str, str]:
    """A Tiers document with ``n_features`` features and ``n_features // 20`` limits."""
    lines = [
        "apiVersion: tierpolicy/v1",
        "kind: Tiers",
        f"metadata: {{name: gen-{n_features}}}",
        "spec:",
        "  tiers:",
        *(f"    - name: t{k}" for k in range(n_tiers)),
        "  features:",
    ]
    for i in range(n_features):
        lines += [f"    f{i:05d}:", f"      from: t{i % n_tiers}"]
        if is_conditional(i):
            lines.append(f'      when: "{gen_condition(i)}"')
        if has_rollout(i):
            lines.append(f"      rollout: {i % 97 + 1}")
    lines.append("  limits:")
    for j in range(max(1, n_features // 20)):
        lines += [
            f"    l{j:04d}:",
            "      unit: items",
            f"      values: {{t0: {j}, t{n_tiers // 2}: {j * 10}, t{n_tiers - 1}: unlimited}}",
        ]
    return {"context.yaml": GEN_CONTEXT, "tiers.yaml": "\n".join(lines) + "\n"}


def pinned_feature(n_features: int) -> str:
    """An unconditional, fully rolled-out feature from tier t5, near the middle of the set."""
    i = n_features // 2
    while i % GEN_TIERS != 5 or is_conditional(i) or has_rollout(i):
        i -= 1
    return f"f{i:05d}"


GEN_SELLER_TIER = "t8"  # casbin's default role manager follows at most 10 links
GEN_CONTEXT_VALUES: dict[str, Any] = {
    "seller": {"id": SELLER_ID, "tier": GEN_SELLER_TIER, "verified": True, "kyc_level": 3},
    "metrics": {"orders_60d": 900, "rating": 4.9, "claim_rate": 0.001},
}

# --------------------------------------------------------------------------- casbin models

RBAC_MODEL = """\
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"""

CASBIN_CONDITION = "r.sub.verified && r.sub.rating >= 4.5 && r.sub.claim_rate < 0.01 && r.sub.kyc_level >= 2"

ABAC_EVAL_MODEL = """\
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, cond

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub.id, p.sub) && r.obj == p.obj && r.act == p.act && eval(p.cond)
"""

ABAC_MATCHER_MODEL = f"""\
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub.id, p.sub) && r.obj == p.obj && r.act == p.act && (r.obj != "{CONDITIONAL}" || ({CASBIN_CONDITION}))
"""

CASBIN_SUBJECT = {"id": SELLER_ID, "verified": True, "rating": 4.8, "claim_rate": 0.004, "kyc_level": 2}


def casbin_enforcer(
    model_text: str,
    tiers: tuple[str, ...],
    policies: list[list[str]],
    seller_tier: str,
    *,
    fast: bool = False,
) -> Any:
    if fast:
        model = FastModel([1, 2])  # index the policies by (obj, act)
        model.load_model_from_text(model_text)
        enforcer = casbin.FastEnforcer(model, cache_key_order=[1, 2])
    else:
        model = Model()
        model.load_model_from_text(model_text)
        enforcer = casbin.Enforcer(model)
    links = [[tiers[k], tiers[k - 1]] for k in range(1, len(tiers))]
    enforcer.add_grouping_policies([*links, [SELLER_ID, seller_tier]])
    enforcer.add_policies(policies)
    return enforcer


def marketplace_policies(*, with_condition: bool) -> list[list[str]]:
    policies = []
    for name, rule in MARKETPLACE_FEATURES:
        if "enabled: false" in rule:
            continue
        for tier in minimum_tiers(rule):
            if with_condition:
                policies.append([tier, name, "use", CASBIN_CONDITION if name == CONDITIONAL else "True"])
            else:
                policies.append([tier, name, "use"])
    return policies


def generated_policies(n_features: int) -> list[list[str]]:
    return [[f"t{i % GEN_TIERS}", f"f{i:05d}", "use"] for i in range(n_features)]


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True)
class Case:
    """One statement to time, with the names it uses."""

    key: str
    label: str
    stmt: str
    namespace: dict[str, Any]


def measure(cases: list[Case], cfg: Config) -> dict[str, Result]:
    """Time each case in batches, taking the samples of all cases in turn.

    Interleaving means a burst of background load hits every case of the group alike,
    so ratios within a group stay honest on a busy machine. The garbage collector stays
    enabled inside the timing loop. The statement is inlined in timeit's loop; the
    clocks are read only before and after each batch.
    """
    plans = []
    for case in cases:
        timer = timeit.Timer(
            case.stmt,
            setup="import gc as _gc; _gc.enable()",
            timer=stamp,  # type: ignore[arg-type]
            globals=case.namespace,
        )
        # Calibrate (this also warms up the specialising interpreter and caches).
        n = 1
        while True:
            elapsed = timer.timeit(n)[0]
            if elapsed >= cfg.sample_ns // 10 or n >= cfg.max_batch:
                break
            n = min(cfg.max_batch, n * 4)
        # The best of three: a calibration run hit by background load must not shrink the batch.
        per_call = max(min(elapsed, timer.timeit(n)[0], timer.timeit(n)[0]) / n, 1.0)
        batch = int(max(1, min(cfg.max_batch, cfg.sample_ns // per_call)))
        samples = cfg.samples
        if per_call * batch * samples > cfg.case_budget_ns:
            samples = max(cfg.min_samples, int(cfg.case_budget_ns // (per_call * batch)))
        timer.timeit(batch)  # warm-up batch, discarded
        plans.append((case, timer, batch, samples, [], []))
    for round_ in range(max(plan[3] for plan in plans)):
        for _case, timer, batch, samples, wall, cpu in plans:
            if round_ < samples:
                wall_ns, cpu_ns = timer.timeit(batch)
                wall.append(wall_ns / batch)
                cpu.append(cpu_ns / batch)
    return {
        case.key: Result(case.label, batch, wall, cpu) for case, _timer, batch, _samples, wall, cpu in plans
    }


def time_load(files: dict[str, str], runs: int) -> tuple[list[float], list[float], Any]:
    """Wall-clock and CPU seconds of ``runs`` loads, and the last policy set."""
    seconds, cpu_seconds = [], []
    policy_set = None
    for _ in range(runs):
        policy_set = None  # drop the previous set before timing the next load
        start = stamp()
        policy_set = tierpolicy.load_files(files)
        wall_ns, cpu_ns = stamp() - start
        seconds.append(wall_ns / 1e9)
        cpu_seconds.append(cpu_ns / 1e9)
    return seconds, cpu_seconds, policy_set


# --------------------------------------------------------------------------- the run


def run(cfg: Config, *, progress: bool) -> dict[str, Any]:
    def say(text: str) -> None:
        if progress:
            print(f"  .. {text}", file=sys.stderr, flush=True)

    assert gc.isenabled()

    # 1 and 3. tierpolicy on the marketplace-like set, and the floor -------------------
    engine = tierpolicy.Engine(tierpolicy.load_files(marketplace_files()))
    assert len(engine.features) == 15
    assert len(engine.limits) == 5
    decision = engine.check(UNCONDITIONAL, CONTEXT)
    assert decision.allowed
    assert decision.reason is tierpolicy.Reason.TIER_MATCH
    decision = engine.check(CONDITIONAL, CONTEXT)
    # Every clause holds, so all 4 are evaluated; the allow names the condition or the tier.
    assert decision.allowed, decision
    assert decision.reason in {"TIER_MATCH", "CONDITION_MATCH"}, decision
    assert engine.limit(LIMIT, CONTEXT).value == 50_000
    assert len(engine.entitlements(CONTEXT).features) == 15

    tier_allows = {}
    for name, rule in MARKETPLACE_FEATURES:
        granted = minimum_tiers(rule)
        for k, tier in enumerate(TIERS):
            if rule.startswith("tiers:"):
                tier_allows[tier, name] = tier in granted
            else:
                tier_allows[tier, name] = k >= TIERS.index(granted[0])

    def allowed(tier: str, feature: str) -> bool:
        return tier_allows[tier, feature]

    assert allowed(SELLER_TIER, UNCONDITIONAL)
    ns: dict[str, Any] = {"engine": engine, "ctx": CONTEXT, "now": NOW}
    say("tierpolicy decisions and the floor")
    results = measure(
        [
            Case("loop", "empty timing loop (overhead in every row)", "pass", {}),
            Case(
                "floor",
                "floor: allowed[(tier, feature)] in a function",
                "allowed(tier, feature)",
                {"allowed": allowed, "tier": SELLER_TIER, "feature": UNCONDITIONAL},
            ),
            Case(
                "tp_check",
                "tierpolicy check, unconditional",
                "engine.check(feature, ctx)",
                {**ns, "feature": UNCONDITIONAL},
            ),
            Case(
                "tp_check_now",
                "tierpolicy check, unconditional, now= given",
                "engine.check(feature, ctx, now=now)",
                {**ns, "feature": UNCONDITIONAL},
            ),
            Case(
                "tp_check_cond",
                "tierpolicy check, 4-clause condition",
                "engine.check(feature, ctx)",
                {**ns, "feature": CONDITIONAL},
            ),
            Case(
                "tp_check_cond_now",
                "tierpolicy check, 4-clause condition, now= given",
                "engine.check(feature, ctx, now=now)",
                {**ns, "feature": CONDITIONAL},
            ),
            Case("tp_limit", "tierpolicy limit", "engine.limit(name, ctx)", {**ns, "name": LIMIT}),
            Case(
                "tp_entitlements",
                "tierpolicy entitlements (15 features, 5 limits)",
                "engine.entitlements(ctx)",
                ns,
            ),
        ],
        cfg,
    )

    # 2. casbin -----------------------------------------------------------------------
    rbac = casbin_enforcer(RBAC_MODEL, TIERS, marketplace_policies(with_condition=False), SELLER_TIER)
    rbac_fast = casbin_enforcer(
        RBAC_MODEL, TIERS, marketplace_policies(with_condition=False), SELLER_TIER, fast=True
    )
    abac_eval = casbin_enforcer(
        ABAC_EVAL_MODEL, TIERS, marketplace_policies(with_condition=True), SELLER_TIER
    )
    abac_matcher = casbin_enforcer(
        ABAC_MATCHER_MODEL, TIERS, marketplace_policies(with_condition=False), SELLER_TIER
    )
    for enforcer in (rbac, rbac_fast):
        assert enforcer.enforce(SELLER_ID, UNCONDITIONAL, "use")
        assert not enforcer.enforce(SELLER_ID, "support.dedicated_manager", "use")
    for enforcer in (abac_eval, abac_matcher):
        assert enforcer.enforce(CASBIN_SUBJECT, CONDITIONAL, "use")
        assert not enforcer.enforce({**CASBIN_SUBJECT, "rating": 4.4}, CONDITIONAL, "use")
        assert enforcer.enforce(CASBIN_SUBJECT, UNCONDITIONAL, "use")
    cns = {"sub": SELLER_ID, "act": "use"}
    say("casbin")
    results |= measure(
        [
            Case(
                "casbin_rbac",
                "casbin Enforcer RBAC enforce, unconditional",
                "enforcer.enforce(sub, obj, act)",
                {**cns, "enforcer": rbac, "obj": UNCONDITIONAL},
            ),
            Case(
                "casbin_rbac_fast",
                "casbin FastEnforcer RBAC enforce, unconditional",
                "enforcer.enforce(sub, obj, act)",
                {**cns, "enforcer": rbac_fast, "obj": UNCONDITIONAL},
            ),
            Case(
                "casbin_abac_eval",
                "casbin ABAC enforce, 4 clauses as eval(p.cond)",
                "enforcer.enforce(sub, obj, act)",
                {**cns, "enforcer": abac_eval, "obj": CONDITIONAL, "sub": CASBIN_SUBJECT},
            ),
            Case(
                "casbin_abac_matcher",
                "casbin ABAC enforce, 4 clauses in the matcher",
                "enforcer.enforce(sub, obj, act)",
                {**cns, "enforcer": abac_matcher, "obj": CONDITIONAL, "sub": CASBIN_SUBJECT},
            ),
        ],
        cfg,
    )
    del rbac, rbac_fast, abac_eval, abac_matcher

    # 5. load + compile (before 4: its sets are reused there) --------------------------
    compile_rows: dict[int, dict[str, Any]] = {}
    sets: dict[int, Any] = {}
    for n, runs in sorted(cfg.compile_runs.items()):
        files = generated_files(n)
        say(f"load_files, {n:,} features x {runs} runs")
        seconds, cpu_seconds, policy_set = time_load(files, runs)
        compile_rows[n] = {
            "runs": runs,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "cpu_median_s": statistics.median(cpu_seconds),
            "yaml_bytes": sum(len(v.encode()) for v in files.values()),
            "features": n,
            "conditional": sum(is_conditional(i) for i in range(n)),
            "rollouts": sum(has_rollout(i) for i in range(n)),
            "limits": max(1, n // 20),
            "tiers": GEN_TIERS,
        }
        sets[n] = policy_set
    for n in cfg.scaling_sizes:
        if n not in sets:
            say(f"load_files, {n:,} features (for the scaling rows)")
            sets[n] = tierpolicy.load_files(generated_files(n))
    gc.collect()

    # 4. decision cost against the number of rules -------------------------------------
    tp_cases = []
    for n in cfg.scaling_sizes:
        feature = pinned_feature(n)
        scaled = tierpolicy.Engine(sets[n])
        assert len(scaled.features) == n
        assert scaled.check(feature, GEN_CONTEXT_VALUES).reason is tierpolicy.Reason.TIER_MATCH
        tp_cases.append(
            Case(
                str(n),
                f"tierpolicy check ({n:,} features)",
                "engine.check(feature, ctx)",
                {"engine": scaled, "feature": feature, "ctx": GEN_CONTEXT_VALUES},
            )
        )
    say("scaling, tierpolicy (sizes interleaved)")
    tp_scaling = measure(tp_cases, cfg)
    del tp_cases, sets
    gc.collect()
    scaling: dict[int, dict[str, Result]] = {n: {"tp_check": tp_scaling[str(n)]} for n in cfg.scaling_sizes}
    tiers = tuple(f"t{k}" for k in range(GEN_TIERS))
    for n in cfg.scaling_sizes:
        feature = pinned_feature(n)
        say(f"scaling, casbin, {n:,} features")
        cases = []
        for key, fast in (("casbin_rbac_fast", True), ("casbin_rbac", False)):
            enforcer = casbin_enforcer(RBAC_MODEL, tiers, generated_policies(n), GEN_SELLER_TIER, fast=fast)
            assert enforcer.enforce(SELLER_ID, feature, "use")
            namespace = {"enforcer": enforcer, "sub": SELLER_ID, "obj": feature, "act": "use"}
            cases.append(Case(key, f"{key} ({n:,} features)", "enforcer.enforce(sub, obj, act)", namespace))
        scaling[n] |= measure(cases, cfg)
        del cases
    gc.collect()

    return {"results": results, "scaling": scaling, "compile": compile_rows}


# --------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "compiler": platform.python_compiler(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "tierpolicy": getattr(tierpolicy, "__version__", "source checkout"),
        "tierpolicy_path": str(Path(tierpolicy.__file__).parent),
        "casbin": _casbin_version(),
        "gc_enabled": gc.isenabled(),
        "loadavg_start": loadavg(),
    }


def _casbin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("casbin")
    except PackageNotFoundError:
        return "unknown"


def targets(out: dict[str, Any], cfg: Config) -> list[Target]:
    res: dict[str, Result] = out["results"]
    unconditional, conditional = res["tp_check"], res["tp_check_cond"]
    rows = [
        Target(
            "unconditional check <= 0.5 µs (median)",
            f"{fmt_ns(unconditional.median)} (CPU time {fmt_ns(unconditional.cpu_median)})",
            unconditional.median <= 500,
            unconditional.cpu_median <= 500,
        ),
        Target(
            "conditional check (4 clauses) <= 1 µs (median)",
            f"{fmt_ns(conditional.median)} (CPU time {fmt_ns(conditional.cpu_median)})",
            conditional.median <= 1_000,
            conditional.cpu_median <= 1_000,
        ),
    ]
    sizes = cfg.scaling_sizes
    medians = [out["scaling"][n]["tp_check"].median for n in sizes]
    cpu_medians = [out["scaling"][n]["tp_check"].cpu_median for n in sizes]
    spread = max(medians) / min(medians)
    cpu_spread = max(cpu_medians) / min(cpu_medians)
    rows.append(
        Target(
            (
                f"decision cost flat in the number of rules ({sizes[0]:,} to {sizes[-1]:,} features;"
                " flat = largest/smallest median <= 1.25)"
            ),
            f"{fmt_ns(min(medians))} to {fmt_ns(max(medians))} (x{spread:.2f}; CPU time x{cpu_spread:.2f})",
            spread <= 1.25,
            cpu_spread <= 1.25,
        )
    )
    if 1_000 in out["compile"]:
        row = out["compile"][1_000]
        rows.append(
            Target(
                "load + compile of 1,000 features < 1 s",
                f"{row['median_s']:.3f} s (CPU time {row['cpu_median_s']:.3f} s)",
                row["median_s"] < 1.0,
                row["cpu_median_s"] < 1.0,
            )
        )
    return rows


def report(out: dict[str, Any], cfg: Config, info: dict[str, Any], mode: str) -> str:
    res: dict[str, Result] = out["results"]
    floor = res["floor"].median
    lines = [
        f"### tierpolicy engine benchmark ({mode} run)",
        "",
        (
            f"Python {info['python']} ({info['implementation']}, {info['compiler']}), {info['platform']},"
            f" {info['cpus']} CPUs; casbin {info['casbin']}; gc enabled: {info['gc_enabled']};"
            f" load average {info['loadavg_start']} at start, {info.get('loadavg_end')} at end;"
            f" {info.get('wall_seconds')} s wall."
        ),
        (
            f"Up to {cfg.max_batch:,} calls per sample, {cfg.samples} samples per case (fewer for slow"
            " cases, see `batch x samples`), samples of a group interleaved; times are wall-clock per call"
            " (CPU-time median: the thread's own CPU time, without waits for a CPU) and include the"
            f" timing loop's own overhead ({fmt_ns(res['loop'].median)} per iteration)."
        ),
        "",
        "#### Per decision (marketplace-like set: 4 tiers, 15 features, 5 limits)",
        "",
        "| case | median | p90 | min | CPU-time median | x floor | batch x samples |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = [
        "loop",
        "floor",
        "tp_check",
        "tp_check_now",
        "tp_check_cond",
        "tp_check_cond_now",
        "tp_limit",
        "tp_entitlements",
        "casbin_rbac",
        "casbin_rbac_fast",
        "casbin_abac_eval",
        "casbin_abac_matcher",
    ]
    for key in order:
        r = res[key]
        lines.append(
            f"| {r.name} | {fmt_ns(r.median)} | {fmt_ns(r.p90)} | {fmt_ns(r.minimum)} |"
            f" {fmt_ns(r.cpu_median)} | {r.median / floor:,.1f} |"
            f" {r.batch:,} x {len(r.per_call_ns)} |"
        )

    def ratio(a: str, b: str) -> str:
        return f"{res[a].median / res[b].median:,.0f}x"

    lines += [
        "",
        "Ratios (medians):",
        "",
        f"- casbin `Enforcer` RBAC / tierpolicy unconditional check: **{ratio('casbin_rbac', 'tp_check')}**",
        f"- casbin `FastEnforcer` RBAC / tierpolicy unconditional check: **{ratio('casbin_rbac_fast', 'tp_check')}**",
        f"- casbin ABAC `eval(p.cond)` / tierpolicy conditional check: **{ratio('casbin_abac_eval', 'tp_check_cond')}**",
        f"- casbin ABAC matcher / tierpolicy conditional check: **{ratio('casbin_abac_matcher', 'tp_check_cond')}**",
        f"- tierpolicy unconditional check / floor: **{res['tp_check'].median / floor:.1f}x**",
        "",
        f"#### Decision cost against the number of rules ({GEN_TIERS} tiers, generated sets)",
        "",
        "| features | tierpolicy check median | p90 | min | CPU-time median | casbin FastEnforcer median | casbin Enforcer median |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, row in out["scaling"].items():
        lines.append(
            f"| {n:,} | {fmt_ns(row['tp_check'].median)} | {fmt_ns(row['tp_check'].p90)} |"
            f" {fmt_ns(row['tp_check'].minimum)} | {fmt_ns(row['tp_check'].cpu_median)} |"
            f" {fmt_ns(row['casbin_rbac_fast'].median)} | {fmt_ns(row['casbin_rbac'].median)} |"
        )
    lines += [
        "",
        f"#### Load + compile (`tierpolicy.load_files`, {GEN_TIERS} tiers, in-memory YAML)",
        "",
        "| features | conditions | rollouts | limits | YAML | runs | median | min | CPU-time median | per feature | growth |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    previous = None
    for n, row in out["compile"].items():
        growth = "" if previous is None else f"x{row['median_s'] / previous:.1f}"
        previous = row["median_s"]
        lines.append(
            f"| {n:,} | {row['conditional']:,} | {row['rollouts']:,} | {row['limits']:,} |"
            f" {row['yaml_bytes'] / 1024:,.0f} KiB | {row['runs']} | {row['median_s']:.3f} s |"
            f" {row['min_s']:.3f} s | {row['cpu_median_s']:.3f} s | {row['median_s'] / n * 1e6:,.0f} µs | {growth} |"
        )
    lines += ["", "#### Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    lines.extend(f"| {t.name} | {t.measured} | {t.verdict} |" for t in targets(out, cfg))
    return "\n".join(lines)


def to_json(out: dict[str, Any], cfg: Config, info: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "machine": info,
        "config": {
            "max_batch": cfg.max_batch,
            "samples": cfg.samples,
            "sample_ns": cfg.sample_ns,
            "timer": "time.perf_counter_ns (wall) and time.thread_time_ns (CPU) around timeit.Timer batches, gc enabled",
        },
        "cases": {key: {"name": r.name, **r.to_json()} for key, r in out["results"].items()},
        "scaling": {
            str(n): {key: {"name": r.name, **r.to_json()} for key, r in row.items()}
            for n, row in out["scaling"].items()
        },
        "compile": {str(n): row for n, row in out["compile"].items()},
        "targets": [dataclasses.asdict(t) for t in targets(out, cfg)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (< 10 s)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the raw numbers as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    info = machine()
    started = time.perf_counter()
    out = run(cfg, progress=not args.quiet)
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    info["loadavg_end"] = loadavg()
    print(report(out, cfg, info, mode))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(out, cfg, info, mode), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
