"""The HTTPS site's factory: a twisted.web ``Site`` around ``app.WebApp``, built from objects.

:func:`build_site` takes what it needs (the Portal, the clock, the settings) and knows nothing
of the config file, like every protocol factory; ``listeners.py`` passes them in. The site owns
a small thread pool for parsing and sanitising messages, started and stopped with the
listener (``startFactory``/``stopFactory``), and a once-a-minute sweep of expired sessions.

Requests are bounded (DESIGN invariant 4; ``httpbounds.py``): a body larger than ``max_body``
is refused by closing the connection before it is stored, a request's headers and body must
arrive in time, and twisted.web's own limits bound the header lines and their count. Only a
signed-in user's file upload to ``/compose`` may be as large as a message (``max_upload``):
a client without a session gets the small limit there too. Idle connections close after
``idle_timeout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.python.threadpool import ThreadPool

from txmailhost.httpbounds import BoundedRequest, BoundedSite
from txmailhost.web.app import WebApp
from txmailhost.web.context import ClientSettings, WebServices
from txmailhost.web.rendering import Templates
from txmailhost.web.sessions import COOKIE, LoginTokens, SessionStore
from txmailhost.web.static import load_assets

MAX_BODY = 1024 * 1024  # form posts; uploads (compose) get their own streamed path
UPLOAD_PATHS = {b"/compose"}  # bounded by max_upload: the server's message size limit


class WebRequest(BoundedRequest):
    """A request bounded at the site's ``max_body``, or ``max_upload`` for a multipart upload
    to one of ``UPLOAD_PATHS`` by a signed-in user. A multipart/form-data body is left
    unparsed by twisted.web (which would read it whole into memory): ``uploads.py`` parses it
    from the file it was spooled to."""

    def limit(self) -> int:
        site = self.channel.site
        # The request line is parsed and every header is in, but ``self.path`` comes only
        # with the body: the channel holds the target meanwhile.
        target = getattr(self.channel, "_path", b"") or b""
        if target.split(b"?", 1)[0] in UPLOAD_PATHS and self._multipart() and site.signed_in(self):
            return int(site.max_upload)
        return int(site.max_body)

    def parse_forms(self) -> bool:
        return not self._multipart()

    def _multipart(self) -> bool:
        content_type = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        return content_type.lower().startswith(b"multipart/form-data")


class WebSite(BoundedSite):
    requestFactory = WebRequest
    noisy = False

    def __init__(
        self,
        app: WebApp,
        *,
        max_body: int = MAX_BODY,
        max_upload: int = MAX_BODY,
        idle_timeout: float = 120,
    ) -> None:
        super().__init__(app, timeout=idle_timeout)
        self.app = app
        self.parse_forms = True
        self.max_body = max_body
        self.max_upload = max_upload
        self._sweeper: LoopingCall | None = None

    def log(self, request: Any) -> None:
        """No per-request access log line: logins and failures are logged where they happen."""

    def signed_in(self, request: Any) -> bool:
        """The request's session cookie is a live session's (checked again, with the CSRF
        token, when the request is handled: this only decides how much it may send)."""
        cookie = request.getCookie(COOKIE.encode())
        if cookie is None:
            return False
        return self.app.services.sessions.get(cookie.decode("ascii", "replace")) is not None

    def startFactory(self) -> None:
        super().startFactory()
        services = self.app.services
        services.pool.start()
        self._sweeper = LoopingCall(services.sessions.sweep)
        self._sweeper.clock = services.reactor
        self._sweeper.start(60, now=False)

    def stopFactory(self) -> None:
        super().stopFactory()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        services = self.app.services
        services.sessions.end_everything()
        services.pool.stop()


def build_site(
    *,
    reactor: Any,
    portal: Any,
    clients: ClientSettings,
    public_url: str = "",
    web_port: int = 443,
    session_idle_timeout: float = 1800.0,
    session_lifetime: float = 43200.0,
    max_sessions: int = 10000,
    threads: int = 2,
    outbox: Callable[..., Any] | None = None,
    mailbox_observers: tuple[Any, ...] = (),
    accounts: Any = None,
    accounts_pool: Any = None,
    rule_check: Any = None,
    scripts: Any = None,
    spool: Any = None,
    admin_sources: Any = None,
) -> WebSite:
    """``outbox`` makes the ``smtp.outbox.Outbox`` that Send goes through, given the site's
    pool (None: the webmail can't send); ``mailbox_observers`` are told of messages moved
    into a folder, as IMAP's are (spam training); ``accounts`` (used in ``accounts_pool``)
    and ``scripts`` (the Sieve script store) serve the settings pages (``rule_check``, the
    router's ``refuse_loops``, judging each alias and forward made there), ``spool`` (the relay
    queue's) and ``admin_sources`` (``admin_access.AdminSources``) the admin console."""
    assets = load_assets()
    pool = ThreadPool(minthreads=0, maxthreads=threads, name="txmailhost-web")
    sender = outbox(pool=pool) if outbox is not None else None
    services = WebServices(
        reactor=reactor,
        pool=pool,
        portal=portal,
        templates=Templates(assets),
        sessions=SessionStore(
            reactor,
            idle_timeout=session_idle_timeout,
            lifetime=session_lifetime,
            max_sessions=max_sessions,
        ),
        login_tokens=LoginTokens(),
        assets=assets,
        clients=clients,
        public_url=public_url,
        web_port=web_port,
        outbox=sender,
        observers=tuple(mailbox_observers),
        accounts=accounts,
        accounts_pool=accounts_pool,
        rule_check=rule_check,
        scripts=scripts,
        spool=spool,
        admin_sources=admin_sources,
    )
    # the form's own fields and the multipart framing on top of the message size limit
    max_upload = sender.max_message_size + MAX_BODY if sender is not None else MAX_BODY
    return WebSite(WebApp(services), max_upload=max_upload)
