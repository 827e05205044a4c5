"""A connection over the limits on an implicit-TLS port is closed without a word, against the
real server: before, it was sent the protocol's "try later" line in clear text (``* BYE``,
``421``, ``HTTP/1.1 503``), which a TLS client reads as a broken handshake ("wrong version
number") and scanners flag as plain text on a TLS port. The STARTTLS listeners still say it.
"""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.e2e.conftest import client_context
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow
H = "127.0.0.1"
PER_IP = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    proc = ServerProcess(
        str(tmp_path_factory.mktemp("refusal") / "data"),
        extra_config=f"[security]\nmax_connections_per_ip = {PER_IP}\n",
    ).start()
    yield proc
    proc.stop()


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.parametrize("label", ["submissions", "imaps", "pop3s", "web"])
def test_over_the_limit_on_an_implicit_tls_port_is_closed_without_clear_text(server, label):
    port = server.ports[label]
    held = [socket.create_connection((H, port), 10) for _ in range(PER_IP)]
    try:
        with socket.create_connection((H, port), 10) as extra:
            assert _read_all(extra) == b""
        with socket.create_connection((H, port), 10) as raw:  # what a TLS client sees
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as refused:
                client_context().wrap_socket(raw, server_hostname="mx.example.test")
            assert "WRONG_VERSION_NUMBER" not in str(refused.value)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("label", "line"),
    [("imap", b"* BYE [UNAVAILABLE]"), ("submission", b"421 4.7.0"), ("pop3", b"-ERR [SYS/TEMP]")],
)
def test_over_the_limit_on_a_starttls_port_is_told_so(server, label, line):
    port = server.ports[label]
    held = [socket.create_connection((H, port), 10) for _ in range(PER_IP)]
    try:
        with socket.create_connection((H, port), 10) as extra:
            assert _read_all(extra).startswith(line)
    finally:
        for sock in held:
            sock.close()
