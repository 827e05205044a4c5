"""txmailhost/peer.py OutputPressure.close: how every protocol ends a session."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txmailhost.peer import CLOSE_GRACE, OutputPressure


class ClosingTransport(StringTransport):
    """Records the order in which a session steps aside, closes and aborts."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def unregisterProducer(self) -> None:
        self.events.append("unregister")
        super().unregisterProducer()

    def loseConnection(self) -> None:
        # Twisted's TLS layer sends close_notify here only when no producer is registered.
        self.events.append("close" if self.producer is None else "close-with-producer")
        super().loseConnection()

    def abortConnection(self) -> None:
        self.events.append("abort")


def test_close_unregisters_the_producer_before_closing_so_tls_can_shut_down():
    transport, clock = ClosingTransport(), Clock()
    pressure = OutputPressure(lambda: None)
    pressure.register(transport)
    pressure.close(transport, clock)
    assert transport.events == ["unregister", "close"]


def test_a_client_that_never_closes_is_aborted_after_the_grace():
    transport, clock = ClosingTransport(), Clock()
    pressure = OutputPressure(lambda: None)
    pressure.register(transport)
    pressure.close(transport, clock)
    clock.advance(CLOSE_GRACE - 0.1)
    assert "abort" not in transport.events
    clock.advance(0.2)
    assert transport.events[-1] == "abort"


def test_no_abort_once_the_connection_is_gone():
    transport, clock = ClosingTransport(), Clock()
    pressure = OutputPressure(lambda: None)
    pressure.register(transport)
    pressure.close(transport, clock)
    pressure.connection_lost()
    clock.advance(CLOSE_GRACE * 2)
    assert "abort" not in transport.events
    assert clock.getDelayedCalls() == []
