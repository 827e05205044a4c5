"""The threads view of the message list against the real server: conversations as IMAP's
THREAD=REFERENCES groups them, with their counts and latest dates, sorted, paged by thread,
and expanded to their messages."""

from __future__ import annotations

import imaplib
import re
import time

from tests.e2e.conftest import PASSWORD, client_context
from tests.support.web import Browser

H = "127.0.0.1"
ALICE = "alice@example.test"
START = 1_700_000_000  # arrival dates: START + offset seconds


def _imap(server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    return imap


def _message(subject: str, msgid: str, references: str = "", sender: str = "Ann") -> bytes:
    lines = [
        f"From: {sender} <{sender.lower()}@remote.test>",
        f"To: {ALICE}",
        f"Subject: {subject}",
        f"Message-ID: <{msgid}@remote.test>",
    ]
    if references:
        refs = " ".join(f"<{r}@remote.test>" for r in references.split())
        lines += [f"References: {refs}", f"In-Reply-To: <{references.split()[-1]}@remote.test>"]
    return ("\r\n".join(lines) + "\r\n\r\nbody of " + msgid + "\r\n").encode()


def _append(imap: imaplib.IMAP4, raw: bytes, offset: int, seen: bool = False) -> int:
    """APPEND with an arrival date of START + offset; the new message's UID."""
    date = imaplib.Time2Internaldate(time.gmtime(START + offset))
    status, data = imap.append("INBOX", r"(\Seen)" if seen else "", date, raw)
    assert status == "OK", data
    return int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1])


def _thread_rows(page_text: str) -> list[tuple[int, str]]:
    """(anchor UID, the row's text) of each thread row, in page order."""
    rows = re.findall(r'<tr class="[^"]*" data-thread="(\d+)">(.*?)</tr>', page_text, re.S)
    return [(int(uid), " ".join(re.sub(r"<[^>]+>", " ", body).split())) for uid, body in rows]


def _seed(server) -> dict[str, int]:
    imap = _imap(server)
    uids = {
        "a1": _append(imap, _message("Plans", "a1"), 1, seen=True),
        "b1": _append(imap, _message("Lunch", "b1", sender="Bea"), 2),
        "a2": _append(imap, _message("Re: Plans", "a2", "a1", sender="Bea"), 3),
        "c1": _append(imap, _message("Invoice", "c1", sender="Cid"), 4, seen=True),
        "b2": _append(imap, _message("Re: Lunch", "b2", "b1"), 5),
        "a3": _append(imap, _message("Re: Plans", "a3", "a1 a2", sender="Cid"), 6),
    }
    imap.logout()
    return uids


def test_threads_group_conversations_with_counts_and_latest_dates_and_sort(server):
    uids = _seed(server)
    browser = Browser(server.ports["web"])
    assert browser.login(ALICE, PASSWORD).status == 200

    page = browser.get("/mail?folder=INBOX&view=threads")
    assert page.status == 200
    assert "6 messages in 3 threads" in page.text
    rows = _thread_rows(page.text)
    # newest conversation first: Plans (last reply at +6), Lunch (+5), Invoice (+4)
    assert [anchor for anchor, _ in rows] == [uids["a1"], uids["b1"], uids["c1"]]
    plans, lunch, invoice = (text for _, text in rows)
    assert "Plans" in plans and "3 messages, 2 unread" in plans
    assert time.strftime("%Y-%m-%d %H:%M", time.gmtime(START + 6)) in plans
    assert "Lunch" in lunch and "2 messages, 2 unread" in lunch and "Bea" in lunch
    assert "Invoice" in invoice and "1 message" in invoice and "unread" not in invoice

    ascending = _thread_rows(browser.get("/mail?folder=INBOX&view=threads&order=asc").text)
    assert [anchor for anchor, _ in ascending] == [uids["c1"], uids["b1"], uids["a1"]]
    by_subject = browser.get("/mail?folder=INBOX&view=threads&sort=subject&order=asc").text
    assert [a for a, _ in _thread_rows(by_subject)] == [uids["c1"], uids["b1"], uids["a1"]]
    by_sender = browser.get("/mail?folder=INBOX&view=threads&sort=from&order=desc").text
    assert [a for a, _ in _thread_rows(by_sender)] == [uids["c1"], uids["b1"], uids["a1"]]

    # the grouping is IMAP's THREAD=REFERENCES, message for message
    imap = _imap(server)
    imap.select("INBOX")
    answer = imap.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1][0].decode()
    imap.logout()
    assert (
        answer
        == f"({uids['a1']} {uids['a2']} {uids['a3']})({uids['b1']} {uids['b2']})({uids['c1']})"
    )

    # the message view is still the default, one row per message
    plain = browser.get("/mail?folder=INBOX").text
    assert "data-thread" not in plain and plain.count("/message?folder=INBOX&amp;uid=") == 6


