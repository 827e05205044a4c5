"""What a page handler gets: the request, the logged-in session, and the site's services.

Handlers are ``async def handler(ctx: WebContext) -> Response``. They read their parameters
with :meth:`WebContext.arg` (text, never bytes), reach the user's mail only through
``ctx.store`` and ``ctx.user`` (the session's), and send slow CPU work (MIME parsing,
sanitising) to the site's pool with :meth:`WebServices.in_thread`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool

from txmailhost.web.responses import HTML, Response, redirect
from txmailhost.web.sessions import LoginTokens, SessionStore, WebSession
from txmailhost.web.sortkeys import SortedOrders, SortKeys


def ascii_number(text: str) -> int | None:
    """``text`` as a number when it is ASCII digits only, else None. ``str.isdigit`` is true
    of "²" and of fullwidth "１２" too: the first makes ``int`` raise (a 500), the second a
    number the page never linked."""
    return int(text) if text.isascii() and text.isdigit() else None


@dataclass
class ClientSettings:
    """What the autoconfiguration files tell mail clients: our name and the ports of the
    IMAP and submission listeners (0 where a listener is off)."""

    hostname: str
    imaps: int = 993
    imap: int = 143
    submissions: int = 465
    submission: int = 587
    pop3s: int = 995
    mta_sts_mode: str = ""
    mta_sts_max_age: int = 604800
    mta_sts_mx: tuple[str, ...] = ()


@dataclass
class WebServices:
    """The site's collaborators, made once by ``site.build_site``."""

    reactor: Any
    pool: Any  # a ThreadPool for parsing and sanitising
    portal: Any  # the server's ThrottledPortal
    templates: Any  # rendering.Templates
    sessions: SessionStore
    login_tokens: LoginTokens
    assets: dict[str, Any]
    clients: ClientSettings
    public_url: str = ""
    web_port: int = 443
    sort_keys: SortKeys = field(default_factory=SortKeys)
    orders: SortedOrders = field(default_factory=SortedOrders)
    outbox: Any = None  # smtp.outbox.Outbox: Send, through port 587's pipeline; None: no Send
    observers: tuple[Any, ...] = ()  # imap.observers.IMailboxObserver (spam training)
    accounts: Any = None  # accounts.interfaces.IAccounts (settings: password, forwarding)
    accounts_pool: Any = None  # the pool the accounts backend is used from
    rule_check: Any = None  # routing.Router.refuse_loops: aliases and forwards made here
    scripts: Any = None  # sieve.scripts store, the one ManageSieve saves through
    spool: Any = None  # queue.spool.Spool: the admin console's queue list and requests
    admin_sources: Any = None  # admin_access.AdminSources: DKIM/DNS, event log, health pages

    def in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Deferred of ``function(*args)`` run in the site's pool, off the reactor."""
        return deferToThreadPool(self.reactor, self.pool, function, *args)

    def account_stamp(self, user: str) -> Deferred[str | None]:
        """Deferred of a fingerprint of ``user``'s stored password hash, read in the accounts
        pool: None when the account is gone, another value once the password changed (or the
        account was removed and made again). "" for a site built without the accounts
        backend."""
        if self.accounts is None:
            return succeed("")
        return deferToThreadPool(self.reactor, self.accounts_pool, _stamp, self.accounts, user)


@dataclass
class WebContext:
    request: Any  # twisted.web.server.Request
    services: WebServices
    session: WebSession | None
    uploads: list[Any] = field(default_factory=list)  # uploads.Upload of a multipart form

    @property
    def user(self) -> str:
        assert self.session is not None  # only routes that require a login read it
        return self.session.user

    @property
    def store(self) -> Any:
        """The user's IMailStore, from the avatar the Portal handed out at login."""
        assert self.session is not None
        return self.session.account.store

    def arg(self, name: str, default: str = "") -> str:
        """A query or form parameter as text (the first if repeated); ``default`` if absent."""
        values = self.request.args.get(name.encode())
        if not values:
            return default
        return values[0].decode("utf-8", "replace")

    def done(self, path: str, text: str, **query: str) -> Response:
        """The redirect of a finished action to ``path`` (with ``query``), saying ``text``
        there: ``done=TEXT&ds=MAC``. The page shows TEXT (``notice``) only under this
        session's MAC of it, so a link from elsewhere can't put words of its own in the
        page's "done" notice ("your password expired, sign in at ...")."""
        fields = {**query, "done": text, "ds": self._notice_mac(text)}
        return redirect(f"{path}?{urlencode(fields)}")

    def notice(self, limit: int = 200) -> str:
        """The notice ``done`` gave this session, at most ``limit`` characters;
        "" when there is none or it is not the session's own."""
        text = self.arg("done")
        if not text or self.session is None:
            return ""
        if not hmac.compare_digest(self.arg("ds").encode(), self._notice_mac(text).encode()):
            return ""
        return text[:limit]

    def _notice_mac(self, text: str) -> str:
        key = (self.session.csrf if self.session else "").encode()
        return hmac.new(key, b"notice\0" + text.encode(), hashlib.sha256).hexdigest()[:32]

    def header(self, name: str) -> str:
        value = self.request.getHeader(name)
        return value if value is not None else ""

    @property
    def htmx(self) -> bool:
        """The request comes from htmx (a partial update), not a full page load."""
        return self.header("HX-Request") == "true"

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        session = self.session
        values.setdefault("user", session.user if session else None)
        values.setdefault("csrf", session.csrf if session else "")
        body = self.services.templates.render(template, **values)
        return Response(status, body.encode("utf-8"), HTML)


Handler = Callable[[WebContext], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One page: ``method`` and exact ``path``; ``login`` says it needs a logged-in session
    (every POST of such a route also needs the session's CSRF token); ``upload`` that its
    POST may be a multipart form with files, parsed before the CSRF check reads the token."""

    method: str
    path: str
    handler: Handler
    login: bool = True
    upload: bool = False  # takes multipart/form-data with files (``uploads.py``)


def _stamp(accounts: Any, user: str) -> str | None:
    stored = accounts.password_hash(user)
    if stored is None:
        return None
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()[:32]
