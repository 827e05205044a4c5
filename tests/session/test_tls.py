"""session/tls.py: STARTTLS drops what was pipelined before the handshake."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from txmailhost.session.tls import SessionTLS


@implementer(ITLSTransport)
class _TLSCapable(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.started_with: Any = None

    def startTLS(self, contextFactory: Any) -> None:
        self.started_with = contextFactory


def test_start_discards_buffered_input_then_starts_tls():
    creator, transport = object(), _TLSCapable()
    buffer = bytearray(b"RSET\r\nQUIT\r\n")

    def drop() -> bytes:
        pending = bytes(buffer)
        buffer.clear()
        return pending

    tls = SessionTLS(creator, implicit=False)
    assert tls.available(transport)
    assert tls.start(transport, drop, "smtp", "192.0.2.1") == 12
    assert buffer == b"" and transport.started_with is creator
    assert tls.active(transport) and not tls.available(transport)
    assert tls.how(transport) == "starttls"


def test_starttls_is_unavailable_without_a_certificate_or_a_tls_capable_transport():
    assert not SessionTLS(None, implicit=False).available(_TLSCapable())
    assert not SessionTLS(object(), implicit=False).available(StringTransport())


def test_implicit_tls_is_active_from_the_start():
    tls = SessionTLS(object(), implicit=True, command="STLS")
    assert tls.active(StringTransport()) and tls.how(StringTransport()) == "implicit"
    assert SessionTLS(object(), implicit=False, command="STLS").how(StringTransport()) is None
