"""A content filter configured by path in ``[filters]`` runs in the real server: each verdict
seen by a real SMTP client, the results read back over IMAP (docs/filters.rst)."""

from __future__ import annotations

import imaplib
import os
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import ServerProcess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = """
[filters]
chain = ["tests.filters.example:ExampleFilter"]
timeout = 1
[filters.settings."tests.filters.example:ExampleFilter"]
sleep = 3
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # The example filter lives in the tests package: let the server import it.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ROOT + (os.pathsep + old if old else "")
    try:
        proc = ServerProcess(str(tmp_path_factory.mktemp("filters") / "data"), CONFIG).start()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    proc.add_user("alice@example.test", PASSWORD)
    yield proc
    proc.stop()


def send(server, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], f"Subject: {subject}\r\n\r\nhi\r\n")


def fetch(server, mailbox: str, subject: str) -> bytes | None:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    try:
        imap.login("alice@example.test", PASSWORD)
        for _ in range(20):
            imap.select(mailbox)
            _typ, found = imap.search(None, "SUBJECT", subject)
            if found[0]:
                _typ, data = imap.fetch(found[0].split()[-1], "(RFC822)")
                return data[0][1]
            time.sleep(0.1)
        return None
    finally:
        imap.logout()


def test_an_accepted_message_carries_the_filters_header_on_top(server):
    send(server, "e2e-plain")
    stored = fetch(server, "INBOX", "e2e-plain")
    assert stored is not None
    # on top, below only our Return-Path (RFC 5321 4.4: the final delivery's, first)
    first, second, _ = stored.split(b"\r\n", 2)
    assert first.startswith(b"Return-Path: <") and second.startswith(b"X-Example-Filter: checked ")


def test_tempfail_and_reject_reach_the_client_with_their_reasons(server):
    with pytest.raises(smtplib.SMTPDataError) as tempfail:
        send(server, "tempfail-me")
    assert (tempfail.value.smtp_code, tempfail.value.smtp_error) == (
        451,
        b"4.7.1 example: try again later",
    )
    with pytest.raises(smtplib.SMTPDataError) as reject:
        send(server, "reject-me")
    assert (reject.value.smtp_code, reject.value.smtp_error) == (550, b"5.7.1 example: no thanks")
    assert fetch(server, "INBOX", "reject-me") is None


def test_junk_lands_in_the_junk_folder(server):
    send(server, "junk-me")
    assert fetch(server, "Junk", "junk-me") is not None
    assert fetch(server, "INBOX", "junk-me") is None


def test_a_filter_over_its_time_budget_tempfails_and_is_logged(server):
    with pytest.raises(smtplib.SMTPDataError) as slow:
        send(server, "slow-me")
    assert slow.value.smtp_code == 451
    assert "filters: example failed at data" in server.log()
