"""Tests of the semantic diff: every kind of change with its exact output, and its properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import shipped_policy_variants
from tierpolicy.authoring._diff import PolicyDiff, diff_sets, render_markdown, render_text
from tierpolicy.engine._loader import load, load_files

if TYPE_CHECKING:
    from tierpolicy.engine._policyset import PolicySet

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "context.yaml": """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: ctx}
spec:
  attributes:
    seller: {verified: bool}
    metrics: {orders: int, rating: double}
    request: {role: string, principal: string, client_ip: string}
""",
    "tiers.yaml": """\
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: t}
spec:
  tiers: [{name: bronze}, {name: silver}, {name: gold}]
  features:
    basic: {from: bronze}
    video: {from: gold}
    promoted: {from: silver, when: "seller.verified"}
    beta: {from: bronze, rollout: 25}
    instant: {from: gold, enabled: false}
  limits:
    listings: {unit: listings, values: {bronze: 10, silver: 100, gold: 1000}}
  progression:
    window_days: 60
    grace_period_days: 30
    rules:
      silver: {when: "metrics.orders >= 10 && metrics.rating >= 4.0"}
      gold: {when: "metrics.orders >= 100 && metrics.rating >= 4.5"}
""",
    "errors.yaml": """\
apiVersion: tierpolicy/v1
kind: Errors
metadata: {name: e}
spec:
  codes:
    RATE_LIMITED: {category: throttled, status: 429, retryable: true, title: Too many, message: Slow down.}
    NOT_FOUND: {category: not_found, status: 404, title: Not found, message: Gone.}
    INTERNAL: {category: internal, status: 500, title: Oops, message: Try later.}
  rules:
    - {name: throttled, match: {status: 429}, code: RATE_LIMITED}
    - {name: missing, match: {status: 404}, code: NOT_FOUND}
    - {name: internal, code: INTERNAL}
""",
    "resilience.yaml": """\
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {name: r}
spec:
  operations:
    payments.*:
      timeout: 2s
      retry: {max_attempts: 3, initial_delay: 100ms, max_delay: 1s, deadline: 8s}
      circuit_breaker: {failure_rate_threshold: 50, minimum_calls: 20, wait_in_open: 30s}
      bulkhead: {max_concurrent: 10}
""",
    "ratelimits.yaml": """\
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {name: rl}
spec:
  limits:
    - name: api
      match: {routes: ["/api/*"]}
      key: request.principal
      windows:
        - name: minute
          rate: {bronze: 60/minute, gold: 600/minute}
      on_store_error: local
    - name: by-ip
      match: {routes: ["/api/*"]}
      key: request.client_ip
      windows: [{rate: 10/s}]
