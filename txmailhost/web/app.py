"""The one twisted.web resource of the HTTPS site: finds the route, checks the session and the
CSRF token, runs the handler, and writes its answer with the security headers.

Every request passes the same gate, in this order, before any handler runs:

1. the route: an exact path (``/static/NAME`` by lookup in the asset table); 404 or 405;
2. the session, from the ``__Host-`` cookie, if its account still exists (a removed user's
   session ends at its next request, even when nothing could end it at the removal); a
   route that needs one and has none sends a page load to ``/login`` and answers anything
   else 401 (an htmx request is told ``HX-Redirect``);
3. for a POST: an ``Origin`` header, when the browser sends one, must be our own, and the
   form's ``csrf`` field (or htmx's ``X-CSRF-Token`` header) must be the session's token,
   else 403.

Handlers are coroutines (``context.Handler``); a store error that means "not there"
(``NoSuchMailbox``, ``NoSuchMessage``, ``InvalidMailboxName``) becomes a 404 page, anything
else is logged with its traceback and answered with a plain 500: the browser never sees a
traceback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from txmailhost.store.interfaces import InvalidMailboxName, NoSuchMailbox, NoSuchMessage
from txmailhost.web import (
    admin,
    admin_dns,
    admin_health,
    admin_log,
    autoconfig,
    compose,
    events,
    folderadmin,
    folders,
    login,
    mobileconfig,
    moving,
    reading,
    search,
    settings,
    uploads,
)
from txmailhost.web.context import Route, WebContext, WebServices
from txmailhost.web.responses import SECURITY_HEADERS, TEXT, Response, redirect, text
from txmailhost.web.sessions import COOKIE, WebSession

log = Logger(namespace="txmailhost.web")

ROUTES: list[Route] = [
    Route("GET", "/", folders.home, login=False),
    *login.ROUTES,
    *folders.ROUTES,
    *reading.ROUTES,
    *moving.ROUTES,
    *compose.ROUTES,
    *search.ROUTES,
    *folderadmin.ROUTES,
    *settings.ROUTES,
    *mobileconfig.ROUTES,
    *admin.ROUTES,
    *admin_dns.ROUTES,
    *admin_log.ROUTES,
    *admin_health.ROUTES,
    *events.ROUTES,
    *autoconfig.ROUTES,
]

_NOT_FOUND = (NoSuchMailbox, NoSuchMessage, InvalidMailboxName)


def _origin_ok(request: Any) -> bool:
    """A POST's Origin (sent by every current browser) names this site: the scheme is https
    and host[:port] is the Host header. Absent (old clients, curl): the CSRF token decides."""
    origin = request.getHeader("origin")
    if origin is None:
        return True
    host = request.getHeader("host") or ""
    return origin == f"https://{host}"


class WebApp(Resource):
    isLeaf = True

    def __init__(self, services: WebServices, routes: list[Route] | None = None) -> None:
        super().__init__()
        self.services = services
        self.routes: dict[tuple[str, str], Route] = {}
        self.paths: set[str] = set()
        for route in ROUTES if routes is None else routes:
            self.routes[(route.method, route.path)] = route
            self.paths.add(route.path)

    def render(self, request: Any) -> Any:
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        if method == "HEAD":
            method = "GET"
        if path.startswith("/static/") and method == "GET":
            self._done(request, self._asset(request, path[len("/static/") :]))
            return NOT_DONE_YET
        route = self.routes.get((method, path))
        if route is None:
            if path not in self.paths:
                self._done(request, text(404, "not found"))
            else:  # RFC 9110 §15.5.6: say which methods the resource has
                allowed = sorted(m for m, p in self.routes if p == path)
                refused = text(405, "method not allowed")
                refused.headers["Allow"] = ", ".join(allowed)
                self._done(request, refused)
            return NOT_DONE_YET
        session = self.services.sessions.get(_cookie(request))
        context = WebContext(request, self.services, session)
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))
        d = Deferred.fromCoroutine(self._serve(route, context, method))
        d.addErrback(self._failed, request, path)
        d.addCallback(lambda response: None if finished else self._done(request, response))
        d.addErrback(lambda f: log.failure("web: writing the answer failed", f))
        return NOT_DONE_YET

    async def _serve(self, route: Route, context: WebContext, method: str) -> Response:
        """The gate, then the handler; an upload's files are closed (their spools removed)
        once the handler is done with them."""
        if context.session is not None and not await self._account_lives(context.session):
            context.session = None
        if route.upload and method == "POST" and context.session is not None:
            refused = await self._parse_upload(context)
            if refused is not None:
                return refused
        try:
            refused = self._gate(route, context, method)
            if refused is not None:
                return refused
            return await route.handler(context)
        finally:
            for upload in context.uploads:
                upload.file.close()

    async def _parse_upload(self, context: WebContext) -> Response | None:
        request = context.request
        content_type = context.header("Content-Type")
        if not content_type.lower().startswith("multipart/form-data"):
            return None
        try:
            fields, context.uploads = await self.services.in_thread(
                uploads.parse_form, request.content, content_type, uploads.content_length(request)
            )
        except uploads.BadUpload as e:
            log.info("web: a bad upload from {user}: {why}", user=context.user, why=str(e))
            return text(400, "the form could not be read; please send it again")
        request.args.update(fields)
        return None

    async def _account_lives(self, session: WebSession) -> bool:
        """Whether the session's account still exists with the password it logged in with;
        if not, the session ends here. ``user del`` and ``user passwd`` end the sessions of a
        running server through its control socket, but they may find none to ask (another
        node of a PostgreSQL cluster, a CLI run as a user who can't open the socket): the
        cookie must not outlive the account, or its password, all the same (nor work again
        for an account removed and made anew under the same address)."""
        if await self.services.account_stamp(session.user) == session.stamp:
            return True
        self.services.sessions.end(session, "account removed or password changed")
        return False

    def _gate(self, route: Route, context: WebContext, method: str) -> Response | None:
        """Why this request may not reach its handler, as the answer to send; None if it may."""
        if route.login and context.session is None:
            if context.htmx:
                return Response(401, b"", TEXT, {"HX-Redirect": "/login"})
            if method == "GET":
                return redirect("/login")
            return text(401, "log in first")
        if method != "POST":
            return None
        if not _origin_ok(context.request):
            log.warn("web: refused a POST to {path} from origin {origin}",
                     path=route.path, origin=context.header("Origin"))  # fmt: skip
            return text(403, "cross-site request refused")
        if route.login:
            assert context.session is not None
            token = context.arg("csrf") or context.header("X-CSRF-Token")
            if not context.session.csrf_ok(token or None):
                log.warn("web: POST to {path} without a valid CSRF token for {user}",
                         path=route.path, user=context.session.user)  # fmt: skip
                return text(403, "the form has expired; reload the page")
        return None

    def _asset(self, request: Any, name: str) -> Response:
        asset = self.services.assets.get(name)
        if asset is None:
            return text(404, "not found")
        if request.getHeader("if-none-match") == asset.etag:
            return Response(304, b"", asset.content_type, {"ETag": asset.etag},
                            cache="public, max-age=86400")  # fmt: skip
        return Response(200, asset.body, asset.content_type, {"ETag": asset.etag},
                        cache="public, max-age=86400")  # fmt: skip

    def _failed(self, failure: Failure, request: Any, path: str) -> Response:
        if failure.check(*_NOT_FOUND):
            return text(404, "no such folder or message")
        log.failure("web: {method} {path} failed", failure,
                    method=request.method.decode(), path=path)  # fmt: skip
        return text(500, "internal error; the server's log has the details")

    def _done(self, request: Any, response: Response) -> None:
        self._write(request, response)
        if response.stream is not None:
            response.stream(request)  # it finishes the request when the stream ends
        else:
            request.finish()

    def _write(self, request: Any, response: Response) -> None:
        request.setResponseCode(response.status)
        headers = request.responseHeaders
        for name, value in SECURITY_HEADERS.items():
            headers.setRawHeaders(name, [value])
        headers.setRawHeaders("Content-Security-Policy", [response.csp])
        headers.setRawHeaders("X-Frame-Options", [response.frame_options])
        headers.setRawHeaders("Cache-Control", [response.cache])
        headers.setRawHeaders("Content-Type", [response.content_type])
        for name, value in response.headers.items():
            headers.setRawHeaders(name, [value])
        for cookie in response.cookies:
            headers.addRawHeader("Set-Cookie", cookie)
        if response.status != 304 and response.stream is None:
            headers.setRawHeaders("Content-Length", [str(len(response.body))])
            if request.method != b"HEAD":
                request.write(response.body)


def _cookie(request: Any) -> str | None:
    value = request.getCookie(COOKIE.encode())
    return None if value is None else value.decode("ascii", "replace")
