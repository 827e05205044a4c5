"""The server's HTTP listeners against a client that sends more than they read.

A POST of tens of MiB to the plain-HTTP redirect (port 80 in production) or the metrics page,
which read no body, or to the webmail's ``/compose`` without a session, is cut off when the
small limit is passed (a 413, then the close), as the rest of the site's forms are: twisted.web would have kept it all
and parsed it in memory (+340 MiB of server for 20 MiB sent). A signed-in user's upload may
still be as large as a message. The deadlines (slowloris) are tested on a fake clock in
tests/test_httpbounds.py."""

from __future__ import annotations

import http.client
import socket
import ssl
import time

import pytest

from tests.e2e.test_webmail import logged_in
from tests.e2e.test_webmail_compose import compose_form
from tests.support.web import Browser

H = "127.0.0.1"
BIG = 32 << 20  # octets offered; the listeners keep at most a few MiB of socket buffers


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _push(sock: socket.socket, head: bytes) -> tuple[int, bytes]:
    """Send ``head`` then up to ``BIG`` octets of body; (body octets the server took, what
    it answered)."""
    sock.settimeout(10)
    sent = 0
    chunk = b"a" * (256 << 10)
    try:
        sock.sendall(head)
        while sent < BIG:
            sock.sendall(chunk)
            sent += len(chunk)
    except (OSError, ssl.SSLError):
        pass
    answer = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (OSError, ssl.SSLError):
        pass
    return sent, answer


def _refused(answer: bytes) -> bool:
    """A 413 before the close, or nothing: a client still sending when the server closes
    may get a reset that loses the answer."""
    return answer == b"" or answer.startswith(b"HTTP/1.1 413 Content Too Large\r\n")


def _form_head(path: str, extra: str = "", length: int = BIG) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {H}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"{extra}Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.shared_server
@pytest.mark.parametrize(("listener", "path"), [("web_redirect", "/"), ("metrics", "/metrics")])
def test_a_listener_that_reads_no_body_cuts_off_a_large_one(server, listener, path):
    with socket.create_connection((H, server.ports[listener])) as sock:
        sent, answer = _push(sock, _form_head(path))
    assert sent < BIG // 2 and _refused(answer), answer
    conn = http.client.HTTPConnection(H, server.ports[listener], timeout=10)
    conn.request("GET", path, headers={"Host": "mail.example.test"})
    assert conn.getresponse().status in (200, 308)  # and it still serves


@pytest.mark.shared_server
def test_compose_without_a_session_gets_the_small_limit_even_as_multipart(server):
    head = _form_head("/compose").replace(
        b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=b"
    )
    raw = socket.create_connection((H, server.ports["web"]))
    started = time.monotonic()
    with _context().wrap_socket(raw, server_hostname=H) as sock:
        sent, answer = _push(sock, head)
    # Over TLS the connection waited for the client's close_notify, which a client still
    # sending never sends: it ended with the client's timeouts (twice 10 s). It is cut now.
    assert time.monotonic() - started < 8
    assert sent < BIG // 2 and _refused(answer), answer
    assert Browser(server.ports["web"]).get("/login").status == 200


@pytest.mark.shared_server
def test_a_signed_in_upload_larger_than_a_form_is_taken(server):
    browser = logged_in(server)
    fields = compose_form(browser)
    fields.update(to="bob@example.test", subject="big", body="x", action="draft")
    attachment = ("big.bin", "application/octet-stream", b"\x00" * (3 << 20))  # 3 MiB > 1 MiB
    done = browser.post_multipart("/compose", fields, [("attachment", *attachment)], follow=False)
    assert done.status == 303, done.text[:300]
