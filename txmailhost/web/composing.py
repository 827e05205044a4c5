"""Writing a composed message to disk: header fields checked, the text part, attachments
base64-encoded as they are read, a forwarded message attached as it is.

The message is written to a temporary file in chunks (blocking: the site's pool), never built
whole in memory, so attaching a 20 MiB file costs the server a read buffer, not 20 MiB
(DESIGN invariant 2). The header section is written twice, with and without ``Bcc``: the
copy kept in Sent or Drafts shows whom the user blind-copied, the copy sent doesn't (RFC 5322
3.6.3), and the body that follows is the same file.

Header values come from a form, so each is refused if it holds CR or LF (``BadField``):
nothing typed into Subject or To can start a header field of its own. Nor can an RFC 2047
encoded word that *decodes* to a line break (``=?utf-8?q?x=0D=0ABcc:_y?=``): the ``email``
package decodes such a word when it parses the value and, before Python 3.11.10 / 3.12.5
(CVE-2024-6923), writes the line break out as is when it folds the field again. So every
field is checked, decoded and folded (:func:`folded`): its decoded text must be one line and
each folded line after the first a continuation (start with a space or tab), else the field
is refused, whatever Python's version.

Addresses are parsed by ``email.headerregistry`` (RFC 5322 with RFC 2047 for display names);
an address the parser can't read is refused with its field named rather than sent mangled,
and From takes exactly one address (RFC 5322 3.6.2 would want a Sender field for more).
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import email.utils
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, BinaryIO

_NOT_IN_A_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
POLICY = email.policy.SMTP.clone(max_line_length=78)  # CRLF, RFC 2047/2231 as needed
CHUNK = 57 * 1024  # whole base64 lines of 76 characters


class BadField(ValueError):
    """A form field that can't go into a message header: ``field`` names it."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(f"{field_name}: {why}")
        self.field = field_name
        self.why = why


@dataclass
class Attachment:
    """A file to attach: its name, type and a function opening its bytes (blocking)."""

    filename: str
    content_type: str
    open: Callable[[], BinaryIO]
    rfc822: bool = False  # a whole message, attached as message/rfc822 (no re-encoding)


@dataclass
class Draft:
    """What the compose form holds."""

    sender: str
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    text: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: list[Attachment] = field(default_factory=list)


def check_line(name: str, value: str, limit: int = 4000) -> str:
    """``value`` if it can be a header field's value: one line (no CR or LF, nor any other
    character Python or a mail reader may take for a line break: VT, FF, NEL, U+2028...),
    no control character but tab, not too long."""
    if not is_line(value):
        raise BadField(name, "line breaks are not allowed here, nor control characters")
    if len(value) > limit:
        raise BadField(name, "too long")
    return value.strip()


def is_line(value: str) -> bool:
    """``value`` holds no control character but tab, and no line or paragraph separator."""
    return not _NOT_IN_A_LINE.search(value)


def addresses(name: str, value: str) -> list[Address]:
    """The addresses of a To/Cc/Bcc/From field as typed (comma-separated, display names
    allowed); ``BadField`` for one the RFC 5322 parser can't read."""
    value = check_line(name, value)
    if not value:
        return []
    found = []
    for display, address in email.utils.getaddresses([value]):
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in address):
            raise BadField(name, f"{address or value!r} is not an email address")
        try:
            found.append(Address(display_name=display, username=local, domain=domain))
        except (ValueError, IndexError) as e:
            raise BadField(name, f"{address!r} is not an email address ({e})") from None
    return found


def recipients(draft: Draft) -> list[str]:
    """The envelope recipients: To, Cc and Bcc, each once, in order."""
    seen: dict[str, None] = {}
    for name in ("to", "cc", "bcc"):
        for address in addresses(name.capitalize(), getattr(draft, name)):
            seen.setdefault(address.addr_spec, None)
    return list(seen)


def message_id(domain: str) -> str:
    return f"<{secrets.token_hex(12)}@{domain}>"


def header_section(draft: Draft, *, with_bcc: bool, msgid: str, date: str) -> EmailMessage:
    """The top header fields (no MIME ones) of ``draft``, checked."""
    header = EmailMessage(policy=POLICY)
    header["Date"] = date
    senders = addresses("From", draft.sender)
    if not senders:
        raise BadField("From", "a sender is needed")
    if len(senders) > 1:
        raise BadField("From", "give one sender address only")
    header["From"] = senders[0]
    for name in ("to", "cc") + (("bcc",) if with_bcc else ()):
        found = addresses(name.capitalize(), getattr(draft, name))
        if found:
            header[name.capitalize()] = found
    header["Subject"] = check_line("Subject", draft.subject)
    header["Message-ID"] = msgid
    if draft.in_reply_to:
        header["In-Reply-To"] = check_line("In-Reply-To", draft.in_reply_to, 1000)
    if draft.references:
        header["References"] = check_line("References", draft.references, 8000)
    header["MIME-Version"] = "1.0"
    header["User-Agent"] = "txmailhost webmail"
    return header


