"""Certificates by SNI (``[tls] sni``) on every TLS listener of the real server, with real
clients: smtplib (STARTTLS on 25 and 587, 465), imaplib (STARTTLS, 993), poplib (STLS, 995),
ManageSieve's STARTTLS, http.client (the webmail), and swaks and ``openssl s_client`` where
installed.

Before, one certificate served every name: a client of mail.b.example was shown
mx.example.test's and, checking it, refused it. Now a client that asks for a configured name
gets that name's certificate (a wildcard standing for one label), and any other client the
default, never an error.
"""

from __future__ import annotations

import datetime
import http.client
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.certificates import write_pair
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow
H = "127.0.0.1"
LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=90)
# What each name is shown: the pair of tls.sni, or the default certificate.
ASKED = [
    ("mail.b.example", "b"),
    ("MAIL.B.EXAMPLE", "b"),  # DNS names have no case
    ("imap.c.example", "c"),  # the wildcard *.c.example: one label
    ("mail.xn--bcher-kva.example", "u"),  # configured as mail.bücher.example: A-labels
    ("mail.bücher.example", "u"),  # which Python's ssl sends for this
    ("a.imap.c.example", "default"),  # two labels: not the wildcard's
    ("unknown.example", "default"),
    (None, "default"),  # no SNI
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("sni") / "data"
    (data / "certs").mkdir(parents=True)
    write_pair(data / "certs" / "b.pem", data / "certs" / "b.key", LATER, ("mail.b.example",))
    write_pair(data / "certs" / "c.pem", data / "certs" / "c.key", LATER, ("*.c.example",))
    write_pair(
        data / "certs" / "u.pem", data / "certs" / "u.key", LATER, ("mail.xn--bcher-kva.example",)
    )
    proc = ServerProcess(
        str(data),
        extra_config='[tls.sni]\n"mail.b.example" = ["certs/b.pem", "certs/b.key"]\n'
        '"*.c.example" = ["certs/c.pem", "certs/c.key"]\n'
        '"mail.bücher.example" = ["certs/u.pem", "certs/u.key"]\n',
    ).start()
    yield proc
    proc.stop()


def expected_der(server: ServerProcess, which: str) -> bytes:
    """The certificate (DER) the server should show: ``default``, ``b``, ``c`` or ``u``."""
    path = Path(server.data_dir) / ("tls/cert.pem" if which == "default" else f"certs/{which}.pem")
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


class NamingContext(ssl.SSLContext):
    """A client context that sends ``server_name`` as SNI (None: no SNI), whatever host the
    client library connected to (127.0.0.1 here: these names don't resolve). It checks
    nothing: the test compares the certificate itself."""

    server_name: str | None = None

    def wrap_socket(self, sock, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def naming(server_name: str | None) -> NamingContext:
    context = NamingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.server_name = server_name
    return context


def _sieve_response(sock: socket.socket) -> bytes:
    """A ManageSieve response up to its whole OK/NO/BYE line (RFC 5804 4)."""
    data = b""
    while not re.search(rb"(?:^|\r\n)(?:OK|NO|BYE)[^\r\n]*\r\n$", data):
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed mid-response: {data!r}")
        data += chunk
    return data


def served(server: ServerProcess, label: str, server_name: str | None) -> bytes:
    """The certificate (DER) ``label``'s listener shows a client asking for ``server_name``,
    through the client library that protocol has."""
    port, context = server.ports[label], naming(server_name)
    if label in ("smtp", "submission"):
        with smtplib.SMTP(H, port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            smtp.starttls(context=context)
            smtp.ehlo("client.test")  # the session goes on over TLS
            return smtp.sock.getpeercert(binary_form=True)
    if label == "submissions":
        with smtplib.SMTP_SSL(H, port, timeout=30, context=context) as smtp:
            smtp.ehlo("client.test")
            return smtp.sock.getpeercert(binary_form=True)
    if label == "imap":
        imap = imaplib.IMAP4(H, port, timeout=30)
        imap.starttls(ssl_context=context)
        der = imap.sock.getpeercert(binary_form=True)
        imap.logout()
        return der
    if label == "imaps":
        imap = imaplib.IMAP4_SSL(H, port, ssl_context=context, timeout=30)
        der = imap.sock.getpeercert(binary_form=True)
        imap.logout()
        return der
    if label == "pop3":
        pop = poplib.POP3(H, port, timeout=30)
        pop.stls(context=context)
        der = pop.sock.getpeercert(binary_form=True)
        pop.quit()
        return der
    if label == "pop3s":
        pop = poplib.POP3_SSL(H, port, context=context, timeout=30)
        der = pop.sock.getpeercert(binary_form=True)
        pop.quit()
        return der
    if label == "managesieve":  # RFC 5804 2.2: STARTTLS, then the capabilities again
        with socket.create_connection((H, port), 30) as sock:
            _sieve_response(sock)
            sock.sendall(b"STARTTLS\r\n")
            assert _sieve_response(sock).startswith(b"OK")
            with context.wrap_socket(sock) as tls:
                assert b'"IMPLEMENTATION"' in _sieve_response(tls)
                return tls.getpeercert(binary_form=True)
    if label == "web":
        https = http.client.HTTPSConnection(H, port, timeout=30, context=context)
        https.request("GET", "/", headers={"Host": server_name or H})
        https.getresponse().read()
        der = https.sock.getpeercert(binary_form=True)
        https.close()
        return der
    raise AssertionError(label)


LISTENERS = [
    "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "managesieve", "web",
]  # fmt: skip


@pytest.mark.parametrize(("server_name", "which"), ASKED, ids=[str(a) for a, _ in ASKED])
@pytest.mark.parametrize("label", LISTENERS)
def test_each_listener_shows_the_certificate_of_the_name_asked_for(
    server, label, server_name, which
):
    assert served(server, label, server_name) == expected_der(server, which)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
@pytest.mark.parametrize("label", ["imaps", "submissions"])
def test_a_named_certificate_keeps_tls_1_2_at_least_and_the_aead_ciphers(server, label):
    """The name's context is the connection's once the client has said hello: what was
    agreed must still be the default context's TLS 1.2 floor and cipher list."""
    context = naming("mail.b.example")
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer what the server refuses
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    with context.wrap_socket(socket.create_connection((H, server.ports[label]), 30)) as tls:
        assert tls.getpeercert(binary_form=True) == expected_der(server, "b")
        assert tls.version() == "TLSv1.2" and "GCM" in tls.cipher()[0]
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection((H, server.ports[label]), 30) as raw,
        pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"),
    ):
        context.wrap_socket(raw)


def test_a_renewed_sni_pair_is_served_without_a_restart(tmp_path, server):
    """As the default pair: certbot writes new files and the server sees them change."""
    data = Path(server.data_dir)
    new_cert, new_key = tmp_path / "new.pem", tmp_path / "new.key"
    write_pair(new_cert, new_key, LATER, ("mail.b.example",))
    before = expected_der(server, "b")
    shutil.copy(new_key, data / "certs" / "b.key")
    shutil.copy(new_cert, data / "certs" / "b.pem")
    renewed = expected_der(server, "b")
    assert renewed != before
    deadline = time.monotonic() + 20  # the files are looked at every 5 seconds
    while served(server, "imaps", "mail.b.example") != renewed:
        assert time.monotonic() < deadline, "the renewed certificate was not served"
        time.sleep(0.5)
    assert served(server, "smtp", "mail.b.example") == renewed
    assert served(server, "imaps", None) == expected_der(server, "default")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(("server_name", "which"), [("x.c.example", "c"), (None, "default")])
def test_openssl_s_client_servername_gets_the_name_s_certificate(server, server_name, which):
    args = ["openssl", "s_client", "-connect", f"{H}:{server.ports['pop3s']}"]
    args += ["-servername", server_name] if server_name else ["-noservername"]
    done = subprocess.run(args, input=b"QUIT\r\n", capture_output=True, timeout=60)
    pem = done.stdout.split(b"-----BEGIN CERTIFICATE-----", 1)[1].split(b"-----END", 1)[0]
    shown = x509.load_pem_x509_certificate(
        b"-----BEGIN CERTIFICATE-----" + pem + b"-----END CERTIFICATE-----\n"
    )
    assert shown.public_bytes(serialization.Encoding.DER) == expected_der(server, which)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_tls_sni_gets_the_name_s_certificate_over_starttls(server, tmp_path):
    peer = tmp_path / "peer.pem"
    done = subprocess.run(
        ["swaks", "--server", H, "--port", str(server.ports["submission"]), "--tls",
         "--tls-sni", "mail.b.example", "--tls-get-peer-cert", str(peer), "--quit-after",
         "TLS", "--helo", "client.test"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    shown = x509.load_pem_x509_certificate(peer.read_bytes())
    assert shown.public_bytes(serialization.Encoding.DER) == expected_der(server, "b")


def test_a_broken_sni_pair_stops_the_start_naming_its_host_name(tmp_path):
    data = tmp_path / "data"
    (data / "certs").mkdir(parents=True)
    write_pair(data / "certs" / "b.pem", data / "certs" / "b.key", LATER, ("mail.b.example",))
    write_pair(data / "certs" / "o.pem", data / "certs" / "o.key", LATER, ("o.example",))
    proc = ServerProcess(
        str(data),
        extra_config='[tls]\nsni = { "mail.b.example" = ["certs/b.pem", "certs/o.key"] }\n',
    )
    with pytest.raises(RuntimeError, match="server exited") as refused:
        proc.start()
    key = os.path.join(data, "certs", "o.key")
    assert (
        f'txmailhost: TLS: tls.sni "mail.b.example": {key}: this key does not belong to the'
        f" first certificate in {data / 'certs' / 'b.pem'}"
    ) in str(refused.value)
    assert "Traceback" not in str(refused.value)


def test_worker_processes_serve_the_names_certificates_too(tmp_path):
    """With [server] workers each process loads the pairs itself (workers/main.py)."""
    data = tmp_path / "data"
    (data / "certs").mkdir(parents=True)
    write_pair(data / "certs" / "b.pem", data / "certs" / "b.key", LATER, ("mail.b.example",))
    proc = ServerProcess(
        str(data),
        extra_config='[tls.sni]\n"mail.b.example" = ["certs/b.pem", "certs/b.key"]\n',
        workers=2,
    ).start()
    try:
        for _ in range(4):  # the connections are spread over the workers
            assert served(proc, "imaps", "mail.b.example") == expected_der(proc, "b")
            assert served(proc, "submission", None) == expected_der(proc, "default")
    finally:
        proc.stop()
