"""The success envelope and the JSON body reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tierpolicy
from servicesupport import app_for, auth, call
from tierpolicy.service import PREFIX

ROOT = Path(__file__).resolve().parents[2]
EVALUATE = f"{PREFIX}/policy/evaluate"


@pytest.fixture(scope="module")
def marketplace() -> tierpolicy.Engine:
    """The shipped marketplace policies."""
    return tierpolicy.load(ROOT / "policies")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            b'{"queries": [],\n "context": {"m": NaN}}',
            "the body is not JSON this service reads: NaN (JSON has no NaN or infinity) at line 2 column 19",
        ),
        (
            b'{"queries": [], "context": {"m": -Infinity}}',
            "the body is not JSON this service reads: -Infinity (JSON has no NaN or infinity) at line 1 column 34",
        ),
        (
            b'{"queries": [], "context": {"note": "1e999", "m": 1e999}}',
            (
                "the body is not JSON this service reads: 1e999 (out of range of a double, whose largest is "
                "about 1.8e308) at line 1 column 51"
            ),
        ),
        (
            b'{"queries": [], "context": {"m": 1' + b"0" * 400 + b".5}}",
            (
                "the body is not JSON this service reads: 100000000000000000000... (out of range of a double, "
                "whose largest is about 1.8e308) at line 1 column 34"
            ),
        ),
    ],
)
def test_numbers_json_does_not_have_are_malformed_requests(marketplace, body, detail):
    """NaN, infinities and doubles out of range are a 400 naming the number and where (a string is skipped)."""
    response = call(app_for(marketplace), "POST", EVALUATE, content=body, headers=auth())
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_REQUEST"
    assert response.json()["detail"] == detail


def test_big_integers_stay_exact(marketplace):
    """An integer beyond 64 bits is read as that integer, so the engine reports it as out of range, not a rounded float."""
    body = json.dumps(
        {"context": {"seller": {"id": "s-1", "tier": "gold"}}, "queries": [{"kind": "tier"}], "now": None}
    ).replace('"s-1"', '"s-1", "huge": 123456789012345678901234567890')
    response = call(app_for(marketplace), "POST", EVALUATE, content=body.encode(), headers=auth())
    assert response.status_code == 200
    assert response.json()["data"]["results"][0]["status"] == "ok"


def test_the_envelope_is_compact_utf8_with_the_request_id_and_version(marketplace):
    """Answers are UTF-8 JSON (not ASCII escapes) with data first, then the request id and policy version."""
    response = call(
        app_for(marketplace),
        "POST",
        EVALUATE,
        content=json.dumps(
            {
                "context": {"seller": {"id": "s-ü", "tier": "gold"}},
                "queries": [{"kind": "feature", "name": "listing.promoted", "id": "größe"}],
            }
        ).encode(),
        headers={**auth(), "X-Request-ID": "r-1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert '"id":"größe"'.encode() in response.content
    envelope = response.json()
    assert list(envelope) == ["data", "meta"]
    assert envelope["meta"] == {"request_id": "r-1", "policy_version": marketplace.version}
