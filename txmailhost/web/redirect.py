"""The plain-HTTP listener: every request is sent to the same path over HTTPS, nothing else.

It never shows a page, sets a cookie or reads a form, so no password or session ever crosses
it in clear. The target is ``[web] public_url`` when set, else the host the browser asked for
on the HTTPS listener's port (omitted when 443). A ``308 Permanent Redirect`` (RFC 9110
§15.4.9) keeps the method; browsers remember HTTPS from then on through the HSTS header the
HTTPS site sends. The exception is ``/.well-known/acme-challenge/``: with ``[tls] acme``
the pending HTTP-01 answers (``acme_renewal.Challenges``) are served there, as RFC 8555 8.3
wants them on port 80; anything else under it is 404, never a redirect, so an ACME client
serving it on another port is not confused by a redirect loop.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.web.resource import Resource

from txmailhost.httpbounds import BoundedSite

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(?::\d{1,5})?$")


def https_location(public_url: str, web_port: int, host_header: str, path: str) -> str | None:
    """Where a request for ``path`` (with its query) on ``host_header`` goes; None when the
    Host header is unusable and no public URL is configured."""
    if public_url:
        return public_url + path
    match = _HOST.match(host_header)
    if match is None:
        return None
    port = "" if web_port == 443 else f":{web_port}"
    return f"https://{match.group(1)}{port}{path}"


class RedirectToHTTPS(Resource):
    isLeaf = True

    def __init__(self, public_url: str, web_port: int, challenges: Any = None) -> None:
        super().__init__()
        self.public_url = public_url
        self.web_port = web_port
        self.challenges = challenges

    def render(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        path = request.uri.decode("latin-1")
        if path.startswith("/.well-known/acme-challenge/") and self.challenges is not None:
            answer = self.challenges.answer(path)
            if answer is not None:
                return answer.encode("ascii")
        if not path.startswith("/") or path.startswith("/.well-known/acme-challenge/"):
            request.setResponseCode(404)
            return b"not found\n"
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        location = https_location(self.public_url, self.web_port, host, path)
        if location is None:
            request.setResponseCode(400)
            return b"missing or bad Host header\n"
        request.setResponseCode(308)
        request.setHeader(b"Location", location.encode("latin-1", "replace"))
        return b"use HTTPS: " + location.encode("latin-1", "replace") + b"\n"


class RedirectSite(BoundedSite):
    """No request body is read (``max_body`` 0: one closes the connection), and a request
    must arrive in time (``httpbounds.py``): this listener is open to the internet."""

    noisy = False

    def __init__(self, public_url: str, web_port: int, challenges: Any = None) -> None:
        super().__init__(RedirectToHTTPS(public_url, web_port, challenges), timeout=30)

    def log(self, request: Any) -> None:
        """No access log line per redirect."""
