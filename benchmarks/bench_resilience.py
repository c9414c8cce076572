"""Benchmark of the resilience executor, breaker and classifier against tenacity, stamina and pybreaker.

One run, one process, one machine state, measures:

1. the success-path overhead of one call through the tierpolicy executor, sync
   (``executor.run``, and the ``@executor.resilient`` decorator) and async
   (``await executor.arun``, and the decorator on a coroutine function), under a policy
   with retry and a circuit breaker, and under one with retry only; against tenacity's
   ``@retry`` (``stop_after_attempt(3)``, ``wait_exponential_jitter``), stamina's
   ``@retry`` (``on=Exception, attempts=3``) and pybreaker's ``CircuitBreaker.call``,
   each wrapping the same trivial function; the bare call of that function is the
   floor, and *overhead* is a row's median minus the floor's;
2. the breaker alone on a closed breaker: ``acquire`` + ``record`` of tierpolicy's
   ``InMemoryBreakerStore`` (count and time window), the same two steps done by the pure
   step functions under a lock (what the in-memory store did before it kept its window
   in place), and pybreaker's ``call`` minus the floor;
3. classification of an exception (``engine.classify(exc, operation=...)``) against a
   generated 50-rule Errors policy: matched by exception type, by HTTP status and
   domain, and by the catch-all; and its two halves (``ErrorInfo.from_exception`` and
   ``ErrorModel.classify``);
4. classification against 10, 50, 500, 1,000 and 5,000 rules (is the cost flat?). One
   Errors document holds at most 1,000 rules, so the 5,000-rule model is assembled in
   memory from five loaded 1,000-rule sets (``ErrorModel`` over their rules).

Method (the one of ``bench_engine.py``): ``timeit.Timer`` with the statement inlined in
the timing loop (for async cases, the statement inlined in an ``async def`` loop run by
``loop.run_until_complete``, one per batch) and the clocks (``time.perf_counter_ns`` for
wall time, ``time.thread_time_ns`` for the thread's CPU time) read around each batch;
batches of up to 10,000 calls per sample (fewer for slow calls, so a sample takes about
10 ms), 31 samples after a calibration and a warm-up batch, the samples of the cases of
one group taken in turn so background load hits them alike. The median, p90 and minimum
of the per-call wall time over the samples are reported, and the median CPU time. The
garbage collector stays ON. Inputs are pinned.

Usage::

    python benchmarks/bench_resilience.py               # full run, ~15 s
    python benchmarks/bench_resilience.py --quick       # smoke run, ~2 s
    python benchmarks/bench_resilience.py --json out.json

Needs ``pip install -e '.[bench]'`` (tierpolicy, tenacity, stamina, pybreaker). Run from
a source checkout without installing, ``src/`` is put on the path.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import sys
import threading
import time
import timeit
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import pybreaker
    import stamina
    import tenacity
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    sys.exit(f"{exc.name} is missing: install the benchmark extra with  pip install -e '.[bench]'")


from _harness import Result, Target, fmt_ns, import_tierpolicy, loadavg, stamp

tierpolicy = import_tierpolicy()

from tierpolicy.engine._breaker import (  # noqa: E402  after the path set-up above
    BreakerData,
    InMemoryBreakerStore,
    acquire_step,
    record_step,
)
from tierpolicy.engine._classification import ErrorModel  # noqa: E402
from tierpolicy.engine._errorinfo import ErrorInfo  # noqa: E402
from tierpolicy.engine._executor import Executor  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """How hard to measure."""

    max_batch: int
    samples: int
    min_samples: int
    sample_ns: int
    case_budget_ns: int
    rule_counts: tuple[int, ...]


FULL = Config(
    max_batch=10_000,
    samples=31,
    min_samples=7,
    sample_ns=10_000_000,
    case_budget_ns=4_000_000_000,
    rule_counts=(10, 50, 500, 1_000, 5_000),
)
QUICK = Config(
    max_batch=2_000,
    samples=9,
    min_samples=3,
    sample_ns=2_000_000,
    case_budget_ns=200_000_000,
    rule_counts=(10, 50, 500, 1_000),
)

# --------------------------------------------------------------------------- policies

RETRY = "{max_attempts: 3, initial_delay: 100ms, multiplier: 2, max_delay: 10s, jitter: full}"
RESILIENCE = f"""\
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {{name: bench-resilience}}
spec:
  operations:
    bench.guarded:
      retry: {RETRY}
      circuit_breaker:
        window: {{type: count, size: 100}}
        minimum_calls: 20
        failure_rate_threshold: 50
        wait_in_open: 30s
        permitted_calls_in_half_open: 3
    bench.timed:
      retry: {RETRY}
      circuit_breaker:
        window: {{type: time, size: 60s}}
        minimum_calls: 20
        failure_rate_threshold: 50
        wait_in_open: 30s
        permitted_calls_in_half_open: 3
    bench.retry:
      retry: {RETRY}
