"""author_domains (mailauth/authors.py): every domain a mail client could show as the
author, from hostile From fields; the domains DMARC judges."""

from __future__ import annotations

import pytest

from txmailhost.mailauth.authors import author_domains
from txmailhost.mailauth.signing import from_domain

NESTED = "(" * 500 + "x" + ")" * 500


@pytest.mark.parametrize(
    ("field", "domains"),
    [
        ("From: Bob <bob@Example.ORG>", ["example.org"]),
        ("From: bob@example.org (Bob)", ["example.org"]),
        ("From: Bob <bob@example.org.>", ["example.org"]),
        # Google Groups' DMARC rewrite: an address in the display name is not an author.
        ('From: "ceo@bank.example" via list <list@lists.example>', ["lists.example"]),
        # Comments nested past Python's recursion limit, closed or never closed.
        (f"From: {NESTED} <ceo@bank.example>", ["bank.example"]),
        ("From: " + "(" * 500 + " <ceo@bank.example>", ["bank.example"]),
        ("From: " + "x" * 5000 + " <ceo@bank.example>", ["bank.example"]),
        # A missing comma: each parser reads a different one; both count.
        ("From: a@evil.example ceo@bank.example", ["evil.example", "bank.example"]),
        ("From: <a@evil.example> ceo@bank.example", ["evil.example", "bank.example"]),
        ("From: a@evil.example,\r\n ceo@bank.example", ["evil.example", "bank.example"]),
        # Two From fields (RFC 5322 allows one), and space before the colon (4.5.3).
        ("From: a@evil.example\r\nFrom: ceo@bank.example", ["evil.example", "bank.example"]),
        ("From : ceo@bank.example", ["bank.example"]),
        # An address hidden in an encoded word, shown by clients that decode first.
        ("From: =?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?=", ["bank.example"]),
        ("From: a@b\u00fccher.example", ["xn--bcher-kva.example"]),
        # Nothing DMARC could look up.
        ("From: x@[192.0.2.1]", []),
        ("From: root@localhost", []),
        ("From: undisclosed", []),
        ("Subject: no From", []),
    ],
)
def test_author_domains_of_hostile_from_fields(field, domains):
    assert author_domains(field.encode() + b"\r\nTo: x@y.example\r\n") == domains


def test_signing_domain_is_the_one_author_domain_or_none():
    assert from_domain(b"From: Alice <alice@a.example>\r\n") == "a.example"
    assert from_domain(f"From: {NESTED} <alice@a.example>\r\n".encode()) == "a.example"
    assert from_domain(b"From: alice@a.example, bob@b.example\r\n") is None
    assert from_domain(b"From: alice@a.example, bob@a.example\r\n") == "a.example"


def test_a_from_read_before_is_remembered_and_read_alike():
    """A sender's From repeats from message to message: its reading is kept (at most 4,096
    of them, each of at most ``KEPT_LENGTH`` characters), and a kept one answers as a fresh
    reading does, every time, however the caller changes the list it got."""
    from txmailhost.mailauth import authors

    authors._kept_domains.cache_clear()
    header = b"From: a@evil.example ceo@bank.example\r\nSubject: x\r\n\r\n"
    first = author_domains(header)
    first.append("changed.example")  # the caller's own list
    again = author_domains(header)
    assert again == ["evil.example", "bank.example"]
    assert authors._kept_domains.cache_info().hits == 1
    long = b"From: " + b"x" * authors.KEPT_LENGTH + b" <ceo@bank.example>\r\n\r\n"
    assert author_domains(long) == ["bank.example"]
    assert authors._kept_domains.cache_info().currsize == 1  # too long to keep
