"""What a web handler answers, and the headers every answer carries.

Handlers return a :class:`Response`; ``app.py`` writes it with :data:`SECURITY_HEADERS` and its
own Content-Security-Policy, so no page can forget them. The policies are the OWASP secure
headers set:

- the pages' CSP allows scripts and styles from our origin only (``script-src 'self'``, no
  ``'unsafe-inline'``, no ``eval``: htmx runs with ``allowEval`` off), frames only from our
  origin (the message body), forms posting only to us, and nothing may frame us;
- a message body (:data:`BODY_CSP`) may load nothing but inline styles and ``data:`` images,
  is sandboxed by its own header too (so it stays inert even opened outside its iframe), and
  may be framed only by our pages; allowing remote images adds ``https:`` image sources and
  nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

# No allow-scripts, no allow-same-origin: the body is an opaque origin that can't run code or
# read our cookies. Links open in a new tab, outside the sandbox.
BODY_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"


def body_csp(remote_images: bool) -> str:
    images = "data: https:" if remote_images else "data:"
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src {images}; "
        f"font-src 'none'; form-action 'none'; base-uri 'none'; "
        f"frame-ancestors 'self'; sandbox {BODY_SANDBOX}"
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on our own
    # form posts, which the CSRF gate refuses. Links in mail carry rel=noreferrer anyway.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    # Browsers keep HTTPS for the host a year; the redirect listener sends users here first.
    "Strict-Transport-Security": "max-age=31536000",
}

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@dataclass
class Response:
    """One HTTP answer. ``body`` is sent as is; ``csp`` replaces the pages' policy;
    ``frame_options`` is X-Frame-Options (DENY, or SAMEORIGIN for the message body).
    ``stream``, when set, is called with the request after the headers are written, instead
    of writing ``body``: it writes for as long as it likes and finishes the request itself
    (Server-Sent Events)."""

    status: int = 200
    body: bytes = b""
    content_type: str = HTML
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)
    csp: str = APP_CSP
    frame_options: str = "DENY"
    cache: str = "no-store"
    stream: Callable[[Any], None] | None = None


def same_site_path(target: str) -> bool:
    """``target`` is a path on this site: it starts with one "/" and holds nothing a browser
    reads as the start of another host: a backslash (read as "/"), or a tab, line break,
    space or other control character (stripped), either of which makes "/" + "/evil.example"
    of a path like "/", tab, "/evil.example"."""
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target)
    )


def redirect(location: str, status: int = 303) -> Response:
    """See Other after a form POST (RFC 9110 §15.4.4), so a reload doesn't post again."""
    return Response(status, b"", TEXT, {"Location": location})


def text(status: int, message: str) -> Response:
    return Response(status, message.encode() + b"\n", TEXT)


def page(status: int, body: str, **headers: Any) -> Response:
    return Response(status, body.encode("utf-8"), HTML, dict(headers))
