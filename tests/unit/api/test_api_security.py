"""Who the rate limit counts a request against: the client address rules, without a server."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from stockml.api.security import client_address, parse_networks
from stockml.settings import ApiSettings

PROXIES = parse_networks(["10.0.0.0/8", "::1"])


def scope(peer: str | None, *forwarded: str, event: dict[str, Any] | None = None) -> dict:
    headers = [(b"x-forwarded-for", f.encode()) for f in forwarded]
    out: dict[str, Any] = {
        "type": "http",
        "headers": headers,
        "client": (peer, 1234) if peer else None,
    }
    if event is not None:
        out["aws.event"] = event
    return out


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # no trusted proxy: the header is never read
        ("192.0.2.1", ["198.51.100.1"], [], "192.0.2.1"),
        # an untrusted peer's header is ignored
        ("192.0.2.1", ["198.51.100.1"], PROXIES, "192.0.2.1"),
        # a trusted proxy names the client
        ("10.0.0.5", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        # the nearest untrusted hop wins: what a client prepends is ignored
        ("10.0.0.5", ["203.0.113.9, 198.51.100.1, 10.0.0.6"], PROXIES, "198.51.100.1"),
        # several header lines are one list, in order
        ("10.0.0.5", ["203.0.113.9", "198.51.100.1"], PROXIES, "198.51.100.1"),
        # only proxies in the chain: the farthest
        ("10.0.0.5", ["10.0.0.7, 10.0.0.8"], PROXIES, "10.0.0.7"),
        # no or an empty header: the peer
        ("10.0.0.5", [], PROXIES, "10.0.0.5"),
        ("10.0.0.5", [" , "], PROXIES, "10.0.0.5"),
        # a hop that is not an address is never a trusted proxy
        ("10.0.0.5", ["198.51.100.1, junk"], PROXIES, "junk"),
        # IPv6
        ("::1", ["2001:db8::7"], PROXIES, "2001:db8::7"),
        (None, ["198.51.100.1"], PROXIES, "unknown"),
    ],
)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: list, expected: str
) -> None:
    assert client_address(scope(peer, *forwarded), trusted) == expected


@pytest.mark.parametrize(
    "event",
    [
        {"requestContext": {"identity": {"sourceIp": "192.0.2.44"}}},  # REST API (v1)
        {"version": "2.0", "requestContext": {"http": {"sourceIp": "192.0.2.44"}}},  # HTTP API
    ],
)
def test_on_lambda_the_peer_is_the_gateways_source_ip(event: dict[str, Any]) -> None:
    # GIVEN Mangum's scope of an API Gateway event, whatever its "client" says
    s = scope("127.0.0.9", "198.51.100.1", event=event)
    # THEN the peer is the gateway's sourceIp, and the header counts only if that is trusted
    assert client_address(s, []) == "192.0.2.44"
    assert client_address(s, parse_networks(["192.0.2.0/24"])) == "198.51.100.1"


def test_an_event_without_source_ip_falls_back_to_the_client() -> None:
    assert client_address(scope("192.0.2.3", event={"requestContext": {}}), []) == "192.0.2.3"


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert ApiSettings(trusted_proxies=["10.0.0.0/8", "192.0.2.1", "::1"]).trusted_proxies
    with pytest.raises(pydantic.ValidationError, match="is not an IP address or CIDR network"):
        ApiSettings(trusted_proxies=["proxy.internal"])
