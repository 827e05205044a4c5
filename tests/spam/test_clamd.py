"""The clamd filter against Debian's real clamd, with a signature database made here (clamd
can't download one offline): a test string and the EICAR test file. Skipped without clamd.
The unavailable paths (no socket, a socket that closes) need no clamd."""

from __future__ import annotations

import base64
import io
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.filters.registry import FilterHost
from txmailhost.spam.clamd import ClamdFilter, parse_endpoint

CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)
TEST_STRING = b"TXMAILHOST-VIRUS-TEST-STRING-7f3a"
# Built from pieces so no scanner flags this file: the standard EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CLIENT = Client("192.0.2.1", listener="smtp")
CLEAN = b"From: a@example.org\r\nSubject: hello\r\n\r\nnothing to see\r\n"


@pytest.fixture(scope="module")
def clamd_socket():
    if CLAMD is None:
        pytest.skip("clamd is not installed (Debian: clamav-daemon)")
    home = tempfile.mkdtemp(prefix="txm-clamd-", dir="/tmp")
    database = os.path.join(home, "db")
    os.mkdir(database)
    with open(os.path.join(database, "txmailhost.ndb"), "w") as f:
        f.write(f"Txmailhost.Test.String:0:*:{TEST_STRING.hex()}\n")
        f.write(f"Txmailhost.Test.EICAR:0:*:{EICAR.hex()}\n")
    path = os.path.join(home, "clamd.sock")
    config = os.path.join(home, "clamd.conf")
    with open(config, "w") as f:
        f.write(
            f"LocalSocket {path}\nForeground yes\nDatabaseDirectory {database}\n"
            f"LogFile {home}/clamd.log\nStreamMaxLength 25M\nMaxThreads 2\n"
        )
    process = subprocess.Popen([CLAMD, "-c", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 60
        while not os.path.exists(path):
            if process.poll() is not None or time.time() > deadline:
                log = pathlib.Path(home, "clamd.log")
                text = log.read_text(errors="replace") if log.exists() else ""
                pytest.skip(f"clamd did not start: {text[-500:]}")
            time.sleep(0.1)
        yield path
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


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
    assert verdict.action is Action.REJECT
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
