"""Fields a reply takes from the message it answers: only real msg-ids, text on one line."""

from __future__ import annotations

import email.header
import re

from hypothesis import given
from hypothesis import strategies as st

from txmailhost.replyfields import (
    MAX_ID,
    MAX_REFERENCES,
    fold_ids,
    header_text,
    message_ids,
    one_line,
    reply_ids,
)

_LINE_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def test_only_msg_ids_are_taken_from_a_raw_field():
    raw = "<a@example.net> (comment) junk <b@[10.0.0.1]><c.d@x> <no-at> <e@f>\rX: y <@x> <x@>"
    assert message_ids(raw) == ["<a@example.net>", "<b@[10.0.0.1]>", "<c.d@x>", "<e@f>"]
    assert message_ids("=?us-ascii?q?<x@evil.test>=0D=0AX-Injected:_yes?=") == []
    assert message_ids("<x@y>\x00") == [] and message_ids("<caf\xe9@x>") == []
    assert message_ids(f"<{'a' * MAX_ID}@x>") == []


def test_a_reply_names_its_parent_after_the_parents_references():
    assert reply_ids("<p@x>", "<r1@x>\r\n <r2@x> <p@x>") == ("<p@x>", ["<r1@x>", "<r2@x>", "<p@x>"])
    assert reply_ids("<p@x> <q@x>", "") == ("<p@x>", ["<p@x>"])
    assert reply_ids("=?utf-8?q?<p@x>?=", "<r1@x>") == (None, ["<r1@x>"])
    assert reply_ids("", "=?utf-8?q?<r1@x>?=") == (None, [])
    many = " ".join(f"<r{i}@x>" for i in range(100))
    parent, chain = reply_ids("<p@x>", many)
    assert len(chain) == MAX_REFERENCES
    assert chain[0] == "<r0@x>" and chain[-2:] == ["<r99@x>", "<p@x>"]


def test_ids_are_folded_with_crlf_within_78_columns():
    ids = [f"<{i:02d}-{'x' * 20}@example.net>" for i in range(10)]
    folded = fold_ids(ids)
    lines = ("References: " + folded).split("\r\n")
    assert all(len(line) <= 78 for line in lines) and all(line[0] == " " for line in lines[1:])
    assert folded.split() == ids


def test_text_becomes_one_line_of_printable_characters():
    assert one_line("a\r\nBcc: x\x00\x0b\x0c\x1c\x85\u2028\u2029b\tc") == "a Bcc: x b c"
    assert one_line("caf\udce9") == "caf\ufffd"
    assert header_text("Auto: hi\r\nX: y") == "Auto: hi X: y"
    encoded = header_text("Auto: " + "\u00e9t\u00e9 " * 40)
    assert encoded.isascii() and all(line[:1] in ("=", " ") for line in encoded.split("\r\n"))
    assert "\n" not in encoded.replace("\r\n", "")


@given(st.text(max_size=300))
def test_nothing_taken_from_any_text_holds_a_line_break(text):
    for found in message_ids(text) + reply_ids(text, text)[1]:
        assert found.isascii() and found.isprintable() and " " not in found
    value = header_text(text)
    assert value.isascii()
    assert all(line.isprintable() for line in value.split("\r\n"))
    assert all(line[:1] == " " for line in value.split("\r\n")[1:])
    decoded = str(email.header.make_header(email.header.decode_header(value)))
    assert not _LINE_BREAK.search(decoded) and len(decoded.splitlines()) <= 1
