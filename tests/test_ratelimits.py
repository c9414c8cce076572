"""The RateLimits kind: parsing, compiling, per-tier rates, shadow mode and decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import FakeClock
from tierpolicy.engine._exceptions import ConditionError
from tierpolicy.engine._loader import SourceFile, check_files, load
from tierpolicy.engine._ratelimit_store import InMemoryRateLimitStore, check_rate_limit
from tierpolicy.engine._ratelimits import RateError, RateLimitsModel, parse_rate
from tierpolicy.engine._schema import kind_schema

POLICIES = Path(__file__).resolve().parents[1] / "policies"
TIERS = """\
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: t}
spec:
  tiers: [{name: bronze}, {name: silver}, {name: gold}]
---
"""
HEADER = "apiVersion: tierpolicy/v1\nkind: RateLimits\nmetadata: {name: rl}\nspec:\n  limits:\n"
LINE_OF_LIMITS = 12
"""The line of the first line of ``body`` in the file built by :func:`check`."""


def check(body: str):
    """Check a Tiers document plus one RateLimits document whose limits are ``body``."""
    return check_files([SourceFile("rl.yaml", (TIERS + HEADER + body).encode())], root="<memory>")


def model_of(body: str) -> RateLimitsModel:
    """Compile and return the RateLimits model."""
    result = check(body)
    assert result.policy_set is not None, [d.format() for d in result.diagnostics]
    model = result.policy_set.model("RateLimits")
    assert isinstance(model, RateLimitsModel)
    return model


def codes(body: str) -> list[tuple[str, int, int]]:
    """(code, line, column) of each diagnostic, lines counted from the first line of ``body``."""
    return [
        (d.code.value, d.position.line - LINE_OF_LIMITS + 1, d.position.column)
        for d in check(body).diagnostics
    ]


SIMPLE = """\
    - name: api
      match: {routes: ["/api/*"]}
      key: seller.id
      windows:
        - rate: 3/minute
"""


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60/minute", (60, 60)),
        ("10/s", (10, 1)),
        ("1000/hour", (1000, 3600)),
        ("5/10s", (5, 10)),
        ("2/3minutes", (2, 180)),
        ("1/day", (1, 86400)),
    ],
)
def test_rates_parse(text, expected):
    """Rates are requests/period with an optional multiple of the unit."""
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("sixty/minute", 0, "whole number"),
        ("60", 0, "whole number"),
        ("60/", 3, "period"),
        ("60/fortnight", 3, "unknown time unit 'fortnight'"),
        ("60/10fortnights", 5, "unknown time unit"),
        ("0/minute", 0, "between 1"),
        ("5/0s", 2, "between 1 second"),
        ("5/400days", 2, "366 days"),
        ("1000001/s", 0, "1,000,000 requests per second"),
    ],
)
def test_bad_rates_say_where_and_why(text, offset, message):
    """A rate that does not parse names the problem and its offset inside the string."""
    with pytest.raises(RateError, match=message) as info:
        parse_rate(text)
    assert info.value.offset == offset


def test_bad_rate_is_reported_inside_the_string():
    """A bad unit in a quoted rate is reported at the unit's column."""
    body = SIMPLE.replace("rate: 3/minute", 'rate: "3/minits"')
    assert codes(body) == [("TP208", 5, 20)]


# --------------------------------------------------------------------------- compiling


def test_a_burst_spanning_years_is_rejected_at_its_position():
    """A burst so large that the window would span more than about 8.9 years is a TP208 at the burst."""
    body = SIMPLE.replace("rate: 3/minute", "rate: 1/day\n          burst: 4000")
    assert codes(body) == [("TP208", 6, 18)]
    assert codes(SIMPLE.replace("rate: 3/minute", "rate: 1/day\n          burst: 3000")) == []


def test_partition_defaults_to_the_key_and_may_be_declared():
    """Counters carry their partition as a hash tag: the key value, or the declared partition."""
    [plain] = model_of(SIMPLE).limits
    assert plain.counter({"seller": {"id": "s-1"}}) == ("rl:{s-1}:api:s-1", "s-1")
    body = SIMPLE.replace("key: seller.id", 'key: seller.id + ":orders"\n      partition: seller.id')
    [declared] = model_of(body).limits
    assert declared.counter({"seller": {"id": "s-1"}}) == ("rl:{s-1}:api:s-1:orders", "s-1")


