"""An attacker's failed logins never lock the rightful user out (DESIGN invariant 6), and a
password changed with the CLI stops working at once, against the real server."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
import threading

import pytest

from tests.e2e.conftest import PASSWORD, client_context, start_from_template
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow
H = "127.0.0.1"
BOB = "bob@example.test"


def _auth_plain(port: int, source: str, user: str, password: str) -> int:
    """One AUTH PLAIN over submission after STARTTLS from ``source``; the reply code."""
    with smtplib.SMTP(H, port, timeout=60, source_address=(source, 0)) as s:
        s.ehlo()
        s.starttls(context=client_context())
        s.ehlo()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return s.docmd("AUTH", "PLAIN " + token)[0]


class _IMAP(imaplib.IMAP4):
    """imaplib's client, connecting from a chosen loopback address."""

    def __init__(self, port: int, source: str) -> None:
        self._source = source
        super().__init__(H, port, timeout=60)

    def _create_socket(self, timeout):
        return socket.create_connection((H, self.port), timeout, source_address=(self._source, 0))


class _POP3(poplib.POP3):
    """poplib's client, connecting from a chosen loopback address."""

    def __init__(self, port: int, source: str) -> None:
        self._source = source
        super().__init__(H, port, timeout=60)

    def _create_socket(self, timeout):
        return socket.create_connection((H, self.port), timeout, source_address=(self._source, 0))


def _imap_login(port: int, source: str, user: str, password: str) -> None:
    imap = _IMAP(port, source)
    imap.starttls(ssl_context=client_context())
    try:
        imap.login(user, password)
    finally:
        imap.logout()


def _pop3_login(port: int, source: str, user: str, password: str) -> None:
    pop = _POP3(port, source)
    pop.stls(context=client_context())
    try:
        pop.user(user)
        pop.pass_(password)
    finally:
        pop.quit()


@pytest.fixture
def attacked(tmp_path, server_template):
    """A server whose account bob is under attack from 127.0.0.61..64 (limit: 4 failures)."""
    server = start_from_template(
        server_template,
        str(tmp_path / "data"),
        "[security]\nlogin_failures_per_ip = 10\nlogin_failures_per_account = 4\n",
    )
    port = server.ports["submission"]
    codes: list[int] = []

    def attacker(i: int) -> None:
        for n in range(2):
            codes.append(_auth_plain(port, f"127.0.0.{61 + i}", BOB, f"wrong-{i}-{n}"))

    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert codes and all(code in (535, 454) for code in codes)
    yield server
    server.stop()


def test_attackers_own_addresses_are_refused_even_with_the_right_password(attacked):
    assert _auth_plain(attacked.ports["submission"], "127.0.0.61", BOB, PASSWORD) == 454
    assert "account under attack" in attacked.log()


def test_rightful_user_logs_in_over_every_protocol_while_the_account_is_attacked(attacked):
    assert _auth_plain(attacked.ports["submission"], "127.0.0.9", BOB, PASSWORD) == 235
    _imap_login(attacked.ports["imap"], "127.0.0.9", BOB, PASSWORD)
    _pop3_login(attacked.ports["pop3"], "127.0.0.10", BOB, PASSWORD)


def _slow_hash(password: str) -> str:
    """A valid scrypt hash of ``password`` that takes about a second to verify (p=24)."""
    import hashlib
    import os

    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=24, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"$scrypt$ln=14,r=8,p=24${b64(salt)}${b64(digest)}"


def _timed_imap_login(port: int, password: str) -> float:
    import time

    imap = imaplib.IMAP4(H, port, timeout=60)
    try:
        started = time.perf_counter()
        imap.login(BOB, password)
        return time.perf_counter() - started
    finally:
        imap.logout()


def test_relogin_skips_the_hash_and_a_cli_password_change_ends_it_at_once(tmp_path):
    import sqlite3

    server = ServerProcess(str(tmp_path / "data")).start()
    try:
        server.add_user(BOB, PASSWORD)
        with sqlite3.connect(f"{server.data_dir}/accounts.sqlite") as db:
            db.execute("UPDATE users SET password_hash = ? WHERE address = ?",
                       (_slow_hash(PASSWORD), BOB))  # fmt: skip
        port = server.ports["imap"]
        first = _timed_imap_login(port, PASSWORD)
        again = [_timed_imap_login(port, PASSWORD) for _ in range(3)]
        assert first > 0.5 and max(again) < first / 3, (first, again)
        server.cli("user", "passwd", BOB, "--password-file", "-", stdin="a-new-passphrase\n")
        with pytest.raises(imaplib.IMAP4.error):
            _timed_imap_login(port, PASSWORD)
        _timed_imap_login(port, "a-new-passphrase")
    finally:
        server.stop()
