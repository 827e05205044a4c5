"""``txmailhost dkim`` and ``txmailhost dns``: keys on disk, records printed and checked."""

from __future__ import annotations

import datetime
import hashlib
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.certificates import write_pair
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.cli import main


@pytest.fixture
def data(tmp_path):
    directory = str(tmp_path / "data")
    assert main(["--data", directory, "init", "--hostname", "mx.example.test"]) == 0
    return directory


def _zone_values(out: str) -> dict[tuple[str, str], str]:
    """(name, type) -> value from zone lines, TXT strings joined."""
    found = {}
    for line in out.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, _ttl, _in, rtype, rest = line.split(None, 4)
        if rtype == "TXT":
            rest = "".join(part for part in rest.split('"')[1::2])
        found[(name.rstrip("."), rtype)] = rest
    return found


def test_dkim_init_makes_private_key_files_mode_0600(data, capsys):
    assert main(["--data", data, "dkim", "init", "example.test", "--selector", "mail"]) == 0
    directory = os.path.join(data, "dkim", "example.test")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name in ("mail-ed25519.pem", "mail-rsa.pem"):
        assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600
    out = capsys.readouterr().out
    assert "mail-ed25519._domainkey.example.test" in out and "k=rsa" in out


def test_dkim_init_twice_is_refused(data, capsys):
    assert main(["--data", data, "dkim", "init", "example.test"]) == 0
    assert main(["--data", data, "dkim", "init", "example.test"]) == 1
    assert "dkim rotate" in capsys.readouterr().err


