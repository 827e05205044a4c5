"""The command tokenizer: strings, literals at their markers only, sequence sets, limits."""

from __future__ import annotations

import pytest

from txmailhost.imap.parser import LiteralFile, ParseError, Reader


def test_quoted_string_unescapes_quote_and_backslash():
    assert Reader(b'"a\\"b\\\\c"').quoted() == b'a"b\\c'


def test_quoted_string_rejects_other_escapes():
    with pytest.raises(ParseError):
        Reader(b'"a\\nb"').quoted()


def test_literal_is_taken_only_where_its_marker_ended_the_line():
    reader = Reader(b"{5}", {3: b"hello"})
    assert reader.astring() == b"hello"
    with pytest.raises(ParseError):
        Reader(b"{5}", {}).astring()  # text that looks like a marker but ended no line


def test_literal_marker_inside_a_quoted_string_is_text():
    assert Reader(b'"{5}"', {}).astring() == b"{5}"


def test_large_literal_is_refused_where_a_small_string_is_expected():
    with pytest.raises(ParseError):
        Reader(b"{9}", {3: LiteralFile("/nonexistent", 9)}).astring()


def test_nil_is_none_for_nstring_but_nile_is_an_atom():
    assert Reader(b"NIL").nstring() is None
    with pytest.raises(ParseError):
        Reader(b"NILE").nstring()


def test_sequence_set_shapes():
    assert Reader(b"1:*,7,9:10").sequence_set() == b"1:*,7,9:10"
    for bad in (b"1::2", b",1", b"a", b"1,"):
        with pytest.raises(ParseError):
            Reader(bad).sequence_set()


def test_nesting_depth_is_bounded():
    reader = Reader(b"(" * 40)
    with pytest.raises(ParseError, match="too deeply nested"):
        for _ in range(40):
            reader.open_paren()


def test_system_flags_are_canonicalised_and_unknown_ones_refused():
    assert Reader(b"(\\seen \\FLAGGED $Work)").flag_list() == ["\\Seen", "\\Flagged", "$Work"]
    with pytest.raises(ParseError):
        Reader(b"(\\Bogus)").flag_list()


def test_tag_may_not_contain_plus():
    assert Reader(b"a+b NOOP").tag() == b"a"


def test_tag_may_not_contain_8bit_octets():
    # Found by tests/imap/test_session_props.py: "\x80 NOOP" was answered "\x80 BAD ...",
    # a tagged response outside RFC 3501's grammar (tags are 7-bit CHARs).
    with pytest.raises(ParseError, match="missing tag"):
        Reader(b"\x80 NOOP").tag()
    assert Reader(b"a\xe9 NOOP").tag() == b"a"
