"""Property tests of ``append.announced``, the parse of an APPEND before the octets of its
latest literal come (the look at the quota, server.py): any command so far gives an answer or
None and raises nothing; for a well-formed MULTIAPPEND (or CATENATE) it counts, at each
literal, the message text announced so far, the octets ``parse_messages`` counts once the
command is whole."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.imap.test_parser_props import any_bytes
from txmailhost.imap import append
from txmailhost.imap.parser import LiteralFile, Reader

pytestmark = pytest.mark.fuzz
_ANY_MARKER = re.compile(rb"\{(\d{1,20})\+?\}")


@given(st.one_of(any_bytes, any_bytes.map(lambda b: b"t APPEND INBOX " + b)), st.data())
def test_announced_answers_or_is_none_for_any_command(text, data):
    markers = [m.end() for m in _ANY_MARKER.finditer(text)]
    literals: dict[int, bytes | LiteralFile] = {
        end: data.draw(st.binary(max_size=8)) for end in markers[:-1]
    }
    found = append.announced(text + b"{7}", literals, 7)
    assert found is None or found.octets >= 7


_FLAGS = st.lists(st.sampled_from(["\\Seen", "\\Draft", "$Work", "\\Flagged"]), max_size=3)
_PART = st.one_of(
    st.tuples(st.just("TEXT"), st.integers(1, 5000)),
    st.tuples(st.just("URL"), st.sampled_from([b"/INBOX/;UID=1", b"{13}"])),
)
_MESSAGE = st.one_of(
    st.tuples(_FLAGS, st.booleans(), st.integers(1, 10**9)),  # flags, date, literal size
    st.lists(_PART, min_size=1, max_size=4),  # CATENATE
)


@given(
    st.sampled_from([b"INBOX", b'"Sent Items"', b"{6}"]), st.lists(_MESSAGE, min_size=1, max_size=8)
)
def test_announced_counts_the_message_text_before_each_literal(mailbox, messages):
    """The command is built a segment (a line ending in a marker) at a time, as the server
    assembles it; ``announced`` is asked at each marker, and what it counts is checked
    against the whole command parsed as APPEND parses it."""
    text = b"t APPEND " + mailbox
    literals: dict[int, bytes | LiteralFile] = {}
    counted: list[int] = []  # the message octets after each message literal

    def literal(size: int, message_text: bool, value: bytes | None = None) -> None:
        nonlocal text
        text += b"{%d}" % size
        found = append.announced(text, literals, size)
        if message_text:
            assert found is not None
            assert found.octets == sum(counted[-1:]) + size
            assert found.mailbox == (b"Drafts" if mailbox == b"{6}" else mailbox.strip(b'"'))
            counted.append(found.octets)
        else:
            assert found is None
        literals[len(text)] = value if value is not None else LiteralFile("/nonexistent", size)

    if mailbox == b"{6}":
        text = text[: -len(mailbox)]
        literal(6, False, b"Drafts")
    for message in messages:
        if isinstance(message, tuple):
            flags, dated, size = message
            text += b" "
            if flags:
                text += b"(" + " ".join(flags).encode() + b") "
            if dated:
                text += b'"05-Mar-2024 10:00:00 +0100" '
            literal(size, True)
            continue
        text += b" CATENATE ("
        for i, (kind, value) in enumerate(message):
            text += (b" " if i else b"") + kind.encode() + b" "
            if kind == "TEXT":
                literal(value, True)
            elif value == b"{13}":
                literal(13, False, b"/INBOX/;UID=1")
            else:
                text += b'"' + value + b'"'
        text += b")"
    reader = Reader(text, literals)
    for token in (reader.tag, reader.sp, reader.atom, reader.sp, reader.astring):
        token()  # "t APPEND mailbox"
    whole = append.parse_messages(reader)
    sizes = [m.size for m in whole] + [
        p.text.size if isinstance(p.text, LiteralFile) else len(p.text or b"")
        for m in whole
        for p in m.parts
    ]
    assert sum(counted[-1:]) == sum(sizes)
