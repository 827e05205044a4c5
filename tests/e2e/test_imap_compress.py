"""COMPRESS=DEFLATE (RFC 4978) on the real server: imaplib with a deflate layer under it (as a
client library adds one), over plain TCP, after STARTTLS and over implicit TLS."""

from __future__ import annotations

import imaplib
import socket
import ssl
import zlib

import pytest

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"
MSG = b"From: bob@example.test\r\nSubject: deflate\r\n\r\n" + b"compressible line\r\n" * 2000


class Deflating:
    """imaplib's reads and writes through the two raw deflate streams, once switched on."""

    sock: socket.socket

    def start_deflate(self) -> None:
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflater = zlib.decompressobj(-15)
        self._plain = b""
        self.wire_in = self.wire_out = 0

    def send(self, data: bytes) -> None:
        if not hasattr(self, "_deflater"):
            return super().send(data)  # type: ignore[misc]
        out = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(out)
        self.sock.sendall(out)

    def _fill(self, need: int | None) -> None:
        while (b"\n" not in self._plain) if need is None else (len(self._plain) < need):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise imaplib.IMAP4.abort("connection closed")
            self.wire_in += len(chunk)
            self._plain += self._inflater.decompress(chunk)

    def read(self, size: int) -> bytes:
        if not hasattr(self, "_deflater"):
            return super().read(size)  # type: ignore[misc]
        self._fill(size)
        data, self._plain = self._plain[:size], self._plain[size:]
        return data

    def readline(self) -> bytes:
        if not hasattr(self, "_deflater"):
            return super().readline()  # type: ignore[misc]
        self._fill(None)
        line, sep, self._plain = self._plain.partition(b"\n")
        return line + sep

    def compress(self) -> None:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")  # type: ignore[attr-defined]
        assert typ == "OK", data
        self.start_deflate()


class DeflatingIMAP4(Deflating, imaplib.IMAP4):
    pass


class DeflatingIMAP4_SSL(Deflating, imaplib.IMAP4_SSL):  # noqa: N801 - imaplib's spelling
    pass


imaplib.Commands["COMPRESS"] = ("AUTH", "SELECTED")


def no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def exercise(client: Deflating) -> None:
    """A session's worth of commands after COMPRESS; the big message shrinks on the wire."""
    caps = client.capability()[1][-1]  # type: ignore[attr-defined]
    assert b"COMPRESS=DEFLATE" in caps.split()
    client.compress()
    typ, data = client.append("INBOX", None, None, MSG)  # type: ignore[attr-defined]
    assert typ == "OK", data
    uid = int(data[0].split(b"APPENDUID ")[1].split(b" ")[1].rstrip(b"]"))
    assert client.select("INBOX")[0] == "OK"  # type: ignore[attr-defined]
    typ, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")  # type: ignore[attr-defined]
    assert typ == "OK" and data[0][1] == MSG
    typ, data = client._simple_command("COMPRESS", "DEFLATE")  # type: ignore[attr-defined]
    assert (typ, data) == ("NO", [b"[COMPRESSIONACTIVE] DEFLATE active via COMPRESS"])
    assert client.wire_out < len(MSG) // 10 and client.wire_in < len(MSG) // 10
    client.logout()  # type: ignore[attr-defined]


@pytest.mark.shared_server
def test_imaplib_session_compressed_over_plain_tcp(server):
    client = DeflatingIMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    exercise(client)


@pytest.mark.shared_server
def test_compressed_after_starttls(server):
    client = DeflatingIMAP4(H, listening_port(server, "imap"), timeout=10)
    assert client.starttls(ssl_context=no_verify())[0] == "OK"
    client.login(ALICE, PASSWORD)
    exercise(client)


@pytest.mark.shared_server
def test_compressed_over_implicit_tls(server):
    client = DeflatingIMAP4_SSL(
        H, listening_port(server, "imaps"), ssl_context=no_verify(), timeout=10
    )
    client.login(ALICE, PASSWORD)
    exercise(client)


@pytest.mark.shared_server
def test_compressed_session_idles_and_sees_a_new_message(server):
    """IDLE reads its DONE through the inflater, and a push arrives sync-flushed."""
    client = DeflatingIMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    client.compress()
    assert client.select("INBOX")[0] == "OK"
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    assert client.readline().startswith(b"+ ")
    other = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    other.login(ALICE, PASSWORD)
    assert other.append("INBOX", None, None, b"Subject: push\r\n\r\nx\r\n")[0] == "OK"
    other.logout()
    assert client.readline().endswith(b" EXISTS\r\n")
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag):
        pass
    assert line == tag + b" OK IDLE terminated\r\n"
    client.logout()
