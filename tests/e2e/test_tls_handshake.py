"""A client that opens a TLS connection and never finishes the handshake is cut off after
``[tls] handshake_timeout``, on the implicit-TLS ports and after STARTTLS/STLS, against the real
server.

Before, such a client (slowloris on 465/993/995, or a flood of half-open handshakes against the
connection limits) held its descriptor and connection slot until the session timeout: an hour
on SMTP, four on POP3. The protocols' idle timers didn't help, since Twisted's TLS layer won't
close a connection mid-handshake while it holds the greeting for it.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.e2e.conftest import client_context
from tests.e2e.test_tls_close import _seconds_to_eof
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow
H = "127.0.0.1"
TIMEOUT = 2.0
# A TLS record header announcing a handshake message that never comes.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    proc = ServerProcess(
        str(tmp_path_factory.mktemp("handshake") / "data"),
        extra_config=f"[tls]\nhandshake_timeout = {TIMEOUT}\n",
    ).start()
    yield proc
    proc.stop()


@pytest.mark.parametrize("label", ["submissions", "imaps", "pop3s", "web"])
@pytest.mark.parametrize("hello", [b"", PARTIAL_CLIENT_HELLO], ids=["silent", "partial-hello"])
def test_implicit_tls_handshake_that_never_finishes_is_aborted(server, label, hello):
    with socket.create_connection((H, server.ports[label]), 10) as sock:
        sock.sendall(hello)
        took = _seconds_to_eof(sock, TIMEOUT + 8)
    assert took is not None, f"{label}: still open {TIMEOUT + 8:g}s after connecting"
    assert took >= TIMEOUT - 0.5


_STARTTLS = [
    ("smtp", b"EHLO client.test\r\n", b"STARTTLS\r\n"),
    ("submission", b"EHLO client.test\r\n", b"STARTTLS\r\n"),
    ("imap", None, b"s STARTTLS\r\n"),
    ("pop3", None, b"STLS\r\n"),
    ("managesieve", None, b"STARTTLS\r\n"),
]


def _read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize(("label", "hello", "starttls"), _STARTTLS, ids=[s[0] for s in _STARTTLS])
def test_handshake_after_starttls_that_never_finishes_is_aborted(server, label, hello, starttls):
    with socket.create_connection((H, server.ports[label]), 10) as sock:
        sock.settimeout(10)
        greeting = _read_until(sock, b"\r\n")
        if label == "managesieve":  # a capability list, ended by an OK line
            while not greeting.startswith(b"OK") and b"\r\nOK" not in greeting:
                greeting += _read_until(sock, b"\r\n")
            while not greeting.endswith(b"\r\n"):
                greeting += _read_until(sock, b"\r\n")
        if hello:
            sock.sendall(hello)
            _read_until(sock, b"250 ")
        sock.sendall(starttls)
        reply = _read_until(sock, b"\r\n")
        assert reply[:3] in (b"220", b"s O", b"+OK", b"OK "), reply
        took = _seconds_to_eof(sock, TIMEOUT + 8)
    assert took is not None, f"{label}: still open {TIMEOUT + 8:g}s after STARTTLS"


def test_finished_handshake_outlives_the_deadline(server):
    """The deadline is for the handshake only: a session that finished it stays open."""
    raw = socket.create_connection((H, server.ports["imaps"]), 10)
    with client_context().wrap_socket(raw, server_hostname="mx.example.test") as tls:
        tls.settimeout(10)
        _read_until(tls, b"\r\n")
        time.sleep(TIMEOUT + 1)
        tls.sendall(b"a NOOP\r\n")
        assert b"a OK" in _read_until(tls, b"a ")
