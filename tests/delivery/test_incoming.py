"""``IncomingSpool``: the files arriving messages stream into."""

from __future__ import annotations

import os

from tests.smtp.test_server import Session
from tests.support.fixtures import make_world
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory


def test_data_is_accepted_into_a_spool_directory_that_did_not_exist(tmp_path):
    """An embedding application constructs the spool and serves: no ``sweep()`` needed first
    (before, DATA got 451 4.3.0 with FileNotFoundError)."""
    world = make_world(tmp_path)
    world.add_user("alice@example.test")
    directory = os.path.join(world.root, "not", "yet", "there")
    spool = IncomingSpool(directory, world.reactor, world.pool)
    factory = SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        reactor=world.reactor,
    )
    session = Session(factory)
    session.send(b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    session.send(b"DATA\r\n")
    reply = session.send(b"Subject: hi\r\n\r\n" + b"x" * (300 * 1024) + b"\r\n.\r\n")
    assert reply.startswith(b"250 2.0.0"), reply
    assert len(world.inbox_files("alice@example.test")) == 1
    assert os.stat(directory).st_mode & 0o777 == 0o700
