"""Messages as the reading page sees them: which part is the text, which are attachments,
their IMAP part numbers, inline images, and messages that are broken."""

from __future__ import annotations

from email.message import EmailMessage

from txmailhost.web.messageview import extract_part, read_message


def _mixed() -> bytes:
    message = EmailMessage()
    message["From"] = "=?utf-8?q?Ren=C3=A9e?= <renee@example.test>"
    message["To"] = "alice@example.test"
    message["Subject"] = "=?utf-8?b?w6l0w6k=?="
    message.set_content("plain text\n")
    message.add_alternative("<p>html <img src='cid:logo@x'></p>", subtype="html")
    message.get_payload()[1].add_related(
        b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", cid="<logo@x>"
    )
    message.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf",
                           filename="r\u00e9sum\u00e9.pdf")  # fmt: skip
    return message.as_bytes()


def test_text_html_and_attachments_are_told_apart_with_imap_part_numbers():
    view = read_message(_mixed())
    assert (view.subject, view.sender) == ("\u00e9t\u00e9", "Ren\u00e9e <renee@example.test>")
    assert view.text == "plain text\n" and view.html.startswith("<p>html")
    assert [(a.part, a.filename, a.content_type, a.size) for a in view.attachments] == [
        ("2", "r\u00e9sum\u00e9.pdf", "application/pdf", 13)
    ]
    assert view.inline["logo@x"].startswith("data:image/png;base64,")


def test_a_part_is_extracted_decoded_by_its_number():
    raw = _mixed()
    assert extract_part(raw, "2").data == b"%PDF-1.4 data"
    assert extract_part(raw, "1.2.2").data == b"\x89PNG\r\n\x1a\nfake"
    assert extract_part(raw, "9") is None and extract_part(raw, "../1") is None


def test_a_single_part_message_is_part_1():
    raw = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    view = read_message(raw)
    assert view.text == "hello\r\n" or view.text == "hello\n"
    assert extract_part(raw, "1").data.startswith(b"hello")


def test_a_forwarded_message_is_one_attachment_not_opened():
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("inner body")
    outer = EmailMessage()
    outer["Subject"] = "fwd"
    outer.set_content("see attached")
    outer.add_attachment(inner)
    view = read_message(outer.as_bytes())
    [attachment] = view.attachments
    assert attachment.content_type == "message/rfc822" and attachment.filename.endswith(".eml")
    assert b"inner body" in extract_part(outer.as_bytes(), attachment.part).data


def test_broken_messages_are_shown_not_raised():
    for raw in (
        b"Subject: =?unknown-8?q?x?=\r\nContent-Type: text/plain; charset=x-nonsense\r\n\r\nhi",
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nbroken",
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!notbase64",
        b"\xff\xfe\x00 no header at all",
        b"",
    ):
        view = read_message(raw)
        assert isinstance(view.subject, str)


def test_mime_nested_deeper_than_the_parser_goes_is_shown_as_its_text():
    """1,500 levels made the standard library's parser raise RecursionError: the message
    page was a 500. Its header fields and its body as text are shown instead."""
    from tests.spam.test_sample import _nested

    view = read_message(_nested(1500))
    assert view.subject == "deep" and "click here now" in (view.text or "")
    assert read_message(_nested(50)).text.strip() == "click here now"
