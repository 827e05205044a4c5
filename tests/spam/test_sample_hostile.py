"""Odd and hostile header fields and MIME parameters: the sample reads what it can of them
and never raises. A check that raises is a ``451 4.7.1`` the sender's server retries for
days, then bounces: one odd field must never cost the whole message."""

from __future__ import annotations

import email.feedparser
import email.header
import io
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.addresslist import ADDRESS_CAP, parse_address
from txmailhost.mimenesting import MAX_DEPTH
from txmailhost.spam import rules
from txmailhost.spam.htmltext import HTMLText
from txmailhost.spam.sample import sample_of, sample_of_bytes
from txmailhost.spam.scorer import Scorer
from txmailhost.spam.tokens import tokens


def _with_part(part_fields: bytes) -> bytes:
    """A message of a text part and an attachment part whose fields are ``part_fields``."""
    return (
        b"From: Ivan <ivan@remote.test>\r\nTo: alice@example.test\r\nSubject: report\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nthe report is attached\r\n"
        b"--b1\r\n" + part_fields + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQK\r\n--b1--\r\n"
    )


def _score(message: bytes) -> list[str]:
    """The rules that fire on ``message``, through what the spam filter runs."""
    sample = sample_of(io.BytesIO(message))
    tokens(sample)
    return [rule.name for rule in Scorer(None).score(sample, "alice@example.test", "a@b").hits]


# (message, the attachment names the sample reads)
ATTACHMENT_NAMES = {
    "rfc2231 utf-8 (Thunderbird)": (
        _with_part(
            b"Content-Type: application/pdf; name*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82.pdf\r\n"
            b"Content-Disposition: attachment; "
            b"filename*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82.pdf"
        ),
        ["Отчёт.pdf"],
    ),
    "rfc2231 euro": (
        _with_part(
            b"Content-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf"
        ),
        ["€.pdf"],
    ),
    "rfc2231 name only, CJK": (
        _with_part(b"Content-Type: application/pdf; name*=utf-8''%E6%97%A5.pdf"),
        ["日.pdf"],
    ),
    "rfc2231 right-to-left override": (
        _with_part(b"Content-Type: application/pdf; name*=utf-8''%E2%80%AEfdp.exe"),
        ["\u202efdp.exe"],
    ),
    "rfc2231 continuations": (
        _with_part(
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
            b"filename*0*=utf-8''%E6%97; filename*1*=%A5.pdf"
        ),
        ["日.pdf"],
    ),
    "raw 8-bit utf-8 filename": (
        _with_part(
            b"Content-Type: application/pdf\r\n"
            b'Content-Disposition: attachment; filename="\xd0\x9e\xd1\x82\xd1\x87.pdf"'
        ),
        ["Отч.pdf"],
    ),
    "raw 8-bit latin-1 name": (
        _with_part(b'Content-Type: application/pdf; name="caf\xe9.pdf"'),
        ["café.pdf"],
    ),
    "rfc2231 numbered and unnumbered (TypeError sorting them)": (
        _with_part(
            b"Content-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=a.pdf; filename*0=b.pdf"
        ),
        [],
    ),
    "rfc2231 continuation of 4,500 digits (ValueError)": (
        _with_part(
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*"
            + b"1" * 4500
            + b"=b.pdf"
        ),
        [],
    ),
    "rfc2231 charset idna (no 'replace' errors)": (
        _with_part(
            b"Content-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=idna''r%C3%A9sum%C3%A9.pdf"
        ),
        ["résumé.pdf"],
    ),
}


@pytest.mark.parametrize("name", ATTACHMENT_NAMES)
def test_attachment_names_in_any_encoding_are_read_not_a_failed_check(name):
    message, names = ATTACHMENT_NAMES[name]
    sample = sample_of(io.BytesIO(message))
    assert sample.attachments == names
    assert "the report is attached" in sample.text
    _score(message)


def test_a_utf8_rfc2231_name_is_not_undeclared_8bit():
    """``caf%C3%A9`` decoded from its declared UTF-8 was taken for raw octets again, read
    as Latin-1 and scored UNDECLARED_8BIT."""
    message = _with_part(
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''caf%C3%A9.pdf"
    )
    sample = sample_of(io.BytesIO(message))
    assert sample.attachments == ["café.pdf"]
    assert not sample.undeclared_8bit


