"""Outbound STARTTLS policy against a far side that offers TLS (RFC 3207, RFC 6125)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.relay.farside import txmailhost_far_side
from tests.relay.test_courier import courier, deliver, message  # noqa: F401 - fixture
from txmailhost.queue.interfaces import Outcome
from txmailhost.relay.courier import TLSPolicy
from txmailhost.tls import ReloadableTLS, ensure_self_signed


@pytest.fixture
def tls_far_side(net, dns_server, tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    ensure_self_signed(cert, key, "mx.far.test")
    world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    factory.tls_creator = ReloadableTLS(cert, key)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.2")
    dns_server.add("alias.far.test", "A", "127.0.0.2")
    return world, port, cert


def received_with(world) -> bytes:
    [stored] = world.inbox_files("bob@far.test")
    return stored.split(b"\r\n\r\n")[0]


def test_opportunistic_tls_is_used_when_offered(net, dns_server, tls_far_side, message):  # noqa: F811
    world, port, _ = tls_far_side
    result = deliver(net, courier(net, dns_server, port), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED
    assert b"ESMTPS" in received_with(world)


def test_required_tls_accepts_a_self_signed_certificate(net, dns_server, tls_far_side, message):  # noqa: F811
    world, port, _ = tls_far_side
    result = deliver(net, courier(net, dns_server, port, tls="required"), message)["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED
    assert b"ESMTPS" in received_with(world)


def test_verified_tls_delivers_when_the_certificate_names_the_mx(
    net,
    dns_server,
    tls_far_side,
    message,  # noqa: F811
):
    world, port, cert = tls_far_side
    c = courier(net, dns_server, port)
    c.tls = TLSPolicy("verify", ca_file=cert)
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED


def test_verified_tls_trusts_every_certificate_of_a_ca_bundle(
    net,
    dns_server,
    tls_far_side,
    message,  # noqa: F811
    tmp_path,
):
    """Twisted's ``Certificate.loadPEM`` read only the first certificate of the file: a CA
    bundle whose second certificate signed the MX's failed verification (deferred)."""
    world, port, cert = tls_far_side
    other_cert, other_key = str(tmp_path / "other.pem"), str(tmp_path / "other-key.pem")
    ensure_self_signed(other_cert, other_key, "mx.elsewhere.test")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(other_cert).read_bytes() + b"\n" + Path(cert).read_bytes())
    c = courier(net, dns_server, port)
    c.tls = TLSPolicy("verify", ca_file=str(bundle))
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED
    # A bundle that no longer holds the MX's certificate is read again: no longer trusted.
    bundle.write_bytes(Path(other_cert).read_bytes() + b"\n" * 3)
    c = courier(net, dns_server, port)
    c.tls = TLSPolicy("verify", ca_file=str(bundle))
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.TEMPORARY


def test_verified_tls_defers_when_the_certificate_names_another_host(
    net,
    dns_server,
    tls_far_side,
    message,  # noqa: F811
):
    world, port, cert = tls_far_side
    dns_server.records.clear()
    dns_server.add("far.test", "MX", "10 alias.far.test.")
    dns_server.add("alias.far.test", "A", "127.0.0.2")
    c = courier(net, dns_server, port)
    c.tls = TLSPolicy("opportunistic", per_domain={"far.test": "verify"}, ca_file=cert)
    result = deliver(net, c, message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert world.inbox_files("bob@far.test") == []
