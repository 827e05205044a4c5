"""The index-only FETCH fast path (``fetch.render_columns`` over ``SelectedMailbox.runs``) says
byte for byte what the general per-message renderer says, for every combination of index
items, UID or not, \\Recent, CHANGEDSINCE and UIDs the store no longer has; and sequence sets
name the same messages as runs as they did as (seq, uid) pairs."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.imap.support import ALICE, Session, deliver, make_factory
from tests.support.fixtures import make_world
from txmailhost.imap import fetch, messages
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import IndexColumns, StoredMessage

INDEX_ITEMS = [b"UID", b"FLAGS", b"RFC822.SIZE", b"INTERNALDATE", b"MODSEQ"]
FLAG_SETS = [
    frozenset(),
    frozenset({"\\Seen"}),
    frozenset({"\\Seen", "\\Answered", "$Work"}),
    frozenset({"\\Deleted", "100%"}),  # a "%" in a keyword must not be read as a format
]


def _per_message(
    seqs: list[int],
    found: list[StoredMessage],
    request: fetch.FetchRequest,
    uid: bool,
    recent: list[tuple[int, int]],
) -> bytes:
    """What the general path (``fetch.render``, one message at a time) answers."""
    out = []
    for seq, message in zip(seqs, found, strict=True):
        since = request.changedsince
        if since is not None and message.modseq <= since:
            continue
        is_recent = any(low <= message.uid < high for low, high in recent)
        out.append(
            fetch.render(
                seq,
                message,
                request,
                uid=uid,
                flags_changed=False,
                recent=is_recent,
                modseq=False,
            )
        )
    return b"".join(out)


@st.composite
def batches(draw):
    uids = sorted(draw(st.sets(st.integers(1, 300), max_size=40)))
    first_seq = draw(st.integers(1, 50))
    gone = draw(st.sets(st.sampled_from(uids))) if uids else set()
    messages_left = [
        StoredMessage(
            uid,
            draw(st.sampled_from(FLAG_SETS)),
            draw(st.integers(0, 10**9)),
            draw(st.floats(0, 4e9, allow_nan=False)),
            draw(st.integers(1, 60)),
        )
        for uid in uids
        if uid not in gone
    ]
    items = draw(st.lists(st.sampled_from(INDEX_ITEMS), min_size=1, max_size=5, unique=True))
    text = b"(" + b" ".join(items) + b")"
    if draw(st.booleans()):
        text += b" (CHANGEDSINCE %d)" % draw(st.integers(0, 60))
    recent = draw(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=2))
    recent = [(low, high) for low, high in recent if low < high]
    return uids, first_seq, messages_left, text, recent


@settings(max_examples=300, deadline=None)
@given(batches(), st.booleans())
def test_render_columns_says_what_the_per_message_renderer_says(batch, uid):
    uids, first_seq, found, text, recent = batch
    request = fetch.parse_fetch(Reader(text))
    seqs = range(first_seq, first_seq + len(uids))
    columns = IndexColumns(
        array("I", [m.uid for m in found]),
        [m.flags for m in found],
        array("Q", [m.size for m in found]),
        array("d", [m.internaldate for m in found]),
        array("Q", [m.modseq for m in found]),
    )
    left = {m.uid for m in found}
    kept_seqs = [seq for seq, u in zip(seqs, uids, strict=True) if u in left]
    expected = _per_message(kept_seqs, found, request, uid, recent)
    got = fetch.render_columns(seqs, array("I", uids), columns, request, uid=uid, recent=recent)
    assert got == expected


# -- sequence sets as runs -----------------------------------------------------------------------


def _naive(uids: list[int], text: bytes, by_uid: bool, clamp: bool) -> list[tuple[int, int]]:
    """RFC 3501 §6.4.8 / §9 ``sequence-set`` spelled out message by message."""
    count = len(uids)
    if not count:
        return []
    wanted: set[int] = set()
    for piece in text.split(b","):
        low, _, high = piece.partition(b":")
        last = uids[-1] if by_uid else count
        lo = last if low == b"*" else int(low)
        hi = lo if not high else (last if high == b"*" else int(high))
        lo, hi = min(lo, hi), max(lo, hi)
        if by_uid:
            wanted |= {u for u in uids if lo <= u <= hi}
        else:
            if not clamp and (lo < 1 or hi > count):
                raise ParseError("out of range")
            wanted |= {uids[s - 1] for s in range(lo, min(hi, count) + 1)}
    return [(seq, u) for seq, u in enumerate(uids, 1) if u in wanted]


_numbers = st.one_of(st.integers(1, 40).map(b"%d".__mod__), st.just(b"*"))
_pieces = st.one_of(_numbers, st.tuples(_numbers, _numbers).map(b":".join))
_sets = st.lists(_pieces, min_size=1, max_size=5).map(b",".join)


@settings(max_examples=400, deadline=None)
@given(st.sets(st.integers(1, 40)), _sets, st.booleans(), st.booleans())
def test_runs_name_the_messages_the_sequence_set_names(uids, text, by_uid, clamp):
    session_uids = sorted(uids)
    view = SelectedMailbox(None, "INBOX", False, array("I", session_uids), 1, 41, 1)
    try:
        expected = _naive(session_uids, text, by_uid, clamp)
    except ParseError:
        with pytest.raises(ParseError):
            view.runs(text, by_uid, clamp)
        return
    runs = view.runs(text, by_uid, clamp)
    assert view.pairs(runs) == view.resolve(text, by_uid, clamp) == expected
    assert all(start < stop for start, stop in runs)


def test_saved_result_keeps_its_order_as_runs():
    view = SelectedMailbox(None, "INBOX", False, array("I", [2, 4, 5, 6, 9]), 1, 10, 1)
    view.saved_uids = [4, 5, 9, 2, 7]  # 7 expunged since the SEARCH ... SAVE
    assert view.runs(b"$", True) == [(1, 3), (4, 5), (0, 1)]
    assert view.resolve(b"$", True) == [(2, 4), (3, 5), (5, 9), (1, 2)]


# -- over a session ------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path, backend):
    w = make_world(tmp_path, backend)
    w.add_user(ALICE)
    return w


def _session(world) -> Session:
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    return s


def test_fetch_of_several_runs_cut_into_small_batches_is_unchanged(world, monkeypatch):
    for i in range(9):
        deliver(world, ALICE, b"Subject: %d\r\n\r\nbody\r\n" % i)
    s = _session(world)
    s.cmd("b STORE 2,5 +FLAGS.SILENT (\\Seen $Later)")
    command = "c UID FETCH 1:2,4,6:* (FLAGS RFC822.SIZE UID)"
    whole = s.cmd(command)
    assert whole.count(b" FETCH ") == 8
    assert b"* 2 FETCH (UID 2 FLAGS (\\Recent \\Seen $Later) RFC822.SIZE 20)\r\n" in whole
    monkeypatch.setattr(messages, "INDEX_BATCH", 2)  # every batch spans a run's end
    assert s.cmd(command) == whole
