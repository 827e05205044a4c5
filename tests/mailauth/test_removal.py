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
from txmailhost.mailauth.results import claims_us
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


def _delivered(world, resolver, message: bytes) -> bytes:
    """``message`` (dot-terminated) sent to alice through InboundChecks; the file stored."""
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    chain = FilterChain([InboundChecks(resolver, "mx.example.test")], world.reactor, world.pool)
    factory = SMTPFactory(InboundPolicy(world.router, world.store), Submission(world.store, spool),
                          hostname="mx.example.test", reactor=world.reactor, filters=chain)  # fmt: skip
    s = Session(factory)
    s.read()
    s.send(b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    s.send(b"DATA\r\n")
    reply = s.send(message)
    assert reply.startswith(b"250 2.0.0"), reply
    (stored,) = world.inbox_files(ALICE)
    return stored


@pytest.mark.parametrize("body_lines", [1, 4000])  # in memory; spilled (> 256 KiB)
def test_forged_results_claiming_us_are_removed_others_kept(world, resolver, body_lines):
    body = b"a line of the body, long enough to add up quickly..........\r\n" * body_lines
    message = FORGED + b"From: x@remote.test\r\nSubject: hi\r\n\r\n" + body + b".\r\n"
    stored = _delivered(world, resolver, message)
    head, _, rest = stored.partition(b"\r\n\r\n")
    assert head.startswith(
        b"Return-Path: <x@remote.test>\r\nAuthentication-Results: mx.example.test;\r\n\tspf=none"
    )
    assert head.count(b"Authentication-Results:") == 2  # ours and other.test's
    assert b"Authentication-Results: other.test; spf=none" in head
    assert b"bank.test" not in head and b"dmarc=pass" not in head
    assert rest == body


def test_strip_fields_of_a_whole_message_without_a_body_reads_it_all_as_header():
    data = b"A: 1\r\nB: 2\r\n"
    assert strip_fields(data, (("A", 1),)) == data  # the start of a message: no end in sight
    assert strip_fields(data, (("A", 1),), whole=True) == b"B: 2\r\n"


# Shapes of a field claiming our authserv-id that RFC 8601 2.2 allows (CFWS before it, a
# quoted-string), and placements that once threw the count of fields off: each was kept.
SHAPES = {
    "comment": b"Authentication-Results: (checked) mx.example.test; dmarc=pass\r\n",
    "nested comments": b"Authentication-Results: (a (b) \\) c) mx.example.test; dmarc=pass\r\n",
    "quoted": b'Authentication-Results: "MX.example.test"; dmarc=pass\r\n',
    "folded": b"Authentication-Results:\r\n (c)\r\n mx.example.test.; dmarc=pass\r\n",
    "after a line without a colon": (  # (first, it would make the message all body)
        b"X-First: 1\r\nAuthentication-Results\r\n"
        b"Authentication-Results: mx.example.test; dmarc=pass\r\n"
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("body", [b"\r\nhello\r\n", b""])  # none: no empty line either
def test_forged_results_in_any_shape_are_removed(world, resolver, shape, body):
    message = SHAPES[shape] + b"From: x@remote.test\r\nSubject: hi\r\n" + body + b".\r\n"
    stored = _delivered(world, resolver, message)
    assert b"dmarc=pass" not in stored, stored
    assert b"Subject: hi\r\n" in stored


@pytest.mark.parametrize("value, ours", [
    ("mx.example.test; spf=pass", True),
    ("MX.Example.Test.; spf=pass", True),
    ("(comment) mx.example.test; spf=pass", True),
    ("(a (nested \\) one)) mx.example.test; spf=pass", True),
    ('"mx.example.test"; spf=pass', True),
    ('"mx.exa\\mple.test" 1; spf=pass', True),
    ("\t mx.example.test(c); spf=pass", True),
    ("(mx.example.test) other.test; spf=pass", False),
    ('"other.test"; mx.example.test', False),
    ("(never closed mx.example.test; spf=pass", False),
    ("", False),
])  # fmt: skip
def test_claims_us_reads_the_authserv_id_after_comments_and_quotes(value, ours):
    assert claims_us(value, "mx.example.test") is ours
