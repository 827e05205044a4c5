"""A header section longer than ``HEADER_LIMIT`` (1 MiB) is refused with ``552 5.6.0``, over
DATA and BDAT alike; up to it, every check that reads header fields sees all of them (the
submission From: check once read only the first 64 KiB)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.smtp import test_chunking
from txmailhost.delivery import incoming
from txmailhost.delivery.incoming import IncomingMessage

LIMIT = 2000  # the tests' HEADER_LIMIT: the rules are the same, the messages smaller

world = test_chunking.world  # the fixtures: users alice and bob; a session after EHLO
session = test_chunking.session


@pytest.fixture(autouse=True)
def _limit(monkeypatch):
    monkeypatch.setattr(incoming, "HEADER_LIMIT", LIMIT)


def header_of(length: int) -> bytes:
    """A header section of exactly ``length`` octets (its fields' CRLFs included)."""
    fields = b"Subject: limits\r\n"
    filler = length - len(fields) - len(b"X-Pad: \r\n")
    return fields + b"X-Pad: " + b"x" * filler + b"\r\n"


def data(session, message: bytes) -> bytes:
    session.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    return session.send(message + b".\r\n")


def test_a_header_section_at_the_limit_is_taken_one_octet_more_is_refused(session, world):
    assert data(session, header_of(LIMIT) + b"\r\nbody\r\n").startswith(b"250 2.0.0")
    out = data(session, header_of(LIMIT + 1) + b"\r\nbody\r\n")
    assert out.startswith(b"552 5.6.0 message refused: its header section is longer"), out
    assert len(world.inbox_files("alice@example.test")) == 1
    assert data(session, header_of(100) + b"\r\nnext\r\n").startswith(b"250 2.0.0")  # in step


def test_a_message_without_an_empty_line_is_all_header_section(session, world):
    assert data(session, header_of(LIMIT)).startswith(b"250 2.0.0")
    assert data(session, header_of(LIMIT + 2)).startswith(b"552 5.6.0")
    # an empty line first: no header fields at all, whatever the body's length
    assert data(session, b"\r\n" + b"y" * 70 + b"\r\n" * 50).startswith(b"250 2.0.0")


def test_bdat_is_held_to_the_same_limit(session, world):
    message = header_of(LIMIT + 1) + b"\r\nbody\r\n"
    session.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\n")
    half = len(message) // 2
    assert session.send(b"BDAT %d\r\n" % half + message[:half]).startswith(b"250")
    rest = message[half:]
    out = session.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
    assert out.startswith(b"552 5.6.0"), out
    assert world.inbox_files("alice@example.test") == []
    session.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\n")
    message = header_of(LIMIT) + b"\r\nbody\r\n"
    out = session.send(b"BDAT %d LAST\r\n" % len(message) + message)
    assert out.startswith(b"250 2.0.0"), out


@settings(max_examples=300, deadline=None)
@given(
    header=st.integers(min_value=0, max_value=LIMIT + 8),
    body=st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    with_body=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=LIMIT + 60), max_size=6),
)
def test_the_header_section_is_found_however_the_text_is_cut(header, body, with_body, cuts):
    """Written in any pieces (the CRLFCRLF split across them too), the message keeps exactly
    its header section, and says whether it is longer than the limit."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(incoming, "HEADER_LIMIT", LIMIT)
        fields = header_of(header) if header >= 30 else b""
        text = fields + (b"\r\n" + body + b"\r\n" if with_body or not fields else b"")
        message = IncomingMessage("/nonexistent", None, None)
        at = 0
        for cut in [*sorted(c for c in cuts if c < len(text)), len(text)]:
            message.write(text[at:cut])
            at = max(at, cut)
        assert message.header_block() == fields[: LIMIT + 4]
        assert message.header_too_long == (len(fields) > LIMIT)
        assert message.size == len(text)
