"""SASL pieces shared by SMTP AUTH, POP3 AUTH and IMAP AUTHENTICATE (RFC 4422).

Each protocol keeps its own wire (``334``, ``+``) and its own error replies; what they share is
how a client response is decoded and how a PLAIN message (RFC 4616) is taken apart, so the three
can't drift apart on, say, whether an authorization identity may differ from the user.
"""

from __future__ import annotations

import base64
import binascii


class SASLError(ValueError):
    """A response that can't be used; ``reason`` is 'base64', 'malformed' or 'authzid' (and, from
    ``session.auth.PasswordExchange``, 'mechanism' or 'cancelled')."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_response(response: bytes) -> bytes:
    """A base64 client response; '=' is the empty response (RFC 4954 4, RFC 5034 4)."""
    if response == b"=":
        return b""
    try:
        return base64.b64decode(response, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError("base64") from None


def parse_plain(decoded: bytes) -> tuple[bytes, bytes]:
    """RFC 4616 ``authzid NUL authcid NUL password`` -> (authcid, password).

    We only act as the authenticated user: an authorization identity other than that user
    (case aside) is refused rather than ignored.
    """
    parts = decoded.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SASLError("malformed")
    authzid, authcid, password = parts
    if authzid and authzid.lower() != authcid.lower():
        raise SASLError("authzid")
    return authcid, password
