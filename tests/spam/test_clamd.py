"""The clamd filter against Debian's real clamd, with a signature database made here (clamd
can't download one offline): a test string and the EICAR test file. Skipped without clamd.
The unavailable paths (no socket, a socket that closes) need no clamd."""

from __future__ import annotations

import base64
import io
import os
import socket
import tempfile
import threading
import time

import pytest

from tests.support.clamd import EICAR, TEST_STRING, running_clamd
from tests.support.fake_engine import fake_engine, read_instream, trickle
from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.filters.registry import FilterHost
from txmailhost.spam.clamd import ClamdFilter, parse_endpoint

CLIENT = Client("192.0.2.1", listener="smtp")
CLEAN = b"From: a@example.org\r\nSubject: hello\r\n\r\nnothing to see\r\n"


@pytest.fixture(scope="module")
def clamd_socket():
    with running_clamd() as path:
        yield path


def scan(f: ClamdFilter, message: bytes):
    return f.end_of_data(CLIENT, Transaction("a@example.org", ("b@example.test",), "Q1"),
                         io.BytesIO(message))  # fmt: skip


def make(path: str, **settings) -> ClamdFilter:
    return ClamdFilter(host=FilterHost("/nonexistent", "mx.example.test"), socket=path, **settings)


def test_a_clean_message_is_accepted_and_tagged(clamd_socket):
    verdict = scan(make(clamd_socket), CLEAN)
    assert verdict.action is Action.ACCEPT
    assert verdict.headers == (("X-Virus-Scanned", "clamd on mx.example.test"),)


def test_a_signature_match_is_refused_with_its_name(clamd_socket):
    verdict = scan(make(clamd_socket), CLEAN + TEST_STRING + b"\r\n")
    assert verdict.action is Action.REJECT and verdict.code == 554
    assert verdict.reason.startswith("virus found: Txmailhost.Test.String")


def test_eicar_in_a_base64_attachment_is_found(clamd_socket):
    message = (
        b"From: a@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b'Content-Type: application/octet-stream; name="eicar.com"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(EICAR) + b"\r\n--b--\r\n"
    )
    verdict = scan(make(clamd_socket), message)
    assert verdict.action is Action.REJECT and "Txmailhost.Test.EICAR" in verdict.reason


def test_a_message_larger_than_the_limit_is_streamed_up_to_it(clamd_socket):
    big = CLEAN + (b"y" * 1022 + b"\r\n") * (30 * 1024)  # 30 MiB, more than StreamMaxLength
    assert scan(make(clamd_socket), big).action is Action.ACCEPT


def test_clamd_down_is_a_tempfail_or_a_tag():
    missing = os.path.join(tempfile.gettempdir(), "txm-no-such-clamd.sock")
    verdict = scan(make(missing), CLEAN)
    assert verdict.action is Action.TEMPFAIL and "unavailable" in verdict.reason
    tagged = scan(make(missing, on_unavailable="tag"), CLEAN)
    assert tagged.action is Action.ACCEPT
    assert tagged.headers == (("X-Virus-Scanned", "unavailable"),)


def test_a_clamd_that_hangs_up_is_unavailable(tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.sendall(b"INSTREAM size limit exceeded. ERROR\0")
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    port = listener.getsockname()[1]
    try:
        verdict = scan(make(f"tcp:127.0.0.1:{port}", timeout=5), CLEAN)
    finally:
        listener.close()
    assert verdict.action is Action.TEMPFAIL


def test_socket_descriptions():
    assert parse_endpoint("/run/clamav/clamd.ctl") == (socket.AF_UNIX, "/run/clamav/clamd.ctl")
    assert parse_endpoint("tcp:127.0.0.1:3310") == (socket.AF_INET, ("127.0.0.1", 3310))
    assert parse_endpoint("tcp:[::1]:3310") == (socket.AF_INET6, ("::1", 3310))
    with pytest.raises(ValueError):
        parse_endpoint("clamd.sock")


def test_a_clamd_trickling_its_answer_is_given_up_on_within_the_timeout():
    """``timeout`` is for the whole scan: a clamd answering an octet every 0.2 s (each wait
    well within the timeout) no longer holds a filter thread for as long as it likes."""
    reply = b"stream: " + b" " * 30 + b"OK\0"
    with fake_engine(read_instream, lambda conn: trickle(conn, reply, 0.2)) as (path, _):
        started = time.monotonic()
        verdict = scan(make(path, timeout=1), CLEAN)
        took = time.monotonic() - started
    assert verdict.action is Action.TEMPFAIL
    assert took < 3


def test_the_senders_own_x_virus_scanned_is_removed_whatever_clamd_says():
    """A sender's "X-Virus-Scanned: clamd on mx" would be read below ours, or alone when
    clamd is down and the message is let through, as our scan (Sieve's virustest too)."""
    forged = b"X-Virus-Scanned: clamd on mx.example.test\r\nX-Virus-Scanned: x\r\n" + CLEAN
    with fake_engine(read_instream, lambda conn: conn.sendall(b"stream: OK\0")) as (path, _):
        verdict = scan(make(path), forged)
    assert verdict.action is Action.ACCEPT
    assert verdict.headers == (("X-Virus-Scanned", "clamd on mx.example.test"),)
    assert verdict.remove == (("X-Virus-Scanned", 1), ("X-Virus-Scanned", 2))
    missing = os.path.join(tempfile.gettempdir(), "txm-no-such-clamd.sock")
    tagged = scan(make(missing, on_unavailable="tag"), forged)
    assert tagged.remove == (("X-Virus-Scanned", 1), ("X-Virus-Scanned", 2))
    assert scan(make(missing, on_unavailable="tag"), CLEAN).remove == ()
