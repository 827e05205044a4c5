"""Property tests of mailbox names on the wire (names.py): any bytes a client sends decode to a
name or raise ``InvalidName``; a name the server prints in modified UTF-7 (RFC 3501 §5.1.3)
decodes back to itself; LIST patterns compile for any reference and pattern."""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.linecount import lines_run
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


def _regex_oracle(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 3501 §6.3.8 as a regular expression (how names.py matched before): exact, but it
    backtracks exponentially, so only for the small inputs drawn below."""
    full = reference + pattern if not pattern.startswith("/") or not reference else pattern
    out = [".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full]
    regex = "".join(out)
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in "/*%"):
        regex = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(regex + r"\Z", re.DOTALL)


_pattern_text = st.text(alphabet="ab/*%IiNnBbOoXx.", max_size=10)
_name_text = st.one_of(
    st.text(alphabet="ab/INBOXinbox.", max_size=14),
    st.sampled_from(["INBOX", "INBOX/a", "Inbox", "inboxes", "a/b/c", "", "/"]),
)


@given(_pattern_text, _pattern_text, _name_text)
def test_list_pattern_matches_exactly_what_the_rfc_wildcards_match(reference, pattern, name):
    expected = bool(_regex_oracle(reference, pattern).match(name))
    assert names.ListPattern(reference, pattern).match(name) is expected


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=30))
def test_list_patterns_compile_for_any_reference_and_pattern(reference, pattern, candidate):
    names.ListPattern(reference, pattern).match(candidate)


@pytest.mark.parametrize(
    "pattern", ["%*" * 20_000 + "a", "*a" * 20_000, "%a" * 20_000 + "b", "*" * 60_000]
)
def test_list_pattern_with_many_wildcards_matches_in_linear_time(pattern):
    # Found by fuzzing: as a regular expression, "%*%*%*%*%*a" took 5 s per mailbox name.
    # CPU time of this process: a quadratic path costs seconds of it; other processes'
    # load (CI runs two test processes) doesn't count, as wall-clock time would.
    start = time.process_time()
    matcher = names.ListPattern("", pattern)
    for name in ["INBOX", "a" * 500, "a/" * 250, "Archive/2024/" + "b" * 490]:
        matcher.match(name)
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize("raw", [b"&Jjo", b"&", b"a&b", b"&AGE-", b"&ZeVnLIqe"])
def test_a_name_modified_utf7_would_write_otherwise_is_invalid(raw):
    """RFC 3501 5.1.3: "&" opens a shift that "-" closes, and a character that can be itself
    is written as itself. ``CREATE "&Jjo"`` made a mailbox that LIST showed as ``&Jjo-``."""
    with pytest.raises(InvalidName):
        names.decode(raw)


@pytest.mark.parametrize(("raw", "name"), [(b"&Jjo-", "\u263a"), (b"a&-b", "a&b")])
def test_the_one_way_of_writing_a_name_decodes(raw, name):
    assert names.decode(raw) == name


def test_half_a_utf16_pair_is_no_name():
    """``&2D0-`` decodes to a lone surrogate: no character, which no UTF-8 file or table can
    hold. CREATE took it; SUBSCRIBE and RENAME then failed as SERVERBUG, RENAME halfway."""
    with pytest.raises(InvalidName):
        names.decode(b"&2D0-")
    with pytest.raises(InvalidName):
        names.decode(b"a&3P8-b")
    assert names.decode(b"&2D3eAA-") == "\U0001f600"  # the whole pair: a character


# -- LIST attributes over random hierarchies ----------------------------------------------------

# Levels where one is a prefix of another without being its parent ("a/b" and "a/bc"), the
# special-use folders, INBOX; and now and then a name the store would refuse ("", "a//b", "/"),
# where the set lookups must still agree with the scan they replaced.
_hierarchy_names = st.one_of(
    st.lists(
        st.sampled_from(["a", "b", "bc", "INBOX", "Sent", "Trash", "Archive", "x y"]),
        min_size=1,
        max_size=4,
    ).map("/".join),
    st.text(alphabet="ab/", max_size=6),
)
_list_patterns = st.lists(
    st.sampled_from(["*", "%", "a/*", "a/%", "a/b", "a/bc", "INBOX*", "%/%", "*c", "Sent", "b*"]),
    min_size=1,
    max_size=3,
)
_selections = st.sets(st.sampled_from(["SUBSCRIBED", "RECURSIVEMATCH", "SPECIAL-USE"])).filter(
    lambda selection: names.check_selection(selection) is None
)


def _scanned_attributes(name: str, known: dict[str, bool], subscribed: bool) -> list[str]:
    """``names.attributes`` as it was: \\HasChildren by asking every known name in turn
    (right, but quadratic over a LIST: 1.7 s for 4,000 mailboxes)."""
    has_children = any(other.startswith(name + "/") for other in known)
    attrs = ["\\HasChildren" if has_children else "\\HasNoChildren"]
    if not known.get(name, False):
        attrs.insert(0, "\\Noselect")
    if name in names.SPECIAL_USE:
        attrs.append(names.SPECIAL_USE[name])
    if subscribed:
        attrs.append("\\Subscribed")
    return attrs


def _split_superiors(name: str) -> list[str]:
    """The levels above a name as ``with_parents`` used to build them."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@given(st.one_of(_hierarchy_names, st.text(max_size=20)))
def test_superiors_are_the_names_a_name_starts_with_then_a_separator(name):
    assert names.superiors(name) == _split_superiors(name)
    for superior in names.superiors(name):
        assert name.startswith(superior + "/")


@given(
    st.lists(_hierarchy_names, max_size=12),
    st.lists(_hierarchy_names, max_size=6),
    _list_patterns,
    _selections,
    st.booleans(),
)
def test_list_attributes_are_the_ones_scanning_every_name_gives(
    existing, subscribed, patterns, selection, return_subscribed
):
    """The children of each name are looked up in a set built once per LIST; every answer
    is the one the scan over every name gave: \\Noselect and \\NonExistent superiors,
    special use, and subscribed names that don't exist (LIST (SUBSCRIBED), RETURN
    (SUBSCRIBED), RECURSIVEMATCH's CHILDINFO)."""
    known = names.with_parents(existing)
    expected_known = dict.fromkeys(existing, True)
    for name in existing:
        for superior in _split_superiors(name):
            expected_known.setdefault(superior, False)
    assert known == expected_known
    entries = names.list_entries(
        existing,
        subscribed,
        [names.ListPattern("", p) for p in patterns],
        selection,
        return_subscribed,
    )
    shown = "SUBSCRIBED" in selection or return_subscribed
    for entry in entries:
        attrs = _scanned_attributes(entry.name, known, shown and entry.name in subscribed)
        if entry.name not in known:
            attrs = ["\\NonExistent" if a == "\\Noselect" else a for a in attrs]
        assert entry.attributes == attrs
    parents = names.with_children(existing)
    for name in [*known, *subscribed, "a/b", "a/bc", "a/b/", "", "/"]:
        for flag in (False, True):
            assert names.attributes(name, known, parents, flag) == _scanned_attributes(
                name, known, flag
            )


def _hierarchy(size: int) -> list[str]:
    """``size`` mailboxes: a flat folder of many, some with a child, and prefixes that are
    not parents (``many/box0001`` beside ``many/box00010``)."""
    flat = [f"many/box{i:05d}" for i in range(size)]
    return [
        "INBOX",
        "Sent",
        *flat,
        *(f"{n}/sub" for n in flat[::50]),
        *(n[:-1] for n in flat[::97]),
    ]


def test_list_work_grows_linearly_with_the_number_of_mailboxes():
    """Four times the mailboxes, about four times the lines run: asking every name of each
    listed one (as \\HasChildren was found) ran sixteen times as many."""

    def list_all(size: int) -> int:
        existing = _hierarchy(size)
        pattern = [names.ListPattern("", "*")]
        return lines_run(
            [names], lambda: names.list_entries(existing, existing[::3], pattern, set(), True)
        )

    small, large = list_all(500), list_all(2000)
    assert large < 6 * small, (small, large)
