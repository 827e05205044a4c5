"""Certificates: self-signed on first start, TLS 1.2 minimum, reload that never breaks TLS."""

from __future__ import annotations

import os
import shutil

import pytest
from OpenSSL import SSL

from txmailhost.tls import ReloadableTLS, ensure_self_signed, load_certificate_options


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
