"""The client address behind trusted proxies: X-Forwarded-For and Forwarded walks, spoofing, config."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import given
from hypothesis import strategies as st

from tierpolicy.adapters.fastapi import TrustedProxies, client_address
from tierpolicy.adapters.fastapi._client import canonical, parse_node

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10"])
FORWARDED = TrustedProxies(["10.0.0.0/8", "2001:db8:ffff::/48"], header="forwarded")


# --------------------------------------------------------------------------- parsing one hop


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:8080", "203.0.113.7"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]:_port", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("[::ffff:cb00:7107]:80", "203.0.113.7"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_hops_parse_to_canonical_addresses(text, expected):
    """A hop with or without port or brackets, IPv6 or IPv4-mapped, gives one canonical address."""
    address = parse_node(text)
    assert address is not None
    assert canonical(address) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "unknown",
        "_hidden",
        "example.com",
        "203.0.113.7:",
        "203.0.113.7:http",
        "203.0.113.07",
        "1.2.3",
        "[2001:db8::1",
        "[2001:db8::1]443",
        "[2001:db8::1]:",
        "[example]",
        "203.0.113.7:_",
        "203.0.113.7:٨٠",
        "1" * 101,
    ],
)
def test_malformed_hops_parse_to_nothing(text):
    """Anything that is not an IP address (with an optional numeric port) is not a hop."""
    assert parse_node(text) is None


# --------------------------------------------------------------------------- the walk


@pytest.mark.parametrize(
    ("peer", "values", "expected"),
    [
        # An untrusted peer is the client whatever the headers say.
        ("198.51.100.4", ["203.0.113.7"], "198.51.100.4"),
        ("198.51.100.4", ["10.0.0.1, 10.0.0.2"], "198.51.100.4"),
        ("::ffff:198.51.100.4", ["203.0.113.7"], "198.51.100.4"),
        # A trusted peer: right to left, skipping trusted hops.
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", ["1.1.1.1, 203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        ("10.0.0.1", ["1.1.1.1, 203.0.113.7", "10.0.0.2"], "203.0.113.7"),
        ("10.0.0.1", ["1.1.1.1,203.0.113.7,192.0.2.10"], "203.0.113.7"),
        ("10.0.0.1", ["203.0.113.7, , 10.0.0.2,"], "203.0.113.7"),
        ("::ffff:10.0.0.1", ["::ffff:203.0.113.7"], "203.0.113.7"),
        ("2001:db8:ffff::1", ["2001:DB8::7, 2001:db8:ffff::2"], "2001:db8::7"),
        ("10.0.0.1", ["[2001:db8::7]:4711"], "2001:db8::7"),
        # Every hop trusted: the leftmost.
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        # A malformed hop stops the walk at the last good one.
        ("10.0.0.1", ["203.0.113.7, garbage"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.7, unknown, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", ["garbage, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", ["<script>"], "10.0.0.1"),
        # A peer that is not an address is never trusted; no peer at all is "unknown".
        ("testclient", ["203.0.113.7"], "testclient"),
        (None, ["203.0.113.7"], "unknown"),
        ("", ["203.0.113.7"], "unknown"),
    ],
)
def test_x_forwarded_for_is_walked_from_the_right_behind_trusted_proxies(peer, values, expected):
    """Only hops appended by trusted proxies are believed; the first untrusted one is the client."""
    assert PROXIES.resolve(peer, values) == expected


def test_no_trusted_proxies_means_the_peer_always():
    """With no trusted proxies, every header is ignored."""
    assert TrustedProxies().resolve("10.0.0.1", ["203.0.113.7"]) == "10.0.0.1"
    assert not TrustedProxies()


@pytest.mark.parametrize(
    ("peer", "values", "expected"),
    [
        (None, ["203.0.113.7"], "203.0.113.7"),
        (None, [], "unknown"),
        (None, ["garbage"], "unknown"),
        (None, ["203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
    ],
)
def test_unix_socket_proxy_is_trusted_when_listed(peer, values, expected):
    """The "unix" entry trusts a peer without an address (a proxy on a Unix socket)."""
    proxies = TrustedProxies(["unix", "10.0.0.0/8"])
    assert proxies.unix
    assert proxies.resolve(peer, values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (['for="[2001:db8::7]:4711";proto=https'], "2001:db8::7"),
        (["for=203.0.113.7;by=10.0.0.1, for=10.0.0.2"], "203.0.113.7"),
        (["for=1.1.1.1, for=203.0.113.7", "For=10.0.0.2;proto=http"], "203.0.113.7"),
        (['for="203.0.113.7:80"'], "203.0.113.7"),
        (['for="\\203.0.113.7"'], "203.0.113.7"),
        (['for=203.0.113.7;host="a,b;c=d"'], "203.0.113.7"),
        ([", for=203.0.113.7 ,"], "203.0.113.7"),
        (["for=_hidden, for=10.0.0.2"], "10.0.0.2"),
        (["for=unknown"], "10.0.0.1"),
        (["proto=https"], "10.0.0.1"),
        (["for=203.0.113.7;for=198.51.100.1"], "10.0.0.1"),
        (["for=203.0.113.7;garbage"], "10.0.0.1"),
        (['for="203.0.113.7'], "10.0.0.1"),
        (['for="'], "10.0.0.1"),
        (['for="203.0.113.7"x'], "10.0.0.1"),
        (['for=203.0.113.7;host="a'], "10.0.0.1"),
        (["for=203.0.113.7", 'for="unbalanced'], "10.0.0.1"),
    ],
)
def test_forwarded_for_parameters_are_walked_the_same_way(values, expected):
    """RFC 7239 Forwarded: each element's for= is a hop; quoted, bracketed, obfuscated and broken ones handled."""
    assert FORWARDED.resolve("10.0.0.1", values) == expected