def test_a_right_to_left_override_still_shows_the_executable():
    message, _names = ATTACHMENT_NAMES["rfc2231 right-to-left override"]
    assert "EXE_ATTACHMENT" in _score(message)


def test_an_8bit_content_disposition_is_read_as_the_attachment_it_says():
    """The part gave its field as a ``Header`` (no ``lower()``): AttributeError."""
    message = _with_part(b'Content-Type: text/plain\r\nContent-Disposition: attachment; x="\xe9"')
    sample = sample_of(io.BytesIO(message))
    assert sample.content_types == ["text/plain", "text/plain"]
    assert sample.text == "the report is attached"  # the attached text is not the message's


@pytest.mark.parametrize(
    "charset", ["undefined", "idna", "base64", "rot13", "a\x00b", "x-no-such-charset"]
)
def test_a_charset_no_codec_decodes_text_with_is_unknown(charset):
    """``base64`` and ``rot13`` are codecs, but not for text (LookupError); ``idna`` takes no
    "replace" and ``undefined`` always fails (UnicodeError); a NUL: ValueError."""
    word = email.header.Header("x", "utf-8").encode().replace("utf-8", charset)
    message = (
        f"From: a@remote.test\r\nSubject: {word}\r\n"
        f'Content-Type: text/plain; charset="{charset}"\r\n\r\ncheap pills\r\n'
    ).encode("latin-1")
    sample = sample_of(io.BytesIO(message))
    assert sample.header("subject") == "x"
    assert sample.text.strip() == "cheap pills"
    assert charset.lower() in sample.unknown_charsets
    assert "CHARSET_UNKNOWN" in _score(message)


def test_an_unreadable_part_is_left_out_and_the_rest_read(monkeypatch):
    """Robust by construction: whatever reading one part raises, the others are read."""
    from txmailhost.spam import sample as sample_module

    def broken(part, *args):
        if part.get_content_type() == "application/pdf":
            raise LookupError("anything")
        return reading(part, *args)

    reading = sample_module._read_part
    monkeypatch.setattr(sample_module, "_read_part", broken)
    message = _with_part(b"Content-Type: application/pdf")
    assert sample_of(io.BytesIO(message)).text == "the report is attached"


def test_an_unreadable_field_is_kept_as_it_is(monkeypatch):
    from txmailhost.spam import sample as sample_module

    def broken(value, sample):
        raise RecursionError

    monkeypatch.setattr(sample_module, "_decode_header", broken)
    sample = sample_of(io.BytesIO(b"Subject: =?utf-8?q?x?=\r\n\r\nbody\r\n"))
    assert sample.header("subject") == "=?utf-8?q?x?="
    assert sample.text.strip() == "body"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("(" * 500 + "x" + ")" * 500 + " <a@remote.test>", ("", "a@remote.test")),
        ("(" * 500 + "<a@remote.test>", ("", "")),  # the comment runs to the end
        ('"x@y.test" ' + "(" * 500 + ")" * 500 + " <a@remote.test>", ("x@y.test", "a@remote.test")),
        ("Bob (work) <b@c.test>", ("Bob (work)", "b@c.test")),
        ('"a (b" <c@d.test>', ("a (b", "c@d.test")),
        ("@" * 60000, ("", "")),
        ("(x)" * 1000 + "<a@remote.test>", ("", "a@remote.test")),
    ],
)
def test_parse_address_reads_what_it_can_and_never_raises(value, expected):
    assert parse_address(value) == expected


def test_parse_address_reads_no_value_longer_than_the_cap_without_its_comments():
    assert parse_address("Bob <" + "a" * ADDRESS_CAP + "@b.test>") == ("", "")