"""
GUARDED, TIMED, RETRY_ONLY = "bench.guarded", "bench.timed", "bench.retry"
OPERATION = "payments.capture"
ERROR_MODULE = "benchpeers.errors"
CATEGORIES = ("transient", "throttled", "unavailable", "internal", "invalid_request", "conflict", "not_found")


def rule_kind(i: int) -> int:
    """0 exception; 1 status and domain; 2 reason and domain; 3 exception and message; 4 exception, operation, condition."""
    return i % 5


def rule_status(i: int) -> int:
    return 400 + (i * 7) % 200


def rule_match(i: int) -> str:
    kind = rule_kind(i)
    if kind == 0:
        return f"{{exception: {ERROR_MODULE}.Gen{i}Error}}"
    if kind == 1:
        return f"{{status: {rule_status(i)}, domain: svc{i}.example}}"
    if kind == 2:
        return f"{{reason: REASON_{i}, domain: svc{i}.example}}"
    if kind == 3:
        return f"{{exception: {ERROR_MODULE}.Gen{i}Error, message: '^failed after [0-9]+ tries$'}}"
    return (
        f"{{exception: {ERROR_MODULE}.Gen{i}Error, operation: 'svc{i}.*',"
        " when: 'has(error.status) && error.status >= 500'}"
    )


PLACEHOLDER_CODE = 5
"""The one code whose message has a placeholder (rendered per call); the marketplace has 3 of 33."""


def code_message(k: int) -> str:
    if k == PLACEHOLDER_CODE:
        return "{operation} failed with code 5. Try again later."
    return f"Code {k}: the request failed. Try again later."


def errors_document(n_rules: int, *, first: int = 0) -> str:
    """An Errors document with ``n_rules`` rules (the last a catch-all) and 11 codes."""
    codes = [
        f"    CODE_{k}: {{category: {CATEGORIES[k % len(CATEGORIES)]}, status: {500 + k},"
        f" retryable: {'true' if k % 2 else 'false'}, title: Code {k}, message: '{code_message(k)}'}}"
        for k in range(10)
    ]
    codes.append(
        "    INTERNAL: {category: internal, status: 500, title: Internal, message: 'Something went wrong.'}"
    )
    rules = [
        f"    - {{name: r{i}, match: {rule_match(i)}, code: CODE_{i % 10}}}"
        for i in range(first, first + n_rules - 1)
    ]
    rules.append("    - {name: internal, code: INTERNAL}")
    return (
        "apiVersion: tierpolicy/v1\nkind: Errors\nmetadata: {name: bench-errors}\nspec:\n  codes:\n"
        + "\n".join(codes)
        + "\n  rules:\n"
        + "\n".join(rules)
        + "\n"
    )


class UpstreamHTTPError(Exception):
    """An HTTP client's error with a status and the domain of the service that sent it."""

    def __init__(self, status_code: int, domain: str) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.domain = domain


def generated_error(i: int) -> type[Exception]:
    """The exception class rule ``i`` names (``benchpeers.errors.Gen<i>Error``)."""
    return type(f"Gen{i}Error", (Exception,), {"__module__": ERROR_MODULE, "__qualname__": f"Gen{i}Error"})


