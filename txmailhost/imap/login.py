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
from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.imap import replies
from txmailhost.imap.parser import Reader
from txmailhost.imap.replies import Done, printable
from txmailhost.imap.sort import CAPABILITIES as SORT_CAPABILITIES
from txmailhost.imap.state import State
from txmailhost.peer import describe_tls
from txmailhost.sasl import SASLError
from txmailhost.session.auth import (
    Challenge,
    Credentials,
    PasswordExchange,
    PasswordLogin,
    passwords_allowed,
)
from txmailhost.session.tls import SessionTLS

log = Logger(namespace="txmailhost.imap")

MAX_AUTH_FAILURES = 3

# What a bad SASL exchange is answered with (session/auth.py's reasons).
_SASL_ERRORS: dict[str, Callable[[], replies.IMAPError]] = {
    "base64": lambda: replies.BadCommand("invalid base64 in SASL response"),
    "malformed": lambda: replies.BadCommand("invalid PLAIN response"),
    "authzid": lambda: replies.AuthFailed("authorization identity must be empty or the user name"),
    "cancelled": lambda: replies.BadCommand("authentication cancelled"),
}


class LoginCommands:
    """Part of ``IMAPServer``: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE."""

    factory: Any
    transport: Any
    state: Any
    account: Any
    setTimeout: Any  # TimeoutMixin's
    user: str | None
    peer_text: str
    lost: bool
    dirty: bool
    _peer: Any
    _tls: SessionTLS
    _logins: PasswordLogin | None
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
    metadata_offered: Callable[[], bool]
    acl_offered: Callable[[], bool]

    def secure(self) -> bool:
        return self._tls.active(self.transport)

    def tls_how(self) -> str | None:
        """How this session got TLS, for log lines: implicit (993), STARTTLS, or not at all."""
        return self._tls.how(self.transport)

    def plaintext_allowed(self) -> bool:
        return passwords_allowed(
            self.secure(), self.factory.plaintext_auth, self._peer, self.transport.getHost()
        )

    def _starttls_available(self) -> bool:
        return self._tls.available(self.transport)

    def capabilities(self) -> list[str]:
        # RFC 9051 §7.2.2: a server of both revisions lists both; ENABLE IMAP4rev2 switches.
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.state is State.NOT_AUTHENTICATED:
            if self._starttls_available():
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.plaintext_allowed() else "LOGINDISABLED")
            return caps
        return (
            caps
            + [
                "NAMESPACE",
                "UIDPLUS",
                "MULTIAPPEND",
                "BINARY",
                "CATENATE",
                "MOVE",
                "UNSELECT",
                "CHILDREN",
                "SPECIAL-USE",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "CONDSTORE",
                "QRESYNC",
                "ESEARCH",
                "SEARCHRES",
                "PREVIEW",
                "UTF8=ACCEPT",
                "NOTIFY",
                "COMPRESS=DEFLATE",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "STATUS=SIZE",
                "SAVEDATE",
                "OBJECTID",
                f"APPENDLIMIT={self.factory.max_literal_size}",
                *SORT_CAPABILITIES,
            ]
            + (["URLAUTH"] if self.factory.urlauth else [])
            + (["METADATA"] if self.metadata_offered() else [])
            + (["ACL", "RIGHTS=texk", "LIST-MYRIGHTS"] if self.acl_offered() else [])
        )

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
        self.state = State.LOGOUT
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
        self._reset_command()
        self._tls.start(self.transport, self.clearLineBuffer, "imap", self.peer_text)

    async def _login_cmd(self, reader: Reader, by_uid: bool) -> Done:
        reader.sp()
        username = reader.astring()
        reader.sp()
        password = reader.astring()
        reader.end()
        if not self.plaintext_allowed():
            raise replies.PrivacyRequired()
        return await self._login(Credentials(username, password, "LOGIN"))

    async def _authenticate(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 3501 §6.2.2 with SASL PLAIN (RFC 4616) and an initial response (RFC 4959)."""
        reader.sp()
        mechanism = reader.atom().upper()
        response = reader.atom() if reader.skip_sp() else None
        reader.end()
        try:
            exchange = PasswordExchange(mechanism, offered=("PLAIN",))
        except SASLError:
            raise replies.IMAPError("unsupported authentication mechanism; only PLAIN") from None
        if not self.plaintext_allowed():
            raise replies.PrivacyRequired()
        try:
            step = exchange.begin(response)
            while isinstance(step, Challenge):
                self.write(b"+ " + step.encoded() + b"\r\n")
                self.flush()
                step = exchange.respond((await self.read_line()).strip())
        except SASLError as e:
            raise _SASL_ERRORS[e.reason]() from None
        return await self._login(step)

    async def _login(self, credentials: Credentials) -> Done:
        assert self._logins is not None  # set up when the connection was made
        try:
            account, logout = await self._logins.login(
                credentials, self._peer, self.peer_text, printable(credentials.username)
            )
        except LoginThrottled:
            raise replies.Unavailable(
                "too many failed logins, try again later", closes=True
            ) from None
        except LoginFailed:
            closes = self._logins.failures >= MAX_AUTH_FAILURES
            raise replies.AuthFailed(closes=closes) from None
        except CancelledError:
            raise  # the connection went while a failure's pause ran
        except Exception:
            # the accounts' database out of reach (restarting, failing over, locked): the
            # password was never checked, so nothing is counted; the client may try again
            # (RFC 5530 UNAVAILABLE), as SMTP AUTH answers 454 here
            log.failure("imap login error for {user}", user=printable(credentials.username))
            raise replies.Unavailable("authentication unavailable, try again later") from None
        self._logout = logout
        if self.lost:
            return Done()
        self.account = account
        self.user = printable(account.address)
        self.state = State.AUTHENTICATED
        self.setTimeout(self.factory.idle_timeout)  # from the shorter one before login
        log.info(
            "imap {listener} login {user} from {peer} via {mechanism} tls={tls}",
            listener=self.factory.name,
            user=self.user,
            peer=self.peer_text,
            mechanism=credentials.mechanism,
            tls=describe_tls(self.transport, self.tls_how()),
        )
        caps = " ".join(self.capabilities())
        return Done(f"{self.user} authenticated", code=f"CAPABILITY {caps}")
