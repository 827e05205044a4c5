"""MTA-STS (RFC 8461) and TLS reports (RFC 8460): policy parsing, and the courier against a real HTTPS policy server,
a DNS server and receiving servers on loopback."""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import os
import random
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.relay.farside import txmailhost_far_side
from tests.relay.test_courier import FAST
from tests.support.syncpool import SyncThreadPool
from txmailhost.queue.interfaces import Outcome
from txmailhost.relay.courier import RelayCourier, TLSPolicy
from txmailhost.relay.mtasts import MTASTS, PolicyError, STSPolicy, parse_policy, record_id
from txmailhost.relay.mx import MXResolver
from txmailhost.relay.tlsrpt import TLSReports, rua_addresses
from txmailhost.tls import load_certificate_options

POLICY = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mx.far.test\r\nmx: *.backup.test\r\nmax_age: 86400\r\n"
)
MESSAGE = (
    b"Return-Path: <alice@example.test>\r\nFrom: alice@example.test\r\nSubject: sts\r\n\r\nhi\r\n"
)


def test_policy_parses_and_matches_one_wildcard_label():
    policy = parse_policy(POLICY, "id1", 5.0)
    assert (policy.mode, policy.max_age, policy.policy_id) == ("enforce", 86400, "id1")
    assert policy.allows("MX.far.test.")
    assert policy.allows("a.backup.test")
    assert not policy.allows("a.b.backup.test")
    assert not policy.allows("backup.test")
    assert not policy.allows("mx.far.test.evil")
    assert not policy.expired(86404.0) and policy.expired(86405.0)


@pytest.mark.parametrize(
    "body",
    [
        b"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        b"version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        b"version: STSv1\nmode: enforce\nmax_age: 1\n",
        b"version: STSv1\nmode: enforce\nmx: a.test\n",
        b"version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
        b"garbage",
        "version: STSv1\nmode: enforce\nmx: ä.test\nmax_age: 1\n".encode(),
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: \u00b2\n".encode(),
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: \u0663\n".encode(),
    ],
)
def test_bad_policies_are_refused(body):
    with pytest.raises(PolicyError):
        parse_policy(body)


def test_max_age_is_capped_at_a_year():
    assert parse_policy(b"version: STSv1\nmode: none\nmax_age: 9999999999\n").max_age == 31557600


@pytest.mark.parametrize(
    "texts, expected",
    [
        (["v=STSv1; id=20240101T0000"], "20240101T0000"),
        (["v=spf1 -all", "v=STSv1; id=abc;"], "abc"),
        (["v=STSv1; id=a", "v=STSv1; id=b"], None),  # two records: no policy (3.1)
        (["v=STSv1;"], None),
        (["v=STSv1; id=has space"], None),
    ],
)
def test_txt_record_id(texts, expected):
    assert record_id(texts) == expected


class Data(Resource):
    """The policy file: its body can be changed between fetches."""

    isLeaf = True

    def __init__(self, data: bytes, kind: str) -> None:
        super().__init__()
        self.data, self.kind = data, kind

    def render_GET(self, request):
        request.setHeader(b"content-type", self.kind.encode())
        return self.data


