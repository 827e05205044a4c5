"""The server ends a TLS session itself after LOGOUT / QUIT: close_notify at once, then the TCP
close, on every protocol and both TLS styles (implicit and STARTTLS), against the real server.

A client that waits for the server to close (mbsync through a ``Tunnel``, ``openssl s_client``)
otherwise hangs, and the session keeps its connection slot until the idle timeout.
"""

from __future__ import annotations

import os
import socket
import ssl
import time

import pytest

from tests.e2e.conftest import client_context

pytestmark = [pytest.mark.slow, pytest.mark.shared_server]  # nothing here logs in
H = "127.0.0.1"

# (listener, command that switches to TLS or None for implicit TLS, the goodbye)
_SESSIONS = [
    ("imaps", None, b"a LOGOUT\r\n"),
    ("imap", b"s STARTTLS\r\n", b"a LOGOUT\r\n"),
    ("pop3s", None, b"QUIT\r\n"),
    ("pop3", b"STLS\r\n", b"QUIT\r\n"),
    ("submissions", None, b"QUIT\r\n"),
    ("submission", b"STARTTLS\r\n", b"QUIT\r\n"),
    ("smtp", b"STARTTLS\r\n", b"QUIT\r\n"),
    ("managesieve", b"STARTTLS\r\n", b"LOGOUT\r\n"),
]


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _tls_session(port: int, starttls: bytes | None) -> ssl.SSLSocket:
    raw = socket.create_connection((H, port), 10)
    raw.settimeout(10)
    if starttls is not None:
        greeting = _read_line(raw)
        if greeting.startswith(b"220"):  # SMTP: EHLO first, its reply is several lines
            raw.sendall(b"EHLO client.test\r\n")
            while not _read_line(raw).startswith(b"250 "):
                pass
        sieve = greeting.startswith(b'"')
        while greeting.startswith(b'"'):  # ManageSieve: capability lines, then OK
            greeting = _read_line(raw)
        raw.sendall(starttls)
        reply = _read_line(raw)
        assert reply[:3] in (b"220", b"s O", b"+OK", b"OK "), reply
    tls = client_context().wrap_socket(raw, server_hostname="mx.example.test")
    tls.settimeout(10)
    if starttls is None:
        _read_line(tls)  # the greeting
    elif sieve:  # RFC 5804 2.2: the capabilities again, then OK
        while _read_line(tls).startswith(b'"'):
            pass
    return tls


def _seconds_to_eof(sock: socket.socket, limit: float) -> float | None:
    """Read until end of stream (TLS close_notify or TCP FIN/RST); None if ``limit`` passes."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while time.monotonic() - start < limit:
            if not sock.recv(4096):
                return time.monotonic() - start
    except TimeoutError:
        return None
    except (ssl.SSLError, ConnectionResetError):
        return time.monotonic() - start
    return None


@pytest.mark.parametrize(("label", "starttls", "goodbye"), _SESSIONS, ids=[s[0] for s in _SESSIONS])
def test_server_closes_tls_session_after_logout_or_quit(server, label, starttls, goodbye):
    tls = _tls_session(server.ports[label], starttls)
    tls.sendall(goodbye)
    waited = _seconds_to_eof(tls, 5)
    tls.close()
    assert waited is not None and waited < 2, f"{label}: no close within 2 s of {goodbye!r}"


def test_tls_close_is_bounded_when_the_client_never_answers_close_notify(server):
    """The server's close_notify is not answered: the TCP connection still ends, a few
    seconds later, so the session's descriptor and connection slot are freed."""
    tls = _tls_session(server.ports["imaps"], None)
    tls.sendall(b"a LOGOUT\r\n")
    assert _seconds_to_eof(tls, 5) is not None  # close_notify seen; we send none back
    raw = socket.socket(fileno=os.dup(tls.fileno()))
    try:
        waited = _seconds_to_eof(raw, 10)
    finally:
        raw.close()
        tls.close()
    assert waited is not None, "the server kept the TCP connection open"
