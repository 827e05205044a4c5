"""Certificates: self-signed on first start, TLS 1.2 minimum, reload that never breaks TLS."""

from __future__ import annotations

import datetime
import os
import shutil

import pytest
from OpenSSL import SSL
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests.support.certificates import write_pair
from txmailhost.tls import (
    ReloadableTLS,
    ensure_self_signed,
    expiry_warning,
    load_certificate_options,
)


@pytest.fixture
def pair(tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    assert ensure_self_signed(cert, key, "mx.example.test")
    assert not ensure_self_signed(cert, key, "mx.example.test")  # idempotent
    return cert, key


def _serial(tls: ReloadableTLS) -> int:
    return SSL.Connection(tls.getContext(), None).get_certificate().get_serial_number()


def test_key_is_private_and_options_refuse_tls_below_1_2(pair):
    cert, key = pair
    assert os.stat(key).st_mode & 0o077 == 0
    options = load_certificate_options(cert, key).getContext().set_options(0)  # reads them
    assert options & SSL.OP_NO_TLSv1_1 and options & SSL.OP_NO_TLSv1


def test_reload_if_changed_picks_up_a_renewed_pair(pair, tmp_path):
    cert, key = pair
    tls = ReloadableTLS(cert, key)
    before = _serial(tls)
    assert not tls.reload_if_changed()
    new_cert, new_key = str(tmp_path / "n.pem"), str(tmp_path / "nk.pem")
    ensure_self_signed(new_cert, new_key, "mx.example.test")
    shutil.copy(new_key, key)
    shutil.copy(new_cert, cert)
    assert tls.reload_if_changed()
    assert _serial(tls) != before


def test_a_broken_renewal_keeps_the_old_certificate(pair):
    cert, key = pair
    tls = ReloadableTLS(cert, key)
    before = _serial(tls)
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(ValueError, match="cert.pem"):
        tls.reload()
    assert _serial(tls) == before
    assert SSL.Connection(tls.getContext(), None).get_certificate() is not None


NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("ends", "warning"),
    [
        (datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), "{cert}: the certificate expired"
         " on 2020-01-01 00:00 UTC; clients that check it refuse it"),
        (NOW + datetime.timedelta(days=3, hours=2),
         "{cert}: the certificate expires on 2026-06-04 14:00 UTC, in 3 day(s)"),
        (NOW + datetime.timedelta(days=14), "{cert}: the certificate expires on 2026-06-15 12:00"
         " UTC, in 14 day(s)"),
        (NOW + datetime.timedelta(days=15), None),
    ],
    ids=["expired", "3 days", "14 days", "15 days"],
)  # fmt: skip
def test_an_expired_or_expiring_certificate_is_warned_about(tmp_path, ends, warning):
    cert = tmp_path / "cert.pem"
    write_pair(cert, tmp_path / "key.pem", ends)
    expected = warning.format(cert=cert) if warning else None
    assert expiry_warning(str(cert), now=NOW) == expected


def test_the_server_warns_at_start_and_reload_but_serves_an_expired_certificate(tmp_path):
    """check-config said "ok" and the start said nothing for a notAfter of 2020-01-01."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, key, datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        tls = ReloadableTLS(str(cert), str(key))
        tls.reload()
    finally:
        globalLogPublisher.removeObserver(events)
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert warnings == [f"txmailhost TLS: {cert}: the certificate expired on 2020-01-01 00:00"
                        " UTC; clients that check it refuse it"] * 2  # fmt: skip
    assert SSL.Connection(tls.getContext(), None).get_certificate() is not None
