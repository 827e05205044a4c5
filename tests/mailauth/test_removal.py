"""Authentication-Results fields that arrive claiming our name are removed (RFC 8601 5),
through the filter chain's ``Verdict.remove`` and the spool's rewrite at seal, for a message
in memory and one spilled to disk; fields of other servers stay."""

from __future__ import annotations

import os

import pytest

from tests.smtp.test_server import Session
from tests.support.fixtures import make_world
from txmailhost.delivery.incoming import IncomingSpool, strip_fields
from txmailhost.delivery.submission import Submission
from txmailhost.filters.chain import FilterChain
from txmailhost.mailauth.checks import InboundChecks
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory

ALICE = "alice@example.test"
FORGED = (
    b"Authentication-Results: mx.example.test;\r\n\tdkim=pass header.d=bank.test\r\n"
    b"Authentication-Results: other.test; spf=none\r\n"
    b"Authentication-Results: MX.EXAMPLE.TEST; dmarc=pass\r\n"
)


def test_strip_fields_removes_the_named_occurrences_with_their_continuations():
    data = b"A: 1\r\nB: x\r\n\ty\r\nA: 2\r\nB: z\r\n\r\nbody B: no\r\n"
    assert strip_fields(data, (("b", 1),)) == b"A: 1\r\nA: 2\r\nB: z\r\n\r\nbody B: no\r\n"
    assert strip_fields(data, (("A", 2), ("B", 2))) == b"A: 1\r\nB: x\r\n\ty\r\n\r\nbody B: no\r\n"
    assert strip_fields(b"no end of header", (("A", 1),)) == b"no end of header"


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user(ALICE)
    return w


@pytest.mark.parametrize("body_lines", [1, 4000])  # in memory; spilled (> 256 KiB)
def test_forged_results_claiming_us_are_removed_others_kept(world, resolver, body_lines):
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    chain = FilterChain([InboundChecks(resolver, "mx.example.test")], world.reactor, world.pool)
    factory = SMTPFactory(InboundPolicy(world.router, world.store), Submission(world.store, spool),
                          hostname="mx.example.test", reactor=world.reactor, filters=chain)  # fmt: skip
    s = Session(factory)
    s.read()
    s.send(b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    s.send(b"DATA\r\n")
    body = b"a line of the body, long enough to add up quickly..........\r\n" * body_lines
    reply = s.send(FORGED + b"From: x@remote.test\r\nSubject: hi\r\n\r\n" + body + b".\r\n")
    assert reply.startswith(b"250 2.0.0"), reply
    (stored,) = world.inbox_files(ALICE)
    head, _, rest = stored.partition(b"\r\n\r\n")
    assert head.startswith(
        b"Return-Path: <x@remote.test>\r\nAuthentication-Results: mx.example.test;\r\n\tspf=none"
    )
    assert head.count(b"Authentication-Results:") == 2  # ours and other.test's
    assert b"Authentication-Results: other.test; spf=none" in head
    assert b"bank.test" not in head and b"dmarc=pass" not in head
    assert rest == body
