"""The spam filter in the real server, on by default: what a user sees over SMTP and IMAP.

A spam sent over SMTP lands in Junk with its X-Spam-* fields; moving it out of Junk over
IMAP teaches the server (ham for the classifier, the sender allowed), and the same sender's
next message lands in INBOX. Moving a message into Junk trains it as spam (``spam stats``).
"""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import time

from tests.e2e.conftest import PASSWORD, client_context, start_from_template
from tests.support.names import NamesServer

SPAMMY = (
    "From: Deals <deals@promo.invalid>\r\n"
    "Subject: CHEAP WATCHES BUY NOW!!!\r\n"
    "\r\n"
    "Buy now: cheap replica watches, lowest price, limited time!!!\r\n"
    "Click here: http://bit.ly/cheap-watches\r\n"
)
PLAIN = (
    "From: Carol <carol@friends.invalid>\r\n"
    "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    "Message-ID: <lunch-1@friends.invalid>\r\n"
    "Subject: lunch on friday\r\n"
    "\r\n"
    "Shall we meet at noon?\r\n"
)


def send(server, sender: str, message: str, port: str = "smtp") -> None:
    with smtplib.SMTP("127.0.0.1", server.ports[port], timeout=30) as s:
        s.sendmail(sender, ["alice@example.test"], message)


