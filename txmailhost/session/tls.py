"""TLS on a session: implicit from the first byte, or started by STARTTLS/STLS.

One piece for every protocol, because the dangerous part is the same everywhere: a client (or a
man in the middle) may send commands in the same packet as STARTTLS. Those bytes arrived in
clear text; running them after the handshake would execute injected commands inside the
encrypted session (CVE-2011-0411, RFC 3207 §4.2, RFC 2595 §3.1). :meth:`SessionTLS.start`
drops them before it hands the transport to TLS, and logs how many there were. What the session
learnt before TLS (a HELO, a POP3 USER) is the protocol's to forget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.logger import Logger

log = Logger(namespace="txmailhost.session")


class SessionTLS:
    """Whether one session is encrypted, how, and starting TLS on it.

    ``creator`` is the server's ``IOpenSSLServerConnectionCreator`` (None: no certificate, no
    STARTTLS); ``implicit`` marks a listener that is TLS from the first byte (465, 993, 995);
    ``command`` is the protocol's name for STARTTLS (``"STLS"`` in POP3), for log lines.
    """

    def __init__(self, creator: Any, implicit: bool, command: str = "STARTTLS") -> None:
        self.creator = creator
        self.implicit = implicit
        self.command = command
        self.started = False

    def active(self, transport: Any) -> bool:
        """Is the session encrypted (implicitly, after STARTTLS, or by a TLS transport)?"""
        return self.implicit or self.started or ISSLTransport.providedBy(transport)

    def available(self, transport: Any) -> bool:
        """May STARTTLS be offered: a certificate, no TLS yet, a transport that can start it."""
        return (
            self.creator is not None
            and not self.active(transport)
            and ITLSTransport.providedBy(transport)
        )

    def how(self, transport: Any) -> str | None:
        """For log lines: ``"implicit"``, the STARTTLS command in lower case, or None."""
        if self.implicit:
            return "implicit"
        return self.command.lower() if self.active(transport) else None

    def start(
        self,
        transport: Any,
        drop_buffered: Callable[[], bytes | bytearray],
        protocol: str,
        peer: str,
    ) -> int:
        """Discard what the client sent after the command, then start the handshake.

        ``drop_buffered`` empties the session's input buffer and returns what was in it (a
        ``LineReceiver``'s ``clearLineBuffer``); the protocol has already written and flushed
        its "go ahead" reply. Returns the number of octets discarded.
        """
        discarded = len(drop_buffered())
        if discarded:
            log.warn(
                "{protocol} discarded {octets} octets pipelined after {command} by {peer}",
                protocol=protocol,
                octets=discarded,
                command=self.command,
                peer=peer,
            )
        transport.startTLS(self.creator)
        self.started = True
        return discarded