def _certificate(tmp_path, names):
    """A self-signed certificate for ``names``, written as PEM; our trust anchor in tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    return str(path), load_certificate_options(str(path), str(tmp_path / "key.pem"))


@pytest.fixture
def sts(net, dns_server, tmp_path):
    """A far side whose MX is mx.far.test (STARTTLS with a certificate we trust), an HTTPS
    policy server for mta-sts.far.test, and a courier that honours MTA-STS."""
    ca_file, server_tls = _certificate(tmp_path, ["mta-sts.far.test", "mx.far.test"])
    world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    factory.tls_creator = server_tls
    smtp_port = net.listen(factory, "127.0.0.2")
    root = Resource()
    well_known = Resource()
    root.putChild(b".well-known", well_known)
    policy = Data(POLICY, "text/plain")
    well_known.putChild(b"mta-sts.txt", policy)
    from twisted.internet.endpoints import SSL4ServerEndpoint

    listening = net.run(
        SSL4ServerEndpoint(net.reactor, 0, server_tls, interface="127.0.0.3").listen(Site(root))
    )
    net.ports.append(listening)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.2")
    dns_server.add("_mta-sts.far.test", "TXT", '"v=STSv1; id=1"')
    dns_server.add("mta-sts.far.test", "A", "127.0.0.3")
    resolver = MXResolver(
        net.reactor, SyncThreadPool(), [dns_server.address], timeout=2, rng=random.Random(0)
    )
    tls = TLSPolicy("opportunistic", {}, ca_file)
    cache = str(tmp_path / "sts-cache")
    mta_sts = MTASTS(
        net.reactor,
        SyncThreadPool(),
        resolver,
        cache,
        trust=tls.trust_root,
        port=listening.getHost().port,
        timeout=5,
    )
    courier = RelayCourier(
        net.reactor,
        SyncThreadPool(),
        resolver,
        hostname="mx.example.test",
        port=smtp_port,
        tls=tls,
        timeouts=FAST,
        mta_sts=mta_sts,
    )
    path = tmp_path / "message"
    path.write_bytes(MESSAGE)
    return world, courier, str(path), policy, cache


def deliver(net, courier, path):
    results = net.run(courier.deliver("alice@example.test", ["bob@far.test"], path, "far.test", 0))
    return results["bob@far.test"]


def test_enforce_policy_delivers_to_a_listed_mx_over_verified_tls(net, sts):
    world, courier, path, _, cache = sts
    result = deliver(net, courier, path)
    assert result.outcome is Outcome.DELIVERED, result
    [stored] = world.inbox_files("bob@far.test")
    assert b"with ESMTPS" in stored
    with open(os.path.join(cache, "far.test.json")) as f:
        assert json.load(f)["mode"] == "enforce"  # kept for max_age, across restarts


def test_enforce_policy_refuses_an_mx_it_does_not_list(net, sts, dns_server):
    world, courier, path, policy, _ = sts
    policy.data = POLICY.replace(b"mx: mx.far.test", b"mx: mx.other.test")
    result = deliver(net, courier, path)
    assert (result.outcome, result.status) == (Outcome.TEMPORARY, "4.7.5")
    assert "MTA-STS" in result.diagnostic
    assert world.inbox_files("bob@far.test") == []


def test_testing_mode_only_logs(net, sts):
    world, courier, path, policy, _ = sts
    policy.data = POLICY.replace(b"enforce", b"testing").replace(b"mx.far.test", b"mx.other.test")
    assert deliver(net, courier, path).outcome is Outcome.DELIVERED


def test_enforce_refuses_an_mx_without_a_valid_certificate(net, sts):
    world, courier, path, _, _ = sts
    courier.tls = TLSPolicy("opportunistic", {}, "")  # the system store: our CA isn't in it
    courier.mta_sts._cache["far.test"] = STSPolicy("enforce", ("mx.far.test",), 3600, "1", 1e12)
    result = deliver(net, courier, path)
    assert result.outcome is Outcome.TEMPORARY
    assert world.inbox_files("bob@far.test") == []


def _restarted(net, courier, dns_server, cache):
    """The courier's MTA-STS after a restart: a new resolver (no DNS cache), ``cache`` on disk."""
    old = courier.mta_sts
    resolver = MXResolver(net.reactor, SyncThreadPool(), [dns_server.address], timeout=2)
    courier.resolver = resolver
    courier.mta_sts = MTASTS(
        net.reactor, SyncThreadPool(), resolver, cache, trust=old._trust, port=old._port
    )


def test_a_cached_policy_survives_a_restart_and_a_vanished_txt_record(
    net, sts, dns_server, tmp_path
):
    world, courier, path, policy, cache = sts
    policy.data = POLICY.replace(b"mx: mx.far.test", b"mx: mx.other.test")
    assert deliver(net, courier, path).outcome is Outcome.TEMPORARY
    del dns_server.records[next(k for k in dns_server.records if "_mta-sts" in str(k[0]))]
    _restarted(net, courier, dns_server, cache)
    assert deliver(net, courier, path).outcome is Outcome.TEMPORARY  # still enforced
    _restarted(net, courier, dns_server, str(tmp_path / "empty-cache"))
    assert deliver(net, courier, path).outcome is Outcome.DELIVERED  # no policy known at all


# -- TLS reports (RFC 8460) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "texts, expected",
    [
        (["v=TLSRPTv1; rua=mailto:tls@far.test"], ["tls@far.test"]),
        (
            ["v=TLSRPTv1;rua=mailto:a@x.test,https://r.x.test/,mailto:b@x.test"],
            ["a@x.test", "b@x.test"],
        ),
        (["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"], []),
        (["v=spf1 -all"], []),
        # RFC 6068 %-encoding is decoded; the same address is mailed once
        (
            ["v=TLSRPTv1; rua=mailto:tls%2Drpt@X.test,mailto:tls-rpt@x.test,mailto:c@x.test"],
            ["tls-rpt@x.test", "c@x.test"],
        ),
        # what decodes to a header break, a "<", or non-ASCII is not an address to mail
        (
            [
                "v=TLSRPTv1; rua=mailto:a%0D%0ABcc:%20e@x.test,mailto:a%3Ee@x.test,"
                "mailto:caf%C3%A9@x.test,mailto:ok@x.test"
            ],
            ["ok@x.test"],
        ),  # fmt: skip
        # a thousand addresses are not a thousand reports a day
        (
            ["v=TLSRPTv1; rua=" + ",".join(f"mailto:r{i}@x.test" for i in range(1000))],
            ["r0@x.test", "r1@x.test"],
        ),
    ],
)
def test_rua_addresses(texts, expected):
    assert rua_addresses(texts) == expected