@pytest.mark.parametrize(
    "from_field",
    [
        b"(" * 500 + b"x" + b")" * 500 + b" <a@remote.test>",
        b"(" * 500 + b"<a@remote.test>",
        b'"x@y.test" ' + b"(" * 500 + b"x" + b")" * 500 + b" <a@remote.test>",
    ],
)
def test_comments_nested_past_the_stack_in_from_are_scored(from_field):
    """``email.utils.parseaddr`` recursed once per "(" and raised RecursionError."""
    message = b"From: " + from_field + b"\r\nSubject: c\r\n\r\nhi\r\n"
    fired = _score(message)
    assert ("FROM_NAME_MISMATCH" in fired) == from_field.startswith(b'"x@y.test"')


def test_a_date_whose_numbers_overflow_is_an_invalid_date():
    """``parsedate_to_datetime`` raises OverflowError for a zone or year past a C long."""
    for date in (
        b"Fri, 4 Dec 2026 10:00:00 +99999999999999999999",
        b"Fri, 4 Dec 99999999999999999999 10:00:00 +0000",
    ):
        message = b"From: a@remote.test\r\nDate: " + date + b"\r\nSubject: c\r\n\r\nhi\r\n"
        assert "INVALID_DATE" in _score(message)


# --- hostile pieces, put together at random ---------------------------------------------

_CHARSETS = st.sampled_from(
    ["utf-8", "UTF-8", "iso-8859-1", "us-ascii", "", "x-bogus", "idna", "undefined", "base64",
     "rot13", "utf-16", "utf-7", "punycode", "unicode_escape", "a\x00b", "koi8-r", "gb2312",
     "shift_jis", "cp1252", "hz", "utf-32-be"]
)  # fmt: skip
_OCTETS = st.binary(max_size=12)
_PERCENT = _OCTETS.map(lambda octets: "".join(f"%{octet:02X}" for octet in octets))
_PARAM_NAMES = st.sampled_from(["name", "filename", "charset", "boundary", "format", "x"])


@st.composite
def _rfc2231_params(draw: st.DrawFn) -> bytes:
    """``name*=charset'lang'%XX``, continuations numbered, unnumbered, mixed, huge."""
    name = draw(_PARAM_NAMES)
    params = []
    for _ in range(draw(st.integers(1, 4))):
        number = draw(
            st.sampled_from(["", "*", "0", "0*", "1*", "2", "99999", "1" * 4400, "-1", "x"])
        )
        star = draw(st.sampled_from(["*", ""]))
        value = draw(
            st.one_of(
                st.builds(lambda c, v: f"{c}''{v}", _CHARSETS, _PERCENT),
                st.builds(lambda c, lang, v: f"{c}'{lang}'{v}", _CHARSETS, st.text(max_size=3), _PERCENT),
                _PERCENT,
                st.just("'"),
                st.just("''"),
            )
        )  # fmt: skip
        quoted = draw(st.booleans())
        params.append(f"{name}*{number}{star}=" + (f'"{value}"' if quoted else value))
    return "; ".join(params).encode("latin-1", "replace")


_RAW_PARAMS = st.builds(
    lambda name, octets, quoted: (
        name.encode() + b"=" + (b'"' + octets + b'"' if quoted else octets)
    ),
    _PARAM_NAMES,
    st.binary(max_size=12).filter(lambda octets: b"\r" not in octets and b"\n" not in octets),
    st.booleans(),
)
_ENCODED_WORDS = st.builds(
    lambda charset, kind, octets: f"=?{charset}?{kind}?{octets}?=".encode("latin-1", "replace"),
    _CHARSETS,
    st.sampled_from(["q", "Q", "b", "B", "x"]),
    st.one_of(
        _PERCENT.map(lambda p: p.replace("%", "=")), st.sampled_from(["AAAA", "=", "YQ", "!"])
    ),
)


def _header_object(text: str, charset: str) -> bytes:
    """A field value as ``email.header.Header`` writes it (encoded words of ``charset``)."""
    try:
        return email.header.Header(text, charset, errors="replace").encode().encode("utf-8")
    except UnicodeError:  # text the charset has no octets for
        return email.header.Header(text, "utf-8").encode().encode("utf-8")


