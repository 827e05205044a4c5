"""URLAUTH (RFC 4467, imap/urlauth.py) at the byte level: a signed URL fetches exactly what
it names, for exactly whom its access identifier allows; tampering, expiry and RESETKEY make
it NIL; only one's own messages can be signed; and nothing of it exists unless the factory
offers it."""

from __future__ import annotations

import re

import pytest

from tests.imap.support import ALICE, BOB, Session, make_factory

MSG = b"From: a@example.test\r\nSubject: s\r\n\r\nsecret body\r\n"
URL = "imap://alice@example.test/INBOX/;UID=1"


def session(world, user: str = ALICE, urlauth: bool = True) -> Session:
    s = Session(make_factory(world, urlauth=urlauth))
    s.login(user)
    return s


@pytest.fixture
def alice(world):
    s = session(world)
    s.cmd(b"a APPEND INBOX {%d+}\r\n" % len(MSG) + MSG)
    return s


def sign(s: Session, url: str) -> bytes:
    reply = s.cmd(f'g GENURLAUTH "{url}" INTERNAL')
    assert reply.endswith(b"g OK GENURLAUTH completed\r\n"), reply
    return re.match(rb'\* GENURLAUTH "([^"]+)"\r\n', reply)[1]


def fetch(s: Session, url: bytes) -> bytes:
    reply = s.cmd(b'f URLFETCH "' + url + b'"')
    assert reply.endswith(b"f OK URLFETCH completed\r\n"), reply
    return reply.split(b"\r\n", 1)[0] + b"\r\n" + reply.split(b"\r\n", 1)[1].rsplit(b"f OK", 1)[0]


def test_a_signed_url_fetches_the_message_for_the_user_it_names(alice, world):
    assert b"URLAUTH" in alice.cmd("c CAPABILITY")
    signed = sign(alice, URL + ";URLAUTH=user+alice@example.test")
    assert re.fullmatch(
        rb"imap://alice@example.test/INBOX/;UID=1;URLAUTH=user\+alice@example.test:INTERNAL:[0-9a-f]{64}",
        signed,
    )
    assert fetch(alice, signed) == b'* URLFETCH "%s" {%d}\r\n%s\r\n' % (signed, len(MSG), MSG)
    assert fetch(session(world, BOB), signed) == b'* URLFETCH "%s" NIL\r\n' % signed


def test_authuser_lets_another_user_fetch_a_section(alice, world):
    signed = sign(alice, URL + "/;SECTION=TEXT;URLAUTH=authuser")
    assert (
        fetch(session(world, BOB), signed)
        == b'* URLFETCH "%s" {13}\r\nsecret body\r\n\r\n' % signed
    )


def test_a_tampered_expired_or_revoked_url_gives_nil(alice, world):
    signed = sign(alice, URL + ";URLAUTH=authuser")
    other = signed.replace(b"UID=1", b"UID=2")
    assert fetch(alice, other).endswith(b" NIL\r\n")
    token_changed = signed[:-1] + (b"0" if signed[-1:] != b"0" else b"1")
    assert fetch(alice, token_changed).endswith(b" NIL\r\n")
    expired = sign(alice, URL + ";EXPIRE=2001-01-01T00:00:00Z;URLAUTH=authuser")
    assert fetch(alice, expired).endswith(b" NIL\r\n")
    assert alice.cmd("r RESETKEY INBOX") == b"r OK RESETKEY completed\r\n"
    assert fetch(alice, signed).endswith(b" NIL\r\n")
    fresh = sign(alice, URL + ";URLAUTH=authuser")
    assert fresh != signed and not fetch(alice, fresh).endswith(b" NIL\r\n")
    assert alice.cmd("r RESETKEY") == b"r OK RESETKEY completed\r\n"  # every mailbox
    assert fetch(alice, fresh).endswith(b" NIL\r\n")


def test_submit_access_is_never_honoured_here(alice):
    signed = sign(alice, URL + ";URLAUTH=submit+alice@example.test")
    assert fetch(alice, signed).endswith(b" NIL\r\n")


def test_only_ones_own_messages_can_be_signed(alice, world):
    bob = session(world, BOB)
    reply = bob.cmd(f'g GENURLAUTH "{URL};URLAUTH=authuser" INTERNAL')
    assert reply.startswith(b"g NO [BADURL ")
    assert alice.cmd(f'h GENURLAUTH "{URL};URLAUTH=authuser" XSHA1').startswith(b"h NO ")
    assert alice.cmd(f'i GENURLAUTH "{URL}" INTERNAL').startswith(b"i NO [BADURL ")


def test_urlauth_is_not_offered_by_default(world):
    s = session(world, urlauth=False)
    assert b"URLAUTH" not in s.cmd("c CAPABILITY")
    assert s.cmd("d RESETKEY") == b"d BAD unknown command\r\n"
