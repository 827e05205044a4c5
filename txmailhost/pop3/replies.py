"""What the POP3 server can say, as data: positive replies, errors that render themselves, and
the dot-stuffing that frames multi-line responses.

Errors are exceptions so that a handler can ``raise`` them from any depth (including inside a
Deferred) and the one method that writes replies renders them. Their response codes come from
RFC 2449 §8 (``RESP-CODES``) and RFC 3206: ``[AUTH]`` says the credentials (or the lack of TLS)
are the problem, ``[SYS/TEMP]`` that retrying later may help, ``[SYS/PERM]`` that it won't.
Every text that reaches the wire passes through ``printable`` so that nothing taken from the
client or from disk can end a reply early or forge a second one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from txmailhost.peer import printable

CRLF = b"\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")


def stuff_line(line: str) -> bytes:
    """One line of a multi-line response, byte-stuffed (RFC 1939 §3)."""
    raw = printable(line, limit=998).encode("ascii")
    return b"." + raw + CRLF if raw.startswith(b".") else raw + CRLF


@dataclass(frozen=True)
class OK:
    """A positive reply; with ``lines`` a multi-line one ending in ``.`` (RFC 1939 §3).

    ``closes`` asks the protocol to close the connection once the reply is written (QUIT).
    """

    text: str = ""
    lines: tuple[str, ...] | None = None
    closes: bool = False

    def render(self) -> bytes:
        head = b"+OK " + printable(self.text).encode("ascii") if self.text else b"+OK"
        if self.lines is None:
            return head + CRLF
        return head + CRLF + b"".join(stuff_line(line) for line in self.lines) + b"." + CRLF


@dataclass(frozen=True)
class Continuation:
    """The SASL server challenge ``+ <base64>`` (RFC 5034 §4); PLAIN's is empty."""

    challenge: str = ""

    def render(self) -> bytes:
        return b"+ " + printable(self.challenge).encode("ascii") + CRLF


class POP3Error(Exception):
    """A ``-ERR`` reply. Subclasses fix the response code and a default text."""

    code: str | None = None
    text = "command failed"

    def __init__(self, text: str | None = None, *, closes: bool = False) -> None:
        super().__init__(text or self.text)
        self.reply_text = text or self.text
        self.closes = closes

    def render(self) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        return f"-ERR {code}{printable(self.reply_text)}".encode("ascii") + CRLF


# -- RFC 3206 response codes -------------------------------------------------------------------


class AuthError(POP3Error):
    """``[AUTH]``: the credentials are wrong, or may not be used like this (RFC 3206 §4)."""

    code = "AUTH"


class TempError(POP3Error):
    """``[SYS/TEMP]``: a failure on our side that may go away (RFC 3206 §5)."""

    code = "SYS/TEMP"
    text = "temporary system failure, try again later"


class PermError(POP3Error):
    """``[SYS/PERM]``: a failure on our side that retrying won't fix (RFC 3206 §5)."""

    code = "SYS/PERM"
    text = "permanent system failure"


# -- authentication ----------------------------------------------------------------------------


class AuthFailed(AuthError):
    # The same words whether the user exists or not: no account enumeration.
    text = "authentication failed"


class LoginThrottled(TempError):
    # Too many recent failures from this address or for this account (accounts/throttle.py);
    # SYS/TEMP tells the client not to ask the user for a new password (RFC 3206 §5).
    text = "too many failed logins; try again later"


class PlaintextRefused(AuthError):
    # DESIGN invariant 6: no passwords in the clear over a non-loopback network (RFC 2595 §2.1).
    text = "plaintext authentication not allowed on an unencrypted connection; use STLS first"


class AuthzidRefused(AuthError):
    text = "authorization identity must be empty or equal to the user name"


class AuthCancelled(POP3Error):
    text = "authentication cancelled"


class BadBase64(POP3Error):
    text = "invalid base64 in SASL response"


class BadPlainResponse(POP3Error):
    text = "invalid PLAIN response: expected authzid NUL authcid NUL password"


class UnsupportedMechanism(POP3Error):
    text = "unsupported SASL mechanism; only PLAIN is offered"


class NeedUser(POP3Error):
    text = "send USER first"