def test_a_partition_must_be_a_string_expression():
    """A partition that is not a string is a type error at load, like a bad key."""
    body = SIMPLE.replace("key: seller.id", "key: seller.id\n      partition: 1 + 1")
    assert [c for c, _, _ in codes(body)] == ["TP301"]


def test_a_partition_that_fails_at_run_time_raises_condition_error():
    """A partition whose attribute is missing raises ConditionError, like a key."""
    body = SIMPLE.replace("key: seller.id", "key: seller.id\n      partition: seller.tier")
    [policy] = model_of(body).limits
    assert policy.counter({"seller": {"id": "s-1", "tier": "gold"}})[1] == "gold"
    with pytest.raises(ConditionError):
        policy.counter({"seller": {"id": "s-1"}})


def test_fixed_rate_compiles_to_one_window():
    """A fixed rate gives the same window for every tier."""
    [policy] = model_of(SIMPLE).limits
    [w] = policy.windows_for("gold")
    assert (w.name, w.quota, w.period, w.burst) == ("api", 3, 60, 3)
    assert policy.windows_for(None) == policy.windows_for("bronze")
    assert (policy.rule, policy.cost, policy.algorithm, policy.shadow) == ("ratelimit:api", 1, "gcra", False)
    assert policy.on_store_error == "fail_closed"


def test_per_tier_rates_inherit_from_the_tier_below():
    """A tier left out of a per-tier rate gets the rate of the tier below it."""
    body = SIMPLE.replace("rate: 3/minute", "rate: {bronze: 10/minute, gold: 100/minute}\n          burst: 5")
    [policy] = model_of(body).limits
    assert [policy.windows_for(t)[0].quota for t in ("bronze", "silver", "gold")] == [10, 10, 100]
    assert policy.windows_for("gold")[0].burst == 5
    assert policy.windows_for("diamond") == policy.windows_for("bronze")


def test_fixed_and_per_tier_windows_combine():
    """A fixed burst window sits next to a per-tier sustained window for every tier."""
    body = SIMPLE.replace(
        "        - rate: 3/minute\n",
        "        - {name: minute, rate: {bronze: 60/minute, silver: 120/minute}}\n        - {name: burst, rate: 5/s}\n",
    )
    [policy] = model_of(body).limits
    assert [(w.name, w.quota) for w in policy.windows_for("gold")] == [("minute", 120), ("burst", 5)]


def test_unnamed_windows_are_numbered():
    """Windows without a name are named after the limit and their position."""
    body = SIMPLE.replace("        - rate: 3/minute\n", "        - rate: 3/minute\n        - rate: 1/s\n")
    [policy] = model_of(body).limits
    assert [w.name for w in policy.windows] == ["api-1", "api-2"]


def test_unknown_tier_in_a_rate_is_an_error():
    """A tier name not in the ladder is reported at its key."""
    body = SIMPLE.replace("rate: 3/minute", "rate: {bronze: 1/s, golld: 2/s}")
    assert codes(body) == [("TP400", 5, 31)]


def test_lowest_tier_must_have_a_rate():
    """Without a rate for the lowest tier there is nothing to inherit."""
    body = SIMPLE.replace("rate: 3/minute", "rate: {silver: 1/s}")
    assert codes(body) == [("TP411", 5, 17)]


def test_a_higher_tier_with_a_lower_rate_is_a_warning():
    """A tier given a slower rate than the tier below it gets TP406, and the set still loads."""
    body = SIMPLE.replace("rate: 3/minute", "rate: {bronze: 2/s, gold: 60/minute}")
    assert codes(body) == [("TP406", 5, 37)]
    assert model_of(body).limits[0].windows_for("gold")[0].quota == 60


def test_duplicate_limit_names_are_an_error():
    """Two limits with one name would share nothing but their name; that is an error."""
    assert codes(SIMPLE + SIMPLE) == [("TP209", 6, 13)]


def test_a_limit_must_match_something():
    """A limit with no route and no operation is reported."""
    body = SIMPLE.replace('match: {routes: ["/api/*"]}', "match: {}")
    assert codes(body) == [("TP208", 2, 14)]


def test_key_is_checked_against_the_context_schema():
    """A misspelt attribute in the key is a load error, positioned inside the expression."""
    body = SIMPLE.replace("key: seller.id", "key: seller.idd")
    assert codes(body) == [("TP302", 3, 19)]


