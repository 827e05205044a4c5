"""The benchmark harness's TLS pieces: the IMAPS handshake client, and the docs splice.

Not timings (nothing here asserts a speed): that the client counts what it says it counts
against a real TLS listener, and that a ``--only tls`` run rewrites its own section of
docs/benchmarks.rst and nothing else.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import report, tls_load
from bench.server import self_signed


@pytest.fixture
def imaps_server(tmp_path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """A one-thread implicit-TLS IMAP greeter on 127.0.0.1; yields (port, what clients sent)."""
    key, cert = self_signed(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so the thread sees ``stop`` (close() does not wake accept())
    stop = threading.Event()
    received: list[bytes] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.sendall(b"* OK test ready\r\n")
                    line = tls.recv(100)
                    received.append(line)
                    if line == b"a LOGOUT\r\n":
                        tls.sendall(b"* BYE bye\r\na OK LOGOUT completed\r\n")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_handshake_reads_the_greeting_then_logs_out(imaps_server: tuple[int, list[bytes]]):
    port, received = imaps_server
    load = tls_load.HandshakeLoad("127.0.0.1", port, clients=1, seconds=0.3)
    result = tls_load.run(load)
    assert result.failed == 0
    assert result.completed == len(received) > 0
    assert set(received) == {b"a LOGOUT\r\n"}
    assert result.negotiated.startswith("TLSv1.3 ")


def test_handshake_without_logout_closes_after_the_greeting(
    imaps_server: tuple[int, list[bytes]],
):
    port, received = imaps_server
    load = tls_load.HandshakeLoad("127.0.0.1", port, clients=2, seconds=0.3, logout=False)
    result = tls_load.run(load)
    assert result.failed == 0 and result.completed > 0
    assert b"a LOGOUT\r\n" not in received


def test_handshake_to_a_plaintext_port_counts_as_failed():
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def greet_in_plaintext() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    connection.sendall(b"* BYE [UNAVAILABLE] too many connections\r\n")

        threading.Thread(target=greet_in_plaintext, daemon=True).start()
        port = listener.getsockname()[1]
        result = tls_load.run(tls_load.HandshakeLoad("127.0.0.1", port, 1, 0.05, timeout=5))
    assert result.completed == 0 and result.failed >= 1


_PAGE = """\
Benchmarks
==========

Results
-------

old numbers

{tls}How to run
----------

python -m bench
"""


def test_splice_inserts_the_tls_section_before_how_to_run(tmp_path: Path):
    page = tmp_path / "benchmarks.rst"
    page.write_text(_PAGE.format(tls=""))
    section = f"{report.TLS_TITLE}\n{'-' * len(report.TLS_TITLE)}\n\nnew numbers\n"
    report.splice(page, section)
    assert page.read_text() == _PAGE.format(tls=section + "\n")


def test_splice_replaces_only_the_previous_tls_section(tmp_path: Path):
    page = tmp_path / "benchmarks.rst"
    underline = "-" * len(report.TLS_TITLE)
    page.write_text(_PAGE.format(tls=f"{report.TLS_TITLE}\n{underline}\n\nstale numbers\n\n"))
    report.splice(page, f"{report.TLS_TITLE}\n{underline}\n\nnew numbers\n")
    text = page.read_text()
    assert "stale numbers" not in text
    assert text == _PAGE.format(tls=f"{report.TLS_TITLE}\n{underline}\n\nnew numbers\n\n")


def test_a_full_run_keeps_the_sections_it_does_not_write(tmp_path: Path):
    """Sections of another suite's run, or added by hand, survive a full run's page; the ones
    the run writes are its own."""
    page = tmp_path / "benchmarks.rst"
    hand = "By hand\n-------\n\nkept words\n"
    stale = "Notes\n-----\n\nstale note\n"  # the run's own, though this run has none
    page.write_text(_PAGE.format(tls=hand + "\n" + stale + "\n"))
    report.write_page(page, _PAGE.format(tls="").replace("old numbers", "new numbers"))
    text = page.read_text()
    assert "old numbers" not in text and "stale note" not in text
    assert text == _PAGE.format(tls=hand + "\n").replace("old numbers", "new numbers")
