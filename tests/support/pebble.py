"""Let's Encrypt's ACME test server, pebble (Debian package ``pebble``), on loopback.

    pebble = Pebble(tmp_path, http_port=port_of_our_http_listener, dns=dns_server).start()
    settings = ACMESettings(directory=pebble.directory, ca_file=pebble.ca_file, ...)

Pebble's own HTTPS certificate is made here, signed by a CA of the test's (``ca_file``), for
127.0.0.1. Its validation authority really fetches each HTTP-01 challenge: it resolves the name
through ``dns`` (the loopback test DNS server) and connects to ``http_port`` there.
``PEBBLE_VA_NOSLEEP`` and ``PEBBLE_WFE_NONCEREJECT=0`` keep it quick and predictable.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"


def available() -> bool:
    return os.access(PEBBLE, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_tls(directory: Path) -> tuple[str, str, str]:
    """A CA and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem"))
    Path(paths[0]).write_bytes(_pem(ca))
    Path(paths[1]).write_bytes(_pem(cert))
    Path(paths[2]).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Pebble:
    def __init__(
        self, directory: Path, http_port: int, dns_address: str, validity: int = 3600
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port
        self.dns_address = dns_address
        self.validity = validity
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ca_file = ""

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self, timeout: float = 30.0) -> Pebble:
        self.ca_file, cert, key = _write_tls(self.directory)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": "",
                "certificate": cert,
                "privateKey": key,
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": self.validity,
            }
        }
        config_path = self.directory / "pebble-config.json"
        config_path.write_text(json.dumps(config))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        log = open(self.directory / "pebble.log", "wb")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            [PEBBLE, "-config", str(config_path), "-dnsserver", self.dns_address],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # waiting for it to listen, not a timing assertion
            if self.process.poll() is not None:
                raise RuntimeError(f"pebble exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pebble did not listen in {timeout}s: {self.log()}")

    def log(self) -> str:
        return (self.directory / "pebble.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
