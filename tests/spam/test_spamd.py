"""The spamd filter against Debian's real spamd (SpamAssassin, stock rules, no network
tests), started here on a free loopback port; skipped without spamd. GTUBE is
SpamAssassin's test string, as EICAR is ClamAV's."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from tests.support.fake_engine import fake_engine, read_until_eof, trickle
from txmailhost.filters.interfaces import ACCEPT, Action, Client, Transaction
from txmailhost.spam.spamd import SpamdFilter

SPAMD = shutil.which("spamd") or ("/usr/sbin/spamd" if os.path.exists("/usr/sbin/spamd") else None)
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*" + b"GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
HAM = (
    b"From: carol@example.org\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <lunch-1@example.org>\r\nSubject: lunch\r\n\r\nShall we meet at noon?\r\n"
)
OUTSIDE = Client("192.0.2.1", listener="smtp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def spamd_port():
    if SPAMD is None:
        pytest.skip("spamd is not installed (Debian: spamd)")
    port = free_port()
    home = tempfile.mkdtemp(prefix="txm-spamd-", dir="/tmp")
    log = open(os.path.join(home, "log"), "wb")  # noqa: SIM115 - closed below
    argv = [SPAMD, f"--listen=127.0.0.1:{port}", "--local", "--nouser-config",
            "--max-children=1", "--min-children=1", f"--pidfile={home}/pid", "--syslog=stderr"]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--username=nobody")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.skip("spamd did not start")
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def judge(f: SpamdFilter, message: bytes, client: Client = OUTSIDE):
    return f.end_of_data(client, Transaction("a@example.org", ("b@example.test",), "Q1"),
                         io.BytesIO(message))  # fmt: skip


def test_spamd_spam_goes_to_junk_with_its_rules(spamd_port):
    verdict = judge(SpamdFilter(socket=f"tcp:127.0.0.1:{spamd_port}", timeout=60), HAM + GTUBE)
    assert verdict.action is Action.JUNK
    ((name, value),) = verdict.headers
    assert name == "X-Spamd-Status" and value.startswith("Yes, score=") and "GTUBE" in value


def test_spamd_ham_is_tagged_and_accepted(spamd_port):
    verdict = judge(SpamdFilter(socket=f"tcp:127.0.0.1:{spamd_port}", timeout=60), HAM)
    assert verdict.action is Action.ACCEPT
    assert verdict.headers[0][1].startswith("No, score=")


def test_spamd_reject_score(spamd_port):
    f = SpamdFilter(socket=f"tcp:127.0.0.1:{spamd_port}", timeout=60, reject_score=100)
    assert judge(f, HAM + GTUBE).action is Action.REJECT


def test_spamd_down_is_skipped_and_counted():
    f = SpamdFilter(socket=f"tcp:127.0.0.1:{free_port()}", timeout=2)
    assert judge(f, HAM) == ACCEPT
    assert f.failures == 1


def test_authenticated_mail_is_not_sent_to_spamd():
    f = SpamdFilter(socket=f"tcp:127.0.0.1:{free_port()}", timeout=2)
    judge(f, HAM, Client("192.0.2.1", listener="smtp", authenticated_as="bob@example.test"))
    assert f.failures == 0


SPAMD_REPLY = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 15.0 / 5.0\r\n\r\nGTUBE,XYZ"


def test_a_spamd_trickling_its_answer_is_given_up_on_within_the_timeout():
    """``timeout`` is for the whole exchange, not for each octet of spamd's reply."""
    with fake_engine(read_until_eof, lambda conn: trickle(conn, SPAMD_REPLY, 0.2)) as (path, _):
        f = SpamdFilter(socket=path, timeout=1)
        started = time.monotonic()
        verdict = judge(f, HAM)
        took = time.monotonic() - started
    assert verdict == ACCEPT and f.failures == 1
    assert took < 3


def test_a_spamd_score_that_is_no_number_is_a_failure_not_a_tempfail():
    garbage = b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.2.3 / 5.0\r\n\r\nX"
    with fake_engine(read_until_eof, lambda conn: conn.sendall(garbage)) as (path, _):
        f = SpamdFilter(socket=path, timeout=5)
        verdict = judge(f, HAM)
    assert verdict == ACCEPT and f.failures == 1


def test_an_smtputf8_recipient_is_sent_to_spamd_as_utf8():
    """With ``per_user``, a recipient like ``jörg@…`` made the request fail to encode (as
    ASCII): its mail got 451 at every attempt and was never delivered."""
    with fake_engine(read_until_eof, lambda conn: conn.sendall(SPAMD_REPLY)) as (path, asked):
        f = SpamdFilter(socket=path, timeout=5, per_user=True)
        transaction = Transaction("a@example.org", ("Jörg@example.test",), "Q1")
        verdict = f.end_of_data(OUTSIDE, transaction, io.BytesIO(HAM))
    assert verdict.action is Action.JUNK and f.failures == 0
    assert "User: jörg@example.test\r\n".encode() in asked[0]


FORGED = b"X-Spamd-Status: No, score=-10.0 required=5.0 tests=ALL_TRUSTED\r\n" + HAM


def test_the_senders_own_x_spamd_status_is_removed_and_spamd_sees_the_whole_message():
    with fake_engine(read_until_eof, lambda conn: conn.sendall(SPAMD_REPLY)) as (path, asked):
        verdict = judge(SpamdFilter(socket=path, timeout=5), FORGED)
    assert verdict.action is Action.JUNK
    assert verdict.remove == (("X-Spamd-Status", 1),)
    assert asked[0].endswith(b"\r\n\r\n" + FORGED)  # read for the header, then sent whole


def test_a_forged_x_spamd_status_is_removed_when_spamd_is_down_too():
    """With spamd down the sender's field was the only one: a mail rule reading it took a
    spammer's "No, score=-10.0" as spamd's word."""
    with fake_engine(read_until_eof, lambda conn: None) as (path, _asked):
        f = SpamdFilter(socket=path, timeout=5)
        verdict = judge(f, FORGED)
    assert f.failures == 1
    assert verdict.action is Action.ACCEPT and verdict.remove == (("X-Spamd-Status", 1),)
