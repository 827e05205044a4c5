"""docs/examples/embed.py, the program docs/embedding.rst shows, run as an application would.

It serves SMTP and IMAP with its own realm and checker; the test starts it on ephemeral
loopback ports, sends with smtplib and reads back with imaplib.
"""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLE = os.path.join(ROOT, "docs", "examples", "embed.py")
PASSWORD = "correct horse battery staple"  # the example's own user table

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(tmp_path):
    loopback = "tcp:0:interface=127.0.0.1"
    process = subprocess.Popen(
        [sys.executable, EXAMPLE, str(tmp_path / "app"), loopback, loopback],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ports: dict[str, int] = {}
    try:
        while len(ports) < 2:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"the example exited: {process.wait()}")
            if m := re.match(r"(\w+) listening on port (\d+)", line):
                ports[m[1]] = int(m[2])
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_embedded_smtp_delivers_and_embedded_imap_serves_it(embedded):
    with smtplib.SMTP("127.0.0.1", embedded["smtp"], timeout=10) as s:
        s.sendmail(
            "someone@remote.test",
            ["alice@example.test"],
            "From: someone@remote.test\r\nSubject: embedded\r\n\r\nHi Alice!\r\n",
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused) as unknown:
            s.sendmail("someone@remote.test", ["nobody@example.test"], "Subject: x\r\n\r\nx\r\n")
        assert unknown.value.recipients["nobody@example.test"][0] == 550
        with pytest.raises(smtplib.SMTPRecipientsRefused) as relay:
            s.sendmail("someone@remote.test", ["carol@elsewhere.test"], "Subject: x\r\n\r\nx\r\n")
        assert relay.value.recipients["carol@elsewhere.test"][0] == 550

    imap = imaplib.IMAP4("127.0.0.1", embedded["imap"], timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@example.test", "wrong")
    imap = imaplib.IMAP4("127.0.0.1", embedded["imap"], timeout=10)
    imap.login("alice@example.test", PASSWORD)
    assert imap.select("INBOX") == ("OK", [b"1"])
    status, data = imap.fetch("1", "(BODY[])")
    assert status == "OK"
    assert b"Subject: embedded\r\n" in data[0][1] and b"Hi Alice!" in data[0][1]
    imap.logout()


def _python_block(text: str) -> str:
    """The first ``.. code-block:: python`` of an rst text, unindented."""
    block = []
    for line in text.split("\n.. code-block:: python\n", 1)[1].splitlines():
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip()


def test_embedding_guide_shows_the_program_the_test_runs():
    """docs/embedding.rst quotes docs/examples/embed.py whole, so the guide can't go stale."""
    with open(EXAMPLE) as f:
        program = f.read()
    with open(os.path.join(ROOT, "docs", "embedding.rst")) as f:
        guide = f.read()
    assert _python_block(guide) == program.strip()
