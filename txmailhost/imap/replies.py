"""What the IMAP server says, as data: tagged results, errors that render themselves, and the
encoders for strings, lists and mailbox names on the wire.

Errors are exceptions (a handler ``raise``s them from any depth, Deferreds included); the one
method of the protocol that writes replies renders them with the command's tag. Response codes
are from RFC 3501 §7.1 and RFC 5530 (``NONEXISTENT``, ``ALREADYEXISTS``, ``CANNOT``,
``PRIVACYREQUIRED``, ``EXPUNGEISSUED``, ``LIMIT``...). Every text taken from the client or from a
message passes through ``printable`` or ``astring``/``nstring``, so nothing can end a response
early or forge another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from txmailhost.peer import printable

CRLF = b"\r\n"
_QUOTABLE = re.compile(rb"[\x20-\x7e]*")
_UNQUOTABLE_UTF8 = re.compile(rb"[\x00-\x1f\x7f]")
_ATOM_SAFE = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")


def without_nul(data: bytes) -> bytes:
    """A ``{n}`` literal holds no NUL (RFC 3501 §9: ``CHAR8`` is %x01-ff; only BINARY's
    ``~{n}`` may), and a client reading C strings stops at one. Mail stored with NULs (an
    APPEND of a ``{n}`` literal holding them, a message that came over SMTP so) is sent with
    each NUL as 0x80, as Dovecot does: the same length, so sizes and partial ranges hold."""
    return data.replace(b"\0", b"\x80") if b"\0" in data else data


def string(value: bytes | str) -> bytes:
    """An IMAP string: quoted when it is short printable ASCII, otherwise a literal (§4.3),
    whose NULs are sent as 0x80 (``without_nul``)."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(raw) < 1024 and _QUOTABLE.fullmatch(raw):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + without_nul(raw)


def nstring(value: bytes | str | None) -> bytes:
    return b"NIL" if value is None else string(value)


def astring(value: bytes | str) -> bytes:
    """An atom when the value is one (reads better in transcripts), else a string."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if raw and raw.upper() != b"NIL" and _ATOM_SAFE.fullmatch(raw):
        return raw
    return string(raw)


def mailbox_name(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as sent to clients: modified UTF-7 (RFC 3501 §5.1.3), quoted; to a
    session that enabled UTF8=ACCEPT or IMAP4rev2, UTF-8 in a quoted string (RFC 6855 §3,
    RFC 9051 §5.1; names hold no control characters, ``names.decode`` refuses them)."""
    if not utf8:
        return string(name.encode("imap4-utf-7"))
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) < 1024 and not _UNQUOTABLE_UTF8.search(raw):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return string(raw)


@dataclass(frozen=True)
class Done:
    """A tagged OK, optionally with a response code (``APPENDUID 1 7``, ``READ-WRITE``)."""

    text: str = "completed"
    code: str | None = None

    def render(self, tag: bytes) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        return tag + b" OK " + f"{code}{printable(self.text)}".encode("ascii") + CRLF


class IMAPError(Exception):
    """A tagged ``NO`` (or ``BAD``) with an optional response code; subclasses fix both."""

    status = "NO"
    code: str | None = None
    text = "command failed"

    def __init__(self, text: str | None = None, *, code: str | None = None, closes: bool = False):
        super().__init__(text or self.text)
        self.reply_text = text or self.text
        if code is not None:
            self.code = code
        self.closes = closes

    def render(self, tag: bytes) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        line = f"{self.status} {code}{printable(self.reply_text)}".encode("ascii")
        return tag + b" " + line + CRLF


class BadCommand(IMAPError):
    """``BAD``: the command is unknown, malformed or not valid in this state (§7.1.3)."""

    status = "BAD"
    text = "invalid command"


class WrongState(BadCommand):
    text = "command not valid in this state"


class LineTooLong(BadCommand):
    code = "TOOBIG"
    text = "command line too long"


class TooBig(IMAPError):
    """RFC 7889/4469 ``TOOBIG``: a literal larger than the server accepts; sent *instead of*
    the ``+`` continuation, so the client never sends the bytes."""

    code = "TOOBIG"
    text = "literal too large"


class AuthFailed(IMAPError):
    code = "AUTHENTICATIONFAILED"
    text = "authentication failed"


class PrivacyRequired(IMAPError):
    # DESIGN invariant 6, RFC 3501 §6.2.3 (LOGINDISABLED), RFC 5530 PRIVACYREQUIRED.
    code = "PRIVACYREQUIRED"
    text = "plaintext login not allowed on an unencrypted connection; use STARTTLS first"


class Nonexistent(IMAPError):
    code = "NONEXISTENT"
    text = "no such mailbox"


class TryCreate(IMAPError):
    """RFC 3501 §7.1: the target of COPY/APPEND/MOVE doesn't exist, the client may CREATE it."""

    code = "TRYCREATE"
    text = "no such mailbox"


class AlreadyExists(IMAPError):
    code = "ALREADYEXISTS"
    text = "mailbox already exists"


class Cannot(IMAPError):
    code = "CANNOT"
    text = "operation not permitted"


class InvalidName(Cannot):
    text = "invalid mailbox name"


class ExpungeIssued(IMAPError):
    code = "EXPUNGEISSUED"
    text = "some of the requested messages no longer exist"


class ServerBug(IMAPError):
    code = "SERVERBUG"
    text = "internal error, try again later"


class Unavailable(IMAPError):
    code = "UNAVAILABLE"
    text = "mailbox temporarily unavailable"


class ReadOnly(IMAPError):
    text = "mailbox is read-only (EXAMINE)"


class StorageFull(IMAPError):
    """RFC 5530 ``OVERQUOTA`` for a disk (ENOSPC) or file-system quota (EDQUOT) that is full,
    as Dovecot answers both: the message was not stored, and deleting mail or waiting until
    there is room helps. Not ``LIMIT``, which says the operation itself is too large (retrying
    never helps), nor ``SERVERBUG``: nothing is wrong with the server but space."""

    code = "OVERQUOTA"
    text = "not enough disk space, try again later"


class OverQuota(IMAPError):
    """RFC 9208 §4.3 (RFC 5530) ``OVERQUOTA``: the mailbox owner's quota has no room for the
    message; deleting mail helps."""

    code = "OVERQUOTA"
    text = "mailbox quota exceeded"


class Limit(IMAPError):
    code = "LIMIT"
    text = "too many"


class BadEvent(IMAPError):
    """RFC 5465 §5.7 ``BADEVENT``: a NOTIFY event this server doesn't offer; the code lists
    the ones it does."""

    text = "unsupported NOTIFY event"

    def __init__(self, supported: tuple[str, ...]) -> None:
        super().__init__(code="BADEVENT (" + " ".join(supported) + ")")