_HEADER_OBJECTS = st.builds(
    _header_object,
    st.text(max_size=20),
    st.sampled_from(["utf-8", "iso-8859-1", "us-ascii", "koi8-r", "shift_jis", "euc-jp"]),
)
_COMMENTS = st.builds(
    lambda depth, closed, address: b"(" * depth + b"x" + b")" * (depth if closed else 0) + address,
    st.integers(0, 1200),
    st.booleans(),
    st.sampled_from([b" <a@remote.test>", b"a@remote.test", b'"x@y.test" <a@b.test>', b""]),
)
_PIECES = st.one_of(
    _rfc2231_params(), _RAW_PARAMS, _ENCODED_WORDS, _HEADER_OBJECTS, _COMMENTS,
    st.sampled_from([b"(", b")", b'"', b"\\", b"=?", b"?=", b"'", b"*", b";", b"<", b">", b"@"]),
    st.binary(max_size=8).filter(lambda octets: b"\n" not in octets and b"\r" not in octets),
)  # fmt: skip
_VALUES = st.lists(_PIECES, max_size=5).map(lambda pieces: b"; ".join(pieces))
_FIELD_NAMES = st.sampled_from(
    [b"From", b"Subject", b"To", b"Date", b"Content-Type", b"Content-Disposition",
     b"Content-Transfer-Encoding", b"Reply-To", b"X-Mailer", b"Message-ID"]
)  # fmt: skip
_FIELDS = st.lists(
    st.builds(lambda name, value: name + b": " + value + b"\r\n", _FIELD_NAMES, _VALUES),
    max_size=6,
).map(b"".join)
_TYPES = st.sampled_from(
    [b"text/plain", b"text/html", b"application/pdf", b"multipart/mixed", b"message/rfc822", b"x"]
)


