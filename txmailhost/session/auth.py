"""Passwords on a session: where they may be sent, the SASL dialogue, the login itself.

Three pieces, each protocol-neutral so that SMTP AUTH (RFC 4954), POP3 USER/PASS and AUTH
(RFC 1939, RFC 5034), IMAP LOGIN and AUTHENTICATE (RFC 3501 §6.2, RFC 4959) and a later
ManageSieve can't drift apart:

- :func:`passwords_allowed`: a password only over TLS, or from where ``[security]
  plaintext_auth_from`` allows clear text (DESIGN invariant 6, RFC 8314 §5). Where it says no,
  the protocols neither advertise password mechanisms nor accept them.
- :class:`PasswordExchange`: SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) as a
  state machine. It returns a :class:`Challenge` to send (the protocol puts it on its own wire,
  ``334`` or ``+``) or the :class:`Credentials`; a bad response raises ``SASLError`` with a
  reason ("mechanism", "cancelled", "base64", "malformed", "authzid") that each protocol maps
  to its own reply.
- :class:`PasswordLogin`: one session's logins through the Portal (``ThrottledPortal`` counts
  failures across every protocol), logged, counted, and refused only after the protocol's fixed
  pause on top of the throttle's growing one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import alsoProvides

from txmailhost.accounts.apppasswords import IAccountPasswordOnly
from txmailhost.accounts.interfaces import IMailAccount
from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.ops import metrics
from txmailhost.peer import PlaintextAuth
from txmailhost.sasl import SASLError, decode_response, parse_plain

log = Logger(namespace="txmailhost.session")


def passwords_allowed(tls_active: bool, plaintext: PlaintextAuth, peer: Any, host: Any) -> bool:
    """May a password be sent on this connection: over TLS, or in clear where allowed?"""
    return tls_active or plaintext.allows(peer, host)


# -- SASL ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """Send ``prompt`` (base64 on the wire; empty for an empty challenge), then the client's
    response goes to :meth:`PasswordExchange.respond`."""

    prompt: bytes

    def encoded(self) -> bytes:
        return base64.b64encode(self.prompt)


@dataclass(frozen=True)
class Credentials:
    """What the client authenticated with; the mechanism is for log lines."""

    username: bytes
    password: bytes
    mechanism: str


_USERNAME, _PASSWORD = b"Username:", b"Password:"  # LOGIN's customary prompts


class PasswordExchange:
    """One SASL exchange with a password mechanism, PLAIN or LOGIN.

    ``mechanism`` is what the client named (any case); one not in ``offered`` raises
    ``SASLError("mechanism")`` at once. Then :meth:`begin` with the initial response, if the
    command carried one (RFC 4954 §4, RFC 4959), and :meth:`respond` with each response to a
    :class:`Challenge`, until one of them returns :class:`Credentials`.
    """

    def __init__(self, mechanism: str | bytes, offered: tuple[str, ...] = ("PLAIN",)) -> None:
        if isinstance(mechanism, bytes):
            mechanism = mechanism.decode("ascii", "replace")
        self.mechanism = mechanism.upper()
        if self.mechanism not in offered or self.mechanism not in ("PLAIN", "LOGIN"):
            raise SASLError("mechanism")
        self._username: bytes | None = None

    def begin(self, initial: bytes | None) -> Challenge | Credentials:
        """Start; ``initial`` is the initial response, None when the command had none."""
        if self.mechanism == "PLAIN":
            return Challenge(b"") if initial is None else self._plain(decode_response(initial))
        if initial is None:
            return Challenge(_USERNAME)
        self._username = decode_response(initial)
        return Challenge(_PASSWORD)

    def respond(self, response: bytes) -> Challenge | Credentials:
        """The client's answer to the last challenge; ``*`` cancels (RFC 4422 §3.5)."""
        if response == b"*":
            raise SASLError("cancelled")
        decoded = decode_response(response)
        if self.mechanism == "PLAIN":
            return self._plain(decoded)
        if self._username is None:
            self._username = decoded
            return Challenge(_PASSWORD)
        return Credentials(self._username, decoded, "LOGIN")

    @staticmethod
    def _plain(decoded: bytes) -> Credentials:
        username, password = parse_plain(decoded)
        return Credentials(username, password, "PLAIN")


# -- logging in ----------------------------------------------------------------------------------


class PasswordLogin:
    """One session's password logins through the Portal.

    ``protocol`` and ``verb`` name the log lines (``imap login failed for ...``, ``smtp auth
    failed for ...``). A throttled client is logged and refused (``LoginThrottled``). A wrong
    password is counted in :attr:`failures`, logged, and refused (``LoginFailed``) only after
    ``failure_delay`` seconds, on top of the ``ThrottledPortal``'s growing delay; a lost
    connection ends that pause (:meth:`cancel`). The protocol phrases the refusal and decides
    when to hang up.
    """

    def __init__(
        self,
        portal: Any,
        clock: Any,
        protocol: str,
        *,
        failure_delay: float = 0.0,
        verb: str = "login",
        account_password_only: bool = False,
    ) -> None:
        self.portal = portal
        # the webmail: the account's own password, never an app password (apppasswords.py)
        self.account_password_only = account_password_only
        self.clock = clock
        self.protocol = protocol
        self.failure_delay = failure_delay
        # The verb is part of the format, not a field: log filters (fail2ban) match the text.
        self._throttled_format = f"{{protocol}} {verb} throttled for {{user}} from {{peer}}"
        self._failed_format = (
            f"{{protocol}} {verb} failed for {{user}} from {{peer}} via {{mechanism}}"
        )
        self.failures = 0
        self._pause: Deferred[None] | None = None

    async def login(
        self, credentials: Credentials, peer: Any, peer_text: str, user: str
    ) -> tuple[Any, Callable[[], None]]:
        """(account, logout) for ``credentials`` from ``peer``; ``user`` is the name made safe
        for the log, ``peer_text`` the client's address as logged."""
        try:
            offered = UsernamePassword(credentials.username, credentials.password)
            if self.account_password_only:
                alsoProvides(offered, IAccountPasswordOnly)
            _iface, account, logout = await self.portal.login(offered, peer, IMailAccount)
        except LoginThrottled:
            metrics.login(self.protocol, "throttled")
            log.warn(
                self._throttled_format,
                protocol=self.protocol,
                user=user,
                peer=peer_text,
            )
            raise
        except LoginFailed:
            self.failures += 1
            metrics.login(self.protocol, "failure")
            log.warn(
                self._failed_format,
                protocol=self.protocol,
                user=user,
                peer=peer_text,
                mechanism=credentials.mechanism,
                failures=self.failures,
            )
            if self.failure_delay:
                self._pause = deferLater(self.clock, self.failure_delay)
                try:
                    await self._pause
                finally:
                    self._pause = None
            raise
        metrics.login(self.protocol, "success")
        return account, logout

    def cancel(self) -> None:
        """The connection is gone: stop waiting out a failure's pause."""
        if self._pause is not None:
            self._pause.cancel()
