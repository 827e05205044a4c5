"""Property tests of mailbox names on the wire (names.py): any bytes a client sends decode to a
name or raise ``InvalidName``; a name the server prints in modified UTF-7 (RFC 3501 §5.1.3)
decodes back to itself; LIST patterns compile for any reference and pattern."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap import names, replies
from txmailhost.imap.parser import Reader
from txmailhost.imap.replies import InvalidName

pytestmark = pytest.mark.fuzz

wire_names = st.one_of(
    st.binary(max_size=40),
    st.lists(st.sampled_from([b"&", b"-", b"&-", b"AGE", b"/", b"INBOX", b"a", b"+", b","])).map(
        b"".join
    ),
)
# Names as the store holds them: no control characters, no empty levels, no trailing "/".
levels = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"), min_size=1
)
store_names = (
    st.lists(levels, min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda n: n.split("/")[0].upper() != "INBOX" or n.split("/")[0] == "INBOX")
)


@given(wire_names)
def test_any_wire_name_decodes_or_is_invalid(raw):
    with contextlib.suppress(InvalidName):
        name = names.decode(raw)
        assert not any(ord(c) < 32 for c in name)


@given(store_names)
def test_name_printed_in_modified_utf7_decodes_back(name):
    marker, crlf, data = replies.mailbox_name(name).partition(b"\r\n")
    wire = Reader(marker, {len(marker): data}) if crlf else Reader(marker)
    raw = wire.astring()
    assert raw.isascii()
    if len(raw) <= names.MAX_NAME_LENGTH:
        assert names.decode(raw) == name


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=30))
def test_list_patterns_compile_for_any_reference_and_pattern(reference, pattern, candidate):
    regex = names.pattern_regex(reference, pattern)
    regex.match(candidate)
