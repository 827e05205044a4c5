"""Inbound politeness on port 25 (issue 20 item 9): postscreen's pregreet wait, and per-client
message and recipient rates over a sliding window with 421 4.7.0."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.smtp.test_server import Session, make_factory, world  # noqa: F401 - fixture
from txmailhost.smtp.rates import ClientRates


def test_a_client_that_waits_for_the_delayed_greeting_is_served(world):  # noqa: F811
    s = Session(make_factory(world, greeting_delay=3.0))
    assert s.read() == b""  # nothing yet
    world.reactor.advance(3.0)
    assert s.read().startswith(b"220 mx.example.test ESMTP")
    assert s.codes(b"EHLO c.test\r\n") == ["250"]


def test_a_client_that_speaks_before_the_greeting_is_refused_and_dropped(world):  # noqa: F811
    s = Session(make_factory(world, greeting_delay=3.0))
    reply = s.send(b"EHLO bot.test\r\nMAIL FROM:<x@bot.test>\r\n")
    assert reply == b"554 5.5.1 protocol error: you spoke before the greeting\r\n"
    world.reactor.advance(5.0)
    assert s.read() == b""  # no greeting after all, and nothing of what it sent was taken
    assert s.transport.disconnecting


def test_messages_over_the_clients_rate_get_421_and_the_window_moves_on(world):  # noqa: F811
    factory = make_factory(world, client_message_rate=2, rate_window=60.0)

    def one_message(s: Session) -> list[str]:
        return s.codes(b"MAIL FROM:<x@remote.test>\r\n") + s.codes(b"RSET\r\n")

    s = Session(factory)
    s.read()
    s.send(b"EHLO c.test\r\n")
    assert one_message(s) == ["250", "250"]
    other = Session(factory)  # the rate is per client address, across connections
    other.read()
    other.send(b"EHLO c.test\r\n")
    assert one_message(other) == ["250", "250"]
    assert other.send(b"MAIL FROM:<x@remote.test>\r\n") == (
        b"421 4.7.0 too many messages from your address, try again later\r\n"
    )
    assert other.transport.disconnecting
    elsewhere = Session(
        factory, StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.99", 40000))
    )
    elsewhere.read()
    elsewhere.send(b"EHLO d.test\r\n")
    assert one_message(elsewhere) == ["250", "250"]  # another address has its own count
    world.reactor.advance(61.0)
    again = Session(factory)
    again.read()
    again.send(b"EHLO c.test\r\n")
    assert one_message(again) == ["250", "250"]


def test_recipients_over_the_clients_rate_get_421(world):  # noqa: F811
    s = Session(make_factory(world, client_recipient_rate=2))
    s.read()
    s.send(b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\n")
    assert s.codes(b"RCPT TO:<alice@example.test>\r\n") == ["250"]
    assert s.codes(b"RCPT TO:<bob@example.test>\r\n") == ["250"]
    reply = s.send(b"RCPT TO:<alice@example.test>\r\n")
    assert reply == b"421 4.7.0 too many recipients from your address, try again later\r\n"


class Clock:
    now = 0.0

    def seconds(self) -> float:
        return self.now


def test_client_rates_forget_the_idlest_clients_past_their_bound():
    clock = Clock()
    rates = ClientRates(clock, limit=1, window=60.0, max_clients=2)
    assert rates.allow("a") and rates.allow("b") and not rates.allow("a")
    assert rates.allow("c")  # "b" (idlest) is forgotten, "a" kept
    assert not rates.allow("a") and rates.allow("b")
    assert ClientRates(clock, limit=0).allow("x")  # 0: no limit
