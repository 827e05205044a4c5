"""Searching, marking spam and managing folders in the webmail, against the real server: the
search means what IMAP SEARCH means, a move into or out of Junk trains the spam filter as an
IMAP move does, and folders made here are the ones IMAP lists."""

from __future__ import annotations

import imaplib
import smtplib
import time
from email.message import EmailMessage

from tests.e2e.conftest import PASSWORD, client_context
from tests.support.web import Browser

H = "127.0.0.1"
ALICE = "alice@example.test"


def send(server, subject: str, body: str, sender: str = "someone@remote.test") -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ALICE
    message["Subject"] = subject
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    message.set_content(body)
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.send_message(message, from_addr=sender, to_addrs=[ALICE])


def logged_in(server) -> Browser:
    browser = Browser(server.ports["web"])
    assert browser.login(ALICE, PASSWORD).status == 200
    return browser


def imap_session(server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    return imap


def test_search_finds_what_imap_search_finds(server):
    send(server, "quarterly figures", "the numbers are attached", "finance@remote.test")
    send(server, "lunch", "shall we meet? The \u00e9clair place", "carol@friends.test")
    send(server, "figures again", "more numbers")
    browser = logged_in(server)
    browser.wait_for("/mail", "figures again")

    page = browser.get("/search?folder=INBOX&q=figures")
    assert "2 messages found" in page.text
    assert "quarterly figures" in page.text and "figures again" in page.text
    assert "lunch" not in page.text.split("messages found", 1)[1]
    body = browser.get("/search?folder=INBOX&q=%C3%89CLAIR")  # decoded, case-insensitive
    assert "1 message found" in body.text and "lunch" in body.text
    advanced = browser.get("/search?folder=INBOX&criteria=FROM+finance+NOT+SEEN")
    assert "1 message found" in advanced.text and "quarterly figures" in advanced.text

    imap = imap_session(server)
    imap.select("INBOX")
    assert imap.uid("SEARCH", "FROM", "finance", "NOT", "SEEN")[1] == [b"1"]
    imap.logout()
    bad = browser.get("/search?folder=INBOX&criteria=FROM")
    assert bad.status == 400 and "could not be read" in bad.text
    assert browser.get("/search?folder=../bob@example.test&q=x").status == 404


def _stats(server) -> str:
    return server.cli("spam", "stats", "--user", ALICE).stdout


def _wait(condition, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_marking_spam_and_not_spam_trains_the_filter_as_imap_moves_do(server):
    send(server, "lunch on friday", "Shall we meet at noon?", "carol@friends.test")
    browser = logged_in(server)
    browser.wait_for("/mail", "lunch on friday")
    token = browser.csrf
    page = browser.get("/message?folder=INBOX&uid=1")
    assert page.form("/message/junk")["verdict"] == "spam"

    moved = browser.post("/message/junk", {"csrf": token, "folder": "INBOX", "uid": "1",
                                           "verdict": "spam"}, follow=False)  # fmt: skip
    assert moved.status == 303
    assert "lunch on friday" in browser.get("/mail?folder=Junk").text
    _wait(lambda: "learned: 1 spam, 0 ham" in _stats(server))

    assert browser.get("/message?folder=Junk&uid=1").form("/message/junk")["verdict"] == "ham"
    back = browser.post("/message/junk", {"csrf": token, "folder": "Junk", "uid": "1",
                                          "verdict": "ham"}, follow=False)  # fmt: skip
    assert back.status == 303
    _wait(lambda: "1 ham" in _stats(server))
    assert "allow carol@friends.test" in _stats(server)  # as when rescued over IMAP
    assert "lunch on friday" in browser.get("/mail?folder=INBOX").text


def test_folders_are_created_renamed_and_deleted_as_imap_sees_them(server):
    browser = logged_in(server)
    token = browser.csrf
    created = browser.post("/folders/create", {"csrf": token, "name": "Projects", "parent": ""})
    assert created.status == 200 and "Created Projects" in created.text
    browser.post("/folders/create", {"csrf": token, "name": "Alpha", "parent": "Projects"})
    again = browser.post("/folders/create", {"csrf": token, "name": "Projects", "parent": ""})
    assert again.status == 400 and "exists already" in again.text
    assert browser.post("/folders/create", {"csrf": token, "name": "../../bob",
                                             "parent": ""}).status == 400  # fmt: skip

    renamed = browser.post("/folders/rename", {"csrf": token, "folder": "Projects",
                                               "name": "Work"})  # fmt: skip
    assert "Renamed Projects to Work" in renamed.text
    imap = imap_session(server)
    listed = b" ".join(imap.list()[1])
    assert b'"Work"' in listed and b'"Work/Alpha"' in listed and b'"Projects"' not in listed
    imap.logout()

    unconfirmed = browser.post("/folders/delete", {"csrf": token, "folder": "Work/Alpha"})
    assert unconfirmed.status == 400
    gone = browser.post("/folders/delete", {"csrf": token, "folder": "Work/Alpha", "confirm": "1"})
    assert "Deleted Work/Alpha" in gone.text
    assert browser.post("/folders/delete", {"csrf": token, "folder": "INBOX",
                                             "confirm": "1"}).status == 400  # fmt: skip
    assert browser.post("/folders/rename", {"csrf": token, "folder": "INBOX",
                                             "name": "Old"}).status == 400  # fmt: skip
    assert browser.post("/folders/delete", {"csrf": token, "folder": "../bob@example.test",
                                             "confirm": "1"}, follow=False).status == 404  # fmt: skip
    imap = imap_session(server)
    assert b"Alpha" not in b" ".join(imap.list()[1])
    imap.logout()
