"""Property tests of the IMAP command tokenizer (parser.py) and of sequence sets: any input
raises nothing but ``ParseError``; what ``replies`` prints, ``Reader`` reads back; a sequence set
resolves to exactly the messages it names; nesting and numbers can't make the parser work hard."""

from __future__ import annotations

import contextlib
import time
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap import replies
from txmailhost.imap.parser import LITERAL_MARKER, LiteralFile, ParseError, Reader
from txmailhost.imap.search import compress
from txmailhost.imap.session import SelectedMailbox

pytestmark = pytest.mark.fuzz

# Bytes that mean something to the grammar, mixed with everything else.
_SPECIAL = b'(){}[]% *"\\\r\n\x00\x7f+:,.-0123456789NILnil'
grammar_bytes = st.lists(
    st.one_of(st.sampled_from([bytes((b,)) for b in _SPECIAL]), st.binary(max_size=4)),
    max_size=60,
).map(b"".join)
any_bytes = st.one_of(grammar_bytes, st.binary(max_size=200))

_METHODS = (
    "atom",
    "tag",
    "number",
    "quoted",
    "literal",
    "literal_bytes",
    "string",
    "astring",
    "nstring",
    "list_mailbox",
    "sequence_set",
    "flag_list",
    "flag",
    "date_time",
    "open_paren",
    "close_paren",
    "sp",
    "end",
)


@st.composite
def readers(draw) -> Reader:
    """A reader over arbitrary text, with literals at arbitrary offsets (some at real markers)."""
    text = draw(any_bytes)
    offsets = [m.end() for m in LITERAL_MARKER.finditer(text)]
    offsets += draw(st.lists(st.integers(0, len(text) + 2), max_size=3))
    literals: dict[int, bytes | LiteralFile] = {}
    for offset in offsets:
        literals[offset] = draw(
            st.one_of(st.binary(max_size=20), st.just(LiteralFile("/nonexistent", 9)))
        )
    return Reader(text, literals)


@given(readers(), st.lists(st.sampled_from(_METHODS), min_size=1, max_size=8))
def test_reader_raises_only_parse_errors(reader, methods):
    for method in methods:
        with contextlib.suppress(ParseError):
            getattr(reader, method)()
        assert 0 <= reader.pos <= len(reader.text)


def _as_command(printed: bytes) -> Reader:
    """What the server assembles from ``printed`` sent by a client: a literal's octets are
    keyed by the offset where its ``{n}`` marker ended the line."""
    marker, crlf, data = printed.partition(b"\r\n")
    if crlf:
        return Reader(marker, {len(marker): data})
    return Reader(printed)


def _sent(value: bytes) -> bytes:
    """What a client reads back: a ``{n}`` literal holds no NUL (RFC 3501 §9), each is sent
    as 0x80 (``replies.string``)."""
    return value.replace(b"\0", b"\x80")


@given(st.binary(max_size=300))
def test_string_printed_by_replies_reads_back(value):
    reader = _as_command(replies.string(value))
    assert reader.string() == _sent(value)
    assert reader.at_end()


@given(st.binary(max_size=300))
def test_astring_printed_by_replies_reads_back(value):
    reader = _as_command(replies.astring(value))
    assert reader.astring() == _sent(value)
    assert reader.at_end()


@given(st.one_of(st.none(), st.binary(max_size=50)))
def test_nstring_printed_by_replies_reads_back(value):
    reader = _as_command(replies.nstring(value))
    assert reader.nstring() == (None if value is None else _sent(value))
    assert reader.at_end()


uid_sets = st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=40).map(sorted)


@given(uid_sets, st.data())
def test_sequence_set_names_exactly_the_messages_compress_printed(uids, data):
    mailbox = array("I", sorted(set(uids)))
    wanted = sorted(set(data.draw(st.lists(st.sampled_from(list(mailbox)), min_size=1))))
    text = compress(wanted).encode()
    assert Reader(text).sequence_set() == text
    view = _view(mailbox)
    assert [uid for _seq, uid in view.resolve(text, True)] == wanted
    seqs = [mailbox.index(uid) + 1 for uid in wanted]
    assert [seq for seq, _uid in view.resolve(compress(seqs).encode(), False)] == seqs


_NUMBER = st.one_of(
    st.integers(0, 2**64).map(str),
    st.just("*"),
    st.integers(1, 6000).map(lambda n: "9" * n),  # beyond int()'s 4300-digit limit too
)
sequence_like = st.lists(
    st.tuples(_NUMBER, st.one_of(st.none(), _NUMBER)), min_size=1, max_size=5
).map(lambda pieces: ",".join(lo if hi is None else f"{lo}:{hi}" for lo, hi in pieces).encode())


@given(sequence_like, uid_sets, st.booleans())
def test_sequence_set_resolves_or_is_bad(text, uids, by_uid):
    view = _view(array("I", sorted(set(uids))))
    try:
        pairs = view.resolve(Reader(text).sequence_set(), by_uid)
    except ParseError:
        return
    assert all(uid in view.uids for _seq, uid in pairs)


def _view(uids: array) -> SelectedMailbox:
    return SelectedMailbox(None, "INBOX", False, uids, 1, uids[-1] + 1 if uids else 1, 1, 1)


# -- pathological inputs: bounded work --------------------------------------------------------


def _quickly(call, *, seconds: float = 2.0):
    start = time.perf_counter()
    with pytest.raises(ParseError):
        call()
    assert time.perf_counter() - start < seconds


def test_deeply_nested_flag_list_is_refused_quickly():
    _quickly(lambda: Reader(b"(" * 1_000_000).flag_list())


def test_number_of_a_million_digits_is_refused_quickly():
    _quickly(lambda: Reader(b"9" * 1_000_000).number())


def test_sequence_number_beyond_python_int_digit_limit_is_bad_not_a_crash():
    # Found by test_sequence_set_resolves_or_is_bad: int() raised ValueError past 4300 digits.
    for text in (b"9" * 5000, b"1:" + b"9" * 5000, b"1,*:" + b"9" * 4301):
        _quickly(lambda text=text: Reader(text).sequence_set())


def test_unterminated_quoted_string_of_a_megabyte_is_refused_quickly():
    _quickly(lambda: Reader(b'"' + b"a" * 1_000_000).quoted())
