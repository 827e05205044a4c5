"""Interop with a real Postfix (Debian's), both ways, on loopback: SMTPUTF8, DSN and CHUNKING.

A private Postfix instance (``bench/anchors/postfix.py``: its own config, queue and Maildirs in
a temporary directory, never the system's) owns bench.test and sends everything else to our
server (``relayhost``); our server finds bench.test's MX on the test DNS server and relays
to that Postfix. So each side's delivery reports travel back through the other. Skipped
without Postfix or without root (its master must start as root).
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from bench.anchors import postfix as postfix_anchor
from tests.e2e.conftest import PASSWORD, client_context
from tests.e2e.test_relay import inbox, wait_for
from tests.support.dns import DNSServer
from tests.support.pebble import free_port
from tests.support.server import ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postfix_anchor.unavailable() is not None, reason=str(postfix_anchor.unavailable())
    ),
]


def _maildir_messages(maildir: Path) -> list[bytes]:
    found = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            found += [p.read_bytes() for p in sorted(folder.iterdir())]
    return found


@pytest.fixture
def pair(tmp_path):
    """(our server, Postfix's Server, Postfix's log path, bench.test's Maildir root)."""
    # Postfix's unprivileged daemons must traverse the directory: not pytest's 0700 tmp_path.
    workdir = Path(tempfile.mkdtemp(prefix="txmailhost-postfix-"))
    workdir.chmod(0o755)
    dns = DNSServer().start()
    our_port = free_port()
    try:
        settings = {
            "relayhost": f"[127.0.0.1]:{our_port}",
            "smtp_tls_security_level": "may",  # our self-signed certificate: encrypt, unchecked
            "smtputf8_enable": "yes",
        }
        with postfix_anchor.running(workdir, settings=settings) as postfix:
            dns.add("bench.test", "MX", "10 mx.bench.test.")
            dns.add("mx.bench.test", "A", "127.0.0.1")
            ours = ServerProcess(
                str(tmp_path / "ours"),
                extra_config=(
                    f'[relay]\nnameservers = ["{dns.address}"]\ndns_timeout = 2\n'
                    f"port = {postfix.smtp_port}\n"
                ),
            )
            ours.write_config()
            config = Path(ours.data_dir, "txmailhost.toml")
            config.write_text(
                re.sub(
                    r'^smtp = ".*"$',
                    f'smtp = "tcp:{our_port}:interface=127.0.0.1"',
                    config.read_text(),
                    flags=re.M,
                )
            )
            ours.start()
            try:
                ours.add_user("alice@example.test", PASSWORD)
                yield ours, postfix, workdir / "postfix.log", workdir / "mail" / "bench.test"
            finally:
                ours.stop()
    finally:
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _our_mailbox(ours: ServerProcess, subject: bytes) -> list[bytes]:
    """Messages with ``subject`` in any Maildir of example.test on our side."""
    root = Path(ours.data_dir, "mail", "example.test")
    files = [p for p in root.rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]
    return [m for p in files if subject in (m := p.read_bytes())]


def test_postfix_relays_smtputf8_and_dsn_to_us_and_gets_our_success_report(pair):
    ours, postfix, _, bench = pair
    ours.add_user("jörg@example.test", PASSWORD)  # a UTF-8 mailbox on our side
    postfix.add_user("joerg@bench.test")
    text = "From: Jörg <joerg@bench.test>\r\nSubject: über Postfix\r\n\r\nGrüße\r\n".encode()
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        refused = s.sendmail(
            "joerg@bench.test",
            ["jörg@example.test"],
            text,
            ["SMTPUTF8", "RET=HDRS", "ENVID=pf-env-1"],
            ["NOTIFY=SUCCESS"],
        )
        assert refused == {}
    [stored] = wait_for(lambda: _our_mailbox(ours, "Subject: über Postfix".encode()), timeout=60)
    assert "Subject: über Postfix".encode() in stored
    assert b"with UTF8SMTPS" in stored  # Postfix -> us: SMTPUTF8 over STARTTLS
    # Postfix passed NOTIFY=SUCCESS on (we offer DSN), so our delivery report goes back to
    # joerg through Postfix, with the ENVID Postfix carried.
    [report] = wait_for(lambda: _maildir_messages(bench / "joerg"), timeout=60)
    assert b"Action: delivered" in report
    assert b"Original-Envelope-Id: pf-env-1" in report


def test_we_relay_to_postfix_with_bdat_smtputf8_and_dsn(pair):
    ours, postfix, log, bench = pair
    postfix.add_user("bob@bench.test")
    text = "From: alice@example.test\r\nSubject: hin zu Postfix ✓\r\n\r\nGrüße\r\n".encode()
    with smtplib.SMTP("127.0.0.1", ours.ports["submission"], timeout=30) as s:
        s.starttls(context=client_context())
        s.login("alice@example.test", PASSWORD)
        refused = s.sendmail(
            "alice@example.test",
            ["bob@bench.test"],
            text,
            ["SMTPUTF8", "ENVID=our-env-1"],
            ["NOTIFY=SUCCESS"],
        )
        assert refused == {}
    [stored] = wait_for(lambda: _maildir_messages(bench / "bob"), timeout=60)
    assert "Subject: hin zu Postfix ✓".encode() in stored
    assert b"with UTF8SMTP id" in stored  # Postfix's Received: SMTPUTF8 was used (RFC 6531 4.3)

    # Postfix logs the commands of each session when it ends (ours after the connection
    # reuse idle time): ours came as BDAT, not DATA.
    def our_session() -> list[str]:
        return [
            line
            for line in log.read_text().splitlines()
            if "disconnect from" in line and "bdat=1" in line
        ]

    [session] = wait_for(our_session, timeout=60)
    assert " data=" not in session
    # We passed NOTIFY=SUCCESS and ENVID on; Postfix reports the delivery to alice itself.
    reports = wait_for(
        lambda: [m for m in inbox(ours, "alice@example.test") if b"delivery-status" in m],
        timeout=60,
    )
    assert b"Original-Envelope-Id: our-env-1" in reports[0]
    assert os.path.exists(log)
