"""The client's address, taken from forwarding headers only behind proxies the application trusts.

A request's direct peer (``request.client.host``) is the only address the server saw
itself. ``X-Forwarded-For`` and ``Forwarded`` are written by whoever sent the request,
so they say something only when the peer is a proxy we trust to append what it saw. The
walk follows uvicorn's ``ProxyHeadersMiddleware`` and werkzeug's ``ProxyFix``:

* the peer is not a trusted proxy: the peer is the client, and the headers are ignored
  entirely (a client cannot mint identities by sending made-up addresses);
* the peer is trusted: the header's hops (every header instance, comma lists) are read
  from right to left, skipping trusted addresses; the first untrusted one is the client.
  Each proxy appends the address it saw, so everything left of the first untrusted hop
  was written by the client and is never read;
* a hop that is not an IP address (``unknown``, an obfuscated ``_node``, garbage) stops
  the walk: the client is the last good hop, never the garbage;
* every hop is trusted: the leftmost one (the request came from inside the trusted
  networks).

Addresses come back canonical: IPv6 compressed and lower-case without a zone,
IPv4-mapped IPv6 (``::ffff:192.0.2.1``) as plain IPv4, ports dropped.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from starlette.requests import HTTPConnection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]
ProxySpec = str | IPAddress | IPNetwork
"""One trusted proxy: an address, a CIDR network, or ``"unix"`` (a peer on a Unix socket)."""

UNKNOWN: Final = "unknown"
"""The address of a request whose peer has no address and is not trusted (RFC 7239's word)."""

UNIX: Final = "unix"
"""The ``trusted_proxies`` entry that trusts a peer without a network address (a Unix socket)."""

_HEADERS: Final[dict[str, ForwardedHeader]] = {"x-forwarded-for": "x-forwarded-for", "forwarded": "forwarded"}
_MAX_HOP = 100
"""Longer than any address with brackets, zone and port: a longer hop is garbage, not parsed."""
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


_PEER_MEMO_SIZE = 4096


def canonical(address: IPAddress) -> str:
    """An address as one canonical string: IPv4-mapped IPv6 as IPv4, IPv6 without its zone."""
    return str(_plain(address))


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
        if address.scope_id is not None:
            # A zone names an interface of the machine that saw the address, not the client.
            return ipaddress.IPv6Address(int(address))
    return address


def parse_node(text: str) -> IPAddress | None:
    """The address of one forwarding hop, or ``None`` when it is not an IP address.

    Accepts ``192.0.2.1``, ``192.0.2.1:8080``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:443``; a port must be digits (or an RFC 7239 obfuscated ``_port``).
    """
    text = text.strip()
    if not text or len(text) > _MAX_HOP:
        return None
    host = text
    port = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
            if not port:
                return None
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has at least two colons
        host, port = text.split(":")
        if not port:
            return None
    if port and not (port.isascii() and (port.isdigit() or _obfuscated(port))):
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _obfuscated(token: str) -> bool:
    return token.startswith("_") and len(token) > 1 and all(c.isalnum() or c in "._-" for c in token[1:])


def _proxy_network(entry: object) -> IPNetwork:
    """One ``trusted_proxies`` entry as a network; ``ValueError`` naming the entry when it is not one."""
    if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network: IPNetwork = entry
    elif isinstance(entry, ipaddress.IPv4Address | ipaddress.IPv6Address):
        network = ipaddress.ip_network(_plain(entry))
    elif isinstance(entry, str):
        text = entry.strip()
        try:
            if "/" in text:
                network = ipaddress.ip_network(text)
            else:
                network = ipaddress.ip_network(_plain(ipaddress.ip_address(text)))
        except ValueError as exc:
            if "has host bits set" in str(exc):
                suggestion = ipaddress.ip_network(text, strict=False)
                msg = f"trusted_proxies entry {entry!r} has host bits set; did you mean {str(suggestion)!r}?"
            else:
                msg = (
                    f"trusted_proxies entry {entry!r} is not an IP address, a CIDR network "
                    f"(such as '10.0.0.0/8') or {UNIX!r}; host names are not resolved"
                )
            raise ValueError(msg) from None
    else:
        msg = f"trusted_proxies entry {entry!r} is a {type(entry).__name__}, not an address or network string"
        raise TypeError(msg)
    if network.prefixlen == 0:
        msg = (
            f"trusted_proxies entry {entry!r} trusts every address, which would let any client "
            "choose its own address with a forwarding header; list your proxies' addresses"
        )
        raise ValueError(msg)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        # ::ffff:10.0.0.0/104 is 10.0.0.0/8: hops are compared as plain IPv4.
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # noqa: S101  every address of ::ffff:0:0/96 is mapped
        network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


class TrustedProxies:
    """The proxies whose forwarding headers are believed, and which header they write.

    Args:
        proxies: Addresses (``"10.0.0.7"``), CIDR networks (``"10.0.0.0/8"``,
            ``"fd00::/8"``), ``ipaddress`` objects, or ``"unix"`` for a proxy that
            connects over a Unix socket (the peer has no address). Empty: trust no one,
            every request's client is its direct peer.
        header: ``"x-forwarded-for"`` (default) or ``"forwarded"`` (RFC 7239, its
            ``for=`` parameters). Only this header is read: a proxy that writes the other
            one passes a client's copy of this one through untouched, so reading both
            would let clients choose their address.

    Raises:
        ValueError: An entry is not an address or network (the message names it), has
            host bits set (``10.0.0.1/8``), or is a network of every address
            (``0.0.0.0/0``); or ``header`` is not one of the two above.
        TypeError: ``proxies`` is a single string, or an entry is not a string or
            ``ipaddress`` object.
    """

    __slots__ = ("_peers", "_v4", "_v6", "header", "networks", "unix")

    def __init__(
        self, proxies: Iterable[ProxySpec] = (), *, header: ForwardedHeader = "x-forwarded-for"
    ) -> None:
        if isinstance(proxies, str | bytes):
            msg = f"trusted_proxies takes a list of addresses, not one string: write [{proxies!r}]"
            raise TypeError(msg)
        found = _HEADERS.get(str(header).lower())
        if found is None:
            msg = f"header must be 'x-forwarded-for' or 'forwarded', not {header!r}"
            raise ValueError(msg)
        self.header: ForwardedHeader = found
        self.unix = False
        networks: list[IPNetwork] = []
        for entry in proxies:
            if isinstance(entry, str) and entry.strip().lower() == UNIX:
                self.unix = True
                continue
            network = _proxy_network(entry)
            if network not in networks:
                networks.append(network)
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        self._v4 = tuple(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in networks if isinstance(n, ipaddress.IPv6Network))
        # peer host -> (its canonical form, whether it is trusted): parsing an address
        # with ipaddress costs more than the rest of a rate-limit check, and a server
        # sees the same few peers (its proxies, its clients) over and over.
        self._peers: dict[str, tuple[str, bool]] = {}

    def __repr__(self) -> str:
        entries = [str(n) for n in self.networks] + ([UNIX] if self.unix else [])
        return f"TrustedProxies({entries!r}, header={self.header!r})"

    def __bool__(self) -> bool:
        return bool(self.networks) or self.unix

    def trusts(self, address: IPAddress) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        plain = _plain(address)
        if isinstance(plain, ipaddress.IPv4Address):
            return any(plain in n for n in self._v4)
        return any(plain in n for n in self._v6)

    def resolve(self, peer: str | None, values: Sequence[str]) -> str:
        """The client's address, from the direct peer and the instances of the forwarding header.

        Args:
            peer: The direct peer's host as the server reports it (``None`` when it has
                none, as over a Unix socket).
            values: Every instance of the forwarding header, in the order received.

        Returns:
            A canonical IP address; the peer as given when it is not an IP address (and
            so cannot be trusted); ``"unknown"`` when there is no peer address and Unix
            socket peers are not trusted.
        """
        if not peer:
            if not self.unix:
                return UNKNOWN
            last = UNKNOWN
        else:
            known = self._peers.get(peer)
            if known is None:
                address = parse_node(peer)
                known = (
                    (peer.strip(), False) if address is None else (canonical(address), self.trusts(address))
                )
                if len(self._peers) >= _PEER_MEMO_SIZE:
                    self._peers.clear()
                self._peers[peer] = known
            last, trusted = known
            if not trusted:
                return last
        hops = _forwarded_for(values) if self.header == "forwarded" else _x_forwarded_for(values)
        for hop in reversed(hops):
            address = parse_node(hop) if hop is not None else None
            if address is None:
                return last
            last = canonical(address)
            if not self.trusts(address):
                return last
        return last


def _x_forwarded_for(values: Sequence[str]) -> list[str | None]:
    # RFC 9110 5.6.1: recipients ignore empty list elements ("a, , b").
    return [item for value in values for item in value.split(",") if item.strip()]


def _forwarded_for(values: Sequence[str]) -> list[str | None]:
    """The ``for=`` value of each RFC 7239 element; ``None`` for an element without a readable one."""
    hops: list[str | None] = []
    for value in values:
        elements = _split_unquoted(value, ",")
        if elements is None:  # an unbalanced quote: nothing in this instance can be read
            hops.append(None)
            continue
        hops.extend(_for_of(element) for element in elements if element.strip())
    return hops


def _for_of(element: str) -> str | None:
    found: str | None = None
    for pair in _split_unquoted(element, ";") or ():  # never None: the element's quotes balance
        name, equals, raw = pair.partition("=")
        if not equals:
            return None
        if name.strip().lower() != "for":
            continue
        if found is not None:  # RFC 7239 4: a parameter occurs at most once per element
            return None
        value = raw.strip()
        if value.startswith('"'):
            if not value.endswith('"'):  # "203.0.113.7"x
                return None
            value = _unescape(value[1:-1])
        found = value
    return found


def _split_unquoted(text: str, separator: str) -> list[str] | None:
    """``text`` split on ``separator`` outside quoted strings; ``None`` when a quote is unbalanced."""
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    if quoted:
        return None
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    out: list[str] = []
    escaped = False
    for char in text:
        if char == "\\" and not escaped:
            escaped = True
            continue
        escaped = False
        out.append(char)
    return "".join(out)


def client_address(
    request: HTTPConnection, trusted_proxies: TrustedProxies | Iterable[ProxySpec] = ()
) -> str:
    """The address of the client that sent ``request``, believing only trusted proxies.

    Args:
        request: The Starlette/FastAPI request (or WebSocket).
        trusted_proxies: A :class:`TrustedProxies`, or the entries to build one from
            (``["10.0.0.0/8"]``; reading ``X-Forwarded-For``). Build the object once
            when calling this per request: entries are parsed and checked on
            construction.

    Returns:
        The canonical client address (see :meth:`TrustedProxies.resolve`).

    Raises:
        ValueError: ``trusted_proxies`` holds an entry that is not an address or network.
    """
    proxies = (
        trusted_proxies if isinstance(trusted_proxies, TrustedProxies) else TrustedProxies(trusted_proxies)
    )
    peer = request.client.host if request.client is not None else None
    if not proxies:
        return proxies.resolve(peer, ())
    return proxies.resolve(peer, request.headers.getlist(proxies.header))
