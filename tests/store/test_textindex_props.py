"""Property: the full-text index never hides a match. Whatever the texts and the needle
(quotes, FTS5 operators, spaces, non-ASCII), every text holding the needle is a candidate."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.store import textindex
from txmailhost.store.interfaces import TextAll, TextAny, TextTerm

_ALPHABET = st.sampled_from(list('ab "*:(){}-^ÄäßsSnoRANDOT\n\t€'))
_TEXT = st.text(_ALPHABET, max_size=40)
_counter = itertools.count()


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(_TEXT, min_size=1, max_size=6), needle=_TEXT, field=st.sampled_from(
    ["text", "from", "subject"]))  # fmt: skip
def test_every_text_holding_the_needle_is_a_candidate(tmp_path_factory, texts, needle, field):
    directory = tmp_path_factory.mktemp(f"t{next(_counter)}")
    index = textindex.TextIndex(str(directory))
    try:
        index.indexed(1, "props")
        index.add(
            (uid, {name: text if name == field else "" for name in textindex.TEXT_FIELDS})
            for uid, text in enumerate(texts, 1)
        )
        holding = {uid for uid, text in enumerate(texts, 1) if needle in text}
        found = index.candidates(TextTerm(field, needle))
        if found is None:
            assert len(needle) < 3
        else:
            assert holding <= found
        both = index.candidates(TextAll((TextTerm(field, needle), TextTerm(field, needle[:3]))))
        assert both is None or holding <= both
        either = index.candidates(TextAny((TextTerm(field, needle), TextTerm("to", "zzz"))))
        assert either is None or holding <= either
    finally:
        index.drop()