class MailboxUnavailable(TempError):
    text = "mailbox unavailable, try again later"


# -- STLS (RFC 2595 §4) ------------------------------------------------------------------------


class TLSUnavailable(POP3Error):
    text = "STLS not available"


class TLSActive(POP3Error):
    text = "TLS already active"


# -- syntax and state: these count towards closing a session that keeps sending junk ------------


class BadCommand(POP3Error):
    """A line that isn't a valid command here; too many of them end the session."""


class UnknownCommand(BadCommand):
    text = "unknown command"


class WrongState(BadCommand):
    text = "command not valid in this state"


class BadArguments(BadCommand):
    text = "wrong number of arguments"


class LineTooLong(BadCommand):
    text = "line too long"


class TooManyBadCommands(POP3Error):
    text = "too many bad commands, closing connection"


# -- messages ----------------------------------------------------------------------------------


class InvalidNumber(POP3Error):
    text = "invalid message number"


class NoSuchMessage(POP3Error):
    text = "no such message"


class MessageDeleted(POP3Error):
    text = "message already deleted"


class MessageGone(POP3Error):
    text = "message is no longer available"


class MailboxGone(PermError):
    # The maildrop itself was removed under the session (``txmailhost user del --purge``).
    text = "mailbox no longer exists"


class InvalidLineCount(POP3Error):
    text = "invalid line count: expected a non-negative number"


class CommitFailed(TempError):
    text = "some deleted messages not removed, try again later"


# -- framing -----------------------------------------------------------------------------------


def _normalise(chunk: bytes) -> bytes:
    """Bare LF -> CRLF; the regex runs only when a count says there is one (the usual
    message, stored with CRLF, costs two C-level counts)."""
    if chunk.count(b"\n") == chunk.count(b"\r\n"):
        return chunk
    return _BARE_LF.sub(CRLF, chunk)


class DotStuffer:
    """Turns a message read in arbitrary chunks into the body of a multi-line response.

    RFC 1939 §3: a line starting with ``.`` gets an extra ``.``, and the response ends with
    ``CRLF . CRLF``. The state that matters across chunks is the last byte seen: a chunk that
    begins with ``.`` starts a line only if the previous one ended with LF. Bare LFs (a file
    another Maildir tool dropped in) become CRLF, so every client, whether it splits lines on
    CRLF or on LF, sees the same line starts. Without the carried state a ``.`` line at a chunk
    boundary would end the response early and the rest of the message would be read as replies:
    that is the response injection Twisted's FileSender transform allows.
    """

    def __init__(self) -> None:
        self._last = b""

    def stuff(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._last == b"\r" and chunk[:1] == b"\n":
            body = b"\n" + _normalise(chunk[1:])
        else:
            body = _normalise(chunk)
        body = body.replace(b"\n.", b"\n..")
        if self._last in (b"", b"\n") and body[:1] == b".":
            body = b"." + body
        self._last = chunk[-1:]
        return body

    def finish(self) -> bytes:
        """The terminator, preceded by what completes a last line that lacks its CRLF."""
        if self._last in (b"", b"\n"):
            return b"." + CRLF
        if self._last == b"\r":
            return b"\n." + CRLF
        return CRLF + b"." + CRLF


def stuffed_message(content: bytes) -> bytes:
    """A whole message in its CRLF form, as the body of a multi-line response with its
    terminator: what ``DotStuffer`` makes of it, without looking for bare LFs.

    The store hands out messages in their CRLF form, of the size its index gives (the contract
    every backend passes, tests/store/test_contract.py), so for those the two counts of
    ``_normalise`` find nothing; they were a seventh of the server's instructions per RETR of
    a 4 KiB message (callgrind). Callers use this only for content of the size the snapshot
    says; anything else goes through ``DotStuffer``. Every LF still starts a line for the
    stuffing, so even a bare LF could not hide a "." line."""
    body = content.replace(b"\n.", b"\n..")
    if body[:1] == b".":
        body = b"." + body
    last = body[-1:]
    if last in (b"", b"\n"):
        return body + b"." + CRLF
    if last == b"\r":
        return body + b"\n." + CRLF
    return body + CRLF + b"." + CRLF
