"""The health page's checks one by one, on files the test makes (the page itself against the
real server: tests/e2e/test_webmail_admin_console.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from txmailhost.queue.spool import Envelope, Recipient, Spool
from txmailhost.web.admin_access import AdminSources
from txmailhost.web.admin_health import _everything, certificate, disk, queue


def _sources(data_dir: str, **kwargs) -> AdminSources:
    return AdminSources(data_dir=data_dir, certificate="", dkim=None, dns_records=list,
                        new_resolver=object, dns_timeout=3, dns_lookup_timeout=1,
                        log_files=list, **kwargs)  # fmt: skip


def _certificate(path, days_left: float) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=30))
            .not_valid_after(now + timedelta(days=days_left))
            .sign(key, hashes.SHA256()))  # fmt: skip
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_a_directory_on_the_data_directorys_file_system_is_not_counted_twice(tmp_path):
    (tmp_path / "mail").mkdir()
    checks = disk(_sources(str(tmp_path), other_storage=[("mail", str(tmp_path / "mail"))]))
    assert [c.name for c in checks] == ["data directory"]
    assert checks[0].good and f"at {tmp_path}" in checks[0].state


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
def test_a_directory_on_another_file_system_gets_its_own_line(tmp_path):
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same file system here")
    checks = disk(_sources(str(tmp_path), other_storage=[("relay queue", "/dev/shm")]))
    assert [c.name for c in checks] == ["data directory", "relay queue"]


def test_too_little_free_space_is_flagged(tmp_path):
    [check] = disk(_sources(str(tmp_path), free_space_warning=1.01))  # more than there can be
    assert not check.good
    [missing] = disk(_sources(str(tmp_path / "gone")))
    assert not missing.good and "No such file or directory" in missing.state


def test_the_queue_says_its_size_and_oldest_message_and_flags_a_day_old_one(tmp_path):
    spool = Spool(str(tmp_path / "queue"))
    assert queue(spool, 0).state == "empty"
    now = 1_800_000_000.0
    for queue_id, arrival in (("0000000000000000A1", now - 90_000), ("0000000000000000B2", now)):
        os.makedirs(spool.env_dir, exist_ok=True)
        envelope = Envelope(queue_id, "a@example.test", arrival, 10,
                            [Recipient("b@remote.test")])  # fmt: skip
        with open(spool.envelope_path(queue_id), "wb") as f:
            f.write(envelope.to_json())
    check = queue(spool, now)
    assert check.state == "2 messages, the oldest queued 1 d 1 h ago" and not check.good
    assert queue(None, now).state == "not run by this process"


def test_the_certificate_is_flagged_two_weeks_before_it_expires(tmp_path):
    path = tmp_path / "cert.pem"
    _certificate(path, 90)
    fine = certificate(str(path), datetime.now(UTC).timestamp())
    assert fine.good and "mx.example.test, expires" in fine.state and "in 89 days" in fine.state
    _certificate(path, 10)
    assert not certificate(str(path), datetime.now(UTC).timestamp()).good
    _certificate(path, -1)
    expired = certificate(str(path), datetime.now(UTC).timestamp())
    assert not expired.good and "EXPIRED" in expired.state
    path.write_text("not a certificate")
    assert "cannot be read" in certificate(str(path), 0).state


def test_each_sni_certificate_has_a_row_of_its_own(tmp_path):
    default, named = tmp_path / "cert.pem", tmp_path / "b.pem"
    _certificate(default, 90)
    _certificate(named, 10)
    console = _sources(str(tmp_path), sni_certificates=[("mail.b.example", str(named))])
    console.certificate = str(default)
    rows = {check.name: check for check in _everything(console, None)["system"]}
    assert rows["TLS certificate"].good
    assert not rows["TLS certificate for mail.b.example"].good  # 10 days left
    assert "in 9 days" in rows["TLS certificate for mail.b.example"].state