def test_rotate_keeps_old_selector_published_until_retired(data, capsys):
    main(["--data", data, "dkim", "init", "example.test", "--selector", "one"])
    main(["--data", data, "dkim", "rotate", "example.test", "--selector", "two"])
    capsys.readouterr()
    main(["--data", data, "dkim", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("example.test one published") for line in lines)
    assert any(line.startswith("example.test two active") for line in lines)
    main(["--data", data, "dns", "example.test"])
    records = _zone_values(capsys.readouterr().out)
    assert ("one-rsa._domainkey.example.test", "TXT") in records
    assert ("two-ed25519._domainkey.example.test", "TXT") in records
    assert main(["--data", data, "dkim", "retire", "example.test", "two"]) == 1  # active
    assert main(["--data", data, "dkim", "retire", "example.test", "one"]) == 0
    capsys.readouterr()
    main(["--data", data, "dns", "example.test"])
    assert ("one-rsa._domainkey.example.test", "TXT") not in _zone_values(capsys.readouterr().out)


def test_dns_prints_every_record_kind(data, capsys):
    main(["--data", data, "dkim", "init", "example.test", "--selector", "k"])
    capsys.readouterr()
    assert main(["--data", data, "dns", "example.test"]) == 0
    records = _zone_values(capsys.readouterr().out)
    assert records[("example.test", "MX")] == "10 mx.example.test."
    assert records[("example.test", "TXT")] == "v=spf1 mx -all"
    assert records[("k-ed25519._domainkey.example.test", "TXT")].startswith("v=DKIM1; k=ed25519")
    assert records[("_dmarc.example.test", "TXT")].startswith("v=DMARC1; p=quarantine")
    assert "rua=mailto:dmarc-reports@example.test" in records[("_dmarc.example.test", "TXT")]
    assert records[("_mta-sts.example.test", "TXT")].startswith("v=STSv1; id=")
    assert records[("_smtp._tls.example.test", "TXT")].startswith("v=TLSRPTv1;")
    assert records[("_submission._tcp.example.test", "SRV")] == "0 1 2587 mx.example.test."
    assert records[("_imaps._tcp.example.test", "SRV")] == "0 1 2993 mx.example.test."
    tlsa = _tlsa_of(os.path.join(data, "tls", "cert.pem"))
    assert records[("_25._tcp.mx.example.test", "TLSA")] == tlsa


def _tlsa_of(path) -> str:
    with open(path, "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


@pytest.mark.parametrize("entry", ["mx.example.test", "*.example.test"])
def test_dns_tlsa_is_of_the_certificate_the_mx_name_is_served(data, capsys, tmp_path, entry):
    """A DANE sender names the MX host by SNI (RFC 7672 8.1): when ``[tls] sni`` has a pair
    for that name, the TLSA record must be of that pair's key, not the default's."""
    cert, key = tmp_path / "mx.pem", tmp_path / "mx.key"
    write_pair(cert, key, datetime.datetime(2099, 1, 1), ("mx.example.test",))
    with open(os.path.join(data, "txmailhost.toml"), "a") as f:
        f.write(f'\n[tls.sni]\n"{entry}" = ["{cert}", "{key}"]\n')
    assert main(["--data", data, "dns", "example.test"]) == 0
    records = _zone_values(capsys.readouterr().out)
    assert records[("_25._tcp.mx.example.test", "TLSA")] == _tlsa_of(cert)
    assert _tlsa_of(cert) != _tlsa_of(os.path.join(data, "tls", "cert.pem"))


def test_dns_check_finds_missing_and_published_records(data, names, capsys):
    path = os.path.join(data, "txmailhost.toml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("# nameservers = []", f'nameservers = ["{names.address}"]', 1))
    main(["--data", data, "dkim", "init", "example.test", "--selector", "k"])
    capsys.readouterr()
    main(["--data", data, "dns", "example.test"])
    records = _zone_values(capsys.readouterr().out)
    assert main(["--data", data, "dns", "example.test", "--check"]) == 1
    out = capsys.readouterr().out
    assert "FIX  MX   example.test: missing" in out
    # Publish everything as printed: the check passes.
    for (name, rtype), value in records.items():
        names.add(name, rtype, value)
    assert main(["--data", data, "dns", "example.test", "--check"]) == 0, capsys.readouterr()
    names.remove("k-rsa._domainkey.example.test").add(
        "k-rsa._domainkey.example.test", "TXT", "v=DKIM1; k=rsa; p=AAAA"
    )
    capsys.readouterr()
    assert main(["--data", data, "dns", "example.test", "--check"]) == 1
    assert "k-rsa._domainkey.example.test: differs" in capsys.readouterr().out


REPORTS = "dmarc-reports@example.test"


@pytest.fixture(params=["maildir", "postgres"])
def reports_data(request, data, tmp_path):
    """A data directory whose reports account exists, its mail in Maildir or PostgreSQL."""
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        path = os.path.join(data, "txmailhost.toml")
        with open(path) as f:
            text = f.read()
        text = text.replace('# backend = "maildir"', 'backend = "postgres"', 1)
        with open(path, "w") as f:
            f.write(text.replace('# dsn = ""', f'dsn = "{dsn}"', 1))
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")
    assert main(["--data", data, "domain", "add", "example.test"]) == 0
    assert main(["--data", data, "user", "add", REPORTS, "--password-file", str(secret)]) == 0
    return data


def _failing_entry(policy: str) -> dict:
    """One report row: a message from 192.0.2.7 that failed both alignments, under a
    published ``p=policy`` for example.test."""
    return {
        "source_ip": "192.0.2.7", "header_from": "example.test", "disposition": "none",
        "dkim_aligned": "fail", "spf_aligned": "fail", "dkim": [],
        "spf": {"domain": "example.test", "scope": "mailfrom", "result": "fail"},
        "policy": {"domain": "example.test", "p": policy, "sp": policy,
                   "pct": 100, "adkim": "r", "aspf": "r", "rua": []},
    }  # fmt: skip


def _deliver(data_dir: str, message: bytes) -> None:
    """Into the reports account's INBOX through the store, as the server delivers."""
    from tests.support.syncpool import result
    from txmailhost.config import load_config
    from txmailhost.ops.mailbox_admin import open_store
    from txmailhost.store.interfaces import INBOX, MessageSource

    store = open_store(load_config(data_dir))
    inbox = result(store.open(REPORTS, INBOX))
    result(inbox.append(MessageSource.from_bytes(message), [], None))
    getattr(store, "close", lambda: None)()


def test_dmarc_report_list_summarises_received_reports_and_skips_junk(reports_data, capsys):
    data = reports_data
    import gzip
    import io
    import zipfile
    from email import message_from_bytes, policy

    from txmailhost.mailauth.reports import report_message, report_xml

    entry = _failing_entry("quarantine")
    passing = {**entry, "source_ip": "198.51.100.1", "dkim_aligned": "pass"}
    xml = report_xml("example.test", [entry, entry, passing], "big.test", "r@big.test",
                     "r-1", 1796256000, 1796342399)  # fmt: skip
    _deliver(data, report_message(xml, "example.test", "big.test", ["x@example.test"],
                                           "r-1", 1796256000, 1796342399))  # fmt: skip
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("small.test!example.test!1!2.xml", xml.replace(b"big.test", b"small.test"))
    zipped = report_message(b"", "example.test", "small.test", ["x@example.test"], "z", 1, 2)
    mail = message_from_bytes(zipped, policy=policy.default)
    for part in mail.walk():
        if part.get_filename():
            part.set_content(archive.getvalue(), maintype="application", subtype="zip",
                             filename="small.test!example.test!1!2.zip")  # fmt: skip
    _deliver(data, mail.as_bytes())
    bomb = report_message(b"", "example.test", "evil.test", ["x@example.test"], "b", 1, 2)
    mail = message_from_bytes(bomb, policy=policy.default)
    for part in mail.walk():
        if part.get_filename():
            part.set_content(gzip.compress(b"\0" * (33 * 1024 * 1024)), maintype="application",
                             subtype="gzip", filename="evil.xml.gz")  # fmt: skip
    _deliver(data, mail.as_bytes())
    _deliver(data, b"From: someone@x.test\r\nSubject: hi\r\n\r\nnot a report\r\n")

    assert main(["--data", data, "dmarc", "report", "list", "-v"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("2026-12-03..2026-12-03 example.test from=big.test id=r-1")
    assert lines[0].endswith("p=quarantine messages=3 pass=1 fail=2")
    assert lines[1] == "    failed from 192.0.2.7: 2"
    assert any("from=small.test" in line for line in lines)
    assert "evil.xml.gz: report larger than 32 MiB" in err


def test_dmarc_report_list_names_a_reports_address_that_is_not_an_account(data, capsys):
    assert main(["--data", data, "domain", "add", "example.test"]) == 0
    capsys.readouterr()
    assert main(["--data", data, "dmarc", "report", "list"]) == 0
    err = capsys.readouterr().err
    assert "dmarc-reports@example.test is not an account" in err
    assert "no reports found" in err


def test_retire_takes_names_as_rotate_keeps_them_and_refuses_a_path(data, capsys):
    assert main(["--data", data, "dkim", "init", "example.test", "--selector", "one"]) == 0
    assert main(["--data", data, "dkim", "rotate", "example.test", "--selector", "Two"]) == 0
    capsys.readouterr()
    assert main(["--data", data, "dkim", "retire", "Example.TEST.", "ONE"]) == 0
    assert capsys.readouterr().out == "example.test: selector one retired\n"
    assert main(["--data", data, "dkim", "retire", "example.test", "../../x"]) == 1
    assert capsys.readouterr().err == (
        "txmailhost: error: selector '../../x': use letters, digits and '-' (at most 42 "
        "characters)\n"
    )
    assert main(["--data", data, "dkim", "list"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["example.test", "two", "active"]


@pytest.mark.parametrize("reports_data", ["maildir"], indirect=True)
def test_dmarc_report_list_shows_a_reports_control_characters_escaped(reports_data, capsys):
    """Anyone may send a report: an org_name with a line break wrote a line of the
    sender's making into the listing."""
    from txmailhost.mailauth.reports import report_message, report_xml

    entry = _failing_entry("none")
    org = "big.test\n2026-01-01..2026-01-01 bank.test from=ok\x9b2J"
    xml = report_xml("example.test", [entry], org, "r@big.test", "r-1", 1796256000, 1796342399)
    _deliver(reports_data, report_message(xml, "example.test", "big.test", ["x@example.test"],
                                          "r-1", 1796256000, 1796342399))  # fmt: skip
    assert main(["--data", reports_data, "dmarc", "report", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x9b" not in out
    assert out.splitlines() == [
        "2026-12-03..2026-12-03 example.test from=big.test\\n2026-01-01..2026-01-01 "
        "bank.test from=ok\\x9b2J id=r-1 p=none messages=1 pass=0 fail=1"
    ]


def test_a_zip_of_many_report_files_is_skipped_unread():
    """1,000 members of 32 MiB each were 32 GB to unpack from a mail of a few megabytes."""
    import io
    import zipfile
    from email import message_from_bytes, policy

    from txmailhost.mailauth.received import reports_in_message
    from txmailhost.mailauth.reports import report_message

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for n in range(17):
            z.writestr(f"r{n}.xml", b"<feedback/>")
    mail = message_from_bytes(
        report_message(b"", "example.test", "x.test", ["r@example.test"], "z", 1, 2),
        policy=policy.default,
    )
    for part in mail.walk():
        if part.get_filename():
            part.set_content(archive.getvalue(), maintype="application", subtype="zip",
                             filename="x.zip")  # fmt: skip
    assert list(reports_in_message(mail)) == [
        "x.zip: 17 XML files in one archive (at most 16 are read)"
    ]
