"""Tests of the error-code registry for support teams (``tierpolicy errors``)."""

from __future__ import annotations

from pathlib import Path

from tierpolicy.authoring._errors import RegistryEntry, error_registry, registry_json, registry_markdown
from tierpolicy.engine._loader import load, load_files

ROOT = Path(__file__).resolve().parents[2]

ERRORS = """\
apiVersion: tierpolicy/v1
kind: Errors
metadata: {name: e}
spec:
  type_base: https://errors.example/
  codes:
    RATE_LIMITED:
      category: throttled
      status: 429
      retryable: true
      severity: info
      title: Too many requests
      message: Try again in {retry_after}.
      description: The caller | a pipe.
    INTERNAL: {category: internal, status: 500, escalation: page, title: Oops, message: Try later., type: "https://x.example/boom"}
    AUTH: {category: unauthenticated, status: 401, title: Sign in, message: Sign in.}
  rules:
    - {name: throttled, match: {status: 429}, code: RATE_LIMITED}
    - {name: throttled-reason, match: {reason: SLOW, domain: x.example}, code: RATE_LIMITED}
    - {name: internal, code: INTERNAL}
"""


def test_registry_entries_sorted_with_their_rules():
    """Every code appears once, sorted by code, with its fields and the rules that give it."""
    entries = error_registry(load_files({"errors.yaml": ERRORS}))
    assert entries == (
        RegistryEntry(
            code="AUTH",
            status=401,
            category="unauthenticated",
            retryable=False,
            title="Sign in",
            detail="Sign in.",
            type="https://errors.example/auth",
            severity="error",
            escalation="none",
            description="",
            rules=(),
        ),
        RegistryEntry(
            code="INTERNAL",
            status=500,
            category="internal",
            retryable=False,
            title="Oops",
            detail="Try later.",
            type="https://x.example/boom",
            severity="error",
            escalation="page",
            description="",
            rules=("internal: any error",),
        ),
        RegistryEntry(
            code="RATE_LIMITED",
            status=429,
            category="throttled",
            retryable=True,
            title="Too many requests",
            detail="Try again in {retry_after}.",
            type="https://errors.example/rate-limited",
            severity="info",
            escalation="none",
            description="The caller | a pipe.",
            rules=("throttled: status 429", "throttled-reason: reason SLOW; domain x.example"),
        ),
    )


def test_registry_markdown():
    """The Markdown registry is an overview table, then one section per code."""
    policy_set = load_files({"errors.yaml": ERRORS})
    entries = error_registry(policy_set)
    assert entries is not None
    assert registry_markdown(entries, version="v1") == (
        "# Error codes\n"
        "\n"
        "Policy version `v1`; 3 codes, sorted by code.\n"
        "\n"
        "| code | HTTP status | category | retryable | title |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| [`AUTH`](#auth) | 401 | unauthenticated | no | Sign in |\n"
        "| [`INTERNAL`](#internal) | 500 | internal | no | Oops |\n"
        "| [`RATE_LIMITED`](#rate_limited) | 429 | throttled | yes | Too many requests |\n"
        "\n"
        "## AUTH\n"
        "\n"
        "**Sign in**: HTTP 401, unauthenticated, not retryable, severity error.\n"
        "\n"
        "- Detail shown to users: Sign in.\n"
        "- Type: <https://errors.example/auth>\n"
        "- Produced by no classification rule.\n"
        "\n"
        "## INTERNAL\n"
        "\n"
        "**Oops**: HTTP 500, internal, not retryable, severity error, escalation page.\n"
        "\n"
        "- Detail shown to users: Try later.\n"
        "- Type: <https://x.example/boom>\n"
        "- Produced by the classification rules:\n"
        "  - `internal: any error`\n"
        "\n"
        "## RATE_LIMITED\n"
        "\n"
        "**Too many requests**: HTTP 429, throttled, retryable, severity info.\n"
        "\n"
        "- Detail shown to users: Try again in {retry_after}.\n"
        "- Type: <https://errors.example/rate-limited>\n"
        "- About: The caller \\| a pipe.\n"
        "- Produced by the classification rules:\n"
        "  - `throttled: status 429`\n"
        "  - `throttled-reason: reason SLOW; domain x.example`\n"
    )


def test_registry_json():
    """The JSON registry carries the version and every field of every code."""
    entries = error_registry(load_files({"errors.yaml": ERRORS}))
    assert entries is not None
    data = registry_json(entries, version="v1")
    assert data["version"] == "v1"
    assert [c["code"] for c in data["codes"]] == ["AUTH", "INTERNAL", "RATE_LIMITED"]
    assert data["codes"][2] == {
        "code": "RATE_LIMITED",
        "status": 429,
        "category": "throttled",
        "retryable": True,
        "title": "Too many requests",
        "detail": "Try again in {retry_after}.",
        "type": "https://errors.example/rate-limited",
        "severity": "info",
        "escalation": "none",
        "description": "The caller | a pipe.",
        "rules": ["throttled: status 429", "throttled-reason: reason SLOW; domain x.example"],
    }


def test_no_errors_document_gives_none():
    """A set without an Errors document has no registry."""
    tiers = "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n  tiers: [{name: a}]\n"
    assert error_registry(load_files({"t.yaml": tiers})) is None


def test_shipped_registry_lists_every_code_and_rule():
    """The marketplace registry has every code of errors.yaml, and every rule appears under its code."""
    policy_set = load(ROOT / "policies")
    entries = error_registry(policy_set)
    assert entries is not None
    model = policy_set.model("Errors")
    assert [e.code for e in entries] == sorted(model.codes)
    listed = [rule.split(":")[0] for e in entries for rule in e.rules]
    assert sorted(listed) == sorted(rule.name for rule in model.rules)
    status_range = next(e for e in entries if e.code == "PAYMENT_PROVIDER_UNAVAILABLE").rules[0]
    assert status_range == "payment-unavailable: status 5xx; operation payments.*"
