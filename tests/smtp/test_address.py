"""MAIL FROM / RCPT TO arguments (RFC 5321 4.1.2): paths, the null path, source routes, quoted
local parts, address literals and ESMTP parameters."""

from __future__ import annotations

import pytest

from txmailhost.smtp.address import (
    AddressError,
    Mailbox,
    parse_mailbox,
    parse_params,
    parse_path_argument,
)


def test_path_with_parameters_gives_mailbox_and_upper_cased_keywords():
    path = parse_path_argument("FROM:<alice@example.org> size=1000 BODY=8BITMIME", "FROM", True)
    assert path.mailbox == Mailbox("alice", "example.org")
    assert path.params == {"SIZE": "1000", "BODY": "8BITMIME"}


def test_keyword_is_case_insensitive_and_a_space_after_the_colon_is_tolerated():
    assert parse_path_argument("to: <bob@example.org>", "TO", False).mailbox == Mailbox(
        "bob", "example.org"
    )


def test_null_reverse_path_is_allowed_for_mail_from_only():
    assert parse_path_argument("FROM:<>", "FROM", True).mailbox is None
    with pytest.raises(AddressError, match="null path"):
        parse_path_argument("TO:<>", "TO", False)


def test_wrong_keyword_is_refused():
    with pytest.raises(AddressError, match="expected TO"):
        parse_path_argument("FROM:<a@example.org>", "TO", False)


def test_source_route_is_ignored_and_the_mailbox_kept():
    path = parse_path_argument("TO:<@relay.example,@b.example:user@c.example>", "TO", False)
    assert path.mailbox == Mailbox("user", "c.example")


def test_postmaster_without_a_domain_is_accepted_as_recipient():
    assert parse_path_argument("TO:<Postmaster>", "TO", False).mailbox == Mailbox("postmaster", "")


def test_quoted_local_part_stays_quoted():
    assert parse_mailbox('"john smith"@example.org') == Mailbox('"john smith"', "example.org")
    assert parse_mailbox('"a\\"b"@example.org').local == '"a\\"b"'


def test_quoted_plain_local_part_is_the_same_mailbox_unquoted():
    assert parse_mailbox('"alice"@example.org') == Mailbox("alice", "example.org")
    assert parse_mailbox('"al\\ice"@example.org') == Mailbox("alice", "example.org")


def test_closing_bracket_inside_a_quoted_local_part_does_not_end_the_path():
    path = parse_path_argument('TO:<"a>b"@example.org> ', "TO", False)
    assert path.mailbox == Mailbox('"a>b"', "example.org")


def test_address_literal_is_kept_and_flagged():
    mailbox = parse_mailbox("user@[192.0.2.1]")
    assert mailbox.domain == "[192.0.2.1]" and mailbox.is_literal
    assert parse_mailbox("user@[IPv6:2001:db8::1]").is_literal


@pytest.mark.parametrize(
    "address",
    [
        "x@[a>b]",
        "x@[foo]",
        "x@[1.2.3]",
        "x@[300.1.1.1]",
        "x@[IPv6:zz]",
        "x@[-tag:v]",
        "j\u00f6@[a>b]",
    ],
)
def test_an_address_literal_must_be_an_address_or_a_tagged_one(address):
    """RFC 5321 4.1.3: IPv4, ``IPv6:`` and an IPv6 address, or ``tag:content``."""
    with pytest.raises(AddressError):
        parse_mailbox(address, utf8=True)


def test_non_ascii_address_is_flagged_for_smtputf8():
    with pytest.raises(AddressError) as caught:
        parse_mailbox("jörg@example.org")
    assert caught.value.utf8


@pytest.mark.parametrize(
    "argument, message",
    [
        ("FROM:alice@example.org", "enclosed in <>"),
        ("FROM:<alice@example.org", "missing closing"),
        ("FROM:<alice@example.org>SIZE=1", "space before parameters"),
        ("FROM:<" + "a" * 65 + "@example.org>", "bad address"),
        ("FROM:<a@" + "b." * 130 + "org>", "path too long"),
        ("FROM:<a..b@example.org>", "bad address"),
        ("FROM:<a@-example.org>", "bad address"),
        ("FROM:<a@example.org.>", "bad address"),
    ],
)
def test_malformed_paths_are_refused(argument, message):
    with pytest.raises(AddressError, match=message):
        parse_path_argument(argument, "FROM", True)


@pytest.mark.parametrize("text", ["SIZE=", "=1", "SIZE=a=b", "SI_ZE=1", "SIZE=1 size=2"])
def test_malformed_or_repeated_parameters_are_refused_as_parameter_errors(text):
    with pytest.raises(AddressError) as caught:
        parse_params(text)
    assert caught.value.in_params


def test_parameter_without_value_is_none():
    assert parse_params(" SMTPUTF8  BODY=7BIT") == {"SMTPUTF8": None, "BODY": "7BIT"}


def test_closing_bracket_or_quote_inside_an_address_literal_does_not_end_the_path():
    # Found by test_address_props.py: '>' and '"' are dcontent (RFC 5321 4.1.3).
    path = parse_path_argument('TO:<user@[x:a>"b]> NOTIFY=NEVER', "TO", False)
    assert path.mailbox == Mailbox("user", '[x:a>"b]')
    assert path.params == {"NOTIFY": "NEVER"}