def test_only_the_configured_header_is_read():
    """A proxy configured for X-Forwarded-For ignores Forwarded, and the other way round."""
    headers = {"x-forwarded-for": "203.0.113.7", "forwarded": "for=198.51.100.9"}
    assert _address(headers, PROXIES, peer="10.0.0.1") == "203.0.113.7"
    assert _address(headers, FORWARDED, peer="10.0.0.1") == "198.51.100.9"


@given(st.lists(st.text(max_size=60), max_size=5))
def test_an_untrusted_peer_never_gets_an_address_from_its_headers(values):
    """Whatever an untrusted client sends as X-Forwarded-For or Forwarded, its address is its peer's."""
    assert PROXIES.resolve("198.51.100.4", values) == "198.51.100.4"
    assert FORWARDED.resolve("198.51.100.4", values) == "198.51.100.4"


_PUBLIC = st.ip_addresses(v=4, network="203.0.113.0/24") | st.ip_addresses(v=6, network="2001:db8:1::/48")


@given(st.lists(st.text(alphabet="0123456789abcdef.:[], ", max_size=30), max_size=4), _PUBLIC)
def test_the_client_behind_a_trusted_proxy_cannot_be_overridden_by_its_own_prefix(forged, client):
    """Entries the client wrote left of what the trusted proxy appended never change the result."""
    value = ", ".join([*forged, str(client), "10.0.0.9"])
    assert PROXIES.resolve("10.0.0.1", [value]) == canonical(client)


