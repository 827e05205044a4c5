"""Declared charsets read as mail readers read them (``charsets.py``, the WHATWG Encoding
Standard), and encoded words decoded through them (``encodedwords.py``)."""

from __future__ import annotations

import email.header

import pytest

from txmailhost import charsets
from txmailhost.encodedwords import decode_words

# 王堃的报告 in GBK: 堃 (88 D2) is no GB 2312 character, and mail labelled gb2312 has it
REPORT_GBK = "王堃的报告".encode("gbk")


@pytest.mark.parametrize(
    ("data", "label", "text"),
    [
        (REPORT_GBK, "gb2312", "王堃的报告"),
        (REPORT_GBK, "GB2312", "王堃的报告"),
        (REPORT_GBK, '"gbk"', "王堃的报告"),
        (b"Parhelia\x99 \x93quoted\x94", "iso-8859-1", "Parhelia™ “quoted”"),
        (b"caf\xe9 \x96 ok", "us-ascii", "café – ok"),
        ("café – ok".encode(), "us-ascii", "café – ok"),  # undeclared UTF-8 is UTF-8
        ("café".encode(), None, "café"),
        ("café".encode(), "iso-8859-1", "cafÃ©"),  # declared: as declared
        ("갂".encode("cp949"), "ks_c_5601-1987", "갂"),  # Unified Hangul Code, not EUC-KR
        ("①".encode("cp932"), "shift_jis", "①"),  # NEC's row 13, as Windows writes it
        ("café".encode(), "utf-8", "café"),
        ("café".encode(), "no-such-charset", "café"),  # an unknown label: UTF-8
        ("café".encode(), "base64", "café"),  # a codec, but not for text
        (b"\xff\xfe", "utf-8", "\ufffd\ufffd"),  # never an error
    ],
)
def test_a_declared_charset_is_read_as_mail_readers_read_it(data, label, text):
    assert charsets.decode(data, label) == text


def test_gbk_in_a_gb2312_word_fails_strictly_and_decodes_here():
    """What the IMAP server, the webmail and Sieve did: the standard library's strict
    decoding failed, and the callers kept the raw value."""
    word = "=?gb2312?B?zfWI0rXEsai45g==?="
    with pytest.raises(UnicodeDecodeError):
        str(email.header.make_header(email.header.decode_header(word)))
    assert decode_words(f"Re: {word} (draft)") == "Re: 王堃的报告 (draft)"


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?caf=C3=A9?= =?utf-8?q?_menu?=",  # white space between words dropped
        "Re: =?utf-8?q?caf=C3=A9?= menu",  # kept between a word and text
        "=?iso-8859-15?q?=A4uro?=abc",
        "plain text only",
        '"=?utf-8?b?w6l0w6k=?=" <a@b.test>',
        "=?utf-8?q?a?=\t=?iso-8859-2?q?=B1?= z",
        "=?broken",
    ],
)
def test_words_are_joined_as_the_standard_library_joins_them(value):
    assert decode_words(value) == str(email.header.make_header(email.header.decode_header(value)))


def _gbk_mail(body_charset: str) -> bytes:
    return (
        b"From: a@example.net\r\nSubject: =?gb2312?B?zfWI0rXEsai45g==?=\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=" + body_charset.encode() + b"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + REPORT_GBK + b"\r\n"
    )


def test_the_webmail_shows_a_gb2312_body_and_subject_with_their_gbk_characters():
    from txmailhost.web.messageview import read_message
    from txmailhost.web.sortkeys import decode_header

    view = read_message(_gbk_mail("gb2312"))
    assert view.text is not None and view.text.strip() == "王堃的报告"
    assert decode_header(b"=?gb2312?B?zfWI0rXEsai45g==?=") == "王堃的报告"


def test_sieve_reads_gbk_characters_in_gb2312_headers_and_bodies():
    from txmailhost.sieve.interpreter import Interpreter
    from txmailhost.sieve.language import compile_script
    from txmailhost.sieve.message import MessageView

    view = MessageView.from_bytes(_gbk_mail("gb2312"), "alice@example.test")
    script = 'require "body"; if allof (header :contains "subject" "堃", body :contains "王堃") { discard; }'
    assert Interpreter(compile_script(script), view).run().discarded