def test_expanding_a_thread_lists_its_messages_in_thread_order(server):
    uids = _seed(server)
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)

    collapsed = browser.get("/mail?folder=INBOX&view=threads").text
    assert 'aria-expanded="false"' in collapsed and "in-thread" not in collapsed
    # expanding by any message of the thread: its middle one here
    page = browser.get(f"/mail?folder=INBOX&view=threads&expand={uids['a2']}").text
    assert page.count('aria-expanded="true"') == 1
    listed = [int(u) for u in re.findall(r'<tr class="in-thread[^"]*">.*?uid=(\d+)"', page, re.S)]
    assert listed == [uids["a1"], uids["a2"], uids["a3"]]
    assert re.search(rf'<tr class="in-thread unread">.*?uid={uids["a3"]}"', page, re.S)
    assert re.search(rf'<tr class="in-thread ">.*?uid={uids["a1"]}"', page, re.S)  # read

    # reading a message elsewhere shows at once in the thread's unread count
    imap = _imap(server)
    imap.select("INBOX")
    imap.uid("STORE", str(uids["a3"]), "+FLAGS", r"(\Seen)")
    imap.logout()
    plans = _thread_rows(browser.get("/mail?folder=INBOX&view=threads").text)[0][1]
    assert "3 messages, 1 unread" in plans

    # the htmx refresh of the list keeps the view and the expanded thread
    fragment = browser.get(
        f"/mail?folder=INBOX&view=threads&expand={uids['a2']}",
        headers={"HX-Request": "true", "HX-Target": "message-list"},
    ).text
    assert fragment.lstrip().startswith('<section id="message-list"')
    assert f"view=threads&amp;expand={uids['a2']}" in fragment
    # an expand naming no message of the folder expands nothing
    assert "in-thread" not in browser.get("/mail?folder=INBOX&view=threads&expand=99999").text


def test_threads_page_by_thread_not_by_message(server):
    imap = _imap(server)
    for n in range(52):  # 52 conversations of two messages: 104 messages, two pages
        _append(imap, _message(f"Topic {n:02d}", f"t{n}"), 2 * n)
        _append(imap, _message(f"Re: Topic {n:02d}", f"r{n}", f"t{n}"), 2 * n + 1)
    imap.logout()
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)

    first = browser.get("/mail?folder=INBOX&view=threads&sort=subject&order=asc").text
    assert "104 messages in 52 threads" in first and "Page 1 of 2" in first
    rows = _thread_rows(first)
    assert len(rows) == 50 and "Topic 00" in rows[0][1] and "Topic 49" in rows[-1][1]
    assert all("2 messages, 2 unread" in text for _, text in rows)
    assert "page=2&amp;view=threads" in first
    second = browser.get("/mail?folder=INBOX&view=threads&sort=subject&order=asc&page=2").text
    assert [t.split()[3:5] for _, t in _thread_rows(second)] == [["Topic", "50"], ["Topic", "51"]]
    assert "Page 2 of 2" in second


def test_a_reply_stored_before_its_original_is_counted_with_its_flags(server):
    """Thread order (original, then reply) is not UID order here: the page's flags must still
    be those of the right messages, keywords included."""
    imap = _imap(server)
    reply = _append(imap, _message("Re: Boats", "boat2", "boat1", sender="Bea"), 2, seen=True)
    original = _append(imap, _message("Boats", "boat1"), 1)
    others = [_append(imap, _message(f"Other {n}", f"o{n}"), 3 + n, seen=True) for n in range(3)]
    imap.select("INBOX")
    imap.uid("STORE", f"{original},{others[0]}", "+FLAGS", "($Work)")
    imap.logout()
    browser = Browser(server.ports["web"])
    browser.login(ALICE, PASSWORD)
    page = browser.get(f"/mail?folder=INBOX&view=threads&expand={reply}").text
    rows = dict(_thread_rows(page))
    assert "Boats" in rows[original] and "2 messages, 1 unread" in rows[original]
    assert all("1 message" in rows[uid] and "unread" not in rows[uid] for uid in others)
    listed = [int(u) for u in re.findall(r'<tr class="in-thread[^"]*">.*?uid=(\d+)"', page, re.S)]
    assert listed == [original, reply]
    assert re.search(rf'<tr class="in-thread unread">.*?uid={original}"', page, re.S)