def rule_near(n_rules: int, kind: int, *, code: int | None = None) -> int:
    """The last rule of ``kind`` (giving ``code``) at or before 80 % of the set: near its end."""
    i = (n_rules * 4) // 5
    while (
        rule_kind(i) != kind
        or (code is not None and i % 10 != code)
        or (code is None and i % 10 == PLACEHOLDER_CODE)
    ):
        i -= 1
    return i


def type_matched(n_rules: int, *, code: int | None = None) -> Exception:
    return generated_error(rule_near(n_rules, 0, code=code))("upstream failed")


def status_matched(n_rules: int) -> Exception:
    i = rule_near(n_rules, 1)
    return UpstreamHTTPError(rule_status(i), f"svc{i}.example")


def assembled_model(n_rules: int) -> ErrorModel:
    """An ErrorModel of ``n_rules`` rules from 1,000-rule documents (one document's limit)."""
    rules: list[Any] = []
    codes: dict[str, Any] = {}
    version = ""
    chunk = 1_000
    for first in range(0, n_rules - 1, chunk - 1):
        count = min(chunk - 1, n_rules - 1 - first)
        model = tierpolicy.load_files({"errors.yaml": errors_document(count + 1, first=first)}).model(
            "Errors"
        )
        rules.extend(model.rules[:-1])
        catch_all = model.rules[-1]
        codes, version = model.codes, model.policy_version
    rules.append(catch_all)
    reindexed = tuple(dataclasses.replace(rule, index=k) for k, rule in enumerate(rules))
    return ErrorModel(codes, reindexed, version)


# --------------------------------------------------------------------------- the wrapped function and the peers


def trivial() -> int:
    return 42


async def atrivial() -> int:
    return 42


WAIT = tenacity.wait_exponential_jitter(multiplier=0.1, max=10)


@tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=WAIT, reraise=True)
def tenacity_trivial() -> int:
    return 42


@tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=WAIT, reraise=True)
async def tenacity_atrivial() -> int:
    return 42


@stamina.retry(on=Exception, attempts=3, wait_initial=0.1, wait_max=10)
def stamina_trivial() -> int:
    return 42


@stamina.retry(on=Exception, attempts=3, wait_initial=0.1, wait_max=10)
async def stamina_atrivial() -> int:
    return 42


class PureStepStore:
    """The pure step functions under one lock: the in-memory store before its in-place window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, BreakerData] = {}

    def acquire(self, key: str, policy: Any, now: float) -> Any:
        with self._lock:
            data, answer = acquire_step(self._data.get(key, BreakerData()), key, policy, now)
            self._data[key] = data
            return answer

    def record(self, key: str, policy: Any, permit: Any, outcome: Any, duration: float, now: float) -> Any:
        with self._lock:
            data, transitions = record_step(
                self._data.get(key, BreakerData()), key, policy, permit, outcome, duration, now
            )
            self._data[key] = data
            return transitions


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True)
class Case:
    """One statement to time, with the names it uses; ``is_async`` statements may await."""

    key: str
    label: str
    stmt: str
    namespace: dict[str, Any]
    is_async: bool = False
    floor: str | None = None


_ASYNC_BATCH = """\
async def _batch(_n, _stamp=stamp):
    _start = _stamp()
    for _i in range(_n):
        {stmt}
    return _stamp() - _start
"""


def _runner(case: Case, loop: asyncio.AbstractEventLoop) -> Callable[[int], tuple[int, int]]:
    """A function that runs the case's statement ``n`` times and returns (wall, CPU) ns."""
    if not case.is_async:
        timer = timeit.Timer(
            case.stmt,
            setup="import gc as _gc; _gc.enable()",
            timer=stamp,  # type: ignore[arg-type]
            globals=case.namespace,
        )
        return timer.timeit  # type: ignore[return-value]
    namespace = {**case.namespace, "stamp": stamp}
    exec(_ASYNC_BATCH.format(stmt=case.stmt), namespace)  # noqa: S102  the benchmark's own statements
    batch = namespace["_batch"]
    return lambda n: loop.run_until_complete(batch(n))


