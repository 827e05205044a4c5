"""The content rules, each on a message made to fire it and on one that must not."""

from __future__ import annotations

import io
import time

import pytest

from txmailhost.spam import rules
from txmailhost.spam.sample import sample_of

CLEAN = (
    b"From: Carol <carol@example.org>\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc@example.org>\r\n"
    b"Subject: lunch on friday\r\n"
    b"\r\n"
    b"Shall we meet at noon?\r\n"
)
NOW = time.mktime((2026, 12, 4, 12, 0, 0, 0, 0, 0))


def hits(message: bytes, authserv_id: str = "mx.example.test") -> set[str]:
    sample = sample_of(io.BytesIO(message))
    return {r.name for r in rules.content_hits(sample, rules.Context(NOW, authserv_id))}


def html(body: str, extra: bytes = b"") -> bytes:
    return (
        CLEAN.split(b"\r\n\r\n")[0]
        + b"\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        + extra
        + b"\r\n"
        + body.encode()
    )


def test_a_plain_personal_message_fires_nothing():
    assert hits(CLEAN) == set()


@pytest.mark.parametrize(
    ("message", "rule"),
    [
        (CLEAN.replace(b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n", b""), "MISSING_DATE"),
        (CLEAN.replace(b"Fri, 04 Dec 2026 10:00:00 +0000", b"yesterday"), "INVALID_DATE"),
        (CLEAN.replace(b"04 Dec 2026", b"04 Dec 2027"), "DATE_IN_FUTURE"),
        (CLEAN.replace(b"Message-ID: <abc@example.org>\r\n", b""), "MISSING_MID"),
        (CLEAN.replace(b"<abc@example.org>", b"abc"), "INVALID_MSGID"),
        (CLEAN.replace(b"lunch on friday", b"YOU HAVE WON A PRIZE"), "SUBJ_ALL_CAPS"),
        (CLEAN.replace(b"lunch on friday", b"lunch!!!"), "SUBJ_SHOUTING"),
        (CLEAN.replace(b"noon?", b"noon!!!"), "BODY_EXCESS_EXCLAIM"),
        (CLEAN.replace(b"noon?", b"noon? buy now, cheap"), "SPAM_PHRASES"),
        (CLEAN.replace(b"noon?", b"see http://bit.ly/abc"), "URL_SHORTENER"),
        (CLEAN.replace(b"noon?", b"see http://192.0.2.7/login"), "URL_IP_ADDRESS"),
        (CLEAN.replace(b"Carol <carol", b'"boss@bank.example" <carol'), "FROM_NAME_MISMATCH"),
        (CLEAN.replace(b"lunch on friday", b"lunch \xe9t\xe9"), "UNDECLARED_8BIT"),
        (
            CLEAN.replace(b"lunch on friday", "Your P\u0430yPal account".encode()),
            "MIXED_SCRIPT",
        ),
    ],
)
def test_header_and_text_rules_fire(message, rule):
    assert rule in hits(message)


def test_html_only_with_hidden_text():
    found = hits(html('<p>Hello</p><div style="display:none">lorem ipsum dolor sit amet</div>'))
    assert {"HTML_ONLY", "HTML_HIDDEN_TEXT"} <= found
    assert "HTML_HIDDEN_TEXT" not in hits(html("<p>Hello there, all visible text</p>"))


def test_html_with_images_and_no_text():
    assert "HTML_IMAGE_ONLY" in hits(html('<img src="cid:1"><img src="cid:2">'))


def test_link_text_naming_another_site():
    assert "LINK_TEXT_MISMATCH" in hits(
        html('<a href="http://evil.example.net/x">https://www.mybank.example.com/</a>')
    )
    assert "LINK_TEXT_MISMATCH" not in hits(
        html('<a href="https://login.mybank.example.com/x">www.mybank.example.com</a>')
    )
    assert "LINK_TEXT_MISMATCH" not in hits(html('<a href="http://a.example/">click</a>'))


def test_unknown_charset():
    assert "CHARSET_UNKNOWN" in hits(html("<p>hi</p>").replace(b"utf-8", b"x-no-such"))


def attachment(name: str) -> bytes:
    return (
        CLEAN.split(b"\r\n\r\n")[0] + b"\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n"
    )


def test_executable_and_double_extension_attachments():
    assert "EXE_ATTACHMENT" in hits(attachment("setup.exe"))
    assert {"EXE_ATTACHMENT", "DOUBLE_EXTENSION"} <= hits(attachment("invoice.pdf.scr"))
    assert hits(attachment("report.pdf")) == set()


def test_authentication_results_only_from_our_own_server():
    ours = b"Authentication-Results: mx.example.test; spf=fail smtp.mailfrom=x; dmarc=fail\r\n"
    theirs = ours.replace(b"mx.example.test", b"mx.elsewhere.example")
    assert {"AUTH_SPF_FAIL", "AUTH_DMARC_FAIL"} <= hits(ours + CLEAN)
    assert hits(theirs + CLEAN) == set()
    passed = b"Authentication-Results: MX.example.test (ours);\r\n dkim=pass; dmarc=pass\r\n"
    assert hits(passed + CLEAN) == {"AUTH_DMARC_PASS"}


def test_every_rule_has_a_unique_name_and_an_explanation():
    names = [rule.name for rule in rules.RULES]
    assert len(names) == len(set(names))
    assert all(rule.description and rule.score for rule in rules.RULES)