def login(server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login("alice@example.test", PASSWORD)
    return imap


def wait_for(imap: imaplib.IMAP4, subject: str) -> tuple[str, bytes, str]:
    """(mailbox, sequence number, header section) of the message with ``subject``."""
    for _ in range(80):
        for mailbox in ("INBOX", "Junk"):
            imap.select(mailbox)
            _typ, found = imap.search(None, "SUBJECT", f'"{subject}"')
            if found[0]:
                number = found[0].split()[-1]
                _typ, data = imap.fetch(number, "(BODY.PEEK[HEADER])")
                return mailbox, number, data[0][1].decode()
        time.sleep(0.1)
    raise AssertionError(f"{subject!r} was delivered neither to INBOX nor to Junk")


def wait_until(predicate, seconds: float = 30.0) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_plain_mail_is_tagged_and_lands_in_inbox(server):
    send(server, "carol@friends.invalid", PLAIN)
    imap = login(server)
    try:
        mailbox, _number, header = wait_for(imap, "lunch on friday")
    finally:
        imap.logout()
    assert mailbox == "INBOX"
    assert header.startswith("Return-Path: <carol@friends.invalid>\r\nX-Spam-Status: No, score=")
    assert "X-Spam-Score: " in header


def test_spam_lands_in_junk_and_moving_it_out_teaches_the_server(server):
    send(server, "deals@promo.invalid", SPAMMY)
    imap = login(server)
    try:
        mailbox, number, header = wait_for(imap, "CHEAP WATCHES BUY NOW")
        assert mailbox == "Junk"
        assert "X-Spam-Status: Yes, score=" in header
        assert "X-Spam-Flag: YES" in header
        assert "URL_SHORTENER" in header.split("X-Spam-Report:", 1)[1]

        typ, _data = imap.copy(number, "INBOX")  # the user says: not spam
        assert typ == "OK"
        imap.store(number, "+FLAGS", "\\Deleted")
        imap.expunge()
        wait_until(lambda: "ham" in server.cli("spam", "stats", "--user",
                                               "alice@example.test").stdout
                   and "allow deals@promo.invalid" in server.cli(
                       "spam", "stats", "--user", "alice@example.test").stdout)  # fmt: skip
        stats = server.cli("spam", "stats", "--user", "alice@example.test").stdout
        assert "learned: 0 spam, 1 ham" in stats

        send(server, "deals@promo.invalid", SPAMMY.replace("NOW!!!", "AGAIN!!!"))
        mailbox, _number, header = wait_for(imap, "CHEAP WATCHES BUY AGAIN")
        assert mailbox == "INBOX"
        assert "USER_ALLOWED" in header
    finally:
        imap.logout()


def test_moving_mail_into_junk_trains_it_as_spam_once(server):
    send(server, "carol@friends.invalid", PLAIN)
    imap = login(server)
    try:
        mailbox, number, _header = wait_for(imap, "lunch on friday")
        assert mailbox == "INBOX"
        imap.select("INBOX")
        assert imap.copy(number, "Junk")[0] == "OK"
        assert imap.copy(number, "Junk")[0] == "OK"  # the same message again: learned once
        imap.append("Junk", None, None, PLAIN.encode())  # and once more by APPEND
    finally:
        imap.logout()

    def learned() -> bool:
        out = server.cli("spam", "stats", "--user", "alice@example.test").stdout
        return "learned: 1 spam, 0 ham" in out

    wait_until(learned)
    time.sleep(0.5)  # the second copy and the APPEND, had they counted, would be in by now
    assert learned()


def test_submission_by_a_user_is_not_scored(server):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as s:
        s.starttls(context=client_context())
        s.login("bob@example.test", PASSWORD)
        s.sendmail("bob@example.test", ["alice@example.test"], SPAMMY.replace(
            "deals@promo.invalid", "bob@example.test").replace("CHEAP", "BOBS"))  # fmt: skip
    imap = login(server)
    try:
        mailbox, _number, header = wait_for(imap, "BOBS WATCHES")
    finally:
        imap.logout()
    assert mailbox == "INBOX"
    assert "X-Spam-Status" not in header


def test_uid_move_into_junk_trains_spam(server):
    send(server, "carol@friends.invalid", PLAIN.replace("lunch on friday", "move me"))
    imap = login(server)
    try:
        mailbox, _number, _header = wait_for(imap, "move me")
        assert mailbox == "INBOX"
        imap.select("INBOX")
        _typ, found = imap.uid("SEARCH", None, "SUBJECT", '"move me"')
        typ, _data = imap.uid("MOVE", found[0].split()[-1], "Junk")
        assert typ == "OK"
    finally:
        imap.logout()
    wait_until(
        lambda: (
            "learned: 1 spam, 0 ham"
            in server.cli("spam", "stats", "--user", "alice@example.test").stdout
        )
    )


@contextlib.contextmanager
def spam_filter_and_dns(server_template, tmp_path, settings: str, records):
    """A server whose only filter is the spam score with ``settings`` (and no classifier),
    asking the tests' DNS server, which holds ``records`` ((name, type, value) each)."""
    names = NamesServer(tmp_path).start()
    try:
        for record in records:
            names.add(*record)
        extra = (
            f'[relay]\nnameservers = ["{names.address}"]\n\n'
            '[filters]\nchain = ["spam"]\n\n[filters.settings.spam]\n'
            f"{settings}\nbayes = false\n"
        )
        server = start_from_template(server_template, str(tmp_path / "data"), extra)
        try:
            yield server
        finally:
            server.stop()
    finally:
        names.stop()


def test_mail_a_trusted_relay_hands_on_is_judged_by_the_client_before_it(server_template, tmp_path):
    """The real server, a message handed to it over loopback (as fetchmail or a front MX
    does) whose relay received it from a listed client without reverse DNS: to Junk, the
    report naming the relayed client's rules."""
    listed = [("7.2.0.192.bl.test", "A", "127.0.0.2")]
    settings = 'dnsbl = { "bl.test" = 4.0 }'
    with spam_filter_and_dns(server_template, tmp_path, settings, listed) as server:
        message = (
            "Received: from pc17 (unknown [192.0.2.7])\r\n\tby relay.lan (Postfix) with "
            "ESMTP id 4F1;\r\n\tMon, 07 Dec 2026 08:00:00 +0000\r\n"
            "From: a@sender.test\r\nTo: alice@example.test\r\nSubject: relayed\r\n"
            "Date: Mon, 07 Dec 2026 08:00:00 +0000\r\nMessage-ID: <r1@sender.test>\r\n"
            "\r\nhello\r\n"
        )
        send(server, "a@sender.test", message)
        imap = login(server)
        mailbox, _number, header = wait_for(imap, "relayed")
        imap.logout()
    assert mailbox == "Junk" and "X-Spam-Status: Yes" in header, header
    report = " ".join(header.split("X-Spam-Report:", 1)[1].split("\r\n\t"))
    for rule in ("DNSBL:bl.test", "RDNS_NONE", "HELO_NO_FQDN"):
        assert rule in report


def test_a_link_to_a_listed_domain_sends_the_message_to_junk(server_template, tmp_path):
    """The real server with a URI block list in the test DNS: a message whose link's domain
    the list names goes to Junk with the rule in its report; one linking elsewhere doesn't.
    The client is on loopback (no connection checks): links are checked whoever sends."""
    listed = [("spamvertised.test.dbl.test", "A", "127.0.1.2")]
    settings = 'uribl = { "dbl.test" = 6.0 }'
    with spam_filter_and_dns(server_template, tmp_path, settings, listed) as server:
        for subject, link in (
            ("linked offer", "http://www.shop.spamvertised.test/buy"),
            ("linked notes", "https://docs.fine.test/notes"),
        ):
            send(
                server,
                "a@sender.test",
                f"From: a@sender.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
                "Date: Mon, 07 Dec 2026 08:00:00 +0000\r\n"
                f"Message-ID: <{subject.replace(' ', '-')}@sender.test>\r\n"
                f"\r\nHave a look: {link}\r\n",
            )
        imap = login(server)
        offer = wait_for(imap, "linked offer")
        notes = wait_for(imap, "linked notes")
        imap.logout()
    assert offer[0] == "Junk", offer[2]
    report = " ".join(offer[2].split("X-Spam-Report:", 1)[1].split("\r\n\t"))
    assert "URIBL:dbl.test" in report and "spamvertised.test" in report
    assert notes[0] == "INBOX" and "URIBL" not in notes[2]