@st.composite
def _hostile_messages(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind, params = draw(_TYPES), draw(_VALUES)
        disposition = draw(st.sampled_from([b"attachment", b"inline", b""])) + b"; " + draw(_VALUES)
        parts.append(
            b"--b\r\nContent-Type: " + kind + b"; " + params + b"\r\n"
            + b"Content-Disposition: " + disposition + b"\r\n" + draw(_FIELDS)
            + b"\r\n" + draw(st.binary(max_size=40)) + b"\r\n"
        )  # fmt: skip
    head = draw(_FIELDS)
    if parts:
        head += b'Content-Type: multipart/mixed; boundary="b"\r\n'
        return head + b"\r\n" + b"".join(parts) + b"--b--\r\n"
    return head + b"\r\n" + draw(st.binary(max_size=40))


@pytest.mark.fuzz
@given(_hostile_messages())
def test_any_message_of_hostile_pieces_is_sampled_and_scored(message):
    header, _, body = message.partition(b"\r\n\r\n")
    sample_of_bytes(header + b"\r\n\r\n", body)
    sample = sample_of(io.BytesIO(message))
    tokens(sample)
    Scorer(None).score(sample, "alice@example.test", "a@remote.test")
    rules.content_hits(sample)


# A multipart inside one with the same boundary: the parser splits the outer one at the inner
# one's delimiters, and the attachment after the inner close delimiter became an epilogue the
# checks never read, while Dovecot and our IMAP show it (tests/imap/test_mime.py).
HIDDEN_BEHIND_BOUNDARY = (
    b"From: Ivan <ivan@remote.test>\r\nTo: alice@example.test\r\nSubject: invoice\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
    b"Content-Type: multipart/alternative; boundary=B\r\n\r\n\r\n"
    b"--B\r\nContent-Type: text/plain\r\n\r\nsee the invoice\r\n"
    b"--B\r\nContent-Type: text/html\r\n\r\n<p>see the invoice</p>\r\n--B--\r\n\r\n"
    b'--B\r\nContent-Type: application/octet-stream; name="invoice.pdf.exe"\r\n'
    b"Content-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"TVqQAAMAAAAEAAAA\r\n--B\r\nContent-Type: text/plain\r\n\r\nwire the money today\r\n--B--\r\n"
)


def test_parts_hidden_behind_a_reused_boundary_are_scored():
    sample = sample_of(io.BytesIO(HIDDEN_BEHIND_BOUNDARY))
    assert sample.attachments == ["invoice.pdf.exe"]
    assert "wire the money today" in sample.text
    assert sample.boundary_reused
    fired = _score(HIDDEN_BEHIND_BOUNDARY)
    assert {"EXE_ATTACHMENT", "DOUBLE_EXTENSION", "MIME_BOUNDARY_REUSED"} <= set(fired)


def test_distinct_boundaries_are_not_reuse():
    nested = HIDDEN_BEHIND_BOUNDARY.replace(b"alternative; boundary=B", b"alternative; boundary=C")
    nested = nested.replace(b"\r\n\r\n\r\n--B\r\n", b"\r\n\r\n\r\n--C\r\n", 1)
    nested = nested.replace(
        b"invoice\r\n--B\r\nContent-Type: text/html", b"invoice\r\n--C\r\nContent-Type: text/html"
    )
    nested = nested.replace(b"</p>\r\n--B--", b"</p>\r\n--C--")
    sample = sample_of(io.BytesIO(nested))
    assert not sample.boundary_reused
    assert sample.attachments == ["invoice.pdf.exe"]  # read the ordinary way


def _nested(depth: int) -> bytes:
    out = b"From: a@remote.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    for level in range(depth):
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
    out += b"Content-Type: text/plain\r\n\r\ncheap pills\r\n"
    for level in reversed(range(depth)):
        out += b"--b%d--\r\n" % level
    return out


def test_mime_nested_a_few_levels_is_read_as_mime():
    sample = sample_of(io.BytesIO(_nested(MAX_DEPTH - 1)))
    assert sample.content_types == ["text/plain"] and sample.text.strip() == "cheap pills"


def test_mime_nested_deeper_than_mail_is_read_as_one_text_part(monkeypatch):
    """The standard library's parser tries every enclosing boundary on every line: 2,000
    levels in 140 KiB took half a second of the scoring process. It is stopped at
    ``MAX_DEPTH`` levels, having read a few lines, and the words are still read."""
    lines = []
    real = email.feedparser.BufferedSubFile.readline

    def counted(self):
        lines.append(1)
        return real(self)

    monkeypatch.setattr(email.feedparser.BufferedSubFile, "readline", counted)
    sample = sample_of(io.BytesIO(_nested(2000)))
    assert len(lines) < 200  # of some 8,000
    assert sample.content_types == ["text/plain"] and "cheap pills" in sample.text
    assert "--b1999--" in sample.text


def test_boundary_words_in_the_text_dont_hide_the_parts():
    """The depth is the parser's own: a sender writing ``boundary=`` a hundred times in
    the text of a message of one level can't make its attachment and HTML read as text."""
    message = (
        b"From: a@remote.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\n" + b'boundary="x" ' * 100 + b"\r\n--b\r\n"
        b'Content-Type: application/octet-stream; name="invoice.pdf.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n"
    )
    sample = sample_of(io.BytesIO(message))
    assert sample.attachments == ["invoice.pdf.exe"]
    assert "EXE_ATTACHMENT" in _score(message)


@pytest.mark.parametrize("unended", ["<a ", "<a", "</", "<?", "<!", "<!-"])
def test_markup_that_never_ends_is_dropped_not_read_one_character_at_a_time(unended):
    """The standard parser's ``close`` read such a tail as text one ``<`` at a time,
    searching to the end from each: ``<a `` 8,000 times took 6 s of the scoring process,
    120 KiB of it minutes. Past ``UNENDED_KEPT`` characters it is dropped, as HTML5 drops
    markup the file ends in; the text before it is read."""
    calls = []
    real = HTMLParser.check_for_whole_start_tag

    def counted(self, i):
        calls.append(i)
        return real(self, i)

    reader = HTMLText()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HTMLParser, "check_for_whole_start_tag", counted)
        reader.read('<p>cheap <b>pills</b></p><!-- a comment --> <font x="<">' + unended * 8000)
    assert len(calls) < 50
    assert "cheap" in "".join(reader._visible) and "pills" in "".join(reader._visible)


def test_short_markup_that_never_ends_is_read_as_before():
    reader = HTMLText()
    reader.read('<p>cheap pills</p><font x="<"> <a b')
    assert "cheap pills" in "".join(reader._visible)
    assert "<a b" in "".join(reader._visible)  # the parser's close() makes it text