""",
}


def build(**edits: tuple[str, str]) -> PolicySet:
    """The base set with ``file=(old, new)`` text replacements (each ``old`` must occur once)."""
    files = dict(BASE)
    for name, (old, new) in edits.items():
        key = f"{name}.yaml"
        assert files[key].count(old) == 1, f"{old!r} is not in {key} exactly once"
        files[key] = files[key].replace(old, new)
    return load_files(files)


def rows(diff: PolicyDiff) -> list[tuple[str, ...]]:
    """The changes as (section, subject, aspect, before, after, effect) rows."""
    return [(c.section, c.subject, c.aspect, str(c.before), str(c.after), c.effect) for c in diff.changes]


THROTTLED_RULE = "    - {name: throttled, match: {status: 429}, code: RATE_LIMITED}\n"
MISSING_RULE = "    - {name: missing, match: {status: 404}, code: NOT_FOUND}\n"

CASES = {
    "feature gained": (
        {"tiers": ("video: {from: gold}", "video: {from: silver}")},
        [("features", "video", "tier silver", "not granted", "granted", "loosen")],
    ),
    "feature lost": (
        {"tiers": ("basic: {from: bronze}", "basic: {from: silver}")},
        [("features", "basic", "tier bronze", "granted", "not granted", "tighten")],
    ),
    "feature added": (
        {"tiers": ("    video: {from: gold}\n", "    video: {from: gold}\n    api: {tiers: [gold]}\n")},
        [
            ("features", "api", "feature", "None", "tiers gold", "neutral"),
            ("features", "api", "tier gold", "not granted", "granted", "loosen"),
        ],
    ),
    "condition added": (
        {"tiers": ("video: {from: gold}", "video: {from: gold, when: 'metrics.orders >= 5'}")},
        [("features", "video", "condition", "None", "metrics.orders >= 5", "tighten")],
    ),
    "condition changed": (
        {"tiers": ('when: "seller.verified"}', 'when: "!seller.verified"}')},
        [("features", "promoted", "condition", "seller.verified", "!seller.verified", "neutral")],
    ),
    "condition reflowed": (
        {"tiers": ('when: "seller.verified"}', 'when: "  seller.verified "}')},
        [],
    ),
    "rollout raised": (
        {"tiers": ("rollout: 25", "rollout: 60")},
        [("features", "beta", "rollout", "25%", "60%", "loosen")],
    ),
    "rollout to everyone": (
        {"tiers": ("beta: {from: bronze, rollout: 25}", "beta: {from: bronze}")},
        [("features", "beta", "rollout", "25%", "100%", "loosen")],
    ),
    "kill switch released": (
        {"tiers": ("enabled: false", "enabled: true")},
        [("features", "instant", "enabled", "no", "yes", "loosen")],
    ),
    "limit lowered with inheritance": (
        {"tiers": ("silver: 100, gold: 1000", "silver: 50")},
        [
            ("limits", "listings", "tier silver", "100", "50", "tighten"),
            ("limits", "listings", "tier gold", "1000", "50", "tighten"),
        ],
    ),
    "limit unlimited": (
        {"tiers": ("gold: 1000}", "gold: unlimited}")},
        [("limits", "listings", "tier gold", "1000", "unlimited", "loosen")],
    ),
    "limit unit": (
        {"tiers": ("unit: listings", "unit: items")},
        [("limits", "listings", "unit", "listings", "items", "neutral")],
    ),
    "threshold raised": (
        {"tiers": ("metrics.orders >= 100", "metrics.orders >= 150")},
        [
            (
                "progression",
                "gold",
                "clause metrics.orders (minimum)",
                "metrics.orders >= 100",
                "metrics.orders >= 150",
                "tighten",
            )
        ],
    ),
    "bound made strict": (
        {"tiers": ("metrics.rating >= 4.0", "metrics.rating > 4.0")},
        [
            (
                "progression",
                "silver",
                "clause metrics.rating (minimum)",
                "metrics.rating >= 4.0",
                "metrics.rating > 4.0",
                "tighten",
            )
        ],
    ),
    "clause removed": (
        {"tiers": ('"metrics.orders >= 10 && metrics.rating >= 4.0"', '"metrics.orders >= 10"')},
        [
            (
                "progression",
                "silver",
                "clause metrics.rating (minimum)",
                "metrics.rating >= 4.0",
                "None",
                "loosen",
            )
        ],
    ),
    "grace period": (
        {"tiers": ("grace_period_days: 30", "grace_period_days: 60")},
        [("progression", "progression", "grace_period_days", "30", "60", "loosen")],
    ),
    "tier added": (
        {"tiers": ("{name: gold}]", "{name: gold}, {name: platinum}]")},
        [("tiers", "platinum", "tier", "None", "position 4", "neutral")],
    ),
    "error status": (
        {"errors": ("not_found, status: 404", "not_found, status: 410")},
        [("errors", "NOT_FOUND", "status", "404", "410", "neutral")],
    ),
    "error no longer retryable": (
        {"errors": ("retryable: true, ", "")},
        [("errors", "RATE_LIMITED", "retryable", "yes", "no", "tighten")],
    ),
    "error category and title": (
        {
            "errors": (
                "category: not_found, status: 404, title: Not found",
                "category: conflict, status: 404, title: Gone",
            )
        },
        [
            ("errors", "NOT_FOUND", "category", "not_found", "conflict", "neutral"),
            ("errors", "NOT_FOUND", "title", "Not found", "Gone", "neutral"),
        ],
    ),
    "rule reordered": (
        {
            "errors": (
                THROTTLED_RULE + MISSING_RULE,
                MISSING_RULE + THROTTLED_RULE,
            )
        },
        [("classification", "rules", "order", "throttled, missing", "missing, throttled", "neutral")],
    ),
    "rule match widened": (
        {"errors": ("match: {status: 404}", "match: {status: 4xx}")},
        [("classification", "missing", "match", "status 404", "status 4xx", "neutral")],
    ),
    "retry attempts": (
        {"resilience": ("max_attempts: 3", "max_attempts: 2")},
        [("resilience", "payments.*", "retry.max_attempts", "3", "2", "tighten")],
    ),
    "breaker trips sooner": (
        {"resilience": ("failure_rate_threshold: 50", "failure_rate_threshold: 25")},
        [("resilience", "payments.*", "circuit_breaker.failure_rate_threshold", "50%", "25%", "tighten")],
    ),
    "breaker stays open longer": (
        {"resilience": ("wait_in_open: 30s", "wait_in_open: 1m")},
        [("resilience", "payments.*", "circuit_breaker.wait_in_open", "30s", "1m", "tighten")],
    ),
    "bulkhead wider": (
        {"resilience": ("max_concurrent: 10", "max_concurrent: 20")},
        [("resilience", "payments.*", "bulkhead.max_concurrent", "10", "20", "loosen")],
    ),
    "timeout and deadline": (
        {"resilience": ("timeout: 2s", "timeout: 1500ms")},
        [("resilience", "payments.*", "timeout", "2s", "1.5s", "tighten")],
    ),
    "fallback added": (
        {
            "resilience": (
                "      bulkhead: {max_concurrent: 10}\n",
                "      bulkhead: {max_concurrent: 10}\n      fallback: [{fail: {}}]\n",
            )
        },
        [("resilience", "payments.*", "fallback", "none", "fail", "neutral")],
    ),
    "rate lowered per tier": (
        {"ratelimits": ("gold: 600/minute", "gold: 300/minute")},
        [
            ("ratelimits", "api", "window minute tier gold rate", "600/minute", "300/minute", "tighten"),
            ("ratelimits", "api", "window minute tier gold burst", "600", "300", "tighten"),
        ],
    ),
    "same rate other unit": (
        {"ratelimits": ("rate: 10/s", "rate: 600/minute, burst: 10")},
        [("ratelimits", "by-ip", "window by-ip rate", "10/s", "600/minute", "neutral")],
    ),
    "rate limit settings": (
        {
            "ratelimits": (
                "on_store_error: local",
                "on_store_error: fail_closed\n      shadow: true\n      algorithm: sliding_window",
            )
        },
        [
            ("ratelimits", "api", "algorithm", "gcra", "sliding_window", "neutral"),
            ("ratelimits", "api", "shadow", "no", "yes", "loosen"),
            ("ratelimits", "api", "on_store_error", "local", "fail_closed", "tighten"),
        ],
    ),
    "rate limit key and when": (
        {
            "ratelimits": (
                "key: request.principal",
                'key: request.client_ip\n      when: request.role == "seller"',
            )
        },
        [
            ("ratelimits", "api", "key", "request.principal", "request.client_ip", "neutral"),
            ("ratelimits", "api", "when", "None", 'request.role == "seller"', "loosen"),
        ],
    ),
    "rate limit window declares the tier limit it enforces": (
        {
            "ratelimits": (
                "rate: {bronze: 60/minute, gold: 600/minute}",
                "rate: {bronze: 60/minute, gold: 600/minute}\n          enforces: {limit: listings, per: hour}",
            )
        },
        [("ratelimits", "api", "window minute enforces", "none", "listings per hour", "neutral")],
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_kind_of_change(case):
    """Each before/after pair gives exactly its expected changes, and the reverse pair their mirror."""
    edits, expected = CASES[case]
    old, new = load_files(BASE), build(**edits)
    assert rows(diff_sets(old, new)) == expected
    flip = {"loosen": "tighten", "tighten": "loosen", "neutral": "neutral"}
    mirrored = {(s, subj, a, after, before, flip[e]) for s, subj, a, before, after, e in expected}
    assert set(rows(diff_sets(new, old))) == mirrored


def test_identical_sets_have_no_changes():
    """A set compared with itself, or with its canonical dump reloaded, has no changes."""
    base = load_files(BASE)
    assert diff_sets(base, base).changes == ()
    assert diff_sets(base, load_files(base.dump())).changes == ()
    assert diff_sets(base, base).summary == "neither"


REALISTIC = {
    "tiers": ("video: {from: gold}", "video: {from: silver}"),
    "ratelimits": ("gold: 600/minute", "gold: 300/minute"),
    "errors": ("not_found, status: 404", "not_found, status: 410"),
}


def test_text_output():
    """The text format lists changes by section with their effect, then the summary sentence."""
    diff = diff_sets(load_files(BASE), build(**REALISTIC), old_label="a/", new_label="b/")
    assert render_text(diff) == (
        f"diff a/ (version {diff.old_version}) -> b/ (version {diff.new_version})\n"
        "\n"
        "Features\n"
        "  video  tier silver: not granted -> granted  [loosen: gained]\n"
        "\n"
        "Error codes\n"
        "  NOT_FOUND  status: 404 -> 410  [neutral: changed]\n"
        "\n"
        "Rate limits\n"
        "  api  window minute tier gold rate: 600/minute -> 300/minute  [tighten: lowered]\n"
        "  api  window minute tier gold burst: 600 -> 300  [tighten: lowered]\n"
        "\n"
        "4 changes: 1 loosen, 2 tighten, 1 neutral. The change loosens and tightens.\n"
    )


def test_markdown_output():
    """The markdown format is a summary line, then one table per section."""
    diff = diff_sets(load_files(BASE), build(**REALISTIC))
    assert render_markdown(diff) == (
        "**Policy diff: loosens and tightens** (4 changes: 1 loosen, 2 tighten, 1 neutral;"
        f" `{diff.old_version}` → `{diff.new_version}`)\n"
        "\n"
        "#### Features\n"
        "\n"
        "| subject | aspect | before | after | effect |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| `video` | `tier silver` | `not granted` | `granted` | **loosen** (gained) |\n"
        "\n"
        "#### Error codes\n"
        "\n"
        "| subject | aspect | before | after | effect |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| `NOT_FOUND` | `status` | `404` | `410` | neutral (changed) |\n"
        "\n"
        "#### Rate limits\n"
        "\n"
        "| subject | aspect | before | after | effect |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| `api` | `window minute tier gold rate` | `600/minute` | `300/minute` | **tighten** (lowered) |\n"
        "| `api` | `window minute tier gold burst` | `600` | `300` | **tighten** (lowered) |\n"
    )


def test_markdown_escapes_pipes_and_empty_diff():
    """Pipes in conditions cannot break a table row; an empty diff is one line."""
    new = build(tiers=('when: "seller.verified"}', 'when: "seller.verified || metrics.orders > 1"}'))
    markdown = render_markdown(diff_sets(load_files(BASE), new))
    assert (
        "| `seller.verified` | `seller.verified \\|\\| metrics.orders > 1` | neutral (changed) |" in markdown
    )
    base = load_files(BASE)
    assert render_markdown(diff_sets(base, base)) == (
        f"**Policy diff: no semantic changes** (`{base.version}` → `{base.version}`)\n"
    )
    assert render_text(diff_sets(base, base)).endswith("\nNo semantic changes.\n")


def test_json_output():
    """The JSON form has both versions, the summary, counts per effect and every change."""
    diff = diff_sets(
        load_files(BASE), build(tiers=("rollout: 25", "rollout: 10")), old_label="x", new_label="y"
    )
    assert diff.to_json() == {
        "old": {"label": "x", "version": diff.old_version},
        "new": {"label": "y", "version": diff.new_version},
        "summary": "tighten",
        "counts": {"loosen": 0, "tighten": 1, "neutral": 0},
        "changes": [
            {
                "section": "features",
                "subject": "beta",
                "aspect": "rollout",
                "change": "changed",
                "before": "25%",
                "after": "10%",
                "effect": "tighten",
                "why": "lowered",
            }
        ],
    }


def test_removed_documents_show_their_contents():
    """A set without resilience or rate limits shows every operation and limit as removed."""
    files = {k: v for k, v in BASE.items() if k not in {"resilience.yaml", "ratelimits.yaml"}}
    diff = diff_sets(load_files(BASE), load_files(files))
    assert rows(diff) == [
        (
            "resilience",
            "payments.*",
            "operation",
            "timeout 2s, retry, circuit_breaker, bulkhead",
            "None",
            "neutral",
        ),
        ("ratelimits", "api", "limit", "matches /api/*", "None", "loosen"),
        ("ratelimits", "by-ip", "limit", "matches /api/*", "None", "loosen"),
    ]
    assert diff.summary == "loosen"


# --------------------------------------------------------------------------- properties


def _shipped() -> list[dict[str, object]]:
    return [document.to_data() for document in load(ROOT / "policies").documents]


def _load(documents: list[dict[str, object]]) -> PolicySet:
    # JSON is YAML, and far quicker to write than PyYAML's pure-Python dumper.
    return load_files({"set.yaml": "\n---\n".join(json.dumps(d) for d in documents)})


def _key(change_row: tuple[str, ...]) -> tuple[str, ...]:
    return change_row[:3]


PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(shipped_policy_variants(_shipped()))
def test_diff_with_itself_is_empty(variant):
    """Any variant of the shipped policies has no changes against itself or its reloaded copy."""
    policy_set = _load(variant)
    assert diff_sets(policy_set, policy_set).changes == ()
    assert diff_sets(policy_set, _load(variant)).changes == ()


@PROPERTY
@given(shipped_policy_variants(_shipped()), shipped_policy_variants(_shipped()))
def test_diff_mirrors(first, second):
    """diff(B, A) is diff(A, B) with before and after swapped and loosen and tighten swapped."""
    a, b = _load(first), _load(second)
    forward, backward = diff_sets(a, b), diff_sets(b, a)
    flip = {"loosen": "tighten", "tighten": "loosen", "neutral": "neutral"}
    assert sorted(
        (c.section, c.subject, c.aspect, c.after, c.before, flip[c.effect]) for c in forward.changes
    ) == sorted((c.section, c.subject, c.aspect, c.before, c.after, c.effect) for c in backward.changes)
    assert {"loosen": "tighten", "tighten": "loosen"}.get(
        forward.summary, forward.summary
    ) == backward.summary


@PROPERTY
@given(shipped_policy_variants(_shipped()), shipped_policy_variants(_shipped()))
def test_diff_is_deterministic(first, second):
    """The same two sets, loaded afresh, give byte-identical output in every format."""
    one = diff_sets(_load(first), _load(second))
    two = diff_sets(_load(first), _load(second))
    assert render_text(one) == render_text(two)
    assert render_markdown(one) == render_markdown(two)
    assert json.dumps(one.to_json()) == json.dumps(two.to_json())


@PROPERTY
@given(st.data())
def test_raising_a_limit_only_loosens(data):
    """Raising one tier's value of one shipped limit gives only loosening changes."""
    documents = _shipped()
    tiers = next(d for d in documents if d["kind"] == "Tiers")
    limits = tiers["spec"]["limits"]  # type: ignore[index]
    name = data.draw(st.sampled_from(sorted(limits)))
    values = limits[name]["values"]
    tier = data.draw(st.sampled_from(sorted(t for t, v in values.items() if v != "unlimited")))
    raised = [json.loads(json.dumps(d)) for d in documents]
    target = next(d for d in raised if d["kind"] == "Tiers")["spec"]["limits"][name]["values"]
    target[tier] = data.draw(st.one_of(st.just("unlimited"), st.integers(values[tier] + 1, 10**9)))
    diff = diff_sets(_load(documents), _load(raised))
    assert diff.changes
    assert {c.effect for c in diff.changes} == {"loosen"}
