"""The address-list parser behind ENVELOPE and SEARCH FROM/TO/CC/BCC (addresslist.py):
RFC 5322 §3.4 forms, groups and routes kept, obsolete and broken input still giving a list,
and any input parsed without an exception in time linear in its length."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.addresslist import (
    GroupEnd,
    GroupStart,
    Mailbox,
    get_addresses,
    mailboxes,
    parse,
    search_text,
    shown,
    shown_mailboxes,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("user@domain", [Mailbox(None, None, "user", "domain")]),
        ("Real Name <user@domain>", [Mailbox("Real Name", None, "user", "domain")]),
        ('"Doe, John" <j@x.org>', [Mailbox("Doe, John", None, "j", "x.org")]),
        ("user@domain (Real Name)", [Mailbox("Real Name", None, "user", "domain")]),
        ("John Q. Public <jqp@x>", [Mailbox("John Q. Public", None, "jqp", "x")]),
        ("<user (c)@ (c) domain . org>", [Mailbox(None, None, "user", "domain.org")]),
        ("<@a,@b:user@domain>", [Mailbox(None, "@a,@b", "user", "domain")]),
        ('"john doe"@example.org', [Mailbox(None, None, "john doe", "example.org")]),
        (
            "a@b, c@[192.0.2.1]",
            [Mailbox(None, None, "a", "b"), Mailbox(None, None, "c", "[192.0.2.1]")],
        ),
        ("a@b c@d", [Mailbox(None, None, "a", "b")]),  # a missing comma ends the domain
        ("undisclosed", [Mailbox(None, None, "undisclosed", None)]),
        ("undisclosed-recipients:;", [GroupStart("undisclosed-recipients"), GroupEnd()]),
        (
            "team: a@x, B <b@y>; c@z",
            [
                GroupStart("team"),
                Mailbox(None, None, "a", "x"),
                Mailbox("B", None, "b", "y"),
                GroupEnd(),
                Mailbox(None, None, "c", "z"),
            ],
        ),
        ("open: a@x", [GroupStart("open"), Mailbox(None, None, "a", "x"), GroupEnd()]),
        ("", []),
        ("  (just a comment) ", []),
    ],
)
def test_parse(header, expected):
    assert parse(header) == expected


def test_mailboxes_flattens_groups():
    assert [m.local for m in mailboxes("g: a@x, b@y;, c@z")] == ["a", "b", "c"]


def test_search_text_normalizes_addresses_and_decodes_names():
    text = search_text("=?utf-8?q?Caf=C3=A9?= <a (x)@ b.org>, team:;")
    assert text == "Café <a@b.org>, team:"


def test_deeply_nested_comments_cost_linear_time():
    header = "(" * 200_000 + "a@b"
    start = time.perf_counter()
    assert parse(header) == []  # the comment never closes: all of it is comment
    assert time.perf_counter() - start < 2


@given(st.text(alphabet=st.sampled_from(list('ab@.,;:<>()"[]\\ \t\r\n=?é')), max_size=200))
def test_any_text_parses_into_addresses_without_error(header):
    items = parse(header)
    assert all(isinstance(i, Mailbox | GroupStart | GroupEnd) for i in items)
    depth = 0
    for item in items:  # groups are balanced and never nested
        if isinstance(item, GroupStart):
            assert depth == 0
            depth += 1
        elif isinstance(item, GroupEnd):
            assert depth == 1
            depth -= 1
    assert depth == 0
    search_text(header)


@given(st.text(alphabet=st.sampled_from(list('ab@.,;:<>()"[]\\ \t\r\n=?é\x00')), max_size=300))
def test_the_safe_readers_never_raise_and_agree_with_the_library_where_it_answers(value):
    """``get_addresses`` is ``email.utils.getaddresses`` wherever that one answers (short,
    not recursing too deep); ``every_reading`` holds each address either parser reads."""
    import email.utils

    from txmailhost.addresslist import every_reading, get_addresses, parse_address

    found = get_addresses([value])
    try:
        expected = email.utils.getaddresses([value])
    except RecursionError:
        expected = None
    if expected is not None:
        assert found == expected
    readings = every_reading([value])
    assert all(address in readings for _name, address in found if address)
    assert all(
        (box.local if box.domain is None else f"{box.local}@{box.domain}") in readings
        for box in mailboxes(value)
        if box.local or box.domain
    )
    parse_address(value)


def test_long_address_lists_are_read_by_the_linear_parser_not_dropped():
    many = ", ".join(f"user{n}@example.test" for n in range(500))
    assert [a for _n, a in get_addresses([many])] == [f"user{n}@example.test" for n in range(500)]
    nested = "(" * 5000 + "x" + ")" * 5000 + " <ceo@bank.example>"
    assert get_addresses([nested]) == [("", "ceo@bank.example")]


def test_shown_keeps_an_encoded_name_a_name_whatever_it_decodes_to():
    """Names are decoded after the field is parsed, on one line, quoted where they hold a
    special: a decoded "<carol@x>," or a line break can't make a second address."""
    hostile = "=?utf-8?q?Support=0A=3Ccarol=40x.test=3E=2C?= <bob@y.test>"
    assert shown_mailboxes(hostile) == [('"Support <carol@x.test>," <bob@y.test>', "bob@y.test")]
    assert shown(r'"A \"q\" B" <a@x.test>, "Doe, J" <j@x.test>, team: c@z.test;') == (
        r'"A \"q\" B" <a@x.test>, "Doe, J" <j@x.test>, c@z.test'
    )
    assert shown("=?utf-8?q?Jos=C3=A9?= <j@x.test>") == "José <j@x.test>"
    assert shown("undisclosed-recipients:;") == ""
