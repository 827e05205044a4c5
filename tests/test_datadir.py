"""txmailhost.datadir.ensure_data_dir: what ``init`` and the server's first start create."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from txmailhost.accounts.db import AccountsDB
from txmailhost.config import ConfigError, load_config
from txmailhost.datadir import ensure_data_dir
from txmailhost.tls import load_certificate_options

BAD_CONFIGS = Path(__file__).parent / "fixtures" / "bad_configs"


def test_ensure_data_dir_creates_everything_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = ensure_data_dir(str(data), hostname="mail.example.org")

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for sub in ("mail", "queue", "tls"):
        assert (data / sub).is_dir()
    assert load_config(str(data)).hostname == "mail.example.org"
    assert AccountsDB(str(data / "accounts.sqlite")).list_domains() == []
    assert stat.S_IMODE((data / "tls" / "key.pem").stat().st_mode) == 0o600
    assert len(created) == 13 and all(line.startswith("created ") for line in created)

    config_text = (data / "txmailhost.toml").read_text()
    cert_pem = (data / "tls" / "cert.pem").read_bytes()
    assert ensure_data_dir(str(data)) == []
    assert (data / "txmailhost.toml").read_text() == config_text
    assert (data / "tls" / "cert.pem").read_bytes() == cert_pem


def test_ensure_data_dir_certificate_is_usable_for_the_hostname(tmp_path: Path) -> None:
    ensure_data_dir(str(tmp_path / "data"), hostname="mail.example.org")
    config = load_config(str(tmp_path / "data"))

    cert = x509.load_pem_x509_certificate(Path(config.tls.certificate).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.org", "localhost"]
    options = load_certificate_options(config.tls.certificate, config.tls.key)
    assert options.getContext() is not None


def test_ensure_data_dir_creates_every_directory_the_server_writes(tmp_path: Path) -> None:
    """So that ``init`` then ``chown -R`` leaves nothing for the server to create as root."""
    data = tmp_path / "data"
    ensure_data_dir(str(data))

    for sub in ("queue/control", "queue/env", "queue/msg", "queue/spare", "queue/tmp", "run"):
        assert stat.S_IMODE((data / sub).stat().st_mode) == 0o700, sub


def test_ensure_data_dir_with_bad_config_creates_nothing(tmp_path: Path) -> None:
    bad = BAD_CONFIGS / "size_not_integer.toml"
    with pytest.raises(ConfigError):
        ensure_data_dir(str(tmp_path / "data"), str(bad))
    assert not (tmp_path / "data").exists()


def test_ensure_data_dir_leaves_a_configured_certificate_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[tls]\ncertificate = "/nonexistent/cert.pem"\nkey = "/nonexistent/key.pem"\n')
    ensure_data_dir(str(tmp_path / "data"), str(path))
    assert os.listdir(tmp_path / "data" / "tls") == []
    assert not (tmp_path / "data" / "txmailhost.toml").exists()  # --config given: none written
