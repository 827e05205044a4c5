"""Connection limits per listener, with the protocol's own refusal line."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from txmailhost.limits import LimitedFactory


class Echo(Protocol):
    def connectionMade(self):
        self.transport.write(b"hello\r\n")


def connect(factory, host):
    addr = IPv4Address("TCP", host, 1234)
    protocol = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    protocol.makeConnection(transport)
    return protocol, transport


def test_per_ip_and_total_limits_refuse_with_the_protocol_line_and_free_on_close():
    limited = LimitedFactory(Factory.forProtocol(Echo), "smtp", b"421 4.7.0 busy\r\n", 3, 2)
    p1, t1 = connect(limited, "192.0.2.1")
    _p2, t2 = connect(limited, "192.0.2.1")
    _p3, t3 = connect(limited, "192.0.2.1")
    assert t1.value() == t2.value() == b"hello\r\n"
    assert t3.value() == b"421 4.7.0 busy\r\n" and t3.disconnecting
    _p4, t4 = connect(limited, "192.0.2.2")
    assert t4.value() == b"hello\r\n"
    _p5, t5 = connect(limited, "192.0.2.3")
    assert t5.value() == b"421 4.7.0 busy\r\n"  # total of 3 reached
    p1.connectionLost(None)
    _p6, t6 = connect(limited, "192.0.2.1")
    assert t6.value() == b"hello\r\n"


def test_a_worker_is_over_its_fair_share_only_clearly_above_the_least_busy_worker():
    limited = LimitedFactory(Factory.forProtocol(Echo), "imap", b"* BYE busy\r\n", 1000, 1000)
    for i in range(5):
        connect(limited, f"192.0.2.{i}")
    assert not limited.over_fair_share()  # alone: nobody to leave connections to
    limited.peer_counts(1, "192.0.2.9", 4, 4)
    assert not limited.over_fair_share()  # 5 against 4: within the slack of one
    limited.peer_counts(1, "192.0.2.9", 3, 3)
    assert limited.over_fair_share()  # 5 against 3
    limited.peer_counts(2, "192.0.2.8", 9, 9)
    assert limited.over_fair_share()  # the least busy worker is what counts
    limited.peer_restarted(1)
    assert not limited.over_fair_share()  # a restarted worker's old counts are void
