"""Capabilities, STARTTLS and login (RFC 3501 §6.1-6.2, SASL PLAIN RFC 4616 with SASL-IR
RFC 4959): the not-authenticated state of an IMAP session.

Rules kept here (DESIGN invariant 6, notes/security.md): a password is accepted only over TLS
or from loopback (otherwise ``LOGINDISABLED`` and ``NO [PRIVACYREQUIRED]``); the bytes a client
pipelined after STARTTLS are discarded, never run inside TLS (CVE-2011-0411); a failed login is
answered only after a pause and logged, three of them end the session, and the Portal may refuse
further attempts altogether (``LoginThrottled``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.logger import Logger

from txmailhost.accounts.throttle import LoginThrottled, password_login
from txmailhost.imap import replies
from txmailhost.imap.parser import Reader
from txmailhost.imap.replies import Done, printable
from txmailhost.peer import describe_tls
from txmailhost.sasl import SASLError, decode_response, parse_plain

log = Logger(namespace="txmailhost.imap")

MAX_AUTH_FAILURES = 3


class LoginCommands:
    """Part of ``IMAPServer``: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE."""

    factory: Any
    transport: Any
    state: Any
    account: Any
    user: str | None
    peer_text: str
    lost: bool
    dirty: bool
    _peer: Any
    _tls: bool
    _auth_failures: int
    _delay: Deferred[None] | None
    _logout: Callable[[], None] | None
    _after_reply: Callable[[], None] | None

    # provided by IMAPServer, UpdateMixin and LineReceiver; annotations only, so that nothing
    # here shadows the real methods in the MRO
    write: Callable[[bytes], None]
    flush: Callable[[], None]
    close: Callable[[], None]
    unselect: Callable[[], None]
    clearLineBuffer: Callable[[], bytes]
    _reset_command: Callable[[], None]
    read_line: Callable[[], Any]

    def secure(self) -> bool:
        return self.factory.implicit_tls or self._tls or ISSLTransport.providedBy(self.transport)

    def tls_how(self) -> str | None:
        """How this session got TLS, for log lines: implicit (993), STARTTLS, or not at all."""
        if self.factory.implicit_tls:
            return "implicit"
        return "starttls" if self.secure() else None

    def plaintext_allowed(self) -> bool:
        return self.secure() or self.factory.plaintext_auth.allows(
            self._peer, self.transport.getHost()
        )

    def _starttls_available(self) -> bool:
        return (
            self.factory.tls_creator is not None
            and not self.secure()
            and ITLSTransport.providedBy(self.transport)
        )

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.state.name == "NOT_AUTHENTICATED":
            if self._starttls_available():
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.plaintext_allowed() else "LOGINDISABLED")
            return caps
        return caps + [
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "STATUS=SIZE",
            f"APPENDLIMIT={self.factory.max_literal_size}",
        ]

    async def _capability(self, reader: Reader, by_uid: bool) -> Done:
        reader.end()
        self.write(("* CAPABILITY " + " ".join(self.capabilities()) + "\r\n").encode())
        return Done("CAPABILITY completed")

    async def _noop(self, reader: Reader, by_uid: bool) -> Done:
        reader.end()
        self.dirty = True  # pick up changes made by other processes too
        return Done("NOOP completed")

    async def _logout_cmd(self, reader: Reader, by_uid: bool) -> Done:
        reader.end()
        self.write(b"* BYE txmailhost IMAP server signing off\r\n")
        self.unselect()
        self.state = type(self.state).LOGOUT
        self._after_reply = self.close
        return Done("LOGOUT completed")

    async def _starttls(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 3501 §6.2.1, RFC 2595 §3.1. Bytes pipelined after STARTTLS, before the handshake,
        are discarded: running them would execute plaintext-injected commands inside TLS
        (CVE-2011-0411)."""
        reader.end()
        if self.secure():
            raise replies.BadCommand("TLS already active")
        if not self._starttls_available():
            raise replies.BadCommand("STARTTLS not available")
        self._after_reply = self._start_tls
        return Done("begin TLS negotiation now")

    def _start_tls(self) -> None:
        discarded = self.clearLineBuffer()
        if discarded:
            log.warn(
                "imap discarded {octets} octets pipelined after STARTTLS by {peer}",
                octets=len(discarded),
                peer=self.peer_text,
            )
        self._reset_command()
        self.transport.startTLS(self.factory.tls_creator)
        self._tls = True

    async def _login_cmd(self, reader: Reader, by_uid: bool) -> Done:
        reader.sp()
        username = reader.astring()
        reader.sp()
        password = reader.astring()
        reader.end()
        if not self.plaintext_allowed():
            raise replies.PrivacyRequired()
        return await self._login(username, password, "LOGIN")

    async def _authenticate(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 3501 §6.2.2 with SASL PLAIN (RFC 4616) and an initial response (RFC 4959)."""
        reader.sp()
        mechanism = reader.atom().upper()
        response = reader.atom() if reader.skip_sp() else None
        reader.end()
        if mechanism != b"PLAIN":
            raise replies.IMAPError("unsupported authentication mechanism; only PLAIN")
        if not self.plaintext_allowed():
            raise replies.PrivacyRequired()
        if response is None:
            self.write(b"+ \r\n")
            self.flush()
            response = (await self.read_line()).strip()
            if response == b"*":
                raise replies.BadCommand("authentication cancelled")
        try:
            authcid, password = parse_plain(decode_response(response))
        except SASLError as e:
            if e.reason == "base64":
                raise replies.BadCommand("invalid base64 in SASL response") from None
            if e.reason == "malformed":
                raise replies.BadCommand("invalid PLAIN response") from None
            raise replies.AuthFailed(
                "authorization identity must be empty or the user name"
            ) from None
        return await self._login(authcid, password, "PLAIN")

    async def _login(self, username: bytes, password: bytes, mechanism: str) -> Done:
        try:
            account, logout = await password_login(
                self, "imap", username, password, mechanism, printable(username)
            )
        except LoginThrottled:
            raise replies.Unavailable(
                "too many failed logins, try again later", closes=True
            ) from None
        except LoginFailed:
            raise replies.AuthFailed(closes=self._auth_failures >= MAX_AUTH_FAILURES) from None
        self._logout = logout
        if self.lost:
            return Done()
        self.account = account
        self.user = printable(account.address)
        self.state = type(self.state).AUTHENTICATED
        log.info(
            "imap {listener} login {user} from {peer} via {mechanism} tls={tls}",
            listener=self.factory.name,
            user=self.user,
            peer=self.peer_text,
            mechanism=mechanism,
            tls=describe_tls(self.transport, self.tls_how()),
        )
        caps = " ".join(self.capabilities())
        return Done(f"{self.user} authenticated", code=f"CAPABILITY {caps}")
