"""``[tls] acme = true`` in the real server: it gets its certificate from pebble (HTTP-01 on its
own plain-HTTP listener) and presents it without a restart."""

from __future__ import annotations

import os
import re
import socket
import ssl
import time

import pytest
from cryptography import x509

from tests.support import pebble as pebble_support
from tests.support.dns import DNSServer
from tests.support.server import ServerProcess

pytestmark = pytest.mark.skipif(
    not pebble_support.available(), reason="pebble (Debian package) is not installed"
)


def _presented(port: int) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_server_gets_and_presents_an_acme_certificate(tmp_path):
    dns = DNSServer().start()
    dns.add("mx.example.test", "A", "127.0.0.1")
    http_port = pebble_support.free_port()
    pebble = pebble_support.Pebble(tmp_path / "pebble", http_port, dns.address).start()
    server = ServerProcess(
        tmp_path / "data",
        "[tls]\nacme = true\n"
        f'acme_directory = "{pebble.directory_url}"\n'
        f'acme_ca_file = "{pebble.ca_file}"\n'
        'acme_contact = "hostmaster@example.test"\n',
    )
    server.write_config()
    config_path = os.path.join(server.data_dir, "txmailhost.toml")
    with open(config_path) as f:
        config = f.read()
    with open(config_path, "w") as f:
        f.write(
            re.sub(
                r'^web_redirect = ".*"$',
                f'web_redirect = "tcp:{http_port}:interface=127.0.0.1"',
                config,
                flags=re.M,
            )
        )
    try:
        server.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the order runs in the background after start
            presented = _presented(server.ports["submissions"])
            if "Pebble" in presented.issuer.rfc4514_string():
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no ACME certificate presented:\n{server.log()}\n{pebble.log()}")
        san = presented.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["mx.example.test"]
        assert _presented(server.ports["imaps"]).serial_number == presented.serial_number
        assert "acme: new certificate for mx.example.test" in server.log()
    finally:
        server.stop()
        pebble.stop()
        dns.stop()
