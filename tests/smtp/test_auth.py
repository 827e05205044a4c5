"""SMTP AUTH (RFC 4954) and the submission policy (RFC 6409), at the byte level."""

from __future__ import annotations

import base64
import datetime
import email.utils
import os
import re
import time

import pytest
from twisted.internet.address import IPv4Address

from tests.smtp.test_server import Session, TLSStringTransport
from tests.support.fixtures import make_world
from txmailhost.accounts.throttle import LoginThrottle, ThrottledPortal
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.smtp.policy import SubmissionPolicy
from txmailhost.smtp.server import SMTPFactory

LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)
REMOTE = IPv4Address("TCP", "192.0.2.7", 40000)
OTHER_LOOPBACK = IPv4Address("TCP", "127.0.0.2", 40000)
SERVER = IPv4Address("TCP", "127.0.0.1", 587)  # where the submission port listens


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user("alice@example.test")
    w.add_user("bob@example.test")
    return w


def submission_factory(world, portal=None, **kw) -> SMTPFactory:
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    spool.sweep()
    return SMTPFactory(
        SubmissionPolicy(world.router, world.store),
        Submission(world.store, spool),
        hostname="mail.example.test",
        reactor=world.reactor,
        portal=portal or world.portal,
        tls_creator=object(),
        **kw,
    )


def session(factory, peer=LOOPBACK) -> Session:
    s = Session(factory, TLSStringTransport(hostAddress=SERVER, peerAddress=peer))
    s.read()
    return s


PLAIN = b"AUTH PLAIN " + b64("\0alice@example.test\0secret-pw") + b"\r\n"


def test_auth_is_advertised_on_loopback_and_plain_logs_in(world):
    s = session(submission_factory(world))
    assert b"250-AUTH PLAIN LOGIN\r\n" in s.send(b"EHLO c\r\n")
    assert s.send(PLAIN) == b"235 2.7.0 authentication successful\r\n"
    assert b"AUTH" not in s.send(b"EHLO c\r\n")
    assert s.send(PLAIN) == b"503 5.5.1 already authenticated\r\n"


