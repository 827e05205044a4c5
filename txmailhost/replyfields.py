"""Header fields of a message we write that come from one we received: the ``In-Reply-To``,
``References`` and ``Subject`` of a vacation reply, a Sieve refusal, a webmail reply.

The received fields are the sender's text. Decoded (RFC 2047), a value may hold CR, LF or
any other character Python's email package or a mail reader takes for a line break (VT, FF,
FS, NEL, U+2028...); pasted into a new header, it would write fields, or a body, into a
message the server sends as its user (DKIM-signed). So:

- message identifiers are read from the *raw* field (RFC 5322 3.6.4 forbids encoded words
  there) and kept only when they are ``<id-left@id-right>`` in printable ASCII, of at most
  ``MAX_ID`` characters; ``References`` keeps the first and the last ones, ``MAX_REFERENCES``
  in all (RFC 5322 3.6.4 lets a reply trim them), folded;
- text (a subject) becomes one line: every control character, C1 control and line or
  paragraph separator a space, an octet that wasn't UTF-8 U+FFFD; RFC 2047-encoded when it
  isn't ASCII, folded with CRLF.
"""

from __future__ import annotations

import re
from email.header import Header

MAX_ID = 250  # characters of one msg-id (a line is 998; real ids are well under 100)
MAX_REFERENCES = 20  # ids a reply's References names: the thread's first and latest ones
MAX_TEXT = 900  # characters of a Subject taken from a received message

_ID_PART = r"[\x21-\x3b\x3d\x3f\x41-\x7e]+"  # printable ASCII but "<", ">", "@" and space
_MSG_ID = re.compile(rf"<{_ID_PART}@{_ID_PART}>")
_TOKENS = re.compile(r"\s+|(?<=>)(?=<)")  # CFWS between ids may be empty: "<a@b><c@d>"
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def message_ids(raw: str) -> list[str]:
    """The msg-ids of a raw (undecoded, unfolded) ``Message-ID``, ``In-Reply-To`` or
    ``References`` value, in order; anything else in it is dropped."""
    return [
        token for token in _TOKENS.split(raw) if len(token) <= MAX_ID and _MSG_ID.fullmatch(token)
    ]


def reply_ids(message_id: str, references: str) -> tuple[str | None, list[str]]:
    """``In-Reply-To`` and ``References`` (RFC 5322 3.6.4) of a reply to a message whose raw
    fields are ``message_id`` and ``references``: the parent's id (None when it has no usable
    one), and its references followed by that id (if any)."""
    parent = next(iter(message_ids(message_id)), None)
    chain = [i for i in message_ids(references) if i != parent] + ([parent] if parent else [])
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return parent, chain


def fold_ids(ids: list[str], name: str = "References") -> str:
    """``ids`` as the value of a field called ``name``, folded with CRLF to keep lines
    within 78 characters where the ids allow (RFC 5322 2.2.3)."""
    lines: list[str] = []
    line = len(name) + 1
    for i in ids:
        if lines and line + 1 + len(i) > 78:
            lines.append("\r\n " + i)
            line = 1 + len(i)
        else:
            lines.append((" " if lines else "") + i)
            line += 1 + len(i)
    return "".join(lines)


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as one line of printable characters, spaces collapsed, at most ``limit``."""
    text = _SURROGATE.sub("\ufffd", _NOT_IN_A_LINE.sub(" ", text))
    return " ".join(text.split())[:limit]


def header_text(text: str, name: str = "Subject") -> str:
    """``text`` as the value of the unstructured field ``name``: one line, RFC 2047 encoded
    words (UTF-8) when it isn't ASCII, folded with CRLF."""
    text = one_line(text)
    if text.isascii():
        return text
    return Header(text, "utf-8", header_name=name).encode(linesep="\r\n")