def test_unknown_keys_and_algorithms_are_rejected():
    """Spec models reject unknown keys and values outside the declared choices."""
    assert [
        c for c, _, _ in codes(SIMPLE.replace("key: seller.id", "key: seller.id\n      colour: red"))
    ] == ["TP205"]
    assert codes(SIMPLE + "      algorithm: token_bucket\n")[0][0] in {"TP207", "TP208"}


def test_limits_for_matches_routes_and_operations():
    """``limits_for`` returns every matching limit, each with its own counter."""
    body = (
        SIMPLE
        + """\
    - name: ops
      match: {operations: ["search.*"]}
      key: seller.id
      windows: [{rate: 1/s}]
    - name: both
      match: {routes: ["/api/listings"], operations: ["search.query"]}
      key: seller.id
      windows: [{rate: 1/s}]
"""
    )
    model = model_of(body)
    assert [p.name for p in model.limits_for(route="/api/listings")] == ["api", "both"]
    assert [p.name for p in model.limits_for(operation="search.query")] == ["ops", "both"]
    assert model.limits_for(route="/other") == ()
    assert model.limit("ops") is not None
    assert model.limit("nope") is None


def test_schema_describes_the_kind():
    """The published JSON Schema of RateLimits rejects unknown keys."""
    schema = kind_schema("RateLimits")
    assert schema["$defs"]["RateLimitSpec"]["additionalProperties"] is False


# --------------------------------------------------------------------------- decisions


