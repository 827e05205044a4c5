"""``bench.corpus_interop``'s comparison: what RFC 3501 leaves open is set aside, nothing else."""

from __future__ import annotations

from bench.corpus_interop import comparable


def test_case_parameter_order_languages_spaces_and_literals_are_set_aside():
    ours = b'1 (BODYSTRUCTURE ("text" "plain" ("charset" "utf-8" "format" "flowed") NIL NIL "7BIT" 5 1 NIL NIL "en" NIL) ENVELOPE (NIL "a  b" NIL NIL NIL NIL NIL NIL NIL NIL))'  # noqa: E501
    theirs = b'1 (BODYSTRUCTURE ("text" "plain" ("format" "flowed" "charset" "utf-8") NIL NIL "7bit" 5 1 NIL NIL ("en") NIL) ENVELOPE (NIL {3}a b NIL NIL NIL NIL NIL NIL NIL NIL))'  # noqa: E501
    assert comparable(ours) == comparable(theirs)


def test_a_different_size_type_or_address_still_differs():
    base = (
        b'1 (BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL))'
    )
    for other in (
        base.replace(b" 5 1 ", b" 6 1 "),
        base.replace(b'"plain"', b'"html"'),
        base.replace(b'"utf-8"', b'"us-ascii"'),
    ):
        assert comparable(other) != comparable(base)
