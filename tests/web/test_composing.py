"""Writing a composed message: header fields checked, Bcc only in the stored copy, attachments
streamed and named safely, uploads parsed from a multipart body."""

from __future__ import annotations

import email
import email.policy
import io

import pytest

from txmailhost.web.composing import Attachment, BadField, Draft, recipients, write_message
from txmailhost.web.uploads import BadUpload, parse_form, safe_content_type, safe_filename


def _read(composed, stored: bool):
    with composed.open(stored) as f:
        raw = f.read()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def test_bcc_is_kept_in_the_stored_copy_only_and_lines_end_in_crlf(tmp_path):
    draft = Draft(sender="Alice <alice@example.test>", to="Bob <bob@example.test>",
                  bcc="carol@example.test", subject="h\u00e9llo", text="line one\nline two\n")  # fmt: skip
    composed = write_message(draft, str(tmp_path), "example.test")
    sent_raw, sent = _read(composed, stored=False)
    _stored_raw, stored = _read(composed, stored=True)
    assert "Bcc" not in sent and stored["Bcc"] == "carol@example.test"
    assert sent["Subject"] == "h\u00e9llo" and sent["Message-ID"] == stored["Message-ID"]
    assert b"\n" not in sent_raw.replace(b"\r\n", b"")
    assert sent.get_content().replace("\r\n", "\n") == "line one\nline two\n"
    assert composed.size(False) == len(sent_raw)
    assert recipients(draft) == ["bob@example.test", "carol@example.test"]


@pytest.mark.parametrize("field", ["subject", "to", "cc", "bcc", "sender"])
@pytest.mark.parametrize(
    "evil",
    [
        "x\r\nBcc: victim@example.test",
        "x\nX-Evil: 1",
        "x\rY",
        "a\0b",
        # what Python's email library (str.splitlines) also takes for line breaks: they
        # were a 500 with a traceback, the library refusing them (ValueError), not a form error
        "x\u2028Bcc: victim@example.test",
        "x\x0bY",
        "x\x0cY",
        "x\x85Y",
        "x\x1cY",
    ],
)
def test_line_breaks_in_any_header_field_are_refused(tmp_path, field, evil):
    draft = Draft(sender="alice@example.test", to="bob@example.test", subject="s")
    setattr(draft, field, evil)
    with pytest.raises(BadField):
        write_message(draft, str(tmp_path), "example.test")
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_attachments_are_base64_in_whole_lines_and_a_message_attaches_as_is(tmp_path):
    data = bytes(range(256)) * 1000
    inner = b"Subject: inner\r\n\r\nforwarded body\r\n"
    draft = Draft(sender="alice@example.test", to="bob@example.test", text="see files")
    draft.attachments = [
        Attachment("r\u00e9sum\u00e9.bin", "application/octet-stream", lambda: io.BytesIO(data)),
        Attachment("fwd.eml", "message/rfc822", lambda: io.BytesIO(inner), rfc822=True),
    ]
    composed = write_message(draft, str(tmp_path), "example.test")
    raw, message = _read(composed, stored=False)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    binary, forwarded = list(message.iter_attachments())
    assert binary.get_content() == data and binary.get_filename() == "r\u00e9sum\u00e9.bin"
    assert forwarded.get_content_type() == "message/rfc822"
    assert b"forwarded body" in forwarded.as_bytes()


# An RFC 2047 word decoding to CR LF: the email package decoded it and (before Python 3.11.10
# and 3.12.5, CVE-2024-6923) folded the line break out as is, a header field of its own.
ENCODED_BREAKS = [
    "=?utf-8?q?x=0D=0AX-Injected:_yes?=",
    "=?utf-8?b?eA0KWC1JbmplY3RlZDogeWVz?=",
    "=?utf-8?q?x=0AX-Injected:_yes?=",
    "=?utf-8?q?x=0D=0A=0D=0Abody_of_the_sender's_making?=",
]


@pytest.mark.parametrize("evil", ENCODED_BREAKS)
@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "{}"),
        ("subject", "Re: {} and more"),
        ("to", '"{}" <bob@example.test>'),
        ("cc", '"{}" <bob@example.test>'),
        ("bcc", '"{}" <bob@example.test>'),
        ("in_reply_to", "{}"),
        ("references", "<a@example.test> {}"),
    ],
)
def test_an_encoded_word_holding_a_line_break_is_refused(tmp_path, evil, field, value):
    draft = Draft(sender="alice@example.test", to="bob@example.test", subject="s")
    setattr(draft, field, value.format(evil))
    with pytest.raises(BadField, match="line breaks are not allowed"):
        write_message(draft, str(tmp_path), "example.test")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("evil", ENCODED_BREAKS)
