"""IMAP extensions on the real server (twistd txmailhost) with imaplib, fed what a hostile
or careless client sends: APPEND dates that leave years 0001-9999 once moved to UTC."""

from __future__ import annotations

import imaplib

import pytest

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"
MSG = b"From: bob@example.test\r\nSubject: shared\r\n\r\nfor the team\r\n"


@pytest.mark.shared_server
@pytest.mark.parametrize("date", ["31-Dec-9999 23:59:59 -2359", "01-Jan-0001 00:00:00 +0001"])
def test_append_with_a_date_past_year_9999_or_before_year_1_in_utc_is_bad(server, date):
    """Stored, it came back as INTERNALDATE "01-Jan-10000 23:58:59 +0000" (or year 0000),
    which no client's date-time parser takes; it is refused, and nothing is stored."""
    imap = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    imap.login(ALICE, PASSWORD)
    imap.create("Dated")
    before = imap.status("Dated", "(MESSAGES UIDNEXT)")[1][0]
    with pytest.raises(imaplib.IMAP4.error, match="date-time out of range"):
        imap.append("Dated", None, f'"{date}"', MSG)
    assert imap.status("Dated", "(MESSAGES UIDNEXT)")[1][0] == before
    # the last second that has a date-time in +0000 is kept, and read back by imaplib
    typ, data = imap.append("Dated", None, '"31-Dec-9999 23:59:59 +0000"', MSG)
    assert typ == "OK", data
    imap.select("Dated")
    typ, data = imap.fetch("*", "(INTERNALDATE)")
    assert typ == "OK" and b'INTERNALDATE "31-Dec-9999 23:59:59 +0000"' in data[-1]
    assert imaplib.Internaldate2tuple(data[-1]).tm_year == 9999
    imap.logout()