def measure(cases: list[Case], cfg: Config, loop: asyncio.AbstractEventLoop) -> dict[str, Result]:
    """Time each case in batches, taking the samples of all cases in turn (gc enabled)."""
    plans = []
    for case in cases:
        run = _runner(case, loop)
        n = 1
        while True:
            elapsed = run(n)[0]
            if elapsed >= cfg.sample_ns // 10 or n >= cfg.max_batch:
                break
            n = min(cfg.max_batch, n * 4)
        # The best of three: a calibration run hit by background load must not shrink the batch.
        per_call = max(min(elapsed, run(n)[0], run(n)[0]) / n, 1.0)
        batch = int(max(1, min(cfg.max_batch, cfg.sample_ns // per_call)))
        samples = cfg.samples
        if per_call * batch * samples > cfg.case_budget_ns:
            samples = max(cfg.min_samples, int(cfg.case_budget_ns // (per_call * batch)))
        run(batch)  # warm-up batch, discarded
        plans.append((case, run, batch, samples, [], []))
    for round_ in range(max(plan[3] for plan in plans)):
        for _case, run, batch, samples, wall, cpu in plans:
            if round_ < samples:
                wall_ns, cpu_ns = run(batch)
                wall.append(wall_ns / batch)
                cpu.append(cpu_ns / batch)
    return {
        case.key: Result(case.label, batch, wall, cpu, case.floor)
        for case, _run, batch, _samples, wall, cpu in plans
    }


# --------------------------------------------------------------------------- the run


def run(cfg: Config, *, progress: bool) -> dict[str, Any]:
    def say(text: str) -> None:
        if progress:
            print(f"  .. {text}", file=sys.stderr, flush=True)

    assert gc.isenabled()
    loop = asyncio.new_event_loop()
    try:
        return _run(cfg, loop, say)
    finally:
        loop.close()


def _run(cfg: Config, loop: asyncio.AbstractEventLoop, say: Callable[[str], None]) -> dict[str, Any]:
    policy_set = tierpolicy.load_files({"resilience.yaml": RESILIENCE, "errors.yaml": errors_document(50)})
    engine = tierpolicy.Engine(policy_set)
    executor = Executor(engine)
    guarded, timed = executor.policy_for(GUARDED), executor.policy_for(TIMED)
    assert guarded.retry is not None
    assert guarded.breaker is not None
    assert executor.policy_for(RETRY_ONLY).breaker is None
    assert guarded.breaker.window_type == "count"
    assert timed.breaker is not None
    guarded_trivial = executor.resilient(GUARDED)(trivial)
    guarded_atrivial = executor.resilient(GUARDED)(atrivial)
    breaker = pybreaker.CircuitBreaker(fail_max=50, reset_timeout=30)
    for fn in (guarded_trivial, tenacity_trivial, stamina_trivial):
        assert fn() == 42
    assert executor.run(GUARDED, trivial) == 42
    assert breaker.call(trivial) == 42
    for coro in (
        guarded_atrivial(),
        tenacity_atrivial(),
        stamina_atrivial(),
        executor.arun(GUARDED, atrivial),
    ):
        assert loop.run_until_complete(coro) == 42
    assert executor.breaker_store.snapshot(GUARDED, time.monotonic()).state.value == "closed"

    ns: dict[str, Any] = {"executor": executor, "trivial": trivial, "atrivial": atrivial}
    say("success path, sync")
    sync = measure(
        [
            Case("loop", "empty timing loop (overhead in every row)", "pass", {}),
            Case("floor", "floor: trivial()", "trivial()", ns),
            Case(
                "tp_run",
                "tierpolicy executor.run, retry + breaker",
                "executor.run(op, trivial)",
                {**ns, "op": GUARDED},
                floor="floor",
            ),
            Case(
                "tp_run_retry",
                "tierpolicy executor.run, retry only",
                "executor.run(op, trivial)",
                {**ns, "op": RETRY_ONLY},
                floor="floor",
            ),
            Case(
                "tp_decorated",
                "tierpolicy @executor.resilient, retry + breaker",
                "fn()",
                {"fn": guarded_trivial},
                floor="floor",
            ),
            Case(
                "tenacity",
                "tenacity @retry (stop_after_attempt(3), wait_exponential_jitter)",
                "fn()",
                {"fn": tenacity_trivial},
                floor="floor",
            ),
            Case(
                "stamina",
                "stamina @retry (on=Exception, attempts=3)",
                "fn()",
                {"fn": stamina_trivial},
                floor="floor",
            ),
            Case(
                "pybreaker",
                "pybreaker CircuitBreaker.call",
                "breaker.call(trivial)",
                {"breaker": breaker, "trivial": trivial},
                floor="floor",
            ),
        ],
        cfg,
        loop,
    )
    say("success path, async")
    async_ = measure(
        [
            Case("aloop", "empty async timing loop (overhead in every row)", "pass", {}, is_async=True),
            Case("afloor", "floor: await atrivial()", "await atrivial()", ns, is_async=True),
            Case(
                "tp_arun",
                "tierpolicy await executor.arun, retry + breaker",
                "await executor.arun(op, atrivial)",
                {**ns, "op": GUARDED},
                is_async=True,
                floor="afloor",
            ),
            Case(
                "tp_arun_retry",
                "tierpolicy await executor.arun, retry only",
                "await executor.arun(op, atrivial)",
                {**ns, "op": RETRY_ONLY},
                is_async=True,
                floor="afloor",
            ),
            Case(
                "tp_adecorated",
                "tierpolicy @executor.resilient async, retry + breaker",
                "await fn()",
                {"fn": guarded_atrivial},
                is_async=True,
                floor="afloor",
            ),
            Case(
                "tenacity_async",
                "tenacity @retry async",
                "await fn()",
                {"fn": tenacity_atrivial},
                is_async=True,
                floor="afloor",
            ),
            Case(
                "stamina_async",
                "stamina @retry async",
                "await fn()",
                {"fn": stamina_atrivial},
                is_async=True,
                floor="afloor",
            ),
        ],
        cfg,
        loop,
    )

    # 2. the breaker alone -------------------------------------------------------------
    count_store, time_store, pure_store = InMemoryBreakerStore(), InMemoryBreakerStore(), PureStepStore()
    now = time.monotonic()
    step = (
        "permit = store.acquire(key, policy, now); store.record(key, policy, permit, 'success', 0.001, now)"
    )
    bns = {"key": "bench", "now": now}
    say("the breaker alone")
    breaker_results = measure(
        [
            Case("bfloor", "floor: trivial()", "trivial()", ns),
            Case(
                "tp_breaker",
                "tierpolicy InMemoryBreakerStore acquire + record, count window (100)",
                step,
                {**bns, "store": count_store, "policy": guarded.breaker},
            ),
            Case(
                "tp_breaker_time",
                "tierpolicy InMemoryBreakerStore acquire + record, time window (60 s)",
                step,
                {**bns, "store": time_store, "policy": timed.breaker},
            ),
            Case(
                "tp_breaker_pure",
                "pure step functions under a lock (the store before this change), count window (100)",
                step,
                {**bns, "store": pure_store, "policy": guarded.breaker},
            ),
            Case(
                "pybreaker_alone",
                "pybreaker CircuitBreaker.call(trivial)",
                "breaker.call(trivial)",
                {"breaker": pybreaker.CircuitBreaker(fail_max=50, reset_timeout=30), "trivial": trivial},
                floor="bfloor",
            ),
        ],
        cfg,
        loop,
    )
    assert count_store.snapshot("bench", now).calls == 100
    assert pure_store.acquire("bench", guarded.breaker, now).state.value == "closed"

    # 3. classification at 50 rules -----------------------------------------------------
    by_type, by_status, other = type_matched(50), status_matched(50), RuntimeError("boom")
    rendered = type_matched(50, code=PLACEHOLDER_CODE)
    expected = {
        by_type: f"r{rule_near(50, 0)}",
        by_status: f"r{rule_near(50, 1)}",
        other: "internal",
        rendered: f"r{rule_near(50, 0, code=PLACEHOLDER_CODE)}",
    }
    for error, rule in expected.items():
        decision = engine.classify(error, operation=OPERATION)
        assert decision.rule.endswith(rule), (decision.rule, rule)
    model = policy_set.model("Errors")
    assert len(model.rules) == 50
    info = ErrorInfo.from_exception(by_type, operation=OPERATION)
    cns = {"engine": engine, "op": OPERATION, "model": model, "info": info, "ErrorInfo": ErrorInfo}
    say("classification, 50 rules")
    classify = measure(
        [
            Case(
                "classify_type",
                f"engine.classify, by exception type (rule {rule_near(50, 0) + 1} of 50)",
                "engine.classify(error, operation=op)",
                {**cns, "error": by_type},
            ),
            Case(
                "classify_status",
                f"engine.classify, by HTTP status and domain (rule {rule_near(50, 1) + 1} of 50)",
                "engine.classify(error, operation=op)",
                {**cns, "error": by_status},
            ),
            Case(
                "classify_rendered",
                (
                    f"engine.classify, by exception type (rule {rule_near(50, 0, code=PLACEHOLDER_CODE) + 1}"
                    " of 50), a code whose message has an {operation} placeholder"
                ),
                "engine.classify(error, operation=op)",
                {**cns, "error": rendered},
            ),
            Case(
                "classify_catch_all",
                "engine.classify, falls through to the catch-all (rule 50)",
                "engine.classify(error, operation=op)",
                {**cns, "error": other},
            ),
            Case(
                "from_exception",
                "  of which ErrorInfo.from_exception (by-type error)",
                "ErrorInfo.from_exception(error, operation=op)",
                {**cns, "error": by_type},
            ),
            Case(
                "model_classify",
                "  of which ErrorModel.classify(info) (by-type error)",
                "model.classify(info)",
                cns,
            ),
        ],
        cfg,
        loop,
    )

    # 4. classification against the number of rules -------------------------------------
    scaling_cases = []
    rows: dict[int, dict[str, Any]] = {}
    for n in cfg.rule_counts:
        if n <= 1_000:
            say(f"load an Errors document of {n:,} rules")
            errors_model = tierpolicy.load_files({"errors.yaml": errors_document(n)}).model("Errors")
            how = "loaded"
        else:
            say(f"assemble a model of {n:,} rules")
            errors_model = assembled_model(n)
            how = "assembled"
        assert len(errors_model.rules) == n
        rows[n] = {"how": how}
        for kind, error in (("type", type_matched(n)), ("status", status_matched(n))):
            decision = errors_model.classify(ErrorInfo.from_exception(error, operation=OPERATION))
            assert decision.rule.endswith(f"r{rule_near(n, 0 if kind == 'type' else 1)}"), decision.rule
            scaling_cases.append(
                Case(
                    f"{kind}:{n}",
                    f"classify by {kind}, {n:,} rules",
                    "model.classify(from_exception(error, operation=op))",
                    {
                        "model": errors_model,
                        "from_exception": ErrorInfo.from_exception,
                        "error": error,
                        "op": OPERATION,
                    },
                )
            )
    say("classification against the number of rules (sizes interleaved)")
    scaling_results = measure(scaling_cases, cfg, loop)
    for key, result in scaling_results.items():
        kind, n = key.split(":")
        rows[int(n)][kind] = result
    return {
        "sync": sync,
        "async": async_,
        "breaker": breaker_results,
        "classify": classify,
        "scaling": rows,
    }


# --------------------------------------------------------------------------- reporting


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "compiler": platform.python_compiler(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "tierpolicy_path": str(Path(tierpolicy.__file__).parent),
        "tenacity": _version("tenacity"),
        "stamina": _version("stamina"),
        "pybreaker": _version("pybreaker"),
        "gc_enabled": gc.isenabled(),
        "loadavg_start": loadavg(),
    }


def _overhead(group: dict[str, Result], key: str) -> tuple[float, float]:
    """(wall, CPU) median minus the floor's, or the median itself for a case without one."""
    r = group[key]
    if r.floor is None:
        return r.median, r.cpu_median
    return r.median - group[r.floor].median, r.cpu_median - group[r.floor].cpu_median


def targets(out: dict[str, Any], cfg: Config) -> list[Target]:
    rows = []
    for group, key, what in (
        ("sync", "tp_run", "success-path overhead, retry + breaker, sync `executor.run`"),
        ("async", "tp_arun", "success-path overhead, retry + breaker, async `executor.arun`"),
    ):
        wall, cpu = _overhead(out[group], key)
        rows.append(
            Target(
                f"{what} <= 2 µs (median)",
                f"{fmt_ns(wall)} (CPU time {fmt_ns(cpu)})",
                wall <= 2_000,
                cpu <= 2_000,
            )
        )
    r = out["breaker"]["tp_breaker"]
    rows.append(
        Target(
            "breaker alone (acquire + record, closed, count window) <= 1 µs (median)",
            f"{fmt_ns(r.median)} (CPU time {fmt_ns(r.cpu_median)})",
            r.median <= 1_000,
            r.cpu_median <= 1_000,
        )
    )
    for key in ("classify_type", "classify_status", "classify_rendered"):
        r = out["classify"][key]
        rows.append(
            Target(
                f"{r.name} <= 2 µs (median)",
                f"{fmt_ns(r.median)} (CPU time {fmt_ns(r.cpu_median)})",
                r.median <= 2_000,
                r.cpu_median <= 2_000,
            )
        )
    sizes = cfg.rule_counts
    for kind in ("type", "status"):
        medians = [out["scaling"][n][kind].median for n in sizes]
        cpus = [out["scaling"][n][kind].cpu_median for n in sizes]
        spread, cpu_spread = max(medians) / min(medians), max(cpus) / min(cpus)
        rows.append(
            Target(
                (
                    f"classification by {kind} flat in the number of rules ({sizes[0]:,} to {sizes[-1]:,};"
                    " flat = largest/smallest median <= 1.25)"
                ),
                f"{fmt_ns(min(medians))} to {fmt_ns(max(medians))} (x{spread:.2f}; CPU time x{cpu_spread:.2f})",
                spread <= 1.25,
                cpu_spread <= 1.25,
            )
        )
    return rows


def _table(group: dict[str, Result], order: list[str]) -> list[str]:
    lines = [
        "| case | median | p90 | min | CPU-time median | overhead (median - floor) | batch x samples |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in order:
        r = group[key]
        overhead = "" if r.floor is None else fmt_ns(_overhead(group, key)[0])
        lines.append(
            f"| {r.name} | {fmt_ns(r.median)} | {fmt_ns(r.p90)} | {fmt_ns(r.minimum)} |"
            f" {fmt_ns(r.cpu_median)} | {overhead} | {r.batch:,} x {len(r.per_call_ns)} |"
        )
    return lines


def report(out: dict[str, Any], cfg: Config, info: dict[str, Any], mode: str) -> str:
    sync, async_, brk = out["sync"], out["async"], out["breaker"]

    def ratio(group: dict[str, Result], peer: str, ours: str) -> str:
        return f"{_overhead(group, peer)[0] / _overhead(group, ours)[0]:,.1f}x"

    lines = [
        f"### tierpolicy resilience benchmark ({mode} run)",
        "",
        (
            f"Python {info['python']} ({info['implementation']}, {info['compiler']}), {info['platform']},"
            f" {info['cpus']} CPUs; tenacity {info['tenacity']}, stamina {info['stamina']},"
            f" pybreaker {info['pybreaker']}; gc enabled: {info['gc_enabled']};"
            f" load average {info['loadavg_start']} at start, {info.get('loadavg_end')} at end;"
            f" {info.get('wall_seconds')} s wall, {info.get('cpu_seconds')} s CPU."
        ),
        (
            f"Up to {cfg.max_batch:,} calls per sample, {cfg.samples} samples per case (fewer for slow"
            " cases, see `batch x samples`), samples of a group interleaved; times are wall-clock per call"
            " (CPU-time median: the thread's own CPU time, without waits for a CPU) and include the"
            f" timing loop's own overhead ({fmt_ns(sync['loop'].median)} per iteration,"
            f" {fmt_ns(async_['aloop'].median)} in the async loop). Overhead = a row's median minus the"
            " floor's median."
        ),
        "",
        "#### Success path, sync (one call of `trivial()`, which returns 42)",
        "",
        *_table(
            sync,
            ["loop", "floor", "tp_run", "tp_run_retry", "tp_decorated", "tenacity", "stamina", "pybreaker"],
        ),
        "",
        "#### Success path, async (`await atrivial()`)",
        "",
        *_table(
            async_,
            [
                "aloop",
                "afloor",
                "tp_arun",
                "tp_arun_retry",
                "tp_adecorated",
                "tenacity_async",
                "stamina_async",
            ],
        ),
        "",
        "#### The breaker alone (closed breaker; tierpolicy rows call no function, so overhead = median)",
        "",
        *_table(brk, ["bfloor", "tp_breaker", "tp_breaker_time", "tp_breaker_pure", "pybreaker_alone"]),
        "",
        "Ratios (overheads, medians):",
        "",
        f"- tenacity `@retry` / tierpolicy `executor.run`, retry + breaker: **{ratio(sync, 'tenacity', 'tp_run')}**",
        f"- stamina `@retry` / tierpolicy `executor.run`, retry + breaker: **{ratio(sync, 'stamina', 'tp_run')}**",
        f"- tenacity `@retry` / tierpolicy `executor.run`, retry only: **{ratio(sync, 'tenacity', 'tp_run_retry')}**",
        f"- stamina `@retry` / tierpolicy `executor.run`, retry only: **{ratio(sync, 'stamina', 'tp_run_retry')}**",
        f"- tenacity async / tierpolicy `executor.arun`, retry + breaker: **{ratio(async_, 'tenacity_async', 'tp_arun')}**",
        f"- stamina async / tierpolicy `executor.arun`, retry + breaker: **{ratio(async_, 'stamina_async', 'tp_arun')}**",
        f"- pybreaker `call` / tierpolicy breaker acquire + record: **{ratio(brk, 'pybreaker_alone', 'tp_breaker')}**",
        f"- pure step functions / in-place store (acquire + record): **{ratio(brk, 'tp_breaker_pure', 'tp_breaker')}**",
        "",
        "#### Classification (generated Errors policy of 50 rules, 11 codes)",
        "",
        *_table(
            out["classify"],
            [
                "classify_type",
                "classify_status",
                "classify_rendered",
                "classify_catch_all",
                "from_exception",
                "model_classify",
            ],
        ),
        "",
        "#### Classification against the number of rules (`model.classify(ErrorInfo.from_exception(error, operation=op))`)",
        "",
        "| rules | model | by type median | p90 | CPU-time median | by status median | p90 | CPU-time median |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, row in out["scaling"].items():
        t, s = row["type"], row["status"]
        lines.append(
            f"| {n:,} | {row['how']} | {fmt_ns(t.median)} | {fmt_ns(t.p90)} | {fmt_ns(t.cpu_median)} |"
            f" {fmt_ns(s.median)} | {fmt_ns(s.p90)} | {fmt_ns(s.cpu_median)} |"
        )
    lines += ["", "#### Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    lines.extend(f"| {t.name} | {t.measured} | {t.verdict} |" for t in targets(out, cfg))
    return "\n".join(lines)


def to_json(out: dict[str, Any], cfg: Config, info: dict[str, Any], mode: str) -> dict[str, Any]:
    def group(results: dict[str, Result]) -> dict[str, Any]:
        return {key: {"name": r.name, **r.to_json()} for key, r in results.items()}

    return {
        "mode": mode,
        "machine": info,
        "config": dataclasses.asdict(cfg),
        "timer": "time.perf_counter_ns (wall) and time.thread_time_ns (CPU) around timeit.Timer batches"
        " (async: around an async loop run by run_until_complete), gc enabled",
        "sync": group(out["sync"]),
        "async": group(out["async"]),
        "breaker": group(out["breaker"]),
        "classify": group(out["classify"]),
        "scaling": {
            str(n): {
                "model": row["how"],
                **{k: {"name": r.name, **r.to_json()} for k, r in row.items() if k != "how"},
            }
            for n, row in out["scaling"].items()
        },
        "targets": [dataclasses.asdict(t) for t in targets(out, cfg)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (~2 s)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the raw numbers as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    info = machine()
    started, cpu_started = time.perf_counter(), time.process_time()
    out = run(cfg, progress=not args.quiet)
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    info["cpu_seconds"] = round(time.process_time() - cpu_started, 1)
    info["loadavg_end"] = loadavg()
    print(report(out, cfg, info, mode))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(out, cfg, info, mode), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
