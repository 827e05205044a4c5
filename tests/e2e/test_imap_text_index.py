"""SEARCH with the full-text index on the real server, through imaplib: the same answers as
with ``[store] text_index = false``, mail appended or delivered a moment ago found, expunged
mail gone, and ``txmailhost index rebuild`` building it again."""

from __future__ import annotations

import base64
import imaplib
import os
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD, start_from_template

pytestmark = pytest.mark.slow
H = "127.0.0.1"
ALICE = "alice@example.test"
TEXT_INDEX = "txmailhost-text.sqlite"

MESSAGES = [
    b"From: Carol <carol@example.org>\r\nTo: alice@example.test\r\nSubject: picnic\r\n\r\n"
    b"Bring the zebracorn blanket.\r\n",
    b"From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.de>\r\nTo: alice@example.test\r\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("Die Straße ist nass.\n".encode()).replace(b"\n", b"\r\n"),
    b"From: shop@store.example\r\nTo: alice@example.test\r\nCc: bob@example.test\r\n"
    b"Subject: order\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
    b"<p>Order <b>shipped</b>&nbsp;today, zebra<i>corn</i> inside</p>\r\n",
]
QUERIES = [
    "TEXT zebracorn",
    "BODY zebracorn",
    'TEXT "shipped today"',
    "TEXT straße",
    "SUBJECT grüße",
    "FROM jürgen",
    "FROM carol@example",
    "CC bob@",
    "TO alice",
    "OR FROM carol TEXT nass",
    "NOT TEXT zebra",
    # Under the index's three characters: the scan answers. Not ASCII letters, which the
    # random hex queue ids in each server's Received: field may hold by chance.
    "TEXT ße",
]


def deliver(server, messages: list[bytes]) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        for message in messages:
            s.sendmail("x@remote.test", [ALICE], message)


def connect(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, server.ports["imap"])
    client.login(ALICE, PASSWORD)
    return client


def select_all(client: imaplib.IMAP4, count: int) -> None:
    deadline = time.time() + 10
    while True:
        typ, data = client.select("INBOX")
        if int(data[0]) >= count or time.time() > deadline:
            return
        client.close()
        time.sleep(0.1)


def uid_search(client: imaplib.IMAP4, query: str) -> list[int]:
    typ, data = client.uid("SEARCH", "CHARSET", "UTF-8", query.encode())
    assert typ == "OK", (query, data)
    return [int(uid) for uid in data[0].split()]


def answers(server) -> dict[str, object]:
    """Every query's UIDs, and SORT and THREAD over a string key (they share SEARCH's code)."""
    deliver(server, MESSAGES)
    client = connect(server)
    try:
        select_all(client, len(MESSAGES))
        found: dict[str, object] = {query: uid_search(client, query) for query in QUERIES}
        typ, data = client.uid("SORT", "(SUBJECT)", "UTF-8", "TEXT zebracorn")
        found["SORT"] = (typ, data)
        typ, data = client.uid("THREAD", "REFERENCES", "UTF-8", "OR TEXT zebracorn FROM juergen")
        found["THREAD"] = (typ, data)
        return found
    finally:
        client.logout()


def inbox_dir(server) -> str:
    return os.path.join(server.data_dir, "mail", "example.test", "alice")


def test_indexed_search_finds_decoded_text_and_matches_the_unindexed_server(
    server, server_template, tmp_path
):
    indexed = answers(server)
    assert indexed["TEXT zebracorn"] == [1, 3]  # the HTML one reduced to text
    assert indexed['TEXT "shipped today"'] == [3]
    assert indexed["TEXT straße"] == [2] and indexed["SUBJECT grüße"] == [2]
    assert indexed["FROM jürgen"] == [2] and indexed["CC bob@"] == [3]
    assert indexed["NOT TEXT zebra"] == [2]
    assert indexed["TEXT ße"] == [2]
    assert indexed["SORT"] == ("OK", [b"3 1"])
    assert indexed["THREAD"] == ("OK", [b"(1)(2)(3)"])
    assert os.path.exists(os.path.join(inbox_dir(server), TEXT_INDEX))

    plain = start_from_template(
        server_template, str(tmp_path / "plain"), "[store]\ntext_index = false\n"
    )
    try:
        assert answers(plain) == indexed
        assert not os.path.exists(os.path.join(inbox_dir(plain), TEXT_INDEX))
    finally:
        plain.stop()


def test_append_then_search_expunge_then_search_and_rebuild(server):
    deliver(server, MESSAGES)
    client = connect(server)
    try:
        select_all(client, len(MESSAGES))
        assert uid_search(client, "TEXT zebracorn") == [1, 3]  # builds the index
        message = b"From: dave@example.org\r\nSubject: later\r\n\r\nanother zebracorn\r\n"
        typ, data = client.append("INBOX", None, None, message)
        assert typ == "OK"
        assert uid_search(client, "TEXT zebracorn") == [1, 3, 4]
        assert uid_search(client, "FROM dave@") == [4]
        deliver(server, [b"Subject: by smtp\r\n\r\nzebracorn by mail\r\n"])
        select_all(client, 5)
        assert uid_search(client, "TEXT zebracorn") == [1, 3, 4, 5]
        client.uid("STORE", "1,4", "+FLAGS.SILENT", "(\\Deleted)")
        client.expunge()
        assert uid_search(client, "TEXT zebracorn") == [3, 5]
    finally:
        client.logout()

    index_file = os.path.join(inbox_dir(server), TEXT_INDEX)
    os.unlink(index_file)  # gone (or damaged): the next rebuild, or search, makes it again
    result = server.cli("index", "rebuild", ALICE, "INBOX")
    assert result.stdout == f"{ALICE} INBOX 3 text 3\n"
    assert os.path.exists(index_file)
    client = connect(server)
    try:
        client.select("INBOX")
        assert uid_search(client, "TEXT zebracorn") == [3, 5]
        assert uid_search(client, "BODY straße") == [2]
    finally:
        client.logout()
