"""A message submitted without Date: or Message-ID: (a script, ``mail``) is completed by the
submission server (RFC 6409 8.2, 8.3) before it is DKIM-signed, so the signature covers them."""

from __future__ import annotations

import imaplib
import re
import smtplib
import time

import dkim

from tests.e2e.conftest import PASSWORD, client_context, start_signing

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"


def _bob_inbox(server) -> list[bytes]:
    client = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    client.login(BOB, PASSWORD)
    try:
        client.select("INBOX", readonly=True)
        _typ, data = client.fetch("1:*", "(BODY.PEEK[])")
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        client.logout()


def test_a_bare_submission_is_completed_then_signed_over_its_date_and_message_id(
    server_template, tmp_path
):
    server = start_signing(server_template, str(tmp_path / "data"))
    try:
        with smtplib.SMTP(H, server.ports["submission"], timeout=10) as client:
            client.starttls(context=client_context())
            client.login(ALICE, PASSWORD)
            client.sendmail(
                ALICE, [BOB], b"From: alice@example.test\r\nSubject: bare\r\n\r\nhi\r\n"
            )
        deadline = time.monotonic() + 10
        while not (found := _bob_inbox(server)) and time.monotonic() < deadline:
            time.sleep(0.2)
        [stored] = found
        header = stored.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
        assert len(re.findall(rb"(?im)^date: ", header)) == 1, header
        assert len(re.findall(rb"(?im)^message-id: <[^@>]+@", header)) == 1, header
        assert len(re.findall(rb"(?im)^dkim-signature: ", header)) == 2, header
        # Both signatures verify over the message as delivered: made after the fields were
        # added (a signature made before would break on them, Date and Message-ID being
        # oversigned). The keys, from what ``txmailhost dns`` says to publish:
        records = {}
        for line in server.cli("dns", "example.test").stdout.splitlines():
            fields = line.split(None, 4)
            if len(fields) == 5 and fields[3] == "TXT" and "._domainkey." in fields[0]:
                records[fields[0].encode()] = "".join(fields[4].split('"')[1::2]).encode()
        checker = dkim.DKIM(stored)
        for index in range(2):
            assert checker.verify(idx=index, dnsfunc=lambda name, timeout=5: records[name]), (
                index,
                checker.signature_fields,
            )
    finally:
        server.stop()
