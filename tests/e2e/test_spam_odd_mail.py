"""Odd but deliverable mail through the real server's default filters, its classifier
trained (so the tokenizer runs too): each message is answered 250 and lands in alice's
mailbox. The spam check failed on each before (an exception, or past its 30 s budget), and a
failed check is ``451 4.7.1 content check unavailable`` on every retry: the sender's server
retries for days, then bounces."""

from __future__ import annotations

import smtplib

import pytest

from tests.e2e.test_spam import PLAIN, SPAMMY, login, wait_for

pytestmark = pytest.mark.shared_server


@pytest.fixture(scope="module")
def trained(shared_server, tmp_path_factory):
    """The module's server with its global classifier trained (20 spam, 20 ham: enough to
    judge), so scoring a message makes its tokens."""
    spam, ham = tmp_path_factory.mktemp("spam"), tmp_path_factory.mktemp("ham")
    for n in range(20):
        (spam / f"{n}.eml").write_text(SPAMMY.replace("NOW!!!", f"NOW {n}!!!"))
        (ham / f"{n}.eml").write_text(PLAIN.replace("lunch-1", f"lunch-{n}"))
    done = shared_server.cli("spam", "train", "--spam", str(spam), "--ham", str(ham))
    assert done.returncode == 0, done.stderr
    return shared_server


def _with_attachment(subject: str, part_fields: bytes) -> bytes:
    return (
        b"From: Ivan <ivan@remote.test>\r\nTo: alice@example.test\r\nSubject: "
        + subject.encode()
        + b"\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\nMessage-ID: <"
        + subject.replace(" ", "-").encode()
        + b'@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nthe report is attached\r\n"
        b"--b1\r\n" + part_fields + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQK\r\n--b1--\r\n"
    )


def _plain(subject: str, fields: bytes, body: bytes = b"hello\r\n") -> bytes:
    return (
        fields + b"\r\nTo: alice@example.test\r\nSubject: " + subject.encode()
        + b"\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\nMessage-ID: <"
        + subject.replace(" ", "-").encode() + b"@remote.test>\r\n\r\n" + body
    )  # fmt: skip


MESSAGES = {
    "rfc2231 utf-8 name": _with_attachment(
        "report rfc2231",
        b"Content-Type: application/pdf; name*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82.pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82.pdf",
    ),
    "rfc2231 euro": _with_attachment(
        "report euro",
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf",
    ),
    "rfc2231 CJK name only": _with_attachment(
        "report cjk", b"Content-Type: application/pdf; name*=utf-8''%E6%97%A5.pdf"
    ),
    "rfc2231 right-to-left override": _with_attachment(
        "report rlo", b"Content-Type: application/pdf; name*=utf-8''%E2%80%AEfdp.txt"
    ),
    "rfc2231 continuations": _with_attachment(
        "report continued",
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
        b"filename*0*=utf-8''%E6%97; filename*1*=%A5.pdf",
    ),
    "raw 8-bit filename": _with_attachment(
        "report raw",
        b"Content-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="\xd0\x9e\xd1\x82\xd1\x87.pdf"',
    ),
    "encoded word in a charset that is no text codec": _plain(
        "ew base64 charset", b"From: =?base64?q?Ivan?= <ivan@remote.test>"
    ),
    "nested comments in From": _plain(
        "nested comments", b"From: " + b"(" * 500 + b"x" + b")" * 500 + b" <a@remote.test>"
    ),
    "unbalanced comments in From": _plain(
        "unbalanced comments", b"From: " + b"(" * 500 + b"<a@remote.test>"
    ),
    "a link whose text is 64 KiB of labels": _plain(
        "long link text",
        b"From: a@remote.test\r\nContent-Type: text/html",
        b'<p><a href="http://x.test/">' + b"a." * 32768 + b"</a></p>\r\n",
    ),
    "a long run of digits with a dollar sign": _plain(
        "long digits", b"From: a@remote.test", b"$x " + b"1" * 200_000 + b"\r\n"
    ),
}


@pytest.mark.parametrize("name", MESSAGES)
def test_odd_mail_is_accepted_and_delivered(server, trained, name):
    message = MESSAGES[name]
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=120) as smtp:
        smtp.ehlo("client.remote.test")
        refused = smtp.sendmail(
            "ivan@remote.test", ["alice@example.test"], message, mail_options=["BODY=8BITMIME"]
        )  # raises for anything but 250 (451 before)
    assert refused == {}
    subject = message.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0].decode()
    imap = login(server)
    try:
        mailbox, _number, header = wait_for(imap, subject)
    finally:
        imap.logout()
    assert mailbox in ("INBOX", "Junk")
    assert " bayes=" in header.split("X-Spam-Status: ", 1)[1]  # scored, the classifier too
    if name.startswith(("rfc2231", "raw")):
        assert mailbox == "INBOX"
