"""twisted.web with bounds on what a client may make the server hold: body size and time.

Every HTTP listener (the webmail's HTTPS site, the plain-HTTP redirect on port 80 and the
metrics page) is a :class:`BoundedSite`. Twisted's own ``Site`` keeps any request body, in
memory below 100 KiB and in a temporary file above, and parses a form body into memory
whatever its size; and its idle timeout starts again with every byte, so a client sending
one header byte every few seconds holds a connection for ever (slowloris). Here:

- a body longer than the site's ``max_body`` is answered ``413 Content Too Large`` and the
  connection closed before the body is stored (``BoundedRequest``); the redirect and metrics
  listeners never read a body, so theirs is 0, and twisted.web's parsing of form bodies is
  off unless a site turns it on;
- a request's line and headers must all arrive within ``head_timeout`` seconds of the
  connection (or of the previous response), and its body at ``min_body_rate`` octets a
  second on average after that (``DeadlineChannel``), however the bytes are spread.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

log = Logger()

HEAD_TIMEOUT = 30.0  # seconds for a request's line and headers (Apache's mod_reqtimeout: 20-40)
MIN_BODY_RATE = 1024  # octets a second a body must average, after HEAD_TIMEOUT of grace
REFUSED_LINGER = 1.0  # seconds a connection whose request was refused 413 may take to close


class BoundedRequest(Request):
    """A request whose body may not exceed ``limit()`` octets: past it the client is answered
    413, the connection closed, and nothing more is kept. Forms are parsed only where
    ``parse_forms()`` says."""

    _received = 0
    _limit = 0
    _refused = False

    def limit(self) -> int:
        """The largest body this request may send (headers and cookies are in)."""
        return int(self.channel.site.max_body)

    def parse_forms(self) -> bool:
        """Whether twisted.web parses a form body into ``args`` (into memory)."""
        return bool(self.channel.site.parse_forms)

    def gotLength(self, length: int | None) -> None:
        self._limit = self.limit()
        if length is not None and length > self._limit:
            super().gotLength(0)  # an empty body to hold: nothing of it is kept
            self._refuse()
            return
        self._parsePOSTFormSubmission = self.parse_forms()
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return  # what had arrived with the head, read before the connection closes
        self._received += len(data)
        if self._received > self._limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:  # a refused one was answered already: nothing to render
            super().requestReceived(command, path, version)

    def process(self) -> None:
        """RFC 9112 3.2: an HTTP/1.1 request names one Host (none, or two that disagree about
        where the request goes, is a 400); a target in absolute form (``GET https://host/p``,
        which a server MUST accept, 3.2.2) is served as its path, its authority the Host."""
        target = self.uri
        if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
            authority, _slash, rest = target.partition(b"://")[2].partition(b"/")
            self.uri = b"/" + rest
            self.path = self.uri.partition(b"?")[0]
            self.requestHeaders.setRawHeaders(b"host", [authority])
        hosts = self.requestHeaders.getRawHeaders(b"host") or []
        if self.clientproto == b"HTTP/1.1" and len(hosts) != 1:
            self.setResponseCode(400)
            self.setHeader(b"content-type", b"text/plain")
            self.setHeader(b"connection", b"close")
            self.write(b"one Host header field, please (RFC 9112 3.2)\n")
            self.finish()
            return
        super().process()

    def _refuse(self) -> None:
        """Answer 413 (RFC 9110 15.5.14) and close: the rest of the body is never read."""
        self._refused = True
        transport = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 23\r\nConnection: close\r\n\r\nrequest body too large\n"
        )
        pause = getattr(transport, "pauseProducing", None)  # TCP: read no more of it
        if pause is not None:
            pause()
        transport.loseConnection()
        # Over TLS that sends our close_notify and waits for the client's before it closes
        # the connection; a client still sending its body (reading nothing, its writes
        # blocked by the reads we stopped) never sends one, and the connection stayed until
        # the client gave up (10 s for Python's, minutes for others). It is cut after
        # REFUSED_LINGER, the answer long on the wire.
        cut = getattr(self.channel, "cut_after", None)
        if cut is not None:
            cut(REFUSED_LINGER)


class DeadlineChannel(HTTPChannel):
    """An HTTP/1.1 channel whose requests must arrive in time (see the module docstring).

    The idle timeout (``Site(timeout=...)``) still closes a connection nobody uses; this
    bounds a request that is being sent, which the idle timeout doesn't: it is put off by
    every byte."""

    _deadline: Any = None
    _handling = False  # a whole request is in, its answer not yet done
    _changed = False  # the deadline was set or cleared (see requestDone)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm(self._site_value("head_timeout", HEAD_TIMEOUT))

    def allHeadersReceived(self) -> None:
        self._disarm()
        super().allHeadersReceived()
        length = self.length if isinstance(self.length, int) else None
        if length == 0 or self.transport is None or self.transport.disconnecting:
            return  # no body: allContentReceived follows at once
        if length is None:  # chunked: as long as the largest body allowed may take
            length = int(self._site_value("max_body", 0))
        grace = self._site_value("head_timeout", HEAD_TIMEOUT)
        self._arm(grace + length / self._site_value("min_body_rate", MIN_BODY_RATE))

    def allContentReceived(self) -> None:
        self._disarm()
        self._handling = True
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # A pipelined request already buffered is read inside super().requestDone: its own
        # deadline (or its being handled, which has none) stands; else the next one's head
        # must come in time.
        self._handling = False
        self._changed = False
        super().requestDone(request)
        waiting = self.persistent and not self._changed and not self._handling
        if waiting and not self.transport.disconnecting:
            self._arm(self._site_value("head_timeout", HEAD_TIMEOUT))

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header field longer than the channel reads: answered, not just
        dropped (LineReceiver closes without a word): 414 for the request line, 431 for a
        field (RFC 9110 15.5.15, RFC 6585 5)."""
        first = getattr(self, "_HTTPChannel__first_line", 0)
        status = b"414 URI Too Long" if first else b"431 Request Header Fields Too Large"
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self._disarm()
        super().connectionLost(reason)

    def _site_value(self, name: str, default: float) -> float:
        return float(getattr(getattr(self, "site", None), name, default))

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.callLater(seconds, self._too_slow)

    def _disarm(self) -> None:
        self._changed = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def cut_after(self, seconds: float) -> None:
        """End the connection in ``seconds`` whatever arrives meanwhile (a refused request:
        ``BoundedRequest._refuse``); the deadlines of requests no longer apply."""
        self._disarm()
        self._deadline = self.callLater(seconds, self.transport.abortConnection)

    def _too_slow(self) -> None:
        self._deadline = None
        log.debug("http request from {peer} too slow: closed", peer=self.transport.getPeer())
        self.transport.abortConnection()


class BoundedSite(Site):
    """A ``Site`` whose connections are ``DeadlineChannel``s and whose requests are
    ``BoundedRequest``s (no HTTP/2: twisted.web speaks it only with the ``h2`` package,
    which txmailhost doesn't install)."""

    protocol = DeadlineChannel
    requestFactory = BoundedRequest
    max_body = 0
    parse_forms = False
    head_timeout = HEAD_TIMEOUT
    min_body_rate = MIN_BODY_RATE
