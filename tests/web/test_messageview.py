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
    assert view.text.replace("\r\n", "\n") == "plain text\n" and view.html.startswith("<p>html")
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


def _nested_messages(depth: int) -> bytes:
    body = b"Subject: innermost\r\n\r\nleaf\r\n"
    for level in range(depth):
        body = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % level + body
    return b"From: a@remote.test\r\nMIME-Version: 1.0\r\n" + body


def test_messages_attached_300_deep_are_read_and_downloaded_not_raised():
    """300 levels of message/rfc822 (15 KB) parse, but writing one out again recursed past
    the stack: the page, its body and the download were 500s."""
    raw = _nested_messages(300)
    view = read_message(raw)
    assert view.subject == "level 299" and [a.part for a in view.attachments] == ["1"]
    part = extract_part(raw, "1")
    assert part.data == raw.split(b"\r\n\r\n", 1)[1]  # IMAP's BODY[1]
    assert read_message(_nested_messages(3000)).subject == "level 2999"


def test_an_attached_message_downloads_as_the_octets_stored():
    """The download was the part written out again: its own Content-Type header on top,
    fields refolded and RFC 2047 words decoded, LF line ends. Now it is IMAP's BODY[2]."""
    attached = (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=remote.test; s=s; h=from:subject; b=yy\r\n"
        b"From: inner@remote.test\r\nSubject: =?utf-8?q?a_very_long_subject_that_has_to_be_"
        b"refolded_when_the_generator_writes_it_out_again_xxxxxxxxxxxxxxxxxxxxx?=\r\n"
        b"\r\ninner body\r\n"
    )
    raw = (b"From: a@remote.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\n"
           b"Content-Disposition: attachment; filename=orig.eml\r\n\r\n"
           + attached + b"--b--\r\n")  # fmt: skip
    [attachment] = read_message(raw).attachments
    assert (attachment.filename, attachment.size) == ("orig.eml", len(attached) - 2)
    assert extract_part(raw, "2").data == attached[:-2]  # the CRLF before --b is the boundary's


def test_file_names_are_shown_without_bidi_and_format_characters():
    """U+202E RIGHT-TO-LEFT OVERRIDE made ``invoice\\u202efdp.exe`` read "invoiceexe.pdf"."""
    message = EmailMessage()
    message["Subject"] = "invoice"
    message.set_content("see attached")
    message.add_attachment(b"MZ", maintype="application", subtype="octet-stream",
                           filename="invoice\u202efdp.exe")  # fmt: skip
    message.add_attachment(b"x", maintype="application", subtype="octet-stream",
                           filename="a\u2066b\u200bc\u2069.txt")  # fmt: skip
    raw = message.as_bytes()
    names = [a.filename for a in read_message(raw).attachments]
    assert names == ["invoicefdp.exe", "abc.txt"]
    assert extract_part(raw, "2").filename == "invoicefdp.exe"


def _many_parts(count: int) -> bytes:
    return (b"From: a@remote.test\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            + b"--b\r\n\r\nx\r\n" * count + b"--b--\r\n")  # fmt: skip


def test_a_message_of_400000_parts_lists_those_imap_lists_and_says_there_are_more():
    """The email package parsed every part: 7.7 s of CPU and 232 MiB a view for 4 MB."""
    from txmailhost.imap import mime

    raw = _many_parts(400_000)
    view = read_message(raw)
    assert view.cut and view.text.strip() == "x"
    assert len(view.attachments) == mime.MAX_PARTS - 2  # the root and the text part
    assert view.attachments[-1].part == str(mime.MAX_PARTS - 1)
    assert extract_part(raw, "999").data.strip() == b"x"
    assert extract_part(raw, "1000") is None
    assert not read_message(_many_parts(10)).cut
    # The root and 999 parts are the budget exactly: all listed, nothing said to be missing.
    exact = read_message(_many_parts(mime.MAX_PARTS - 1))
    assert not exact.cut and len(exact.attachments) == mime.MAX_PARTS - 2
    assert read_message(_many_parts(mime.MAX_PARTS)).cut


def test_a_multipart_without_its_boundary_or_too_deep_is_shown_as_text():
    raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiter here\r\n"
    assert read_message(raw).text.strip() == "no delimiter here"