def test_an_attachment_name_that_is_an_encoded_line_break_writes_no_field(tmp_path, evil):
    """Named by the browser or by a forwarded message's sender, the name is made safe
    (no encoded word left to decode); an Attachment named so all the same is refused."""
    assert "=?" not in safe_filename(evil + ".txt")
    draft = Draft(sender="alice@example.test", to="bob@example.test", subject="s",
                  attachments=[Attachment(safe_filename(evil), "text/plain",
                                          lambda: io.BytesIO(b"x"))])  # fmt: skip
    raw, message = _read(write_message(draft, str(tmp_path), "example.test"), stored=True)
    assert b"\r\nX-Injected" not in raw and b"\r\n\r\nbody_of" not in raw
    [part] = list(message.iter_attachments())
    assert "\n" not in part.get_filename()
    draft.attachments = [Attachment(evil, "text/plain", lambda: io.BytesIO(b"x"))]
    with pytest.raises(BadField, match="Attachment"):
        write_message(draft, str(tmp_path), "example.test")


def test_a_from_field_with_two_addresses_is_refused(tmp_path):
    """It was a ValueError from unpacking (a 500 for the browser), not a form error."""
    draft = Draft(sender="alice@example.test, bob@example.test", to="bob@example.test")
    with pytest.raises(BadField, match="one sender"):
        write_message(draft, str(tmp_path), "example.test")


def test_the_text_of_an_html_body_to_quote_is_what_a_reader_sees():
    from txmailhost.web.compose import html_text

    html = ("<html><head><title>T</title><style>p {color: red}</style></head><body>"
            "<p style='x'>Tom &amp; Jerry &lt;3 caf&eacute;</p><p>Second\n   paragraph</p>"
            "one<br>two<ul><li>a</li><li>b</li></ul><script>alert(1)</script>"
            "<div>&lt;script&gt;</div><!-- hidden --></body></html>")  # fmt: skip
    assert html_text(html) == (
        "Tom & Jerry <3 caf\u00e9\n\nSecond paragraph\none\ntwo\n\na\n\nb\n\n<script>"
    )


def test_file_names_and_types_from_the_browser_are_made_safe():
    assert safe_filename("C:\\Users\\x\\..\\report.pdf") == "report.pdf"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename('a"b;c\r\nd\u202e.exe') == "a'b_cd.exe"
    assert safe_filename("") == safe_filename("...") == "attachment"
    assert len(safe_filename("x" * 500 + ".pdf")) == 150 and safe_filename(
        "x" * 500 + ".pdf"
    ).endswith(".pdf")
    assert safe_content_type("image/png") == "image/png"
    for bad in ("text/html <script>", "multipart/mixed", "message/rfc822", "", None, "png"):
        assert safe_content_type(bad) == "application/octet-stream"


def test_a_multipart_form_gives_fields_and_spooled_files():
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="subject"\r\n\r\nhi\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="attachment"; filename="a/b.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + b"z" * 200_000 + b"\r\n"
        b'--XX\r\nContent-Disposition: form-data; name="attachment"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--XX--\r\n"
    )
    fields, uploads = parse_form(io.BytesIO(body), "multipart/form-data; boundary=XX", len(body))
    assert fields == {b"subject": [b"hi"]}
    [upload] = uploads  # the empty file input is no attachment
    assert (upload.filename, upload.content_type, upload.size) == ("b.txt", "text/plain", 200_000)
    assert upload.open().read() == b"z" * 200_000
    with pytest.raises(BadUpload):
        parse_form(io.BytesIO(b"--XX\r\nbroken"), "multipart/form-data; boundary=XX", 12)
    with pytest.raises(BadUpload):
        parse_form(io.BytesIO(body), "multipart/form-data", len(body))


def test_a_message_has_one_mime_version_field(tmp_path):
    """RFC 2045 4: one MIME-Version; the text part's own (from set_content) was a second."""
    draft = Draft(sender="alice@example.test", to="bob@example.test", subject="s", text="hi")
    composed = write_message(draft, str(tmp_path), "example.test")
    for stored in (True, False):
        raw, message = _read(composed, stored)
        assert raw.count(b"MIME-Version:") == 1 and message["MIME-Version"] == "1.0"
    draft.attachments = [Attachment("a.txt", "text/plain", lambda: io.BytesIO(b"x"))]
    raw, _ = _read(write_message(draft, str(tmp_path), "example.test"), False)
    assert raw.count(b"MIME-Version:") == 1


def test_control_characters_typed_in_the_text_are_not_sent(tmp_path):
    """A NUL (or another C0 control) a form carried went out in a part labelled 7bit (RFC 2045
    2.7 forbids NUL there); tabs and line ends stay."""
    draft = Draft(sender="alice@example.test", to="bob@example.test", subject="s",
                  text="a\x00b\x07c\td\r\ne")  # fmt: skip
    raw, message = _read(write_message(draft, str(tmp_path), "example.test"), stored=True)
    assert b"\x00" not in raw and b"\x07" not in raw
    assert message.get_content() == "abc\td\r\ne\r\n"
