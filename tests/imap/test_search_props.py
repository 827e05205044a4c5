"""Property tests of the SEARCH parser (search.py): any criteria raise only ``ParseError`` or
``BadCharset``; criteria built from the grammar always compile, and the program they compile to
answers for any message without raising; nesting can't exhaust the stack."""

from __future__ import annotations

import contextlib
import time
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap import replies, search
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.search import BadCharset, Candidate, parse_search
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import MessageOrigin, StoredMessage

pytestmark = pytest.mark.fuzz

_VIEW = SelectedMailbox(None, "INBOX", False, array("I", [1, 2, 5, 9]), 1, 10, 1, 1)


def resolve(text: bytes, by_uid: bool) -> set[int]:
    return {seq for seq, _uid in _VIEW.resolve(text, by_uid)}


def _compile(text: bytes):
    return parse_search(Reader(text), resolve)


_WORDS = [
    b"ALL", b"ANSWERED", b"DELETED", b"DRAFT", b"FLAGGED", b"SEEN", b"UNSEEN", b"NEW", b"OLD",
    b"RECENT", b"KEYWORD", b"UNKEYWORD", b"FROM", b"TO", b"CC", b"BCC", b"SUBJECT", b"HEADER",
    b"BODY", b"TEXT", b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE",
    b"LARGER", b"SMALLER", b"NOT", b"OR", b"UID", b"MODSEQ", b"RETURN", b"CHARSET", b"UTF-8",
    b"(", b")", b" ", b'"', b"{3}", b"1", b"*", b"1:*", b"2,4:5", b"1-Feb-2024", b"\\Seen",
    b"99999999999", b"-", b"NIL", b"SAVEDBEFORE", b"SAVEDON", b"SAVEDSINCE",
    b"SAVEDATESUPPORTED", b"EMAILID", b"THREADID", b"M1a-b_c",
]  # fmt: skip
token_soup = st.lists(st.one_of(st.sampled_from(_WORDS), st.binary(max_size=3)), max_size=30).map(
    b" ".join
)


@given(st.one_of(token_soup, st.binary(max_size=100)))
def test_any_criteria_raise_only_parse_errors(text):
    with contextlib.suppress(ParseError, BadCharset):
        _compile(text)


_astrings = st.binary(max_size=20).map(replies.astring).filter(lambda s: b"\r\n" not in s)
_dates = st.builds(
    lambda d, m, y: b"%d-%s-%d" % (d, m, y),
    st.integers(1, 28),
    st.sampled_from([b"Jan", b"feb", b"MAR", b"Dec"]),
    st.integers(1970, 2100),
)
_sets = st.sampled_from([b"1", b"*", b"1:*", b"2,4", b"3:2", b"4:*"])


def keys(depth: int = 0) -> st.SearchStrategy[bytes]:
    simple = st.one_of(
        st.sampled_from([b"ALL", b"SEEN", b"UNSEEN", b"NEW", b"OLD", b"RECENT", b"DELETED"]),
        st.builds(
            b" ".join, st.tuples(st.sampled_from([b"KEYWORD", b"UNKEYWORD"]), st.just(b"$Work"))
        ),
        st.builds(
            b" ".join,
            st.tuples(st.sampled_from([b"FROM", b"TO", b"SUBJECT", b"BODY", b"TEXT"]), _astrings),
        ),
        st.builds(lambda n, v: b"HEADER " + n + b" " + v, _astrings, _astrings),
        st.builds(
            b" ".join,
            st.tuples(
                st.sampled_from(
                    [
                        b"BEFORE",
                        b"ON",
                        b"SINCE",
                        b"SENTON",
                        b"SENTSINCE",
                        b"SAVEDBEFORE",
                        b"SAVEDON",
                        b"SAVEDSINCE",
                    ]
                ),
                _dates,
            ),
        ),
        st.just(b"SAVEDATESUPPORTED"),
        st.builds(
            lambda k, v: k + b" " + v,
            st.sampled_from([b"EMAILID", b"THREADID"]),
            st.from_regex(rb"\A[A-Za-z0-9_-]{1,30}\Z"),
        ),
        st.builds(
            lambda k, n: k + b" %d" % n,
            st.sampled_from([b"LARGER", b"SMALLER"]),
            st.integers(0, 2**40),
        ),
        st.builds(lambda n: b"MODSEQ %d" % n, st.integers(0, 2**63 - 1)),
        _sets,
        st.builds(lambda s: b"UID " + s, _sets),
    )
    if depth >= 3:
        return simple
    inner = st.deferred(lambda: keys(depth + 1))
    return st.one_of(
        simple,
        st.builds(lambda k: b"NOT " + k, inner),
        st.builds(lambda a, b: b"OR " + a + b" " + b, inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ks: b"(" + b" ".join(ks) + b")"),
    )  # fmt: skip


messages = st.builds(
    StoredMessage,
    uid=st.integers(1, 9),
    flags=st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", "$work"])),
    size=st.integers(0, 2**40),
    internaldate=st.floats(0, 2**32),
    modseq=st.integers(1, 2**63 - 1),
    header=st.one_of(st.none(), st.binary(max_size=200)),
    content=st.one_of(st.none(), st.binary(max_size=300)),
)


origins = st.one_of(
    st.none(), st.builds(MessageOrigin, st.from_regex(r"\AM[0-9a-f]{24}\Z"), st.floats(0, 2**32))
)


@given(st.lists(keys(), min_size=1, max_size=4), messages, st.booleans(), origins)
def test_criteria_from_the_grammar_compile_and_evaluate(criteria, message, recent, origin):
    program = _compile(b"CHARSET UTF-8 " + b" ".join(criteria))
    assert program.predicate(Candidate(2, message, recent, origin)) in (True, False)


def _quickly(text: bytes, seconds: float = 2.0) -> None:
    start = time.perf_counter()
    with pytest.raises(ParseError):
        _compile(text)
    assert time.perf_counter() - start < seconds


def test_deep_not_chain_is_refused_not_a_recursion_error():
    # Found by fuzzing: 499 NOTs (under MAX_KEYS) raised RecursionError, a "server bug" reply.
    _quickly(b"NOT " * 499 + b"ALL")


def test_deep_or_chain_is_refused_not_a_recursion_error():
    _quickly(b"OR " * 499 + b"ALL " * 500)


def test_nesting_up_to_the_limit_compiles_and_evaluates():
    program = _compile(b"NOT " * (search.MAX_NESTING - 1) + b"SEEN")
    message = StoredMessage(1, frozenset({"\\Seen"}), 10, 0.0, 1)
    assert program.predicate(Candidate(1, message, False)) is ((search.MAX_NESTING - 1) % 2 == 0)
