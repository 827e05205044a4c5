"""DSN construction (RFC 3464, RFC 6522, RFC 3834)."""

from __future__ import annotations

import email

import pytest

from txmailhost.queue.bounce import DELAYED, FAILED, build_dsn
from txmailhost.queue.spool import Envelope, Recipient


def envelope(sender="alice@example.test") -> Envelope:
    return Envelope("QID123456", sender, 1_700_000_000.0, 100, [Recipient("c@remote.test")])


def test_dsn_parses_as_a_multipart_report_with_three_parts():
    r = Recipient("c@remote.test", attempts=1, status="5.1.1", diagnostic="550 5.1.1 unknown")
    dsn = build_dsn("mx.example.test", envelope(), [r], b"Subject: x\r\n", action=FAILED, now=1.7e9)
    message = email.message_from_bytes(dsn)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in message.get_payload()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["To"] == "<alice@example.test>"


def test_a_hostile_reply_cannot_inject_fields_into_the_report():
    r = Recipient("c@remote.test", status="5.0.0", diagnostic="550 no\r\nAction: delivered")
    dsn = build_dsn("mx.example.test", envelope(), [r], b"", action=FAILED, now=1.7e9)
    assert b"\r\nAction: delivered" not in dsn
    assert b"Diagnostic-Code: smtp; 550 no Action: delivered" in dsn


def test_a_hostile_reply_cannot_break_a_line_of_a_utf8_report_either():
    """In a message/global-delivery-status (SMTPUTF8, RFC 6533) non-ASCII text stays, but
    not NEL or U+2028/U+2029, which str.splitlines() and some readers take for line ends."""
    sender = envelope()
    sender.smtputf8 = True
    diagnostic = "550 n\u00e4\u2028Action: delivered\x85Status: 2.0.0\u2029X: y"
    r = Recipient("c@remote.test", status="5.0.0", diagnostic=diagnostic)
    dsn = build_dsn("mx.example.test", sender, [r], b"", action=FAILED, now=1.7e9).decode()
    status = dsn.split("message/global-delivery-status\r\n\r\n")[1].split("\r\n--")[0]
    assert [line.split(":")[0] for line in status.splitlines() if line].count("Action") == 1
    assert "Diagnostic-Code: smtp; 550 n\u00e4 Action: delivered Status: 2.0.0 X: y" in dsn


def test_failed_report_never_carries_a_temporary_status():
    r = Recipient("c@remote.test", status="4.4.1", diagnostic="connection refused")
    dsn = build_dsn("mx.example.test", envelope(), [r], b"", action=FAILED, now=1.7e9)
    assert b"Status: 5.0.0\r\n" in dsn


def test_delay_report_says_until_when_it_is_retried():
    r = Recipient("c@remote.test", attempts=3, status="4.4.1", diagnostic="timeout")
    dsn = build_dsn(
        "mx.example.test", envelope(), [r], b"", action=DELAYED, now=1.7e9, retry_until=1.8e9
    )
    assert b"Action: delayed\r\nStatus: 4.4.1\r\n" in dsn
    assert b"Will-Retry-Until: " in dsn


def test_no_dsn_is_ever_built_for_the_null_sender():
    with pytest.raises(ValueError):
        build_dsn("mx.example.test", envelope(None), [], b"", action=FAILED, now=1.7e9)


def test_an_orcpt_that_is_not_utf8_cannot_stop_a_utf8_report():
    """``xtext.decode`` leaves an escaped octet that isn't UTF-8 (``+FF``) as a lone
    surrogate; an envelope queued with one made build_dsn raise UnicodeEncodeError, so the
    report was never sent and the failed recipient stayed queued."""
    sender = envelope()
    sender.smtputf8 = True
    r = Recipient("c@remote.test", status="5.1.1", orcpt="utf-8;x\udcffy@remote.test")
    dsn = build_dsn("mx.example.test", sender, [r], b"", action=FAILED, now=1.7e9).decode()
    assert "Original-Recipient: utf-8;x y@remote.test\r\n" in dsn


def test_headers_only_report_of_a_message_with_lf_line_ends_stops_at_its_empty_line():
    """A BODY=BINARYMIME message may end its lines in LF alone; the readers that hand the
    header section over look for CRLF CRLF, so its body came along (RET=HDRS or not)."""
    original = b"Return-Path: <alice@example.test>\r\nFrom: a@x.test\nSubject: s\n\nSECRET\n\x00\n"
    r = Recipient("c@remote.test", status="5.1.1")
    dsn = build_dsn("mx.example.test", envelope(), [r], original, action=FAILED, now=1.7e9)
    assert b"SECRET" not in dsn and b"\x00" not in dsn
    assert b"Content-Type: text/rfc822-headers\r\n\r\nReturn-Path: <alice@example.test>\r\n" in dsn
    assert b"Subject: s\n\r\n" in dsn
    crlf = b"From: a@x.test\r\nSubject: s\r\n\r\nbody\n\nmore\r\n"  # CRLF message: as before
    dsn = build_dsn("mx.example.test", envelope(), [r], crlf, action=FAILED, now=1.7e9)
    assert b"Subject: s\r\n\r\n--" in dsn and b"body" not in dsn
