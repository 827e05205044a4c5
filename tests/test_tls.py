"""Certificates: self-signed on first start, TLS 1.2 minimum, reload that never breaks TLS."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests.support.certificates import write_pair
from txmailhost.tls import (
    CertificateProblems,
    ReloadableTLS,
    ensure_self_signed,
    expiry_warning,
    load_certificate_options,
    name_matches,
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


# -- certificates by SNI ([tls] sni) ------------------------------------------------------------

LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=90)


@pytest.fixture
def named(tmp_path):
    """The default pair (mx.example.test) and pairs for mail.b.example and *.c.example."""
    paths = {}
    for label, names in (
        ("default", ("mx.example.test",)),
        ("b", ("mail.b.example",)),
        ("c", ("*.c.example",)),
    ):
        cert, key = tmp_path / f"{label}.pem", tmp_path / f"{label}.key"
        write_pair(cert, key, LATER, names)
        paths[label] = (str(cert), str(key))
    return paths


def _sni_tls(paths) -> ReloadableTLS:
    return ReloadableTLS(
        *paths["default"], {"mail.b.example": paths["b"], "*.c.example": paths["c"]}
    )


def _served_name(tls: ReloadableTLS, server_name: bytes | None) -> str:
    """The commonName of the certificate a client asking for ``server_name`` (None: no SNI)
    is shown, from a handshake in memory with pyOpenSSL on both sides."""
    client_context = SSL.Context(SSL.TLS_METHOD)
    client = SSL.Connection(client_context, None)
    if server_name is not None:
        client.set_tlsext_host_name(server_name)
    client.set_connect_state()
    server = SSL.Connection(tls.getContext(), None)  # as serverConnectionForTLS makes it
    server.set_accept_state()
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(SSL.WantReadError):
                side.do_handshake()
        for source, sink in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                sink.bio_write(source.bio_read(65536))
    peer = client.get_peer_certificate(as_cryptography=True)
    assert peer is not None, "no handshake"
    return peer.subject.rfc4514_string()


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        (b"mail.b.example", "CN=mail.b.example"),
        (b"MAIL.B.Example.", "CN=mail.b.example"),  # DNS names: no case, no trailing dot
        (b"x.c.example", "CN=*.c.example"),  # a wildcard stands for one label
        (b"c.example", "CN=mx.example.test"),
        (b"a.x.c.example", "CN=mx.example.test"),
        (b"*.c.example", "CN=mx.example.test"),  # the client's "*" is no wildcard
        (b"other.example", "CN=mx.example.test"),  # unknown: the default, no error
        (None, "CN=mx.example.test"),  # no SNI: the default
    ],
)
def test_a_client_gets_the_certificate_of_the_name_it_asks_for(named, server_name, expected):
    assert _served_name(_sni_tls(named), server_name) == expected


def test_an_exact_name_wins_over_a_wildcard(named, tmp_path):
    cert, key = tmp_path / "exact.pem", tmp_path / "exact.key"
    write_pair(cert, key, LATER, ("exact.c.example",))
    tls = ReloadableTLS(
        *named["default"], {"*.c.example": named["c"], "exact.c.example": (str(cert), str(key))}
    )
    assert _served_name(tls, b"exact.c.example") == "CN=exact.c.example"
    assert _served_name(tls, b"other.c.example") == "CN=*.c.example"


def test_a_renewed_named_pair_is_picked_up_and_a_broken_one_keeps_the_old(named, tmp_path):
    tls = _sni_tls(named)
    assert not tls.reload_if_changed()
    cert, key = named["b"]
    write_pair(Path(cert), Path(key), LATER, ("mail.b.example", "renewed.b.example"))
    assert tls.reload_if_changed()
    served = SSL.Connection(tls.context_for(b"mail.b.example"), None).get_certificate()
    assert served.to_cryptography().extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == ["mail.b.example", "renewed.b.example"]

    Path(cert).write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(ValueError, match=f'^tls.sni "mail.b.example": {cert}: no PEM'):
        tls.reload_if_changed()
    assert _served_name(tls, b"mail.b.example") == "CN=mail.b.example"  # the renewed one still
    assert _served_name(tls, b"x.c.example") == "CN=*.c.example"


def test_a_broken_named_pair_does_not_hold_back_the_default_renewal(named, tmp_path):
    tls = _sni_tls(named)
    Path(named["b"][1]).write_text("not a key")
    write_pair(Path(named["default"][0]), Path(named["default"][1]), LATER, ("new.example",))
    with pytest.raises(ValueError, match='tls.sni "mail.b.example"'):
        tls.reload()
    assert _served_name(tls, None) == "CN=new.example"
    assert _served_name(tls, b"mail.b.example") == "CN=mail.b.example"


def test_every_named_pair_that_does_not_load_is_named_with_its_host_name(named, tmp_path):
    other_cert, other_key = tmp_path / "o.pem", tmp_path / "o.key"
    write_pair(other_cert, other_key, LATER, ("o.example",))
    with pytest.raises(CertificateProblems) as raised:
        ReloadableTLS(
            *named["default"],
            {
                "mail.b.example": (named["b"][0], str(other_key)),  # another pair's key
                "*.c.example": (str(tmp_path / "missing.pem"), named["c"][1]),
            },
        )
    assert raised.value.problems == [
        f'tls.sni "mail.b.example": {other_key}: this key does not belong to the first'
        f" certificate in {named['b'][0]} (the server's own certificate must come first, then"
        " its intermediates)",
        f'tls.sni "*.c.example": {tmp_path / "missing.pem"}: cannot read the certificate: No'
        " such file or directory",
    ]


def test_a_named_pair_expiring_or_for_another_name_is_warned_about(named, tmp_path):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3, hours=1)
    write_pair(Path(named["b"][0]), Path(named["b"][1]), soon, ("mail.b.example",))
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        ReloadableTLS(*named["default"], {"mail.b.example": named["b"], "d.example": named["c"]})
    finally:
        globalLogPublisher.removeObserver(events)
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    cert_b, cert_c = named["b"][0], named["c"][0]
    assert warnings == [
        f'txmailhost TLS: tls.sni "mail.b.example": {cert_b}: the certificate expires on '
        f"{soon:%Y-%m-%d %H:%M} UTC, in 3 day(s)",
        f'txmailhost TLS: tls.sni "d.example": {cert_c}: the certificate is not for d.example'
        " (it names *.c.example)",
    ]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("mail.b.example", "mail.b.example", True),
        ("*.b.example", "mail.b.example", True),
        ("*.b.example", "b.example", False),
        ("*.b.example", "a.mail.b.example", False),
        ("*.b.example", ".b.example", False),
        ("mail.b.example", "*.b.example", False),
    ],
)
def test_a_wildcard_covers_exactly_one_label(pattern, name, matches):
    assert name_matches(pattern, name) is matches