def test_the_report_file_name_is_rfc_8460_5_1s(net) -> None:
    """sender!policy-domain!begin!end!unique-id.json.gz: seconds since the epoch, a
    unique-id of letters and digits (not ISO times with colons and an id with a dot)."""
    reports = TLSReports(net.reactor, SyncThreadPool(), None, "mx.example.test")
    reports.record("far.test", None, mx_host="mx.far.test")
    report = reports.report("far.test", reports._counts["far.test"], 1764979200, 1765065600)
    message = reports.message("far.test", "tls@far.test", report, 1765065600)
    [name] = re.findall(rb'filename="([^"]*)"', message)
    assert re.fullmatch(
        rb"mx\.example\.test!far\.test!1764979200!1765065600![A-Za-z0-9]+\.json\.gz", name
    ), name


def _report_of(message: bytes) -> dict:
    attachment = message.split(b"Content-Type: application/tlsrpt+gzip\r\n")[1]
    encoded = attachment.split(b"\r\n\r\n", 1)[1].split(b"\r\n--")[0]
    return json.loads(gzip.decompress(base64.b64decode(encoded)))


def test_sessions_under_a_policy_are_counted_and_reported_to_the_rua(net, sts, dns_server):
    world, courier, path, policy, _ = sts
    reports = TLSReports(net.reactor, SyncThreadPool(), courier.resolver, "mx.example.test")
    courier.tls_reports = reports
    sent: list = []

    async def deliver_report(address, message):
        sent.append((address, message))

    reports.deliver = deliver_report
    courier.reuse_idle = 0  # every delivery its own session
    assert deliver(net, courier, path).outcome is Outcome.DELIVERED
    courier.tls = TLSPolicy("opportunistic", {}, "")  # now the certificate isn't trusted
    assert deliver(net, courier, path).outcome is Outcome.TEMPORARY
    assert reports.counts("far.test") == (1, 1)
    dns_server.add("_smtp._tls.far.test", "TXT", '"v=TLSRPTv1; rua=mailto:tls@far.test"')
    assert net.run(reports.send()) == 1
    [(to, message)] = sent
    assert to == "tls@far.test"
    assert b'report-type="tlsrpt"' in message
    assert b"TLS-Report-Domain: far.test\r\n" in message
    report = _report_of(message)
    [entry] = report["policies"]
    assert entry["policy"]["policy-type"] == "sts"
    assert entry["policy"]["mx-host"] == ["mx.far.test", "*.backup.test"]
    assert entry["summary"] == {
        "total-successful-session-count": 1,
        "total-failure-session-count": 1,
    }
    [failure] = entry["failure-details"]
    assert failure["result-type"] == "validation-failure"
    assert failure["receiving-mx-hostname"] == "mx.far.test"
    assert reports.counts("far.test") == (0, 0)  # a new day begins


def test_no_report_for_a_domain_without_a_tlsrpt_record(net, sts):
    _, courier, path, _, _ = sts
    courier.tls_reports = TLSReports(net.reactor, SyncThreadPool(), courier.resolver, "mx.x.test")
    courier.tls_reports.deliver = None
    deliver(net, courier, path)
    assert courier.tls_reports.counts("far.test") == (1, 0)
    assert net.run(courier.tls_reports.send()) == 0


def test_a_server_without_starttls_under_enforce_counts_as_starttls_not_supported(net, sts):
    world, courier, path, _, _ = sts
    courier.tls_reports = TLSReports(net.reactor, SyncThreadPool(), courier.resolver, "mx.x.test")
    far_factory = next(p.factory for p in net.ports if hasattr(p.factory, "tls_creator"))
    far_factory.tls_creator = None
    assert deliver(net, courier, path).outcome is Outcome.TEMPORARY
    counts = courier.tls_reports._counts["far.test"]
    assert list(counts.failures) == [("starttls-not-supported", "", "mx.far.test")]
    assert world.inbox_files("bob@far.test") == []
