"""Browser sessions: server-side, in memory, with an idle timeout, a lifetime and logout.

The cookie holds only a random 256-bit token; the server keeps the session under the token's
SHA-256, so neither a memory dump of the table nor the log reveals a usable cookie, and the
lookup compares digests (no timing leak on the token itself). A session ends when it has been
unused for ``idle_timeout``, when ``lifetime`` has passed since the login, at logout (one, or
every session of the user: "log out everywhere"), when the table is full (the least recently
used goes first), and when the server restarts. Ending one calls the Portal's logout.

Each session has its own CSRF token (OWASP's synchronizer token pattern), sent back in every
form and in htmx's requests as ``X-CSRF-Token``. The login form, which has no session yet, is
protected by :class:`LoginTokens`: a signed double-submit token, so an anonymous visitor costs
the server no memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="txmailhost.web")

COOKIE = "__Host-txm_session"  # __Host-: Secure, Path=/, no Domain, or the browser drops it
LOGIN_COOKIE = "__Host-txm_login"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def cookie_header(name: str, value: str, max_age: int | None = None) -> str:
    """A Set-Cookie value the browser keeps to our origin, over HTTPS, away from scripts and
    from requests other sites start (SameSite=Strict)."""
    parts = [f"{name}={value}", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


@dataclass(eq=False)
class WebSession:
    """One logged-in browser."""

    key: str  # SHA-256 of the cookie's token
    user: str  # canonical address: every store call uses this, never a value from the URL
    account: Any  # the IMailAccount avatar from the Portal
    logout: Callable[[], None]
    csrf: str
    created: float
    last_used: float
    peer: str
    user_agent: str
    data: dict[str, Any] = field(default_factory=dict)  # per-session UI state (allowed images)
    # the account's password-hash fingerprint at login (WebServices.account_stamp): the
    # session ends when it changes
    stamp: str | None = ""
    # called when the session ends: open event streams close at once
    on_end: list[Callable[[], None]] = field(default_factory=list)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionStore:
    """Every logged-in browser, least recently used first."""

    def __init__(
        self,
        clock: Any,
        *,
        idle_timeout: float = 1800.0,
        lifetime: float = 43200.0,
        max_sessions: int = 10000,
    ) -> None:
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self, user: str, account: Any, logout: Callable[[], None], peer: str, user_agent: str
    ) -> tuple[str, WebSession]:
        """(cookie token, session) for a login that just succeeded: always a new token, so a
        token planted in the browser before the login (session fixation) is worthless."""
        self.sweep()
        while len(self._sessions) >= self.max_sessions:
            _, oldest = self._sessions.popitem(last=False)
            self._ended(oldest, "table full")
        token = secrets.token_urlsafe(32)
        now = self.clock.seconds()
        session = WebSession(
            key=_digest(token),
            user=user,
            account=account,
            logout=logout,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_used=now,
            peer=peer,
            user_agent=user_agent[:200],
        )
        self._sessions[session.key] = session
        return token, session

    def get(self, token: str | None) -> WebSession | None:
        """The live session of a cookie token, marked used now; None if unknown or expired."""
        if not token:
            return None
        session = self._sessions.get(_digest(token))
        if session is None:
            return None
        if self._expired(session, self.clock.seconds()):
            self.end(session, "expired")
            return None
        session.last_used = self.clock.seconds()
        self._sessions.move_to_end(session.key)
        return session

    def alive(self, session: WebSession) -> bool:
        """The session has not ended or expired (for long requests: the event stream)."""
        if self._sessions.get(session.key) is not session:
            return False
        if self._expired(session, self.clock.seconds()):
            self.end(session, "expired")
            return False
        return True

    def of_user(self, user: str) -> list[WebSession]:
        return [s for s in self._sessions.values() if s.user == user]

    def live(self) -> list[WebSession]:
        """Every session not yet expired, for ``txmailhost who`` and ``kick`` (the server's
        control socket, ops/control.py)."""
        now = self.clock.seconds()
        return [s for s in self._iter() if not self._expired(s, now)]

    def end(self, session: WebSession, why: str = "logout") -> None:
        if self._sessions.pop(session.key, None) is not None:
            self._ended(session, why)

    def end_all(self, user: str, why: str = "logout everywhere") -> int:
        """End every session of ``user``; how many there were."""
        mine = self.of_user(user)
        for session in mine:
            self.end(session, why)
        return len(mine)

    def sweep(self) -> int:
        """End the expired sessions (run every minute by the site, and before each login)."""
        now = self.clock.seconds()
        expired = [s for s in self._iter() if self._expired(s, now)]
        for session in expired:
            self.end(session, "expired")
        return len(expired)

    def end_everything(self) -> None:
        for session in list(self._iter()):
            self.end(session, "server stopping")

    def _iter(self) -> Iterator[WebSession]:
        return iter(list(self._sessions.values()))

    def _expired(self, session: WebSession, now: float) -> bool:
        return (
            now - session.last_used >= self.idle_timeout or now - session.created >= self.lifetime
        )

    def _ended(self, session: WebSession, why: str) -> None:
        log.info("web session of {user} ended ({why})", user=session.user, why=why)
        for callback in list(session.on_end):
            callback()
        try:
            session.logout()
        except Exception:  # a realm's logout must not keep the session alive
            log.failure("web logout of {user} failed", user=session.user)


class LoginTokens:
    """CSRF protection for the login form, which has no session: the form carries
    HMAC(key, nonce) and the browser a cookie with the nonce (the "signed double-submit
    cookie"). A site that can't read our cookie can't make a matching pair; the server keeps
    nothing per visitor. The key is drawn at each start."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def issue(self) -> tuple[str, str]:
        """(cookie nonce, form token)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._sign(nonce)

    def check(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self._sign(nonce).encode(), token.encode("ascii", "replace"))

    def _sign(self, nonce: str) -> str:
        mac = hmac.new(self._key, b"login\0" + nonce.encode("ascii", "replace"), "sha256")
        return mac.hexdigest()
