"""Webmail against the real server reading mail made to hurt it: header fields the ``email``
package parses in minutes or gigabytes (bounded by ``web/headerbounds.py``), MIME nested
deeper than Python's stack, an attached message to download as stored, and file names that
reorder themselves. Each page must answer, and soon: a Browser request gives up after 30 s,
where these messages took minutes before."""

from __future__ import annotations

import imaplib
import re
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD, client_context
from tests.support.web import Browser

H = "127.0.0.1"
ALICE = "alice@example.test"


def _imap(server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    return imap


def deliver(server, raw: bytes) -> int:
    """Send ``raw`` to Alice over SMTP; its INBOX UID once it is there."""
    imap = _imap(server)
    status = imap.status("INBOX", "(UIDNEXT)")[1][0]
    uid = int(re.search(rb"UIDNEXT (\d+)", status)[1])
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("someone@remote.test", [ALICE], raw)
    imap.select("INBOX")
    deadline = time.time() + 15
    while not imap.uid("SEARCH", f"UID {uid}")[1][0]:
        assert time.time() < deadline, "not delivered to the INBOX"
        time.sleep(0.1)
        imap.noop()
    imap.logout()
    return uid


def _pages(browser: Browser, uid: int, part: str = "1") -> dict[str, int]:
    base = f"folder=INBOX&uid={uid}"
    paths = [f"/message?{base}", f"/message/body?{base}", f"/message/part?{base}&part={part}",
             f"/compose?mode=reply&{base}", f"/compose?mode=replyall&{base}",
             f"/compose?mode=forward&inline=1&{base}", f"/compose?mode=forward&{base}",
             "/mail?folder=INBOX&sort=subject", "/mail?folder=INBOX&sort=from"]  # fmt: skip
    return {path: browser.get(path).status for path in paths}


@pytest.mark.shared_server
def test_a_content_type_of_20000_semicolons_is_read_at_once(server):
    """8,000 ';' cost 5.7 s of CPU a view and stalled every other user's pages (2 web
    threads); 20,000 took minutes."""
    raw = (b"From: x@remote.test\r\nSubject: ct-semicolons\r\nContent-Type: text/plain;"
           + b";" * 20000 + b" charset=utf-8\r\n\r\nhello\r\n")  # fmt: skip
    uid = deliver(server, raw)
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)
    assert set(_pages(browser, uid).values()) == {200}
    page = browser.get(f"/message?folder=INBOX&uid={uid}")
    assert "ct-semicolons" in page.text and "hello" in page.text


@pytest.mark.shared_server
def test_a_subject_of_10000_encoded_words_is_shown_cut(server):
    """A 179 KB Subject grew the server by 900 MiB a view, 1.8 GB a reply, never given back."""
    words = b" ".join(b"=?utf-8?q?w%d?=" % i for i in range(10000))
    uid = deliver(server, b"From: a@remote.test\r\nSubject: " + words + b"\r\n\r\nhello\r\n")
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)
    assert set(_pages(browser, uid).values()) == {200}
    page = browser.get(f"/message?folder=INBOX&uid={uid}").text
    assert "w0w1w2" in page and "w255 \u2026" in page and "w256" not in page
    reply = browser.get(f"/compose?mode=reply&folder=INBOX&uid={uid}").text
    assert "Re: w0w1w2" in reply and "w256" not in reply


@pytest.mark.shared_server
def test_messages_attached_300_deep_are_read_and_downloaded(server):
    """IMAP served it; the webmail's pages were 500s (RecursionError)."""
    body = b"Subject: innermost\r\n\r\nleaf\r\n"
    for level in range(300):
        body = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % level + body
    uid = deliver(server, b"From: a@remote.test\r\nMIME-Version: 1.0\r\n" + body)
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)
    assert set(_pages(browser, uid).values()) == {200}


@pytest.mark.shared_server
def test_an_attached_message_downloads_as_imap_serves_it(server):
    raw = (b"From: a@remote.test\r\nSubject: fwd test\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\n"
           b"Content-Disposition: attachment; filename=orig.eml\r\n\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=remote.test; s=s; h=from:subject; b=yy\r\n"
           b"From: inner@remote.test\r\nSubject: =?utf-8?q?a_very_long_subject_that_has_to"
           b"_be_refolded_when_the_generator_writes_it_out_again_xxxxxxxxxxxxxxxxxx?=\r\n"
           b"\r\ninner body\r\n--b--\r\n")  # fmt: skip
    uid = deliver(server, raw)
    imap = _imap(server)
    imap.select("INBOX")
    stored = imap.uid("FETCH", str(uid), "(BODY.PEEK[2])")[1][0][1]
    imap.logout()
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)

    download = browser.get(f"/message/part?folder=INBOX&uid={uid}&part=2")

    assert download.status == 200 and download.body == stored
    assert download.body.startswith(b"DKIM-Signature: v=1;")


@pytest.mark.shared_server
def test_a_file_name_with_a_right_to_left_override_shows_its_real_extension_txt_not_png(server):
    raw = (b"From: a@remote.test\r\nSubject: notes\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nsee the notes\r\n--b\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment;"
           b" filename=\"=?utf-8?q?notes=E2=80=AEgnp.txt?=\"\r\n\r\n"
           b"TVo=\r\n--b--\r\n")  # fmt: skip
    uid = deliver(server, raw)
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)

    page = browser.get(f"/message?folder=INBOX&uid={uid}")
    download = browser.get(f"/message/part?folder=INBOX&uid={uid}&part=2")

    assert "notesgnp.txt" in page.text and "\u202e" not in page.text
    assert "&#8238;" not in page.text and "&#x202e;" not in page.text.lower()
    disposition = download.header("Content-Disposition")
    assert "notesgnp.txt" in disposition and "%E2%80%AE" not in disposition
    assert download.body == b"MZ"


@pytest.mark.shared_server
def test_a_message_of_300000_parts_shows_the_parts_imap_lists(server):
    """The email package parsed every part: 7.7 s of CPU and 232 MiB a view for 4 MB, on
    one of the site's two threads."""
    raw = (b"From: a@remote.test\r\nSubject: many parts\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
           + b"--b\r\n\r\nx\r\n" * 300_000 + b"--b--\r\n")  # fmt: skip
    uid = deliver(server, raw)
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)
    assert set(_pages(browser, uid, part="999").values()) == {200}
    page = browser.get(f"/message?folder=INBOX&uid={uid}").text
    assert "more parts than are listed" in page
    assert "part=999" in page and "part=1000" not in page
