"""SMTPUTF8 (RFC 6531/6532) at the byte level: UTF-8 local parts and domains, the A-label and
U-label of one domain as one, non-ASCII accounts and aliases, and 553 5.6.7 without it."""

from __future__ import annotations

import pytest

from tests.smtp.test_server import Session, make_factory
from tests.support.fixtures import make_world
from txmailhost.accounts.addresses import canonical_address, canonical_domain
from txmailhost.smtp.address import AddressError, parse_mailbox


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user("alice@example.test")
    w.add_user("jörg@example.test")
    w.add_user("anna@bücher.example")
    w.accounts.address_rules().add_alias(
        "équipe@example.test", ["jörg@example.test", "alice@example.test"]
    )
    return w


@pytest.fixture
def session(world):
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c.test\r\n")
    return s


def test_utf8_sender_and_local_part_are_accepted_and_stored_as_sent(session, world):
    out = session.send(
        "MAIL FROM:<grüße@straße.test> SMTPUTF8\r\nRCPT TO:<Jörg@example.test>\r\nDATA\r\n".encode()
    )
    assert [line[:3] for line in out.split(b"\r\n") if line] == [b"250", b"250", b"354"]
    body = "From: Jörg <grüße@straße.test>\r\nSubject: ünïcödé\r\n\r\nGrüße\r\n".encode()
    assert session.send(body + b".\r\n").startswith(b"250 2.0.0")
    (stored,) = world.inbox_files("jörg@example.test")
    assert stored.endswith(body)  # RFC 6532: UTF-8 header fields as they are
    assert "Return-Path: <grüße@xn--strae-oqa.test>".encode() in stored
    assert b"with UTF8SMTP id" in stored


def test_a_label_and_u_label_of_a_local_domain_reach_the_same_mailbox(session, world):
    session.send(b"MAIL FROM:<x@r.test> SMTPUTF8\r\n")
    assert session.codes("RCPT TO:<anna@bücher.example>\r\n".encode()) == ["250"]
    assert session.codes(b"RCPT TO:<anna@XN--BCHER-KVA.example>\r\n") == ["250"]
    assert session.codes(b"DATA\r\n") == ["354"]
    assert session.send(b"Subject: x\r\n\r\nhi\r\n.\r\n").startswith(b"250")
    assert len(world.inbox_files("anna@xn--bcher-kva.example")) == 1  # once, not twice


def test_alias_with_a_non_ascii_local_part_expands(session, world):
    session.send(b"MAIL FROM:<x@r.test> SMTPUTF8\r\n")
    assert session.codes("RCPT TO:<ÉQUIPE@example.test>\r\nDATA\r\n".encode()) == ["250", "354"]
    session.send(b"Subject: team\r\n\r\nhi\r\n.\r\n")
    assert len(world.inbox_files("jörg@example.test")) == 1
    assert len(world.inbox_files("alice@example.test")) == 1


@pytest.mark.parametrize(
    "commands",
    [
        "MAIL FROM:<jörg@example.test>\r\n",
        "MAIL FROM:<x@r.test>\r\nRCPT TO:<jörg@example.test>\r\n",
        "MAIL FROM:<x@bücher.example>\r\n",
    ],
)
def test_without_the_smtputf8_parameter_a_non_ascii_address_is_553_567(session, commands):
    out = session.send(commands.encode())
    assert out.split(b"\r\n")[-2].startswith(b"553 5.6.7")


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"MAIL FROM:<\xff\xfe@sender.test> SMTPUTF8\r\n", b"501 5.1.7"),
        (b"MAIL FROM:<\xed\xa0\x80@x.test> SMTPUTF8\r\n", b"501 5.1.7"),  # a surrogate
        (b"MAIL FROM:<x@r.test> SMTPUTF8\r\nRCPT TO:<j\xc3rg@example.test>\r\n", b"501 5.1.3"),
    ],
)
def test_an_address_that_is_not_valid_utf8_is_refused_not_repaired(session, world, command, reply):
    """It was decoded with U+FFFD for each bad octet and accepted: mail delivered with a
    Return-Path the client never sent (RFC 6531 3.3: addresses are UTF-8, RFC 3629)."""
    assert session.send(command).split(b"\r\n")[-2].startswith(reply + b" address is not valid")


def test_after_helo_smtputf8_is_not_offered(world):
    s = Session(make_factory(world))
    s.read()
    s.send(b"HELO c.test\r\n")
    assert s.send("MAIL FROM:<jörg@x.test> SMTPUTF8\r\n".encode()).startswith(b"555 5.5.4")
    assert s.send("MAIL FROM:<jörg@x.test>\r\n".encode()).startswith(b"553 5.6.7")


@pytest.mark.parametrize(
    "text",
    [
        "jö rg@x.test",
        "jö\u2028rg@x.test",
        "jö..rg@x.test",
        "jörg@bad_domäin.test",
        "jörg@",
        "ö" * 40 + "@x.test",
    ],
)
def test_malformed_utf8_addresses_are_refused(text):
    with pytest.raises(AddressError):
        parse_mailbox(text, utf8=True)


def test_nfc_normalisation_makes_composed_and_decomposed_one_address():
    composed = parse_mailbox("j\u00f6rg@x.test", utf8=True)
    decomposed = parse_mailbox("jo\u0308rg@x.test", utf8=True)
    assert composed == decomposed
    assert canonical_address("JO\u0308RG@Bücher.Example") == "jörg@xn--bcher-kva.example"
    assert canonical_domain("xn--bcher-kva.example") == canonical_domain("BÜCHER.example")
