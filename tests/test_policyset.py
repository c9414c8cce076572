"""Tests of the compiled policy set: its documents and the canonical dump."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import yaml

import tierpolicy
from support import NOW, SMALL_SET, seller
from tierpolicy import Override


@pytest.fixture(scope="module")
def dumped(small_set) -> dict[str, str]:
    """The canonical dump of the small set."""
    return small_set.dump()


@pytest.fixture(scope="module")
def reloaded(dumped) -> tierpolicy.PolicySet:
    """The small set loaded back from its dump."""
    return tierpolicy.load_files(dumped, root="dumped")


def _plain(decision):
    """A decision without the fields that name the policy files (version and source)."""
    return dataclasses.replace(decision, policy_version="", source="")


def _plain_entitlements(entitlements: tierpolicy.Entitlements):
    return (
        entitlements.seller_id,
        entitlements.tier,
        {name: _plain(d) for name, d in entitlements.features.items()},
        {name: _plain(d) for name, d in entitlements.limits.items()},
    )


CONTEXTS = [
    seller(tier, sid, verified=verified, joined_at=NOW - dt.timedelta(days=days), metrics=metrics)
    for tier in ("bronze", "silver", "gold")
    for sid in ("s-1", "s-2", "s-7", "vip")
    for verified, days, metrics in (
        (True, 200, {"orders": 150, "rating": 4.8, "claim_rate": 0.001}),
        (False, 10, {"orders": 12, "rating": 4.1, "claim_rate": 0.05}),
        (True, 90, {"orders": 0, "rating": 0.0}),
    )
]


def test_dump_writes_one_canonical_file_per_kind(dumped):
    """The dump has one YAML file per document kind, each holding that kind's documents."""
    assert sorted(dumped) == ["context.yaml", "tiers.yaml"]
    context = list(yaml.safe_load_all(dumped["context.yaml"]))
    assert context == [
        {
            "apiVersion": "tierpolicy/v1",
            "kind": "Context",
            "metadata": {"name": "ctx"},
            "spec": {
                "attributes": {
                    "seller": {"verified": "bool", "joined_at": "timestamp", "below_since": "timestamp"},
                    "metrics": {"orders": "int", "rating": "double", "claim_rate": "double"},
                }
            },
        }
    ]


def test_dump_leaves_out_defaults_and_uses_yaml_spellings(dumped):
    """Defaults are left out, 'from' keeps its YAML name and timestamps are RFC 3339 text."""
    [tiers] = list(yaml.safe_load_all(dumped["tiers.yaml"]))
    spec = tiers["spec"]
    assert spec["features"]["basic"] == {"from": "bronze"}
    assert spec["features"]["killed"] == {"from": "bronze", "enabled": False}
    assert spec["limits"]["listings"] == {"unit": "listings", "values": {"bronze": 10, "gold": "unlimited"}}
    assert spec["progression"]["grace_period_days"] == 90
    assert "window_days" not in spec["progression"]
    assert spec["overrides"][0] == {
        "seller": "vip",
        "feature": "promoted",
        "value": True,
        "reason": "pilot",
        "expires": "2099-01-01T00:00:00Z",
    }


def test_dump_round_trip_keeps_the_documents(small_set, reloaded):
    """Loading the dump gives the same validated documents, kinds and names."""
    assert [(d.kind, d.name, d.metadata, d.spec) for d in reloaded.documents] == [
        (d.kind, d.name, d.metadata, d.spec) for d in small_set.documents
    ]
    assert reloaded.files == ("context.yaml", "tiers.yaml")
    assert reloaded.environment == small_set.environment
    assert reloaded.warnings == ()


def test_dump_is_a_fixed_point(dumped, reloaded):
    """Dumping the reloaded set gives the same text again."""
    assert reloaded.dump() == dumped


def test_dump_round_trip_decides_the_same(small_set, reloaded):
    """Every feature, limit, entitlement and tier decision is the same after dump and load."""
    original, again = tierpolicy.Engine(small_set), tierpolicy.Engine(reloaded)
    assert (again.tiers, again.features, again.limits) == (original.tiers, original.features, original.limits)
    override = Override("s-7", "tier", "gold", None, "contract", NOW + dt.timedelta(days=1))
    for context in CONTEXTS:
        for overrides in ((), (override,)):
            for name in original.features:
                assert _plain(again.check(name, context, now=NOW, overrides=overrides, trace=True)) == _plain(
                    original.check(name, context, now=NOW, overrides=overrides, trace=True)
                )
            for name in original.limits:
                assert _plain(again.limit(name, context, now=NOW, overrides=overrides)) == _plain(
                    original.limit(name, context, now=NOW, overrides=overrides)
                )
            assert _plain_entitlements(again.entitlements(context, now=NOW, overrides=overrides)) == (
                _plain_entitlements(original.entitlements(context, now=NOW, overrides=overrides))
            )
            below = NOW - dt.timedelta(days=95)
            assert _plain(again.qualify(context, now=NOW, below_since=below, overrides=overrides)) == _plain(
                original.qualify(context, now=NOW, below_since=below, overrides=overrides)
            )


def test_round_trip_keeps_the_policy_overrides(reloaded):
    """The overrides in the policy file survive the dump with the same rule ids."""
    engine = tierpolicy.Engine(reloaded)
    decision = engine.check("promoted", seller("bronze", "vip"), now=NOW)
    assert (decision.allowed, decision.reason, decision.rule) == (
        True,
        tierpolicy.Reason.OVERRIDE,
        "override:0",
    )
    assert decision.source.startswith("tiers.yaml:")
    assert engine.limit("listings", seller("bronze", "vip"), now=NOW).value == 500


def test_dump_changes_the_version_but_not_the_decisions(small_set, reloaded):
    """The version is the hash of the files, so the reformatted dump has another one."""
    assert reloaded.version != small_set.version
    assert len(reloaded.version) == 16
    assert reloaded.digest.startswith(reloaded.version)


def test_documents_keep_their_origin(small_set):
    """Each document records its kind, name, file and start (a later one's '---' line)."""
    context, tiers = small_set.documents
    assert (context.kind, context.name, context.file, str(context.position)) == (
        "Context",
        "ctx",
        "policy.yaml",
        "policy.yaml:1:1",
    )
    assert (tiers.kind, tiers.name, tiers.file, str(tiers.position)) == (
        "Tiers",
        "small",
        "policy.yaml",
        "policy.yaml:8:1",
    )


def test_to_data_is_the_canonical_document(small_set):
    """to_data gives the envelope with metadata and spec dumped by alias, without defaults."""
    data = small_set.documents[1].to_data()
    assert list(data) == ["apiVersion", "kind", "metadata", "spec"]
    assert data["metadata"] == {"name": "small"}
    assert data["spec"]["features"]["onboarding"] == {"tiers": ["bronze"]}
    assert data["spec"]["features"]["beta"] == {"from": "bronze", "rollout": 50.0}


def test_policy_set_is_frozen(small_set):
    """A policy set cannot be changed after loading."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        small_set.version = "x"  # type: ignore[misc]


def test_set_without_tiers_dumps_only_its_documents():
    """A set with only a Context document dumps one file and has no tiers model."""
    text = SMALL_SET.split("---\n")[0]
    policy_set = tierpolicy.load_files({"c.yaml": text})
    assert policy_set.tiers is None
    assert list(policy_set.dump()) == ["context.yaml"]
    assert tierpolicy.load_files(policy_set.dump()).environment == policy_set.environment