def test_auth_plain_with_empty_initial_response_uses_a_334_challenge(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n")
    assert s.send(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert s.send(b64("\0alice@example.test\0secret-pw") + b"\r\n").startswith(b"235 2.7.0")


def test_auth_login_asks_username_then_password(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n")
    assert s.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert s.send(b64("alice@example.test") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert s.send(b64("secret-pw") + b"\r\n").startswith(b"235 2.7.0")


def test_auth_before_tls_off_loopback_is_538_and_not_advertised(world):
    s = session(submission_factory(world), peer=REMOTE)
    assert b"AUTH" not in s.send(b"EHLO c\r\n")
    assert s.send(PLAIN) == (
        b"538 5.7.11 encryption required for requested authentication mechanism\r\n"
    )
    assert s.send(b"STARTTLS\r\n").startswith(b"220")
    assert b"250-AUTH PLAIN LOGIN" in s.send(b"EHLO c\r\n")
    assert s.send(PLAIN).startswith(b"235")


def test_auth_from_another_loopback_address_without_tls_is_538(world):
    """A local proxy makes every client 127.0.0.x: only the server's own address counts."""
    s = session(submission_factory(world), peer=OTHER_LOOPBACK)
    assert b"AUTH" not in s.send(b"EHLO c\r\n")
    assert s.send(PLAIN).startswith(b"538 5.7.11 ")


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([b"AUTH PLAIN " + b64("\0alice@example.test\0wrong-pw")], b"535 5.7.8"),
        ([b"AUTH PLAIN " + b64("\0nobody@example.test\0secret-pw")], b"535 5.7.8"),
        ([b"AUTH PLAIN " + b64("bob@example.test\0alice@example.test\0secret-pw")], b"535 5.7.8"),
        ([b"AUTH PLAIN !!notbase64"], b"501 5.5.2"),
        ([b"AUTH PLAIN " + b64("no-nuls")], b"501 5.5.2"),
        ([b"AUTH PLAIN", b"*"], b"501 5.0.0 authentication cancelled"),
        ([b"AUTH LOGIN", b"*"], b"501 5.0.0"),
        ([b"AUTH LOGIN", b64("alice@example.test"), b"%%%"], b"501 5.5.2"),
        # a response that isn't ASCII, or is too long, ends the exchange too: the next line
        # (the MAIL below) was read as a SASL response
        ([b"AUTH LOGIN", "caf\u00e9".encode()], b"501 5.5.2"),
        # RFC 4954 6: 500 5.5.6 for a response longer than the server takes
        ([b"AUTH LOGIN", b"x" * 3000], b"500 5.5.6"),
        ([b"AUTH PLAIN", b"y" * 3000], b"500 5.5.6"),
        ([b"AUTH PLAIN " + b"z" * 3000], b"500 5.5.6"),
        ([b"AUTH CRAM-MD5"], b"504 5.5.4"),
        ([b"AUTH"], b"504 5.5.4"),
    ],
)
def test_bad_auth_exchanges_get_their_rfc4954_reply(world, lines, expected):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n")
    out = b"".join(s.send(line + b"\r\n") for line in lines)
    assert out.split(b"\r\n")[-2].startswith(expected), out
    assert s.send(b"MAIL FROM:<alice@example.test>\r\n").startswith(b"530 5.7.0")


def test_submission_requires_auth_before_mail_530(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n")
    assert s.send(b"MAIL FROM:<alice@example.test>\r\n") == b"530 5.7.0 authentication required\r\n"


def test_auth_during_transaction_is_503(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n" + PLAIN + b"MAIL FROM:<alice@example.test>\r\n")
    assert s.send(PLAIN).startswith(b"503 5.5.1 AUTH not allowed during a mail transaction")


def test_authenticated_user_may_not_send_as_someone_else_553(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n" + PLAIN)
    assert s.send(b"MAIL FROM:<bob@example.test>\r\n").startswith(b"553 5.7.1")
    assert s.send(b"MAIL FROM:<ALICE@example.test>\r\n").startswith(b"250")


def test_from_header_of_another_user_is_refused_after_data(world):
    s = session(submission_factory(world))
    s.send(
        b"EHLO c\r\n" + PLAIN + b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
    )
    s.send(b"DATA\r\n")
    out = s.send(b"From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n.\r\n")
    assert out.startswith(b"550 5.7.1 From: header")
    assert world.inbox_files("bob@example.test") == []


def test_submitted_message_to_local_user_is_delivered_with_esmtpa_trace(world):
    s = session(submission_factory(world))
    s.send(
        b"EHLO c\r\n" + PLAIN + b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
    )
    s.send(b"DATA\r\n")
    out = s.send(b"From: Alice <alice@example.test>\r\nSubject: hi\r\n\r\nhello\r\n.\r\n")
    assert out.startswith(b"250 2.0.0")
    (stored,) = world.inbox_files("bob@example.test")
    assert b"with ESMTPA id" in stored and b"([127.0.0.1])" in stored


def test_hide_client_ip_keeps_address_and_helo_out_of_received(world):
    s = session(submission_factory(world, hide_client_ip=True))
    s.send(b"EHLO secret-laptop\r\n" + PLAIN)
    s.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert s.send(b"Subject: x\r\n\r\nx\r\n.\r\n").startswith(b"250")
    (stored,) = world.inbox_files("bob@example.test")
    assert b"127.0.0.1" not in stored and b"secret-laptop" not in stored
    assert b"Received: by mail.example.test (txmailhost) with ESMTPA" in stored


def test_remote_recipient_without_relay_queue_is_refused(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n" + PLAIN + b"MAIL FROM:<alice@example.test>\r\n")
    assert s.send(b"RCPT TO:<carol@remote.test>\r\n").startswith(b"550 5.3.3")


def test_starttls_forgets_a_previous_authentication(world):
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n" + PLAIN)
    s.send(b"STARTTLS\r\n")
    s.send(b"EHLO c\r\n")
    assert s.send(b"MAIL FROM:<alice@example.test>\r\n").startswith(b"530")


def test_inbound_port_does_not_offer_auth(world):
    spool = IncomingSpool(os.path.join(world.root, "q"), world.reactor, world.pool)
    from txmailhost.smtp.policy import InboundPolicy

    factory = SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        reactor=world.reactor,
    )
    s = session(factory)
    assert b"AUTH" not in s.send(b"EHLO c\r\n")
    assert s.send(PLAIN).startswith(b"502 5.5.1")


def test_repeated_failures_are_delayed_then_refused_454(world):
    throttle = LoginThrottle(world.reactor, ip_limit=3, account_limit=100)
    factory = submission_factory(world, portal=ThrottledPortal(world.portal, throttle))
    s = session(factory)
    s.send(b"EHLO c\r\n")
    bad = b"AUTH PLAIN " + b64("\0alice@example.test\0wrong-pw") + b"\r\n"
    delays = []
    for _ in range(3):
        assert s.send(bad) == b""  # the answer waits for the throttle's delay
        waited = 0.0
        while not s.transport.value():
            world.reactor.advance(0.25)
            waited += 0.25
        delays.append(waited)
        assert s.read().startswith(b"535 5.7.8")
    assert delays == sorted(delays) and delays[-1] > delays[0]
    # Now even the right password is refused without being checked.
    assert s.send(PLAIN).startswith(b"454 4.7.0")
    world.reactor.advance(throttle.window + 1)
    later = session(factory)
    later.send(b"EHLO c\r\n")
    assert later.send(PLAIN).startswith(b"235")


def test_a_non_ascii_sasl_response_is_501_not_a_server_error(world):
    """Found by the session fuzzer: after ``334`` the next line is a SASL response, and a
    UTF-8 line there (here a MAIL command) raised UnicodeEncodeError instead of 501."""
    s = session(submission_factory(world))
    s.send(b"EHLO c\r\n")
    assert s.send(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert s.send("MAIL FROM:<jörg@example.test>\r\n".encode()).startswith(b"501 5.5.2")
    assert s.send(b"NOOP\r\n").startswith(b"250")


def _submit_as_alice(world, author: bytes) -> bytes:
    """The reply to alice's DATA of a message to bob whose From is ``author``."""
    s = session(submission_factory(world))
    s.send(
        b"EHLO c\r\n" + PLAIN + b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
    )
    s.send(b"DATA\r\n")
    return s.send(b"From: " + author + b"\r\nSubject: test\r\n\r\nx\r\n.\r\n")


@pytest.mark.parametrize(
    "author",
    [
        # Python's parser reads the first as alice's own (it loses "bob@" to the missing
        # comma), the address-list parser (and Dovecot) as bob's; both must be hers.
        b"alice@example.test bob@example.test",
        b"<bob@example.test> alice@example.test",
        b"(" * 500 + b"x" + b")" * 500 + b" <bob@example.test>",
        b"Alice <alice@example.test>\r\nFrom: Bob <bob@example.test>",
        b"<>",  # a From that names no one is no one's
        b"(alice@example.test)",
        # fields the standard library's header parser never saw, IMAP's ENVELOPE does:
        b"alice@example.test\r\nFrom : CEO <bob@example.test>",  # obs-from (RFC 5322 4.5.1)
        b"alice@example.test\r\nFROM\t: bob@example.test",
        b"alice@example.test\r\nno colon on this line\r\nFrom: bob@example.test",
        b"alice@example.test\r\nFrom: Alice\r\n <bob@example.test>",  # folded
    ],
)
def test_from_header_read_as_someone_else_by_either_parser_is_refused(world, author):
    out = _submit_as_alice(world, author)
    assert out.startswith(b"550 5.7.1 From: header"), out
    assert world.inbox_files("bob@example.test") == []


@pytest.mark.parametrize(
    "author",
    [
        b"alice@example.test (Alice " + b"(" * 500 + b")" * 500 + b")",
        b'"bob@example.test is away" <alice@example.test>',
        b"Alice <alice@example.test>, alice@example.test",
    ],
)
def test_own_from_header_in_unusual_shapes_is_accepted(world, author):
    out = _submit_as_alice(world, author)
    assert out.startswith(b"250 2.0.0"), out


def test_from_header_past_64_kib_of_other_fields_is_still_checked(world):
    """The ownership check read only the first 64 KiB of the message: a From: of bob's put
    after 70 KiB of other fields was never seen, and the message went out as bob's."""
    pad = b"".join(b"X-Pad-%d: " % n + b"x" * 70 + b"\r\n" for n in range(1000))
    out = _submit_as_alice(
        world, b"Alice <alice@example.test>\r\n" + pad + b"From: bob@example.test"
    )
    assert out.startswith(b"550 5.7.1 From: header"), out
    assert world.inbox_files("bob@example.test") == []


def test_failed_auth_past_max_errors_ends_the_session(world):
    """Each failed AUTH counts as an error (without a login throttle in front, as here);
    past ``max_errors`` the session ends instead of taking guesses without end."""
    s = session(submission_factory(world, max_errors=3))
    s.send(b"EHLO c\r\n")
    bad = b"AUTH PLAIN " + b64("\0alice@example.test\0wrong-pw") + b"\r\n"
    for _ in range(3):
        assert s.send(bad).startswith(b"535 5.7.8")
    assert s.send(bad).split(b"\r\n")[1] == b"421 4.7.0 too many errors, closing connection"
    assert s.transport.disconnecting


def _submitted(world, text: bytes) -> bytes:
    """bob's copy of alice's submission of ``text`` (the client's message, without the dot)."""
    s = session(submission_factory(world))
    s.send(
        b"EHLO c\r\n" + PLAIN + b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
    )
    s.send(b"DATA\r\n")
    assert s.send(text + b".\r\n").startswith(b"250 2.0.0")
    (stored,) = world.inbox_files("bob@example.test")
    return stored


def _header(stored: bytes) -> bytes:
    return stored.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def test_submission_adds_a_date_and_a_message_id_below_its_received(world):
    """RFC 6409 8.2 and 8.3: a message sent without them (a script, ``mail``) gets them, as
    Postfix's users' mail does: receivers score or refuse mail without them."""
    stored = _submitted(world, b"From: alice@example.test\r\nSubject: bare\r\n\r\nhello\r\n")
    header = _header(stored)
    received = header.index(b"Received: ")
    date = re.search(rb"\r\nDate: (.*)\r\n", header)
    message_id = re.search(rb"\r\nMessage-ID: <([^<>@\s]+)@mail\.example\.test>\r\n", header)
    assert date and message_id, header
    assert received < date.start() < header.index(b"From: alice")
    sent = email.utils.parsedate_to_datetime(date[1].decode())
    assert sent.utcoffset() == datetime.timedelta(0)
    assert abs(sent.timestamp() - time.time()) < 300
    assert stored.endswith(b"\r\n\r\nhello\r\n")


def test_submission_keeps_the_clients_own_date_and_message_id(world):
    stored = _submitted(
        world,
        b"From: alice@example.test\r\ndate: Mon, 1 Jun 2026 10:00:00 +0200\r\n"
        b"MESSAGE-ID:\r\n <own@alice.example>\r\n\r\nhello\r\n",
    )
    header = _header(stored)
    assert len(re.findall(rb"(?im)^date:", header)) == 1
    assert len(re.findall(rb"(?im)^message-id:", header)) == 1
    assert b"<own@alice.example>" in header


@pytest.mark.parametrize("text", [b"Subject: only a header\r\n", b"\r\nonly a body\r\n"])
def test_submission_completes_a_message_that_is_all_header_or_has_none(world, text):
    header = _header(_submitted(world, text))
    assert b"\r\nDate: " in header and b"\r\nMessage-ID: <" in header, header
