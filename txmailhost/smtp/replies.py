"""SMTP replies as data: every reply the server sends is one of these, with its enhanced code.

RFC 5321 4.2 (reply codes), RFC 3463 (enhanced status codes), RFC 2034 (ENHANCEDSTATUSCODES).
The first digit of the enhanced code must agree with the class of the basic code; ``SMTPReply``
checks that when it is built, so a mismatched constant fails at import time rather than on the
wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from txmailhost._safeio import out_of_space


@dataclass(frozen=True, slots=True)
class SMTPReply:
    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"class of {self.enhanced} doesn't match {self.code}")

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def with_text(self, text: str) -> SMTPReply:
        return SMTPReply(self.code, self.enhanced, text)

    def encode(self, lines: list[str] | None = None) -> bytes:
        """The wire form; several lines become ``code-`` continuation lines (RFC 5321 4.2.1)."""
        texts = lines if lines else [self.text]
        out = []
        for i, text in enumerate(texts):
            sep = " " if i == len(texts) - 1 else "-"
            prefix = f"{self.enhanced} " if self.enhanced and text else ""
            out.append(f"{self.code}{sep}{prefix}{text}\r\n")
        return "".join(out).encode("utf-8", "replace")


# -- connection ------------------------------------------------------------------------------
SERVICE_CLOSING = SMTPReply(221, "2.0.0", "closing connection")
TOO_MANY_ERRORS = SMTPReply(421, "4.7.0", "too many errors, closing connection")
TOO_MANY_JUNK = SMTPReply(421, "4.7.0", "too many commands without mail, closing connection")
# [smtp] greeting_delay: the client spoke before our 220 (a bot that doesn't wait for replies)
EARLY_TALKER = SMTPReply(554, "5.5.1", "protocol error: you spoke before the greeting")
# [smtp] client_message_rate / client_recipient_rate
MESSAGE_RATE = SMTPReply(421, "4.7.0", "too many messages from your address, try again later")
RECIPIENT_RATE = SMTPReply(421, "4.7.0", "too many recipients from your address, try again later")
IDLE_TIMEOUT = SMTPReply(421, "4.4.2", "idle timeout, closing connection")
SESSION_TIMEOUT = SMTPReply(421, "4.4.2", "session too long, closing connection")
SHUTTING_DOWN = SMTPReply(421, "4.3.2", "service shutting down, closing connection")

# -- positive --------------------------------------------------------------------------------
OK = SMTPReply(250, "2.0.0", "OK")
SENDER_OK = SMTPReply(250, "2.1.0", "sender OK")
RECIPIENT_OK = SMTPReply(250, "2.1.5", "recipient OK")
RESET_OK = SMTPReply(250, "2.0.0", "reset OK")
START_DATA = SMTPReply(354, "", "End data with <CR><LF>.<CR><LF>")
READY_FOR_TLS = SMTPReply(220, "2.0.0", "ready to start TLS")
CANNOT_VRFY = SMTPReply(
    252, "2.5.0", "cannot VRFY user, but will accept message and attempt delivery"
)
HELP = SMTPReply(214, "2.0.0", "")

# -- syntax and sequence (RFC 5321 4.2.4, 4.3.2) ---------------------------------------------
UNKNOWN_COMMAND = SMTPReply(500, "5.5.2", "command not recognized")
LINE_TOO_LONG = SMTPReply(500, "5.5.2", "line too long")
BAD_CHARACTERS = SMTPReply(500, "5.5.2", "command contains invalid characters")
SYNTAX_ERROR = SMTPReply(501, "5.5.4", "syntax error in parameters or arguments")
BAD_SENDER_SYNTAX = SMTPReply(501, "5.1.7", "bad sender address syntax")
BAD_RECIPIENT_SYNTAX = SMTPReply(501, "5.1.3", "bad recipient address syntax")
NOT_IMPLEMENTED = SMTPReply(502, "5.5.1", "command not implemented")
NEED_HELO = SMTPReply(503, "5.5.1", "send HELO or EHLO first")
NESTED_MAIL = SMTPReply(503, "5.5.1", "sender already given; RSET to start over")
NEED_MAIL = SMTPReply(503, "5.5.1", "need MAIL before RCPT")
NEED_RCPT = SMTPReply(503, "5.5.1", "need RCPT before DATA")
NO_VALID_RECIPIENTS = SMTPReply(554, "5.5.1", "no valid recipients")
ALREADY_TLS = SMTPReply(503, "5.5.1", "TLS already active")
TLS_NOT_AVAILABLE = SMTPReply(454, "4.7.0", "TLS not available")
TOO_MANY_CONNECTIONS = SMTPReply(421, "4.7.0", "too many connections, try again later")
UNKNOWN_PARAMETER = SMTPReply(555, "5.5.4", "MAIL/RCPT parameter not recognized or not implemented")
UTF8_NOT_ALLOWED = SMTPReply(553, "5.6.7", "non-ASCII address needs SMTPUTF8, which is not offered")
UTF8_NOT_REQUESTED = SMTPReply(
    553, "5.6.7", "non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM"
)

# -- CHUNKING / BINARYMIME (RFC 3030) --------------------------------------------------------------
CHUNK_OK = SMTPReply(250, "2.0.0", "octets received")
# 421, not 501: without a size the next command can't be found, so the session must end.
BAD_BDAT = SMTPReply(
    421, "4.5.4", "BDAT needs a chunk size (and LAST); the stream can't be followed, closing"
)
BDAT_AFTER_HELO = SMTPReply(
    503, "5.5.1", "BDAT needs EHLO: CHUNKING is not offered after HELO (RFC 3030 2)"
)
DATA_AFTER_BDAT = SMTPReply(503, "5.5.1", "DATA not allowed in a BDAT transaction; RSET first")
BINARYMIME_NEEDS_BDAT = SMTPReply(503, "5.5.1", "BODY=BINARYMIME messages must be sent with BDAT")

# -- authentication (RFC 4954 6) --------------------------------------------------------------
AUTH_OK = SMTPReply(235, "2.7.0", "authentication successful")
AUTH_CHALLENGE = SMTPReply(334, "", "")
AUTH_FAILED = SMTPReply(535, "5.7.8", "authentication credentials invalid")
AUTH_THROTTLED = SMTPReply(
    454, "4.7.0", "temporary authentication failure: too many failures, try later"
)
AUTH_UNAVAILABLE = SMTPReply(454, "4.7.0", "temporary authentication failure")
AUTH_CANCELLED = SMTPReply(501, "5.0.0", "authentication cancelled")
AUTH_BAD_BASE64 = SMTPReply(501, "5.5.2", "cannot decode response")
AUTH_LINE_TOO_LONG = SMTPReply(500, "5.5.6", "authentication exchange line is too long")
AUTH_BAD_MECHANISM = SMTPReply(504, "5.5.4", "unrecognized authentication type")
AUTH_NEEDS_TLS = SMTPReply(
    538, "5.7.11", "encryption required for requested authentication mechanism"
)
ALREADY_AUTHENTICATED = SMTPReply(503, "5.5.1", "already authenticated")
AUTH_IN_TRANSACTION = SMTPReply(503, "5.5.1", "AUTH not allowed during a mail transaction")
AUTH_REQUIRED = SMTPReply(530, "5.7.0", "authentication required")
SENDER_NOT_OWNED = SMTPReply(553, "5.7.1", "sender address not owned by the authenticated user")
FROM_NOT_OWNED = SMTPReply(
    550, "5.7.1", "From: header address not owned by the authenticated user; nothing delivered"
)
REMOTE_UNAVAILABLE = SMTPReply(550, "5.3.3", "delivery to other domains is not available here")

# -- policy ------------------------------------------------------------------------------------
UNKNOWN_USER = SMTPReply(550, "5.1.1", "mailbox unavailable: no such user here")
QUOTA_FULL_TEMPORARY = SMTPReply(452, "4.2.2", "mailbox full: over quota, try again later")
QUOTA_FULL_PERMANENT = SMTPReply(552, "5.2.2", "mailbox full: over quota")
ALIAS_LOOP = SMTPReply(550, "5.4.6", "routing loop detected in aliases or forwards")
ALIAS_TOO_BIG = SMTPReply(552, "5.5.3", "alias expands to too many recipients")
RELAY_DENIED = SMTPReply(550, "5.7.1", "relaying denied")  # RFC 5321 4.3.2: no 554 to RCPT
TOO_MANY_RECIPIENTS = SMTPReply(452, "4.5.3", "too many recipients")
LOOKUP_FAILED = SMTPReply(451, "4.3.0", "temporary failure looking up recipient, try again later")

# -- content filters (txmailhost.filters): the filter's reason replaces the text ------------------
FILTER_REJECTED = SMTPReply(550, "5.7.1", "message refused")
FILTER_TEMPFAIL = SMTPReply(451, "4.7.1", "message deferred, try again later")
# At connect (RFC 5321 3.1: a 554 greeting, or 421 for "not now"), then the connection closes.
FILTER_REFUSED_CONNECTION = SMTPReply(554, "5.7.1", "connection refused")
FILTER_DEFERRED_CONNECTION = SMTPReply(421, "4.7.0", "try again later, closing connection")

# -- the message -------------------------------------------------------------------------------
MESSAGE_TOO_BIG = SMTPReply(552, "5.3.4", "message size exceeds fixed maximum message size")
HEADER_TOO_LONG = SMTPReply(
    552, "5.6.0", "message refused: its header section is longer than 1 MiB; nothing delivered"
)
BARE_NEWLINE = SMTPReply(
    554, "5.6.0", "message refused: bare CR or LF in message (RFC 5321 2.3.8); nothing delivered"
)
DELIVERED = SMTPReply(250, "2.0.0", "OK")
DELIVERY_FAILED = SMTPReply(451, "4.3.0", "local error in processing, try again later")
# RFC 3463 4.3.1 "mail system full"; 452 is RFC 5321's "insufficient system storage".
STORAGE_FULL = SMTPReply(452, "4.3.1", "insufficient system storage, try again later")


def local_error(error: BaseException) -> SMTPReply:
    """The reply for a message we failed to store: a full disk or quota is 452 4.3.1, the rest
    451 4.3.0. Both are transient: the client keeps the message and tries again."""
    return STORAGE_FULL if out_of_space(error) else DELIVERY_FAILED
