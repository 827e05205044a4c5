"""``[store] max_mailboxes``: a user can't make the server hold any number of folders, over
IMAP or the webmail; the administrator's CLI can."""

from __future__ import annotations

import imaplib

from tests.e2e.conftest import PASSWORD, start_from_template
from tests.support.web import Browser

ALICE = "alice@example.test"
CONFIG = """
[store]
max_mailboxes = 7
"""


def test_create_past_the_limit_is_no_limit_and_creates_nothing(server_template, tmp_path):
    server = start_from_template(server_template, str(tmp_path / "data"), CONFIG)
    try:
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        imap.login(ALICE, PASSWORD)
        assert imap.create("one")[0] == "OK"  # INBOX, the 4 default folders, one
        typ, data = imap.create("two/deep/er")  # the superiors past the limit stay implied
        assert typ == "OK", data
        typ, data = imap.create("three")
        assert typ == "NO" and data[0].startswith(b"[LIMIT]"), data
        _typ, listed = imap.list()
        names = b"\n".join(listed)
        assert b'"three"' not in names and b"three" not in names
        assert imap.delete("one")[0] == "OK"
        assert imap.create("three")[0] == "OK"  # room again
        imap.logout()

        browser = Browser(server.ports["web"])
        fields = browser.get("/login").form("/login")
        fields.update(username=ALICE, password=PASSWORD)
        assert browser.post("/login", fields).status == 200
        page = browser.post("/folders/create", {"csrf": browser.csrf, "name": "four"})
        assert page.status == 400 and "No more folders can be made" in page.text

        server.cli("mailbox", "create", ALICE, "four")  # the administrator: no limit
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        imap.login(ALICE, PASSWORD)
        assert b"four" in b"\n".join(imap.list()[1])
        imap.logout()
    finally:
        server.stop()