def test_hops_in_trusted_networks_are_trusted():
    """trusts() accepts addresses inside the networks, IPv4-mapped ones included."""
    assert PROXIES.trusts(ipaddress.ip_address("10.255.0.1"))
    assert PROXIES.trusts(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert PROXIES.trusts(ipaddress.ip_address("2001:db8:ffff:1::9"))
    assert not PROXIES.trusts(ipaddress.ip_address("11.0.0.1"))
    assert not PROXIES.trusts(ipaddress.ip_address("2001:db8::1"))


# --------------------------------------------------------------------------- configuration


def test_entries_may_be_addresses_networks_or_ipaddress_objects():
    """Strings, ipaddress objects, mapped networks and duplicates all normalise to networks."""
    proxies = TrustedProxies(
        [
            " 10.0.0.7 ",
            ipaddress.ip_address("10.0.0.8"),
            ipaddress.ip_network("fd00::/8"),
            "::ffff:192.0.2.0/120",
            "::ffff:192.0.2.77",
            "10.0.0.7",
            "UNIX",
        ],
        header="Forwarded",
    )
    assert [str(n) for n in proxies.networks] == [
        "10.0.0.7/32",
        "10.0.0.8/32",
        "fd00::/8",
        "192.0.2.0/24",
        "192.0.2.77/32",
    ]
    assert proxies.header == "forwarded"
    assert proxies.unix
    assert repr(proxies) == (
        "TrustedProxies(['10.0.0.7/32', '10.0.0.8/32', 'fd00::/8', '192.0.2.0/24', '192.0.2.77/32', 'unix'],"
        " header='forwarded')"
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["10.0.0.0/8", "proxy.internal"], "'proxy.internal' is not an IP address, a CIDR network"),
        (["10.0.0.1/8"], "'10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'"),
        (["10.0.0.0/33"], "'10.0.0.0/33' is not an IP address"),
        (["0.0.0.0/0"], "'0.0.0.0/0' trusts every address"),
        (["::/0"], "'::/0' trusts every address"),
        ([""], "'' is not an IP address"),
    ],
)
def test_bad_trusted_proxy_entries_are_rejected_by_name(entries, message):
    """A bad entry fails construction with a ValueError that names it."""
    with pytest.raises(ValueError, match=message):
        TrustedProxies(entries)


def test_a_single_string_or_a_non_address_is_a_type_error():
    """A bare string (not a list) and non-address objects are rejected."""
    with pytest.raises(TypeError, match=r"not one string: write \['10.0.0.1'\]"):
        TrustedProxies("10.0.0.1")
    with pytest.raises(TypeError, match="is a int"):
        TrustedProxies([167772161])


def test_an_unknown_header_is_rejected():
    """Only X-Forwarded-For and Forwarded can be read."""
    with pytest.raises(ValueError, match="header must be 'x-forwarded-for' or 'forwarded', not 'x-real-ip'"):
        TrustedProxies(["10.0.0.1"], header="x-real-ip")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- from a request


def _address(headers, proxies, *, peer="10.0.0.1"):
    """The client address an app sees for one request from ``peer`` with ``headers``."""
    app = FastAPI()

    @app.get("/")
    async def where(request: Request) -> str:
        return client_address(request, proxies)

    async def run():
        transport = httpx.ASGITransport(app=app, client=(peer, 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/", headers=headers)).json()

    return asyncio.run(run())


def test_every_header_instance_is_read_in_order():
    """Repeated X-Forwarded-For headers are one list, first instance leftmost."""
    headers = [("x-forwarded-for", "1.1.1.1, 203.0.113.7"), ("x-forwarded-for", "10.0.0.2")]
    assert _address(headers, PROXIES) == "203.0.113.7"


def test_a_list_of_entries_works_as_well_as_the_object():
    """client_address accepts raw entries and builds the TrustedProxies itself."""
    assert _address({"x-forwarded-for": "203.0.113.7"}, ["10.0.0.0/8"]) == "203.0.113.7"
    assert _address({"x-forwarded-for": "203.0.113.7"}, []) == "10.0.0.1"
    assert _address({"x-forwarded-for": "203.0.113.7"}, ["10.0.0.0/8"], peer="198.51.100.4") == "198.51.100.4"


def test_a_request_without_a_client_is_unknown():
    """No peer (as over a Unix socket) and no trusted "unix" entry: "unknown"."""
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "client": None})
    assert client_address(request, PROXIES) == "unknown"
    assert client_address(request, TrustedProxies(["unix"])) == "unknown"


def test_the_peer_memo_is_bounded_and_never_changes_answers():
    """Resolving thousands of distinct peers keeps the memo bounded, and a peer resolves alike before and after."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    first = proxies.resolve("10.1.2.3", ["203.0.113.5"])
    for i in range(5000):
        assert (
            proxies.resolve(f"192.0.{i // 256}.{i % 256}", ["198.51.100.1"]) == f"192.0.{i // 256}.{i % 256}"
        )
    assert len(proxies._peers) <= 4096
    assert proxies.resolve("10.1.2.3", ["203.0.113.5"]) == first == "203.0.113.5"
    assert proxies.resolve("not-an-ip", []) == "not-an-ip"