def folded(name: str, value: Any, field_name: str | None = None) -> bytes:
    """``name: value`` folded as it goes into the message (CRLF-terminated), or ``BadField``
    (naming ``field_name``, else ``name``) if the value, its encoded words decoded, holds a
    line break or other control character (whatever Python's version would make of it), or
    if the folded text is more than one header field: a line that doesn't start with a space
    or tab, or a CR or LF not in a CRLF (see the module's docstring)."""
    header = value if hasattr(value, "name") else POLICY.header_factory(name, value)
    text = POLICY.fold_binary(name, value)
    lines = text.split(b"\r\n")
    if (
        not is_line(str(header))
        or lines[-1] != b""
        or any(b"\r" in line or b"\n" in line for line in lines)
        or any(not line.startswith((b" ", b"\t")) for line in lines[1:-1])
    ):
        raise BadField(
            field_name or name, "line breaks are not allowed here, not even in encoded words"
        )
    return text


def _fields(message: EmailMessage, field_name: str | None = None) -> bytes:
    return b"".join(folded(name, value, field_name) for name, value in message.items())


# Control characters no text may hold (RFC 5322 2.3 leaves out NUL, RFC 2045 2.7 forbids it
# in 7bit): a NUL a form carried went out in a part labelled 7bit. Tab and line ends stay.
_NOT_TEXT = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 127])


def _text_part(text: str) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    # the browser sends CRLF in a textarea; set_content picks 7bit/quoted-printable/base64
    part.set_content(text.replace("\r\n", "\n").translate(_NOT_TEXT), cte=None)
    del part["MIME-Version"]  # set_content adds one; the message's header section has it
    return part


def write_message(draft: Draft, directory: str, domain: str) -> Composed:
    """Write ``draft`` as a MIME message under ``directory`` (blocking). Raises ``BadField``."""
    msgid = message_id(domain)
    date = email.utils.format_datetime(email.utils.localtime())
    stored_head = _fields(header_section(draft, with_bcc=True, msgid=msgid, date=date))
    sent_head = _fields(header_section(draft, with_bcc=False, msgid=msgid, date=date))
    descriptor, path = tempfile.mkstemp(prefix="compose-", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as out:
            text = _text_part(draft.text)
            if not draft.attachments:
                out.write(text.as_bytes(policy=POLICY))
            else:
                _write_mixed(out, text, draft.attachments)
    except BaseException:
        os.unlink(path)
        raise
    return Composed(path, stored_head, sent_head, msgid, os.path.getsize(path))


def _write_mixed(out: BinaryIO, text: EmailMessage, attachments: Iterable[Attachment]) -> None:
    boundary = "=_txm_" + secrets.token_hex(16)
    out.write(
        POLICY.fold_binary("Content-Type", f'multipart/mixed; boundary="{boundary}"')
        + b"\r\n"
        + b"This is a message in MIME format.\r\n"
    )
    out.write(f"--{boundary}\r\n".encode())
    out.write(text.as_bytes(policy=POLICY))
    for attachment in attachments:
        out.write(f"\r\n--{boundary}\r\n".encode())
        part = EmailMessage(policy=POLICY)
        if attachment.rfc822:
            part["Content-Type"] = "message/rfc822"
            part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
            out.write(_fields(part, "Attachment") + b"\r\n")
            with attachment.open() as source:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
            continue
        part.add_header("Content-Type", attachment.content_type, name=attachment.filename)
        part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
        part["Content-Transfer-Encoding"] = "base64"
        out.write(_fields(part, "Attachment") + b"\r\n")
        with attachment.open() as source:
            while chunk := source.read(CHUNK):
                out.write(base64.encodebytes(chunk).replace(b"\n", b"\r\n"))
    out.write(f"\r\n--{boundary}--\r\n".encode())


@dataclass
class Composed:
    """A written message: the body file (MIME headers and content), the two header
    sections that go in front of it, and its Message-ID."""

    body_path: str
    stored_head: bytes  # with Bcc: for Sent and Drafts
    sent_head: bytes  # without Bcc: what recipients get
    message_id: str
    body_size: int

    def size(self, stored: bool) -> int:
        return len(self.stored_head if stored else self.sent_head) + self.body_size

    def open(self, stored: bool) -> BinaryIO:
        """The whole message, header section first (blocking: opens the body file)."""
        head = self.stored_head if stored else self.sent_head
        return Joined(head, open(self.body_path, "rb"))  # noqa: SIM115 - the caller closes

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.body_path)


class Joined:
    """A read-only stream of ``head`` then the file ``body`` (closed with it)."""

    def __init__(self, head: bytes, body: BinaryIO) -> None:
        self._head = head
        self._at = 0
        self._body = body

    def read(self, size: int = -1) -> bytes:
        if self._at < len(self._head):
            end = len(self._head) if size < 0 else min(len(self._head), self._at + size)
            chunk = self._head[self._at : end]
            self._at = end
            if size < 0:
                chunk += self._body.read()
            return chunk
        return self._body.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise OSError("only a rewind is supported")
        self._at = 0
        self._body.seek(0)
        return 0

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Joined:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
