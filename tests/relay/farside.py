"""Receiving servers for relay tests: a real txmailhost SMTP server, and a scripted one."""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from tests.support.fixtures import MailWorld, make_world
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory


def txmailhost_far_side(
    tmp_path, reactor, user: str = "bob@far.test"
) -> tuple[MailWorld, SMTPFactory]:
    """Our own inbound server (port-25 policy) with one user, as the remote MX."""
    os.makedirs(tmp_path, exist_ok=True)
    world = make_world(tmp_path)
    world.add_user(user)
    spool = IncomingSpool(os.path.join(world.root, "incoming"), world.reactor, world.pool)
    spool.sweep()
    factory = SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        hostname="mx.far.test",
        reactor=reactor,
    )
    return world, factory


class ScriptedSMTP(LineReceiver):
    """Answers each command with ``script(command, session)``; None means stay silent."""

    MAX_LENGTH = 1 << 20

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.in_data = False
        self.data: list[bytes] = []
        greeting = self.factory.greeting
        if greeting is not None:
            self.sendLine(greeting)

    def lineReceived(self, line: bytes) -> None:
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.factory.messages.append(b"\r\n".join(self.data))
                self._reply(b"<end-of-data>")
            else:
                self.data.append(line)
            return
        self.factory.commands.append(line)
        self._reply(line)

    def _reply(self, command: bytes) -> None:
        reply = self.factory.script(command, self)
        if reply == b"<close>":
            self.transport.loseConnection()
        elif reply is not None:
            self.sendLine(reply)
            if reply.startswith(b"354"):
                self.in_data = True
                self.data = []


class ScriptedFactory(Factory):
    protocol = ScriptedSMTP

    def __init__(
        self,
        script: Callable[[bytes, ScriptedSMTP], bytes | None],
        greeting: bytes | None = b"220 scripted ESMTP",
    ) -> None:
        self.script = script
        self.greeting = greeting
        self.commands: list[bytes] = []
        self.messages: list[bytes] = []
        self.connections = 0


def standard_reply(command: bytes) -> bytes:
    verb = command.split(b" ", 1)[0].upper()
    return {
        b"EHLO": b"250-scripted\r\n250 PIPELINING",
        b"MAIL": b"250 2.1.0 ok",
        b"RCPT": b"250 2.1.5 ok",
        b"DATA": b"354 go ahead",
        b"<END-OF-DATA>": b"250 2.0.0 accepted",
        b"QUIT": b"221 2.0.0 bye",
        b"RSET": b"250 ok",
    }.get(verb, b"500 5.5.1 what?")
