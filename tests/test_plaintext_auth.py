"""txmailhost/peer.py PlaintextAuth: where a password may be sent without TLS."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from txmailhost.peer import PlaintextAuth

SERVER4 = IPv4Address("TCP", "127.0.0.1", 587)
SERVER6 = IPv6Address("TCP", "::1", 587)


def v4(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 40000)


@pytest.mark.parametrize(
    ("peer", "host", "expected"),
    [
        (v4("127.0.0.1"), SERVER4, True),
        (v4("127.0.0.2"), SERVER4, False),  # a local proxy, a container: not the same address
        (v4("192.0.2.7"), IPv4Address("TCP", "192.0.2.7", 587), True),
        (v4("192.0.2.8"), IPv4Address("TCP", "192.0.2.7", 587), False),
        (IPv6Address("TCP", "::1", 1), SERVER6, True),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 1), SERVER4, True),
        (UNIXAddress("/run/sock"), UNIXAddress("/run/sock"), False),
    ],
)
def test_default_is_the_same_address_only(peer, host, expected):
    assert PlaintextAuth().allows(peer, host) is expected


def test_loopback_keyword_allows_every_loopback_address():
    policy = PlaintextAuth(["loopback"])
    assert policy.allows(v4("127.0.0.2"), SERVER4)
    assert policy.allows(IPv6Address("TCP", "::1", 1), SERVER4)
    assert not policy.allows(v4("192.0.2.1"), SERVER4)


def test_networks_allow_their_addresses_only():
    policy = PlaintextAuth(["10.0.0.0/8", "2001:db8::/32"])
    assert policy.allows(v4("10.9.8.7"), SERVER4)
    assert policy.allows(IPv6Address("TCP", "2001:db8::5", 1), SERVER6)
    assert not policy.allows(v4("11.0.0.1"), SERVER4)
    assert not policy.allows(v4("127.0.0.1"), SERVER4)  # same-address isn't implied


def test_an_empty_list_means_tls_always():
    assert not PlaintextAuth([]).allows(v4("127.0.0.1"), SERVER4)


def test_a_bad_entry_is_a_value_error():
    with pytest.raises(ValueError):
        PlaintextAuth(["nowhere"])
