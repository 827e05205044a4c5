"""DANE for outbound SMTP (RFC 7672): real relays to our own server on 127.0.0.2, its TLSA
records served by the loopback DNS server, which sets the AD bit for "signed" zones."""

from __future__ import annotations

import datetime
import hashlib
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.defer import succeed

from tests.relay.farside import txmailhost_far_side
from tests.relay.test_courier import FAST, MESSAGE, deliver
from tests.support.syncpool import SyncThreadPool
from txmailhost.queue.interfaces import MessageOptions, Outcome
from txmailhost.relay.courier import RelayCourier, TLSPolicy
from txmailhost.relay.dane import DANE_EE, DANE_TA, PKIX_EE, TLSA, DANEPolicy, tlsa_record_for
from txmailhost.relay.mtasts import STSPolicy
from txmailhost.relay.mx import MXResolver
from txmailhost.relay.tlsrpt import TLSReports
from txmailhost.tls import ReloadableTLS

NOW = datetime.datetime.now(datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_cert(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    names: tuple[str, ...] = (),
    expired: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    start = NOW - datetime.timedelta(days=30 if expired else 1)
    end = NOW - datetime.timedelta(days=1) if expired else NOW + datetime.timedelta(days=30)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def write_pair(directory, chain: list[x509.Certificate], key) -> tuple[str, str]:
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "key.pem")
    with open(cert_path, "wb") as f:
        for c in chain:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def cert_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def dane_courier(net, dns_server, port, tls="opportunistic", **kwargs) -> RelayCourier:
    resolver = MXResolver(
        net.reactor,
        SyncThreadPool(),
        [dns_server.address],
        timeout=2,
        rng=random.Random(0),
        dnssec=True,
    )
    return RelayCourier(
        net.reactor,
        SyncThreadPool(),
        resolver,
        hostname="mx.example.test",
        port=port,
        tls=TLSPolicy(tls),
        timeouts=FAST,
        **kwargs,
    )


class FarSide:
    """Our own server as far.test's MX, presenting ``chain``; DNS for far.test signed."""

    def __init__(self, net, dns_server, tmp_path, chain, key, starttls: bool = True) -> None:
        self.world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
        if starttls:
            factory.tls_creator = ReloadableTLS(*write_pair(tmp_path, chain, key))
        self.port = net.listen(factory, "127.0.0.2")
        dns_server.add("far.test", "MX", "10 mx.far.test.")
        dns_server.add("mx.far.test", "A", "127.0.0.2")
        dns_server.sign("far.test")
        self.dns = dns_server

    def tlsa(self, *records: str) -> None:
        # _25._tcp in production; the TLSA owner follows the port (RFC 6698 3), here ephemeral
        self.dns.add(f"_{self.port}._tcp.mx.far.test", "TLSA", *records)

    def received(self) -> list[bytes]:
        return self.world.inbox_files("bob@far.test")


@pytest.fixture
def message(tmp_path):
    path = tmp_path / "message"
    path.write_bytes(MESSAGE)
    return str(path)


@pytest.fixture
def self_signed():
    return make_cert("somewhere.else.test", names=("somewhere.else.test",))


def test_dane_ee_record_matching_the_certificate_delivers_over_tls(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed  # names another host: DANE-EE checks no name (RFC 7672 3.1.1)
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(cert)}")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED
    [stored] = far.received()
    assert b"with ESMTPS" in stored


def test_dane_ee_full_certificate_sha512_record_matches(net, dns_server, tmp_path, message):
    cert, key = make_cert("mx.far.test", names=("mx.far.test",), expired=True)
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    digest = hashlib.sha512(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    far.tlsa(f"3 0 2 {digest}")  # an expired certificate too: DANE-EE ignores dates
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED


def test_dane_mismatch_defers_and_never_falls_back_to_clear_text(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed
    other, _ = make_cert("mx.far.test")
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(other)}")
    reports = TLSReports(net.reactor, SyncThreadPool(), None, "mx.example.test")
    c = dane_courier(net, dns_server, far.port, tls_reports=reports)
    result = deliver(net, c, message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert result.status == "4.7.5"
    assert "DANE" in result.diagnostic and "no TLSA record" in result.diagnostic
    assert far.received() == []
    assert reports.counts("far.test") == (0, 1)
    [policy] = reports.report("far.test", reports._tlsa_counts["far.test"], 0, 1)["policies"]
    assert policy["policy"]["policy-type"] == "tlsa"
    assert policy["policy"]["policy-string"] == [f"3 1 1 {spki_sha256(other)}"]
    assert policy["failure-details"][0]["result-type"] == "validation-failure"


def test_dane_server_without_starttls_is_deferred(net, dns_server, tmp_path, message, self_signed):
    cert, key = self_signed
    far = FarSide(net, dns_server, tmp_path, [cert], key, starttls=False)
    far.tlsa(f"3 1 1 {spki_sha256(cert)}")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert far.received() == []


def test_dane_ta_record_for_the_issuing_ca_delivers_when_the_name_matches(
    net,
    dns_server,
    tmp_path,
    message,
):
    root = make_cert("Test Root", ca=True)
    intermediate = make_cert("Test Intermediate", root, ca=True)
    leaf, key = make_cert("mx.far.test", intermediate, names=("mx.far.test",))
    far = FarSide(net, dns_server, tmp_path, [leaf, intermediate[0], root[0]], key)
    far.tlsa(f"2 0 1 {cert_sha256(root[0])}")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED


def test_dane_ta_defers_a_certificate_for_another_name(net, dns_server, tmp_path, message):
    root = make_cert("Test Root", ca=True)
    leaf, key = make_cert("elsewhere.test", root, names=("elsewhere.test",))
    far = FarSide(net, dns_server, tmp_path, [leaf, root[0]], key)
    far.tlsa(f"2 1 1 {spki_sha256(root[0])}")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "does not name mx.far.test" in result.diagnostic
    assert far.received() == []


def test_dane_ta_defers_a_chain_the_anchor_did_not_sign(net, dns_server, tmp_path, message):
    root = make_cert("Test Root", ca=True)
    impostor = make_cert("Test Root", ca=True)  # same name, another key
    leaf, key = make_cert("mx.far.test", impostor, names=("mx.far.test",))
    far = FarSide(net, dns_server, tmp_path, [leaf, root[0]], key)  # sends the real root
    far.tlsa(f"2 0 1 {cert_sha256(root[0])}")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "does not verify" in result.diagnostic
    assert far.received() == []


def test_unsigned_tlsa_records_are_ignored_and_delivery_stays_opportunistic(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed
    other, _ = make_cert("mx.far.test")
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(other)}")  # would refuse the server if it were trusted
    dns_server.unsign("far.test")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED


def test_tlsa_of_an_mx_named_by_an_unsigned_mx_record_is_ignored(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed
    other, _ = make_cert("mx.far.test")
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(other)}")
    dns_server.unsign("far.test").sign("mx.far.test")  # the MX answer itself isn't validated
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED


def test_without_a_validating_resolver_dane_is_off(net, dns_server, tmp_path, message, self_signed):
    cert, key = self_signed
    other, _ = make_cert("mx.far.test")
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(other)}")
    c = dane_courier(net, dns_server, far.port)
    c.resolver = MXResolver(net.reactor, SyncThreadPool(), [dns_server.address], timeout=2)
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED


def test_only_unusable_tlsa_records_still_require_tls(
    net, dns_server, tmp_path, message, self_signed
):
    cert, key = self_signed
    far = FarSide(net, dns_server, tmp_path, [cert], key, starttls=False)
    far.tlsa(f"1 1 1 {spki_sha256(cert)}")  # PKIX-EE: unusable in SMTP (RFC 7672 3.1.3)
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "STARTTLS" in result.diagnostic
    assert far.received() == []


def test_only_unusable_tlsa_records_accept_any_certificate_over_tls(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed
    other, _ = make_cert("mx.far.test")
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"0 1 1 {spki_sha256(other)}")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED
    assert b"with ESMTPS" in far.received()[0]


def test_a_failed_tlsa_lookup_under_a_signed_mx_defers(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    dns_server.fail(f"_{far.port}._tcp.mx.far.test", "servfail")
    result = deliver(net, dane_courier(net, dns_server, far.port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "TLSA lookup" in result.diagnostic
    assert far.received() == []


def test_requiretls_message_is_relayed_to_a_dane_verified_peer(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(cert)}")
    c = dane_courier(net, dns_server, far.port)
    d = c.deliver(
        "alice@example.test",
        ["bob@far.test"],
        message,
        "far.test",
        0.0,
        MessageOptions(requiretls=True),
    )
    result = net.run(d)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED, result.diagnostic
    assert far.received()


def test_requiretls_without_dane_or_pki_is_not_sent(
    net, dns_server, tmp_path, message, self_signed
):
    cert, key = self_signed
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    dns_server.unsign("far.test")
    d = dane_courier(net, dns_server, far.port).deliver(
        "alice@example.test", ["bob@far.test"], message, "far.test", 0.0,
        MessageOptions(requiretls=True),
    )  # fmt: skip
    result = net.run(d)["bob@far.test"]
    assert result.outcome is Outcome.PERMANENT and result.status == "5.7.10"
    assert far.received() == []


# -- the matching itself, certificate by certificate --


def test_tlsa_record_for_our_certificate_is_dane_ee_spki_sha256(self_signed):
    cert, _ = self_signed
    record = tlsa_record_for(cert.public_bytes(serialization.Encoding.PEM))
    assert record == f"3 1 1 {spki_sha256(cert)}"


def test_pkix_records_alone_match_nothing(self_signed):
    cert, _ = self_signed
    data = bytes.fromhex(spki_sha256(cert))
    policy = DANEPolicy("mx.far.test", (TLSA(PKIX_EE, 1, 1, data),))
    assert policy.usable == ()
    assert policy.check([cert]) != ""
    assert DANEPolicy("mx.far.test", (TLSA(DANE_EE, 1, 1, data),)).check([cert]) == ""


def test_dane_ta_matching_the_leaf_itself_is_not_an_anchor(self_signed):
    cert, _ = self_signed
    policy = DANEPolicy(
        "somewhere.else.test", (TLSA(DANE_TA, 0, 1, bytes.fromhex(cert_sha256(cert))),)
    )
    assert policy.check([cert]) != ""


class FixedPolicy:
    """An MTA-STS source that always has ``policy`` (fetching is tested in test_mtasts.py)."""

    def __init__(self, policy: STSPolicy) -> None:
        self.policy = policy

    def policy_for(self, domain: str):
        return succeed(self.policy)


def test_dane_wins_over_an_mta_sts_policy_that_does_not_list_the_mx(
    net,
    dns_server,
    tmp_path,
    message,
    self_signed,
):
    cert, key = self_signed  # no CA would accept it; MTA-STS alone would defer
    far = FarSide(net, dns_server, tmp_path, [cert], key)
    far.tlsa(f"3 1 1 {spki_sha256(cert)}")
    enforce = FixedPolicy(STSPolicy("enforce", ("other.far.test",), 86400))
    c = dane_courier(net, dns_server, far.port, mta_sts=enforce)
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED
    dns_server.unsign("far.test")  # without DANE, the same policy refuses that MX
    c = dane_courier(net, dns_server, far.port, mta_sts=enforce)
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.TEMPORARY


def test_a_signed_zone_without_tlsa_records_delivers_as_without_dane(
    net, dns_server, tmp_path, message, self_signed
):
    cert, key = self_signed
    far = FarSide(net, dns_server, tmp_path, [cert], key)  # signed, but no TLSA: NXDOMAIN
    c = dane_courier(net, dns_server, far.port)
    assert c.resolver.lookup_tlsa_sync(c.resolver.lookup_sync("far.test")[0], "far.test") is None
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED
    # a name that exists without TLSA records (NOERROR, no data) means the same
    dns_server.add(f"_{far.port}._tcp.mx.far.test", "TXT", "no TLSA here")
    c = dane_courier(net, dns_server, far.port)
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED
