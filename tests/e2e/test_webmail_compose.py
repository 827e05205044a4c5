"""Composing in the webmail against the real server: sending goes through port 587's pipeline
(sender policy, filters, DKIM signing, the durable hand-off), attachments, Bcc, Sent, replies
marked answered, forwards, drafts, and the form's defences (CSRF, header injection, size)."""

from __future__ import annotations

import base64
import email
import email.policy
import html
import imaplib
import smtplib
import time
from email.message import EmailMessage

import pytest

from tests.e2e.conftest import PASSWORD, client_context, start_from_template, start_signing
from tests.support.web import Browser

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"


def logged_in(server, user: str = ALICE) -> Browser:
    browser = Browser(server.ports["web"])
    page = browser.login(user, PASSWORD)
    assert page.status == 200, page.text[:500]
    return browser


def imap_messages(server, user: str, folder: str = "INBOX", wait: int = 0) -> list:
    """(flags, parsed message) of each message in ``folder``; waits until ``wait`` are there."""
    deadline = time.time() + 15
    while True:
        imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
        imap.starttls(ssl_context=client_context())
        imap.login(user, PASSWORD)
        count = int(imap.select(folder)[1][0])
        found = []
        if count:
            _, data = imap.fetch(f"1:{count}", "(FLAGS BODY.PEEK[])")
            for item in data:
                if isinstance(item, tuple):
                    flags = item[0].decode()
                    found.append(
                        (flags, email.message_from_bytes(item[1], policy=email.policy.default))
                    )
        imap.logout()
        if len(found) >= wait or time.time() > deadline:
            return found
        time.sleep(0.2)


def compose_form(browser: Browser, query: str = "") -> dict[str, str]:
    page = browser.get("/compose" + query)
    assert page.status == 200, page.text[:500]
    assert 'enctype="multipart/form-data"' in page.text
    return page.form("/compose")


def test_send_with_an_attachment_reaches_the_recipient_signed_and_is_kept_in_sent(
    server_template, tmp_path
):
    server = start_signing(server_template, str(tmp_path / "data"))
    try:
        alice = logged_in(server)
        fields = compose_form(alice)
        fields.update(to=f"Bob <{BOB}>", bcc="carol@elsewhere.invalid, " + ALICE,
                      subject="Report \u00e9t\u00e9", body="See the file.\r\n", action="send")  # fmt: skip
        fields["bcc"] = ALICE  # a Bcc to herself: delivered, never shown to Bob
        payload = bytes(range(256)) * 40
        sent = alice.post_multipart(
            "/compose",
            fields,
            [
                ("attachment", "../../etc/r\u00e9sum\u00e9\t.bin", "text/html <script>", payload)
            ],  # fmt: skip
            follow=False,
        )
        assert (sent.status, sent.header("Location")) == (303, "/mail?folder=Sent"), sent.text

        [(flags, received)] = imap_messages(server, BOB, wait=1)
        assert received["Subject"] == "Report \u00e9t\u00e9" and "Bcc" not in received
        assert received["From"].addresses[0].addr_spec == ALICE
        assert received.get_all("DKIM-Signature") and len(received.get_all("DKIM-Signature")) == 2
        assert "with HTTPSA" in received["Received"]
        [attachment] = list(received.iter_attachments())
        assert attachment.get_filename() == "r\u00e9sum\u00e9.bin"  # path and control gone
        assert attachment.get_content_type() == "application/octet-stream"
        assert attachment.get_content() == payload
        # the Bcc reached alice, and the Sent copy names the Bcc
        assert any(
            m["Subject"] == "Report \u00e9t\u00e9" for _, m in imap_messages(server, ALICE, wait=1)
        )
        [(sent_flags, kept)] = imap_messages(server, ALICE, "Sent", wait=1)
        assert "\\Seen" in sent_flags and kept["Bcc"] == ALICE
        assert kept["Message-ID"] == received["Message-ID"]
        log = server.log()
        assert "smtp web 127.0.0.1" in log and "result=250 2.0.0 user=alice@example.test" in log
    finally:
        server.stop()


def test_a_from_the_user_does_not_own_is_refused_as_submission_refuses_it(server):
    alice = logged_in(server)
    fields = compose_form(alice)
    fields.update(**{"from": BOB}, to=BOB, subject="forged", body="x", action="send")
    page = alice.post_multipart("/compose", fields, follow=False)
    assert page.status == 400
    assert "553 5.7.1" in page.text and "forged" in page.text  # the form comes back filled
    assert imap_messages(server, BOB) == []
    assert imap_messages(server, ALICE, "Sent") == []


def test_line_breaks_in_header_fields_are_refused_not_sent(server):
    alice = logged_in(server)
    for name, value in (("subject", "hi\r\nBcc: victim@example.test"),
                        ("to", f"{BOB}\r\nBcc: victim@example.test"),
                        ("subject", "hi\nX-Injected: 1")):  # fmt: skip
        fields = compose_form(alice)
        fields.update(to=BOB, subject="ok", body="x", action="send")
        fields[name] = value
        page = alice.post_multipart("/compose", fields, follow=False)
        assert page.status == 400 and "line breaks are not allowed" in page.text, (name, page.text)
    assert imap_messages(server, BOB) == []


def test_a_forward_with_a_broken_subject_is_refused_cleanly(server):
    original = EmailMessage()
    original["From"], original["To"], original["Subject"] = "x@remote.test", ALICE, "fw"
    original.set_content("body")
    _deliver(server, ALICE, original)
    alice = logged_in(server)
    alice.wait_for("/mail", "fw")
    fields = compose_form(alice, "?mode=forward&folder=INBOX&uid=1")
    fields.update(to=BOB, subject="a\r\nBcc: victim@example.test", action="send")
    page = alice.post_multipart("/compose", fields, follow=False)
    assert page.status == 400 and "line breaks are not allowed" in page.text
    assert alice.get("/compose?to=bob%40example.test%0D%0ABcc:x@y").status == 200
    assert imap_messages(server, BOB) == []


def test_bad_recipient_addresses_are_named_in_the_error(server):
    alice = logged_in(server)
    fields = compose_form(alice)
    fields.update(to="not an address", subject="s", body="x", action="send")
    page = alice.post_multipart("/compose", fields, follow=False)
    assert page.status == 400 and "is not an email address" in page.text
    fields.update(to="nobody@example.test")
    page = alice.post_multipart("/compose", fields, follow=False)
    assert page.status == 400 and "550 5.1.1" in page.text and "nobody@example.test" in page.text


@pytest.mark.shared_server
def test_the_compose_post_needs_the_csrf_token_even_as_multipart(server):
    alice = logged_in(server)
    fields = compose_form(alice)
    fields.update(to=BOB, subject="csrf", body="x", action="send")
    del fields["csrf"]
    assert alice.post_multipart("/compose", fields, follow=False).status == 403
    fields["csrf"] = "wrong"
    assert alice.post_multipart("/compose", fields, follow=False).status == 403
    anonymous = Browser(server.ports["web"])
    assert anonymous.post_multipart("/compose", fields, follow=False).status == 401


def _deliver(server, to: str, message: EmailMessage) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.send_message(message, from_addr="someone@remote.test", to_addrs=[to])


def test_reply_all_threads_the_reply_and_marks_the_original_answered(server):
    original = EmailMessage()
    original["From"] = "Bob <bob@example.test>"
    original["To"] = "alice@example.test, carol@remote.test"
    original["Cc"] = "dave@remote.test"
    original["Subject"] = "plans"
    original["Message-ID"] = "<plans-1@example.test>"
    original["References"] = "<earlier@example.test>"
    original.set_content("Shall we meet?\n")
    _deliver(server, ALICE, original)
    alice = logged_in(server)
    alice.wait_for("/mail", "plans")

    fields = compose_form(alice, "?mode=replyall&folder=INBOX&uid=1")

    assert fields["subject"] == "Re: plans" and fields["to"] == "Bob <bob@example.test>"
    assert fields["cc"] == "carol@remote.test, dave@remote.test"  # not alice herself
    assert fields["in_reply_to"] == "<plans-1@example.test>"
    assert fields["references"] == "<earlier@example.test> <plans-1@example.test>"
    assert "> Shall we meet?" in fields["body"]
    fields.update(cc="", action="send")  # the remote ones would wait in the queue
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    [(_, reply)] = imap_messages(server, BOB, wait=1)
    assert reply["In-Reply-To"] == "<plans-1@example.test>"
    assert reply["References"] == "<earlier@example.test> <plans-1@example.test>"
    [(flags, _)] = imap_messages(server, ALICE)
    assert "\\Answered" in flags


def test_an_address_in_an_encoded_name_is_neither_shown_nor_replied_to_as_one(server):
    """A display name's encoded words may decode to "<carol@...>," or a line break: read from
    the decoded text, the page showed carol as a second sender, and Reply addressed her (a
    Reply-To decoding to "bob\r\nBcc: carol" sent her a copy). They are a part of the name."""
    bcc = base64.b64encode(b"bob@example.test\r\nBcc: carol@remote.test").decode()
    raw = (
        b"From: =?utf-8?q?Bank_Support=0A=3Ccarol=40remote.test=3E=2C?= <bob@example.test>\r\n"
        b"To: alice@example.test\r\nSubject: please reply\r\n\r\nPlease reply.\r\n"
    )
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("someone@remote.test", [ALICE], raw)
        s.sendmail(
            "someone@remote.test",
            [ALICE],
            raw.replace(b"please reply", b"reply here").replace(
                b"To:", b"Reply-To: =?utf-8?b?%s?= <bob@example.test>\r\nTo:" % bcc.encode()
            ),
        )
    alice = logged_in(server)
    alice.wait_for("/mail", "reply here")
    page = alice.get("/message?folder=INBOX&uid=1").text
    shown = '<dt>From</dt><dd>"Bank Support <carol@remote.test>," <bob@example.test></dd>'
    assert shown in html.unescape(page)
    fields = compose_form(alice, "?mode=replyall&folder=INBOX&uid=1")
    assert fields["to"] == '"Bank Support <carol@remote.test>," <bob@example.test>'
    assert fields["cc"] == ""
    fields = compose_form(alice, "?mode=reply&folder=INBOX&uid=2")
    assert fields["to"] == '"bob@example.test Bcc: carol@remote.test" <bob@example.test>'
    fields.update(action="send")
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    [(_, reply)] = imap_messages(server, BOB, wait=1)
    assert reply["Bcc"] is None and reply["To"].addresses[0].addr_spec == BOB
    assert len(reply["To"].addresses) == 1


def test_forward_attaches_the_original_whole_or_quotes_it_with_its_attachments(server):
    original = EmailMessage()
    original["From"] = "someone@remote.test"
    original["To"] = ALICE
    original["Subject"] = "invoice"
    original.set_content("Please pay.\n")
    original.add_attachment(b"%PDF-1.4 bill", maintype="application", subtype="pdf",
                            filename="bill.pdf")  # fmt: skip
    _deliver(server, ALICE, original)
    alice = logged_in(server)
    alice.wait_for("/mail", "invoice")

    fields = compose_form(alice, "?mode=forward&folder=INBOX&uid=1")
    assert fields["subject"] == "Fwd: invoice" and fields["forward_uid"] == "1"
    fields.update(to=BOB, action="send")
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    inline = compose_form(alice, "?mode=forward&folder=INBOX&uid=1&inline=1")
    assert "Please pay." in inline["body"] and inline["keep_part"] == "2"
    inline.update(to=BOB, action="send")
    assert alice.post_multipart("/compose", inline, follow=False).status == 303

    messages = [m for _, m in imap_messages(server, BOB, wait=2)]
    attached, quoted = sorted(messages, key=lambda m: "keep" in str(m))  # any stable split
    parts = {m.get_content_type(): m for m in (attached, quoted)}
    kinds = [[p.get_content_type() for p in m.iter_attachments()] for m in messages]
    assert sorted(kinds) == [["application/pdf"], ["message/rfc822"]], kinds
    forwarded = next(m for m in messages if kinds[messages.index(m)] == ["message/rfc822"])
    [inner] = list(forwarded.iter_attachments())
    assert b"Please pay." in inner.as_bytes() and b"bill.pdf" in inner.as_bytes()
    assert parts  # both parsed
    kept = next(m for m in messages if kinds[messages.index(m)] == ["application/pdf"])
    [pdf] = list(kept.iter_attachments())
    assert pdf.get_content() == b"%PDF-1.4 bill" and pdf.get_filename() == "bill.pdf"


def test_a_draft_is_saved_reopened_replaced_and_removed_when_sent(server):
    alice = logged_in(server)
    fields = compose_form(alice)
    fields.update(to=BOB, bcc=ALICE, subject="draft one", body="first words", action="draft")
    saved = alice.post_multipart("/compose", fields, [("attachment", "notes.txt", "text/plain",
                                                         b"my notes")], follow=False)  # fmt: skip
    assert saved.status == 303 and saved.header("Location").startswith("/compose?draft=1")
    [(flags, draft)] = imap_messages(server, ALICE, "Drafts")
    assert "\\Draft" in flags and draft["Bcc"] == ALICE
    listing = alice.get("/mail?folder=Drafts").text
    assert "/compose?draft=1" in listing

    again = alice.get(saved.header("Location"))
    assert "Draft saved." in again.text
    fields = again.form("/compose")
    assert (fields["subject"], fields["to"], fields["bcc"]) == ("draft one", BOB, ALICE)
    assert fields["body"].strip() == "first words" and fields["keep_part"] == "2"
    fields.update(subject="draft two", action="draft")
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    [(_, second)] = imap_messages(server, ALICE, "Drafts")
    assert second["Subject"] == "draft two"
    [notes] = list(second.iter_attachments())
    assert notes.get_content() == "my notes"

    fields = alice.get("/compose?draft=2").form("/compose")
    fields.update(action="send")
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    assert imap_messages(server, ALICE, "Drafts") == []
    [(_, received)] = imap_messages(server, BOB, wait=1)
    assert received["Subject"] == "draft two" and "Bcc" not in received
    assert [a.get_filename() for a in received.iter_attachments()] == ["notes.txt"]


def test_an_upload_over_the_message_size_limit_is_refused_413(server_template, tmp_path):
    server = start_from_template(
        server_template, str(tmp_path / "data"), "[smtp]\nmax_message_size = 300000\n"
    )
    try:
        alice = logged_in(server)
        fields = compose_form(alice)
        fields.update(to=BOB, subject="big", body="x", action="send")
        # within the upload limit, but too big once encoded: SMTP's 552 5.3.4
        page = alice.post_multipart("/compose", fields,
                                    [("attachment", "a.bin", "application/octet-stream",
                                      b"a" * 280_000)], follow=False)  # fmt: skip
        assert page.status == 400 and "552 5.3.4" in page.text
        # past it: 413 and the connection closed while the body is still coming (a client
        # still writing then may see the close rather than the answer)
        try:
            page = alice.post_multipart("/compose", fields,
                                        [("attachment", "b.bin", "application/octet-stream",
                                          b"b" * 3_000_000)], follow=False)  # fmt: skip
        except (ConnectionError, OSError):
            pass
        else:
            assert page.status == 413, page.status
        assert imap_messages(server, BOB) == []
        assert alice.get("/mail").status == 200  # the session is fine
    finally:
        server.stop()


@pytest.mark.shared_server
def test_a_kept_attachment_with_a_line_break_in_its_name_is_renamed_not_a_500(server):
    """A sender's RFC 2231 file name may decode to CR LF: forwarding such a message with its
    attachment kept made the header field fail (a 500 with a traceback). It is named as an
    upload is (uploads.safe_filename)."""
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("someone@remote.test", [ALICE], (
            b"Subject: report\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n"
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
            b"filename*=utf-8''report%0D%0AX-Injected%3A%20yes.pdf\r\n\r\n%PDF-1.4\r\n--B--\r\n"
        ))  # fmt: skip
    [(_, received)] = [
        m for m in imap_messages(server, ALICE, wait=1) if m[1]["Subject"] == "report"
    ]
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    uid = imap.uid("SEARCH", "SUBJECT", "report")[1][0].split()[-1].decode()
    imap.logout()
    alice = logged_in(server)
    fields = compose_form(alice)
    fields.update(to=BOB, subject="Fwd: report", body="fyi", action="draft",
                  source_folder="INBOX", source_uid=uid, keep_part="2")  # fmt: skip
    saved = alice.post_multipart("/compose", fields, follow=False)
    assert saved.status == 303, saved.text[:300]
    drafts = [m for _, m in imap_messages(server, ALICE, "Drafts", wait=1)
              if m["Subject"] == "Fwd: report"]  # fmt: skip
    [attachment] = list(drafts[-1].iter_attachments())
    assert "X-Injected" not in drafts[-1] and "\n" not in attachment.get_filename()
    assert attachment.get_content() == b"%PDF-1.4"


@pytest.mark.shared_server
def test_a_line_break_in_the_answered_folder_writes_no_header_field(server):
    """``answer_folder`` goes into the saved draft's ``X-Txm-Answers``: with CR LF in it the
    draft gained ``Bcc:`` and any field the request named."""
    alice = logged_in(server)
    fields = compose_form(alice)
    fields.update(to=BOB, subject="injected draft", body="x", action="draft",
                  answer_folder="INBOX\r\nBcc: carol@example.test\r\nX-Injected: yes",
                  answer_uid="1")  # fmt: skip
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    [draft] = [m for _, m in imap_messages(server, ALICE, "Drafts", wait=1)
               if m["Subject"] == "injected draft"]  # fmt: skip
    assert draft["Bcc"] is None and draft["X-Injected"] is None