def test_check_rate_limit_denies_past_the_limit_and_reports():
    """The fourth request in a minute is denied, with the limit, version and retry-after."""
    [policy] = model_of(SIMPLE).limits
    store = InMemoryRateLimitStore(clock=FakeClock())
    context = {"seller": {"id": "s-1", "tier": "gold"}}
    decisions = [check_rate_limit(policy, store, context) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    denied = decisions[-1]
    assert (denied.limit, denied.rule, denied.remaining, denied.retry_after) == (
        "api",
        "ratelimit:api",
        0,
        20.0,
    )
    assert denied.policy_version == policy.policy_version != ""
    assert denied.headers()["Retry-After"] == "20"
    other = check_rate_limit(policy, store, {"seller": {"id": "s-2"}})
    assert other.allowed


def test_per_tier_rates_apply_to_the_sellers_tier():
    """A gold seller gets the gold rate, a bronze seller the bronze rate."""
    body = SIMPLE.replace("rate: 3/minute", "rate: {bronze: 1/minute, gold: 3/minute}")
    [policy] = model_of(body).limits
    store = InMemoryRateLimitStore(clock=FakeClock())
    gold = [check_rate_limit(policy, store, {"seller": {"id": "g"}}, tier="gold").allowed for _ in range(4)]
    bronze = [
        check_rate_limit(policy, store, {"seller": {"id": "b"}}, tier="bronze").allowed for _ in range(2)
    ]
    assert gold == [True, True, True, False]
    assert bronze == [True, False]


def test_shadow_mode_never_denies_but_reports():
    """A shadow limit allows every request and says which ones it would have denied."""
    [policy] = model_of(SIMPLE + "      shadow: true\n").limits
    store = InMemoryRateLimitStore(clock=FakeClock())
    decisions = [check_rate_limit(policy, store, {"seller": {"id": "s"}}) for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.limited for d in decisions] == [False, False, False, True, True]
    assert all(d.shadow for d in decisions)
    assert "Retry-After" not in decisions[-1].headers()


def test_cost_is_spent_per_request():
    """A limit's cost is spent by each request; a caller may override it."""
    [policy] = model_of(SIMPLE + "      cost: 2\n").limits
    store = InMemoryRateLimitStore(clock=FakeClock())
    context = {"seller": {"id": "s"}}
    assert check_rate_limit(policy, store, context).remaining == 1
    assert not check_rate_limit(policy, store, context).allowed
    assert check_rate_limit(policy, store, context, cost=1).allowed


def test_a_key_that_fails_raises_condition_error():
    """A key whose attribute is missing from the context fails with ConditionError."""
    [policy] = model_of(SIMPLE).limits
    with pytest.raises(ConditionError):
        policy.key_of({"seller": {}})
    assert policy.key_of({"seller": {"id": "s-9"}}) == "rl:{s-9}:api:s-9"


# --------------------------------------------------------------------------- shipped set


def test_shipped_seller_api_limits():
    """policies/ limits the seller API per seller by tier, with a burst window, and per address."""
    model = load(POLICIES).model("RateLimits")
    assert isinstance(model, RateLimitsModel)
    names = [p.name for p in model.limits_for(route="/api/marketplace/seller/listings")]
    assert names == ["seller-api", "service-api", "seller-api-by-address"]
    applying = {
        role: [
            p.name
            for p in model.limits
            if p.applies({"request": {"role": role, "principal": f"{role}:x", "client_ip": "10.0.0.1"}})
        ]
        for role in ("seller", "service", "admin", "anonymous")
    }
    assert applying == {
        "seller": ["seller-api", "seller-api-by-address"],
        "service": ["service-api"],
        "admin": ["service-api"],
        "anonymous": ["seller-api-by-address"],
    }
    seller_api = model.limit("seller-api")
    assert seller_api is not None
    sustained = {t: seller_api.windows_for(t)[0].quota for t in ("bronze", "silver", "gold", "platinum")}
    assert sustained == {"bronze": 60, "silver": 300, "gold": 600, "platinum": 1200}
    assert [w.period for w in seller_api.windows_for("gold")] == [60, 1]
    assert seller_api.on_store_error == "local"


def test_sliding_window_limits_decide_through_the_store():
    """A limit with ``algorithm: sliding_window`` counts with the sliding-window counter."""
    [policy] = model_of(SIMPLE + "      algorithm: sliding_window\n").limits
    assert policy.algorithm == "sliding_window"
    store = InMemoryRateLimitStore(clock=FakeClock())
    decisions = [check_rate_limit(policy, store, {"seller": {"id": "s"}}) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after > 0
    assert "Retry-After" in decisions[-1].headers()


def test_burst_is_for_gcra_only():
    """A sliding-window limit rejects ``burst``, which only GCRA has."""
    body = (
        SIMPLE.replace("rate: 3/minute", "rate: 3/minute\n          burst: 5")
        + "      algorithm: sliding_window\n"
    )
    assert codes(body) == [("TP208", 6, 18)]


def test_when_limits_a_rule_to_the_requests_it_is_true_for():
    """A limit with ``when`` applies only where its condition holds; without one, always."""
    [plain] = model_of(SIMPLE).limits
    assert plain.when is None
    assert plain.applies({})
    body = SIMPLE.replace("key: seller.id", 'when: seller.tier == "gold"\n      key: seller.id')
    [limited] = model_of(body).limits
    assert limited.applies({"seller": {"tier": "gold"}})
    assert not limited.applies({"seller": {"tier": "bronze"}})
    with pytest.raises(ConditionError):
        limited.applies({"seller": {}})


def test_when_must_be_a_bool_and_is_type_checked_at_load():
    """A ``when`` that is not a bool is TP301 and a misspelt attribute TP302, positioned in the file."""
    body = SIMPLE.replace("key: seller.id", "when: seller.id\n      key: seller.id")
    assert codes(body) == [("TP301", 3, 13)]
    body = SIMPLE.replace("key: seller.id", 'when: seller.idd == "x"\n      key: seller.id')
    assert [c for c, _, _ in codes(body)] == ["TP302"]


def test_a_when_that_gives_no_bool_at_run_time_raises():
    """A dyn attribute that turns out not to be a bool raises ConditionError instead of guessing."""
    context_doc = (
        "apiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: c}\n"
        "spec:\n  attributes:\n    request: {flag: dyn}\n---\n"
    )
    body = SIMPLE.replace("key: seller.id", "when: request.flag\n      key: seller.id")
    result = check_files([SourceFile("rl.yaml", (context_doc + HEADER + body).encode())], root="<memory>")
    assert result.policy_set is not None, [d.format() for d in result.diagnostics]
    model = result.policy_set.model("RateLimits")
    assert isinstance(model, RateLimitsModel)
    [policy] = model.limits
    assert policy.applies({"request": {"flag": True}})
    with pytest.raises(ConditionError, match="must produce bool"):
        policy.applies({"request": {"flag": "yes"}})


def test_a_key_or_partition_that_is_not_a_string_at_run_time_raises():
    """Context values of the wrong type reach the key at run time: ConditionError, not a bad counter."""
    [policy] = model_of(SIMPLE).limits
    with pytest.raises(ConditionError, match="not a string"):
        policy.counter({"seller": {"id": 42}})
    body = SIMPLE.replace("key: seller.id", "key: seller.id\n      partition: seller.tier")
    [partitioned] = model_of(body).limits
    with pytest.raises(ConditionError, match=r"partition .* not a string"):
        partitioned.counter({"seller": {"id": "s", "tier": 7}})


# --------------------------------------------------------------------------- enforces: a window's tier limit

TIERS_WITH_LIMITS = """\
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: t}
spec:
  tiers: [{name: bronze}, {name: silver}, {name: gold}]
  limits:
    api_requests_per_minute: {values: {bronze: 60, silver: 300}}
    exports_per_day: {values: {bronze: 10, gold: unlimited}}
---
"""
ENFORCES = "{limit: api_requests_per_minute, per: minute}"


def enforcing(rate: str, enforces: str = ENFORCES, tiers: str = TIERS_WITH_LIMITS):
    """Check ``SIMPLE`` with the window's rate and ``enforces`` replaced; return (result, rate line)."""
    body = SIMPLE.replace("rate: 3/minute", f"rate: {rate}\n          enforces: {enforces}")
    text = tiers + HEADER + body
    result = check_files([SourceFile("rl.yaml", text.encode())], root="<memory>")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "- rate:" in t)
    return result, line, text.splitlines()[line - 1]


def test_a_window_whose_rates_equal_the_tier_limit_is_accepted():
    """Rates converted to the limit's unit that equal every tier's value (inherited too) give nothing."""
    result, _, _ = enforcing("{bronze: 1/s, silver: 3000/10minutes}")
    assert [d.format() for d in result.diagnostics] == []
    assert result.policy_set is not None
    model = result.policy_set.model("RateLimits")
    assert isinstance(model, RateLimitsModel)
    assert model.limits[0].enforces == {"api": "api_requests_per_minute per minute"}


def test_a_rate_contradicting_the_tier_limit_is_a_warning_per_tier():
    """Each tier whose sustained rate differs is reported with both numbers, at that tier's rate."""
    result, line, text = enforcing(
        "{bronze: 60/minute, gold: 600/minute}", "{limit: api_requests_per_minute, per: minute}"
    )
    assert result.policy_set is not None
    found = [
        (d.severity, d.code.value, d.position.line, d.position.column, d.message) for d in result.diagnostics
    ]
    assert found == [
        (
            "warning",
            "TP440",
            line,
            text.index("{") + 1,
            (
                "rate limit 'api' window 'api' allows silver 60 per minute (inherited from bronze),"
                " but tier limit api_requests_per_minute gives silver 300"
            ),
        ),
        (
            "warning",
            "TP440",
            line,
            text.index("600/minute") + 1,
            (
                "rate limit 'api' window 'api' allows gold 600 per minute,"
                " but tier limit api_requests_per_minute gives gold 300"
            ),
        ),
    ]
    assert "300/minute" in (result.diagnostics[1].hint or "")


def test_an_unlimited_tier_limit_contradicts_any_rate():
    """A fixed rate is compared for every tier; an unlimited value is never matched by a rate."""
    result, line, _ = enforcing("10/day", "{limit: exports_per_day, per: day}")
    messages = [(d.code.value, d.position.line, d.message.rsplit(", but ", 1)[1]) for d in result.diagnostics]
    assert messages == [("TP440", line, "tier limit exports_per_day gives gold unlimited")]
    result, _, _ = enforcing("1/hour", "{limit: exports_per_day, per: day}")
    assert [d.message.split(" allows ")[1] for d in result.diagnostics] == [
        "bronze 24 per day, but tier limit exports_per_day gives bronze 10",
        "silver 24 per day, but tier limit exports_per_day gives silver 10",
        "gold 24 per day, but tier limit exports_per_day gives gold unlimited",
    ]


def test_enforces_must_name_a_tier_limit():
    """An unknown tier limit is TP405 with a did-you-mean, no Tiers is TP402, an unknown unit TP207."""
    result, line, _ = enforcing("1/s", "{limit: api_request_per_minute, per: minute}")
    assert result.policy_set is None
    [problem] = result.diagnostics
    assert (problem.code.value, problem.position.line) == ("TP405", line + 1)
    assert "did you mean 'api_requests_per_minute'?" in (problem.hint or "")
    result, line, _ = enforcing("1/s", tiers="")
    assert [(d.code.value, d.position.line) for d in result.diagnostics] == [("TP402", line + 1)]
    result, _, _ = enforcing("1/s", "{limit: api_requests_per_minute, per: week}")
    [problem] = result.diagnostics
    assert problem.code.value == "TP207"
    assert "second, minute, hour or day" in problem.message
