"""What of a received header field reaches the ``email`` package: every field bounded, so a
small hostile message can't cost minutes of a web thread or gigabytes, and real mail reads
exactly as ``policy.default`` reads it."""

from __future__ import annotations

import email.policy
from email import _header_value_parser as parser
from email.headerregistry import ContentTypeHeader
from email.message import EmailMessage

import pytest

from txmailhost.web import compose, messageview
from txmailhost.web.headerbounds import (
    MAX_ENCODED_WORDS,
    MAX_FIELD,
    MAX_PARAMETERS,
    MAX_STRUCTURED,
    POLICY,
    bounded,
)
from txmailhost.web.messageview import read_message
from txmailhost.web.sortkeys import decode_header, sender_name, sort_key


def _given_to(monkeypatch, owner, name: str) -> list[str]:
    """The values the library's parser function ``name`` is called with, from now on."""
    seen: list[str] = []
    real = getattr(parser, name)

    def spy(value: str):
        seen.append(value)
        return real(value)

    if owner is parser:
        monkeypatch.setattr(parser, name, spy)
    else:
        monkeypatch.setattr(owner, "value_parser", staticmethod(spy))
    return seen


def test_a_content_type_of_thousands_of_semicolons_reaches_the_parser_cut():
    """8,000 ';' after text/plain (an 8 KB message) cost 5.7 s of CPU a view, 20,000 minutes:
    the parser sees at most MAX_PARAMETERS of them and the message still reads."""
    raw = (
        b"Subject: s\r\nContent-Type: text/plain;"
        + b";" * 3000
        + b" charset=utf-8\r\n\r\nhello\r\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        seen = _given_to(patch, ContentTypeHeader, "parse_content_type_header")
        view = read_message(raw)
    assert seen and max(value.count(";") for value in seen) <= MAX_PARAMETERS
    assert view.text.strip() == "hello" and view.subject == "s"


def test_a_subject_of_thousands_of_encoded_words_is_decoded_up_to_the_cap_and_cut_visibly():
    """10,000 RFC 2047 words (179 KB) took 900 MiB to show (each word kept the rest of the
    field): at most MAX_ENCODED_WORDS are decoded, the rest is an ellipsis."""
    words = 2000
    raw = (b"From: a@remote.test\r\nSubject: "
           + b" ".join(b"=?utf-8?q?w%d?=" % i for i in range(words)) + b"\r\n\r\nhello\r\n")  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        seen = _given_to(patch, parser, "get_encoded_word")
        view = read_message(raw)
        reply = compose._parse(raw)[1]
    assert 0 < len(seen) <= 2 * MAX_ENCODED_WORDS  # the page's Subject and the reply's
    assert view.subject.endswith(f"w{MAX_ENCODED_WORDS - 1} \u2026")
    assert view.subject.startswith("w0w1w2")
    assert str(reply["subject"]) == view.subject


def test_every_field_is_cut_at_max_field_and_structured_ones_parsed_only_when_short():
    recipients = [f"person{i}@example.test" for i in range(2000)]
    raw = ("From: a@remote.test\r\nSubject: " + "x" * (4 * MAX_FIELD) + "\r\nCc: "
           + ",\r\n ".join(recipients) + "\r\n\r\nhello\r\n").encode()  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        seen = _given_to(patch, parser, "get_address_list")
        view = read_message(raw)
    assert len(view.subject) <= MAX_FIELD + 2 and view.subject.endswith("x \u2026"[1:])
    assert all(len(value) <= MAX_STRUCTURED for value in seen)
    # the long Cc shown as received, cut, and still answered to with reply-all
    assert view.cc.startswith("person0@example.test, person1@example.test")
    assert view.cc.endswith("\u2026") and len(view.cc) <= MAX_FIELD + 2
    headers = compose._parse(raw)[1]
    cc = compose._address_list([compose._field(headers, "Cc")], set())
    assert "person0@example.test" in cc and "person500@example.test" in cc


def test_headers_the_parser_fails_on_are_shown_as_received():
    """Comments nested 3,000 deep made the library raise RecursionError, a Message-ID of "@"
    an IndexError: the page was a 500; the list's sender as well."""
    raw = (b"From: " + b"(" * 3000 + b"\r\nCc: " + b"(" * 900 + b"\r\nMessage-ID: @\r\n"
           b"Subject: s\r\n\r\nhi\r\n")  # fmt: skip
    view = read_message(raw)
    assert view.sender.startswith("(((") and view.message_id == "@" and view.subject == "s"
    assert sender_name(b"(" * 3000).startswith("(((")
    assert compose._address_list(["(" * 3000], set()) == ""


def test_list_rows_and_sort_keys_decode_the_start_of_a_field_only():
    subject = b" ".join(b"=?utf-8?q?w%d?=" % i for i in range(20000))
    shown = decode_header(subject)
    assert shown.startswith("w0w1") and shown.endswith("\u2026") and len(shown) < 1000
    assert sort_key(b"Subject: " + subject + b"\r\n").endswith("\u2026".encode())


def _typical() -> list[bytes]:
    """Real mail as clients write it: encoded names and subjects, RFC 2231 file names, a
    list of recipients, a thread's References."""
    message = EmailMessage()
    message["From"] = '"Doe, Jane" <jane@example.test>'
    message["To"] = ", ".join(f"=?utf-8?q?R=C3=A9mi_{i}?= <r{i}@example.test>" for i in range(12))
    message["Cc"] = "Group: a@example.test, b@example.test;, c@example.test (comment)"
    message["Subject"] = "=?utf-8?b?w6l0w6kg4pyTIHJhcHBvcnQ=?= =?iso-8859-1?q?caf=E9?="
    message["Date"] = "Tue, 1 Jul 2025 10:00:00 +0200"
    message["Message-ID"] = "<abc.123@example.test>"
    message["References"] = " ".join(f"<m{i}@example.test>" for i in range(40))
    message.set_content("plain\n")
    message.add_alternative("<p>html</p>", subtype="html")
    message.add_attachment(b"data", maintype="application", subtype="pdf",
                           filename="r\u00e9sum\u00e9 \u6587\u66f8 final version.pdf")  # fmt: skip
    outlook = (b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.test>\r\nTo: x@example.test\r\n"
               b"Subject: =?utf-8?q?Re=3A_caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
               b"Content-Type: text/plain; charset=iso-8859-1\r\n"
               b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n--b\r\n"
               b'Content-Type: application/octet-stream; name="=?utf-8?B?w6l0w6kucGRm?="\r\n'
               b'Content-Disposition: attachment; filename="=?utf-8?B?w6l0w6kucGRm?="\r\n'
               b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n")  # fmt: skip
    return [message.as_bytes(), outlook]


def test_typical_mail_reads_exactly_as_policy_default_reads_it(monkeypatch):
    bounded_views = [read_message(raw) for raw in _typical()]
    bounded_headers = [compose._parse(raw)[1] for raw in _typical()]
    monkeypatch.setattr(messageview, "POLICY", email.policy.default)
    monkeypatch.setattr(compose, "POLICY", email.policy.default)
    assert bounded_views == [read_message(raw) for raw in _typical()]
    theirs_all = [compose._parse(raw)[1] for raw in _typical()]
    for ours, theirs in zip(bounded_headers, theirs_all, strict=True):
        for name in ("From", "To", "Cc", "Subject", "Date", "Message-ID", "References"):
            assert compose._field(ours, name) == compose._field(theirs, name)


def test_bounded_cuts_once_at_the_first_bound_crossed():
    assert bounded("Subject", "short") == "short"
    assert bounded("To", "a@b;" * 100).count(";") == MAX_PARAMETERS
    assert bounded("Subject", "a;" * 100) == "a;" * 100  # unstructured: ';' is text
    assert bounded("Subject", "=?" * 1000) == "=?" * MAX_ENCODED_WORDS + " \u2026"
    assert POLICY.header_source_parse(["Subject: " + "y" * 20000 + "\r\n"])[1].endswith("y \u2026")