def test_a_reply_to_a_hostile_message_names_only_its_real_ids_and_can_be_sent(server):
    """Decoded (RFC 2047), the original's Message-ID and Subject hold CR LF and NUL: the
    reply form takes only real msg-ids from the raw fields and the subject on one line,
    so no junk reaches In-Reply-To and the reply isn't refused for a character the user
    never typed."""
    raw = (
        b"From: bob@example.test\r\nTo: alice@example.test\r\n"
        b"Subject: =?utf-8?q?plans=0D=0AX-Injected:_yes=00=E2=80=A8now?=\r\n"
        b"Message-ID: =?us-ascii?q?<p@evil.test>=0D=0AX-Injected:_yes?=\r\n"
        b"References: <r1@example.test> =?us-ascii?q?<r2@x>=0D=0AX-Injected:_yes?=\r\n"
        b"\r\nShall we meet?\r\n"
    )
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("someone@remote.test", [ALICE], raw)
    alice = logged_in(server)
    alice.wait_for("/mail", "plans")
    fields = compose_form(alice, "?mode=reply&folder=INBOX&uid=1")
    assert fields["in_reply_to"] == "" and fields["references"] == "<r1@example.test>"
    assert fields["subject"] == "Re: plans X-Injected: yes now"
    fields.update(action="send")
    assert alice.post_multipart("/compose", fields, follow=False).status == 303
    [(_, reply)] = imap_messages(server, BOB, wait=1)
    assert reply["In-Reply-To"] is None and reply["References"] == "<r1@example.test>"
    assert reply["Subject"] == "Re: plans X-Injected: yes now"
    assert not [name for name in reply if name.lower().startswith("x-")]


def test_an_encoded_word_decoding_to_a_line_break_is_refused_not_sent(server):
    """``=?utf-8?q?..=0D=0A..?=`` in Subject or a display name was decoded by the email
    package and written out as a header field of its own (CVE-2024-6923 on Python before
    3.11.10/3.12.5): typed by the user, or in a hostile message's subject carried into the
    reply form, it put fields of the sender's choosing into the reply, DKIM-signed."""
    alice = logged_in(server)
    for name, value in (("subject", "=?utf-8?q?hi=0D=0AX-Injected:_yes?="),
                        ("to", f'"=?utf-8?q?Bob=0D=0AX-Injected:_yes?=" <{BOB}>')):  # fmt: skip
        fields = compose_form(alice)
        fields.update(to=BOB, subject="ok", body="x", action="send")
        fields[name] = value
        page = alice.post_multipart("/compose", fields, follow=False)
        assert page.status == 400 and "line breaks are not allowed" in page.text, (name, page.text)
    hostile = (
        b"From: mallory@remote.test\r\nTo: alice@example.test\r\n"
        b"Subject: =?utf-8?q?=3D=3Futf-8=3Fq=3Fplan=3D0D=3D0AX-Injected=3A=5Fyes=3F=3D?=\r\n"
        b"\r\nhello\r\n"
    )
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("mallory@remote.test", [ALICE], hostile)
    alice.wait_for("/mail", "plan")
    fields = compose_form(alice, "?mode=reply&folder=INBOX&uid=1")
    fields.update(to=BOB, action="send")
    page = alice.post_multipart("/compose", fields, follow=False)
    assert page.status == 400 and "Subject: line breaks are not allowed" in page.text
    assert imap_messages(server, BOB) == []
    assert imap_messages(server, ALICE, "Sent") == []


@pytest.mark.shared_server
def test_two_from_addresses_are_a_form_error_not_a_500(server):
    alice = logged_in(server)
    for action in ("send", "draft"):
        fields = compose_form(alice)
        fields.update(**{"from": f"{ALICE}, {BOB}"}, to=BOB, subject="two senders", body="x",
                      action=action)  # fmt: skip
        page = alice.post_multipart("/compose", fields, follow=False)
        assert page.status == 400, (action, page.status, page.text[:300])
        assert "From: give one sender address only" in page.text


@pytest.mark.shared_server
def test_a_reply_to_an_html_only_message_quotes_its_text_not_its_escaped_source(server):
    """The quote was nh3's escaped output: "Tom &amp;amp; Jerry", paragraphs run together."""
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("someone@remote.test", [ALICE], (
            b"From: someone@remote.test\r\nTo: alice@example.test\r\nSubject: html only\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            b"<p>Tom &amp; Jerry &lt;3 caf&eacute;</p><p>Second paragraph</p>\r\n"
        ))  # fmt: skip
    alice = logged_in(server)
    alice.wait_for("/mail", "html only")
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    uid = imap.uid("SEARCH", "SUBJECT", '"html only"')[1][0].split()[-1].decode()
    imap.logout()
    body = compose_form(alice, f"?mode=reply&folder=INBOX&uid={uid}")["body"]
    assert "> Tom & Jerry <3 caf\u00e9\n>\n> Second paragraph" in body, body
