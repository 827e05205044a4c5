"""New mail without a reload: Server-Sent Events (the WHATWG HTML standard's EventSource).

``GET /events`` stays open and says ``event: mailbox`` with the folder's name as ``data``
whenever one of the user's folders changes: new mail, flags, expunges, by this server's SMTP
delivery, an IMAP client, or another browser. The page's script turns each event into a
``mail-changed`` event on which htmx reloads the folder list and the message list.

Changes come from ``IMailbox.watch``, the hook IMAP IDLE uses, so the browser hears of a
delivery as soon as the store has it (a few milliseconds after the SMTP 250). Events less
than :data:`COALESCE` apart are sent as one per folder. A comment line every
:data:`HEARTBEAT` seconds keeps proxies from closing the stream and checks the session's
expiry and the account (``WebServices.account_stamp``, as each request does: a stream must
not outlive the account or its password where ``user del`` couldn't reach this server). A
stream ends the moment its session ends (logout, logout everywhere, expiry found by the
sweep) and after :data:`MAX_STREAM` seconds in any case (the browser reconnects by itself,
with a fresh session check).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response
from txmailhost.web.sessions import SessionStore, WebSession

log = Logger(namespace="txmailhost.web")

HEARTBEAT = 25.0
COALESCE = 0.05
MAX_STREAM = 3600.0
RETRY_MS = 3000  # how long the browser waits before reconnecting


class MailEvents:
    """One open event stream: the folders it watches and its timers."""

    def __init__(
        self,
        reactor: Any,
        sessions: SessionStore,
        session: WebSession,
        mailboxes: dict[str, Any],
        stamp_of: Callable[[str], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.stamp_of = stamp_of  # Deferred of the account's stamp (None: not checked)
        self.sessions = sessions
        self.session = session
        self.mailboxes = mailboxes
        self.request: Any = None
        self._unwatch: list[Any] = []
        self._pending: dict[str, None] = {}
        self._flush_call: Any = None
        self._end_call: Any = None
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._open = False

    def start(self, request: Any) -> None:
        self.request = request
        self._open = True
        if request.channel is not None:
            request.channel.setTimeout(None)  # the heartbeat and MAX_STREAM bound it instead
        request.notifyFinish().addBoth(lambda _: self._stop())
        request.write(f"retry: {RETRY_MS}\n\n".encode())
        for name, mailbox in self.mailboxes.items():
            self._unwatch.append(mailbox.watch(lambda name=name: self._changed(name)))
        self._heartbeat.start(HEARTBEAT, now=False)
        self.session.on_end.append(self._finish)
        self._end_call = self.reactor.callLater(MAX_STREAM, self._finish)

    def _changed(self, name: str) -> None:
        self._pending[name] = None
        if self._flush_call is None and self._open:
            self._flush_call = self.reactor.callLater(COALESCE, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        if not self._open:
            return
        names, self._pending = list(self._pending), {}
        for name in names:
            self.request.write(f"event: mailbox\ndata: {json.dumps(name)}\n\n".encode())

    def _beat(self) -> None:
        if not self.sessions.alive(self.session):
            self._finish()
            return
        self.request.write(b": keepalive\n\n")
        if self.stamp_of is not None:
            checked = self.stamp_of(self.session.user)
            checked.addCallbacks(self._check_account, self._account_unknown)

    def _check_account(self, stamp: str | None) -> None:
        """The account is gone or its password changed: the session ends, and with it
        this stream (``on_end``)."""
        if self._open and stamp != self.session.stamp:
            self.sessions.end(self.session, "account removed or password changed")

    def _account_unknown(self, failure: Any) -> None:
        # the accounts database didn't answer: the next heartbeat asks again
        log.warn("web: can't check {user}'s account for the event stream: {error}",
                 user=self.session.user, error=failure.getErrorMessage())  # fmt: skip

    def _finish(self) -> None:
        if self._open:
            self._stop()
            self.request.finish()

    def _stop(self) -> None:
        if not self._open:
            return
        self._open = False
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch = []
        if self._finish in self.session.on_end:
            self.session.on_end.remove(self._finish)
        if self._heartbeat.running:
            self._heartbeat.stop()
        for call in (self._flush_call, self._end_call):
            if call is not None and call.active():
                call.cancel()


async def events(ctx: WebContext) -> Response:
    store, user = ctx.store, ctx.user
    mailboxes = {name: await store.open(user, name) for name in await store.list_mailboxes(user)}
    assert ctx.session is not None
    services = ctx.services
    stream = MailEvents(
        services.reactor, services.sessions, ctx.session, mailboxes, services.account_stamp
    )
    return Response(200, content_type="text/event-stream; charset=utf-8", stream=stream.start)


ROUTES = [Route("GET", "/events", events)]
