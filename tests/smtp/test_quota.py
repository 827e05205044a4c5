"""Quotas at SMTP time: 452 4.2.2 (or 552 5.2.2) for a full mailbox, and the 90% warning."""

from __future__ import annotations

import pytest

from tests.smtp.test_server import Session, make_factory
from tests.support.fixtures import make_world
from txmailhost.accounts.db import AddressRules
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.smtp import replies
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory


@pytest.fixture
def world(tmp_path, backend):
    w = make_world(tmp_path, backend)
    w.add_user("alice@example.test")
    w.add_user("bob@example.test")
    AddressRules(w.accounts).set_quota("alice@example.test", 4000)
    return w


def send(session: Session, rcpt: bytes, body: bytes, size: int | None = None) -> bytes:
    mail = b"MAIL FROM:<x@r.test>" + (b" SIZE=%d" % size if size else b"") + b"\r\n"
    out = session.send(mail + b"RCPT TO:<" + rcpt + b">\r\n")
    if not out.endswith(b"250 2.1.5 recipient OK\r\n"):
        session.send(b"RSET\r\n")
        return out
    session.send(b"DATA\r\n")
    return session.send(body + b"\r\n.\r\n")


def test_full_mailbox_is_refused_at_rcpt_452_422_and_other_users_unaffected(world):
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c\r\n")
    body = b"Subject: filler\r\n\r\n" + b"x" * 1500
    for _ in range(3):  # the quota is soft by at most one message
        assert send(s, b"alice@example.test", body).startswith(b"250 2.0.0")
    assert send(s, b"alice@example.test", body).endswith(
        b"452 4.2.2 mailbox full: over quota, try again later\r\n"
    )
    assert send(s, b"bob@example.test", body).startswith(b"250 2.0.0")


def test_declared_size_over_the_remaining_quota_is_refused(world):
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c\r\n")
    assert send(s, b"alice@example.test", b"Subject: big\r\n\r\nx", size=5000).endswith(
        b"452 4.2.2 mailbox full: over quota, try again later\r\n"
    )


def test_permanent_setting_answers_552_522(world):
    spool = IncomingSpool(world.root + "/queue/tmp", world.reactor, world.pool)
    policy = InboundPolicy(world.router, world.store, quota_full=replies.QUOTA_FULL_PERMANENT)
    s = Session(SMTPFactory(policy, Submission(world.store, spool), reactor=world.reactor))
    s.read()
    s.send(b"EHLO c\r\n")
    assert send(s, b"alice@example.test", b"x", size=9000).endswith(
        b"552 5.2.2 mailbox full: over quota\r\n"
    )


def test_crossing_90_percent_leaves_one_warning_in_the_inbox(world):
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c\r\n")
    assert send(s, b"alice@example.test", b"Subject: one\r\n\r\n" + b"x" * 3000).startswith(b"250")
    assert len(world.inbox_files("alice@example.test")) == 1
    assert send(s, b"alice@example.test", b"Subject: two\r\n\r\n" + b"x" * 600).startswith(b"250")
    files = world.inbox_files("alice@example.test")
    warnings = [f for f in files if b"Subject: Your mailbox is" in f]
    assert len(files) == 3 and len(warnings) == 1
    assert b"Auto-Submitted: auto-generated" in warnings[0]
