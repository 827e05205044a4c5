"""The clamd filter in the real server, with a real clamd: an infected message sent over
SMTP is refused with the signature's name and never stored; a clean one is delivered tagged.
Skipped without clamd (tests/support/clamd.py)."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from tests.e2e.conftest import PASSWORD, start_from_template
from tests.support.clamd import TEST_STRING, running_clamd


@pytest.fixture
def scanning(server_template, tmp_path):
    with running_clamd() as socket:
        config = (
            f'[filters]\nchain = ["clamd", "spam"]\n[filters.settings.clamd]\nsocket = "{socket}"\n'
        )
        proc = start_from_template(server_template, str(tmp_path / "data"), config)
        try:
            yield proc
        finally:
            proc.stop()


def test_a_virus_is_refused_with_its_name_and_clean_mail_is_tagged(scanning):
    infected = "From: x@remote.test\r\nSubject: infected\r\n\r\n" + TEST_STRING.decode() + "\r\n"
    clean = "From: x@remote.test\r\nSubject: clean\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", scanning.ports["smtp"], timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("x@remote.test", ["alice@example.test"], infected)
        assert refused.value.smtp_code == 554  # "transaction failed" (RFC 5321 4.2.3)
        assert refused.value.smtp_error.startswith(b"5.7.1 virus found: Txmailhost.Test.String")
        assert s.sendmail("x@remote.test", ["alice@example.test"], clean) == {}
    imap = imaplib.IMAP4("127.0.0.1", scanning.ports["imap"], timeout=30)
    try:
        imap.login("alice@example.test", PASSWORD)
        imap.select("INBOX")
        assert imap.search(None, "SUBJECT", "infected")[1] == [b""]
        _typ, found = imap.search(None, "SUBJECT", "clean")
        _typ, data = imap.fetch(found[0].split()[-1], "(BODY.PEEK[HEADER])")
        assert b"X-Virus-Scanned: clamd on " in data[0][1]
    finally:
        imap.logout()
