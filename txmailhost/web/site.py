"""The HTTPS site's factory: a twisted.web ``Site`` around ``app.WebApp``, built from objects.

:func:`build_site` takes what it needs (the Portal, the clock, the settings) and knows nothing
of the config file, like every protocol factory; ``listeners.py`` passes them in. The site owns
a small thread pool for parsing and sanitising messages, started and stopped with the
listener (``startFactory``/``stopFactory``), and a once-a-minute sweep of expired sessions.

Requests are bounded (DESIGN invariant 4): a body larger than ``max_body`` is refused by
closing the connection before it is stored, and twisted.web's own limits bound the header
lines and their count. Idle connections close after ``idle_timeout``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import LoopingCall
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Request, Site

from txmailhost.web.app import WebApp
from txmailhost.web.context import ClientSettings, WebServices
from txmailhost.web.rendering import Templates
from txmailhost.web.sessions import LoginTokens, SessionStore
from txmailhost.web.static import load_assets

MAX_BODY = 1024 * 1024  # form posts; uploads (compose) get their own streamed path


class BoundedRequest(Request):
    """A request whose body may not exceed the site's ``max_body``: past it the connection
    is closed, and nothing more is kept."""

    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.channel.site.max_body:
            self.channel.transport.abortConnection()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.channel.site.max_body:
            self.channel.transport.abortConnection()
            return
        super().handleContentChunk(data)


class WebSite(Site):
    requestFactory = BoundedRequest
    noisy = False

    def __init__(self, app: WebApp, *, max_body: int = MAX_BODY, idle_timeout: float = 120) -> None:
        super().__init__(app, timeout=idle_timeout)
        self.app = app
        self.max_body = max_body
        self._sweeper: LoopingCall | None = None

    def log(self, request: Any) -> None:
        """No per-request access log line: logins and failures are logged where they happen."""

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
) -> WebSite:
    assets = load_assets()
    services = WebServices(
        reactor=reactor,
        pool=ThreadPool(minthreads=0, maxthreads=threads, name="txmailhost-web"),
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
    )
    return WebSite(WebApp(services))
