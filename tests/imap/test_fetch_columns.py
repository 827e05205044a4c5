"""The index-only FETCH fast path (``fetch.column_batch`` and ``render_batch`` over
``SelectedMailbox.runs``) says byte for byte what the general per-message renderer says, for every combination of index
items, UID or not, \\Recent, CHANGEDSINCE and UIDs the store no longer has; and sequence sets
name the same messages as runs as they did as (seq, uid) pairs."""

from __future__ import annotations

import re
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.imap.support import ALICE, Session, deliver, make_factory
from txmailhost.imap import fetch, messages, rendered
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
def test_rendered_columns_say_what_the_per_message_renderer_says(batch, uid):
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
    columned = fetch.column_batch(seqs, array("I", uids), columns, request, uid=uid, recent=recent)
    got = fetch.render_batch(columned)
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


def _session(world, factory=None) -> Session:
    s = Session(factory or make_factory(world))
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


# -- the kept batches (imap/rendered.py) ---------------------------------------------------------


def _batch(count: int = 600, first: int = 1, seen: int | None = None) -> fetch.ColumnBatch:
    """``UID FETCH first:* (FLAGS)`` over ``count`` messages, ``seen`` the one with \\Seen."""
    uids = array("I", range(first, first + count))
    flags = [frozenset({"\\Seen"}) if u == seen else frozenset() for u in uids]
    return fetch.ColumnBatch((b"UID", b"FLAGS"), None, (), range(1, count + 1), uids, (uids, flags))


def test_kept_lines_come_back_only_for_an_equal_batch():
    kept = rendered.RenderedBatches()
    kept.put("k", _batch(), b"lines")
    assert kept.get("k", _batch()) == b"lines"
    assert kept.get("k", _batch(seen=7)) is None
    assert kept.get("k", _batch(first=2)) is None
    assert kept.get("k", _batch(count=601)) is None
    recent = _batch()
    assert kept.get("k", fetch.ColumnBatch(**{**vars(recent), "recent": ((5, 9),)})) is None
    assert kept.get("other", _batch()) is None


def test_small_batches_are_not_kept():
    kept = rendered.RenderedBatches()
    kept.put("k", _batch(count=10), b"lines")
    assert kept.get("k", _batch(count=10)) is None


def test_the_least_recently_used_batch_goes_first_within_the_budget():
    lines = b"x" * 10_000
    kept = rendered.RenderedBatches(budget=3 * (len(lines) + 20 * 600))
    for key in "abc":
        kept.put(key, _batch(), lines)
    assert kept.get("a", _batch()) == lines  # now the most recent
    kept.put("d", _batch(), lines)
    assert kept.get("b", _batch()) is None
    assert [kept.get(k, _batch()) for k in "acd"] == [lines] * 3
    assert kept.used <= kept.budget


@pytest.fixture
def many(world, monkeypatch):
    """Six messages, and every FETCH batch kept however small."""
    monkeypatch.setattr(rendered, "MIN_LINES", 1)
    for i in range(6):
        deliver(world, ALICE, b"Subject: %d\r\n\r\nbody\r\n" % i)
    return world


def _two_sessions(world) -> tuple[Session, Session]:
    """Two sessions of one listener: they share its kept batches."""
    factory = make_factory(world)
    return _session(world, factory), _session(world, factory)


def _lines(reply: bytes) -> list[bytes]:
    return [line for line in reply.split(b"\r\n") if b" FETCH (" in line]


def test_kept_lines_are_not_reused_after_another_sessions_store(many):
    first, second = _two_sessions(many)
    before = first.cmd("b UID FETCH 1:* (FLAGS)")
    assert b"* 3 FETCH (UID 3 FLAGS (\\Recent))\r\n" in before
    second.cmd("c STORE 3 +FLAGS.SILENT (\\Flagged)")
    first.cmd("d NOOP")  # the untagged FETCH of the change
    assert b"* 3 FETCH (UID 3 FLAGS (\\Recent \\Flagged))\r\n" in first.cmd("e UID FETCH 1:* FLAGS")
    assert _lines(second.cmd("f UID FETCH 1:* FLAGS"))[2] == b"* 3 FETCH (UID 3 FLAGS (\\Flagged))"


def test_kept_lines_are_not_reused_across_an_expunge_that_renumbers(many):
    first, second = _two_sessions(many)
    assert len(_lines(first.cmd("b UID FETCH 1:* (FLAGS)"))) == 6
    second.cmd("c STORE 1 +FLAGS.SILENT (\\Deleted)")
    second.cmd("d EXPUNGE")
    # second was told: five messages, numbered from 1 again
    renumbered = _lines(second.cmd("e UID FETCH 1:* (FLAGS)"))
    assert renumbered[0] == b"* 1 FETCH (UID 2 FLAGS ())"
    assert len(renumbered) == 5
    # first wasn't yet (no EXPUNGE during FETCH): its own numbers, UID 1 left out
    own = _lines(first.cmd("f UID FETCH 1:* (FLAGS)"))
    assert own[0] == b"* 2 FETCH (UID 2 FLAGS (\\Recent))"
    assert len(own) == 5
    assert _lines(second.cmd("g UID FETCH 1:* (FLAGS)")) == renumbered


def test_kept_lines_are_not_reused_after_a_modseq_change(many):
    first, second = _two_sessions(many)
    first.cmd("b ENABLE CONDSTORE")
    before = _lines(first.cmd("c UID FETCH 1:* (FLAGS MODSEQ)"))
    # the flags end as they were; only the message's modseq moved on
    second.cmd("d STORE 4 +FLAGS.SILENT (\\Seen)")
    second.cmd("e STORE 4 -FLAGS.SILENT (\\Seen)")
    first.cmd("f NOOP")
    after = _lines(first.cmd("g UID FETCH 1:* (FLAGS MODSEQ)"))
    old = int(re.search(rb"MODSEQ \((\d+)\)", before[3])[1])
    new = int(re.search(rb"MODSEQ \((\d+)\)", after[3])[1])
    assert new > old
    assert after[:3] == before[:3] and after[4:] == before[4:]


def test_recent_of_one_session_is_not_shown_to_another(many):
    first, second = _two_sessions(many)  # first claimed \Recent for the six
    assert b"FLAGS (\\Recent)" in first.cmd("b FETCH 1:* (FLAGS)")
    assert b"\\Recent" not in second.cmd("c FETCH 1:* (FLAGS)")
    assert b"FLAGS (\\Recent)" in first.cmd("d FETCH 1:* (FLAGS)")
