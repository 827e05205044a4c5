"""Property tests of the SORT/THREAD/RETURN parsers (sort.py, context.py) and of the header
keys: any input raises only the protocol's errors (``ParseError`` → BAD, ``IMAPError`` → NO),
and deriving keys from any header block never raises."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap import replies
from txmailhost.imap.context import compress_ordered, parse_return
from txmailhost.imap.headerkeys import HeaderKeys, derive
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.sort import parse_charset, parse_criteria

pytestmark = pytest.mark.fuzz

_WORDS = [
    b"RETURN", b"(", b")", b" ", b"MIN", b"MAX", b"ALL", b"COUNT", b"PARTIAL", b"UPDATE",
    b"CONTEXT", b"1:5", b"5:1", b"0:1", b"1:*", b"REVERSE", b"DATE", b"ARRIVAL", b"SUBJECT",
    b"DISPLAYFROM", b"UTF-8", b"KOI8-R", b'"', b"{2}", b"99999999999:1",
]  # fmt: skip
soup = st.lists(st.one_of(st.sampled_from(_WORDS), st.binary(max_size=3)), max_size=20).map(
    b"".join
)


@given(st.one_of(soup, st.binary(max_size=60)))
def test_sort_arguments_raise_only_protocol_errors(text):
    reader = Reader(text)
    with contextlib.suppress(ParseError, replies.IMAPError):
        options = parse_return(reader)
        criteria = parse_criteria(reader)
        parse_charset(reader)
        assert criteria
        if options is not None and options.partial is not None:
            low, high = options.partial
            assert 1 <= low <= high


@given(st.lists(st.integers(1, 50), max_size=30))
def test_compress_ordered_expands_back_to_the_same_list(numbers):
    expanded = []
    for piece in filter(None, compress_ordered(numbers).split(",")):
        low, _, high = piece.partition(":")
        expanded.extend(range(int(low), int(high or low) + 1))
    assert expanded == numbers


_FIELDS = [b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID", b"References", b"X"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(_FIELDS), st.binary(max_size=40).filter(lambda v: b"\n" not in v)
        ),
        max_size=8,
    )
)
def test_keys_derive_from_any_header_and_round_trip(fields):
    header = b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
    keys = derive(header)
    assert HeaderKeys.decode(keys.encode()) == keys
