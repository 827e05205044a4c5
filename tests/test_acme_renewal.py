"""ACME against Debian's pebble: HTTP-01 answered by our plain-HTTP listener on loopback, the
certificate written over the server's pair, renewed at two thirds of its lifetime."""

from __future__ import annotations

import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.python.threadpool import ThreadPool

from tests.relay.conftest import Net
from tests.support import pebble as pebble_support
from tests.support.dns import DNSServer
from txmailhost.acme_renewal import (
    RETRY_FIRST,
    ACMEService,
    ACMESettings,
    Challenges,
    renewal_time,
)
from txmailhost.tls import ReloadableTLS, ensure_self_signed
from txmailhost.web.redirect import RedirectSite


class FakeClock:
    """The service's idea of now; the reactor still runs the network for real."""

    def __init__(self) -> None:
        self.now = time.time()

    def seconds(self) -> float:
        return self.now


@pytest.fixture
def net():
    n = Net()
    yield n
    n.close()


@pytest.fixture
def pool():
    p = ThreadPool(minthreads=1, maxthreads=1, name="test-acme")
    p.start()
    yield p
    p.stop()


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    server.add("mail.acme.test", "A", "127.0.0.1")
    server.add("nowhere.acme.test", "A", "127.0.0.9")  # nothing listens there
    yield server
    server.stop()


@pytest.fixture
def challenges(net):
    """Our plain-HTTP listener with the challenges it answers, on a port pebble will use."""
    found = Challenges()
    port = pebble_support.free_port()
    net.listen(RedirectSite("", 443, found), "127.0.0.1", port)
    found.port = port  # type: ignore[attr-defined]
    return found


@pytest.fixture
def pebble(tmp_path, challenges, dns_server):
    if not pebble_support.available():
        pytest.skip("pebble (Debian package) is not installed")
    server = pebble_support.Pebble(
        tmp_path / "pebble", challenges.port, dns_server.address, validity=3600
    ).start()
    yield server
    server.stop()


def _service(net, pool, tmp_path, pebble, challenges, domains=("mail.acme.test",), directory=""):
    certificate, key = str(tmp_path / "tls" / "cert.pem"), str(tmp_path / "tls" / "key.pem")
    (tmp_path / "tls").mkdir(exist_ok=True)
    ensure_self_signed(certificate, key, domains[0])
    settings = ACMESettings(
        directory=directory or pebble.directory_url,
        contact="hostmaster@acme.test",
        domains=domains,
        certificate=certificate,
        key=key,
        state_dir=str(tmp_path / "tls" / "acme"),
        ca_file=pebble.ca_file,
    )
    tls = ReloadableTLS(certificate, key)
    reloads: list[int] = []

    def reload() -> None:
        tls.reload()
        reloads.append(1)

    clock = FakeClock()
    service = ACMEService(net.reactor, pool, settings, challenges, reload, clock=clock)
    return service, clock, settings, reloads


def _load(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_certificate_is_issued_then_renewed_at_two_thirds_keeping_the_key(
    net, pool, tmp_path, pebble, challenges
):
    service, clock, settings, reloads = _service(net, pool, tmp_path, pebble, challenges)
    self_signed = _load(settings.certificate)
    net.run(service.check(), timeout=120)
    issued = _load(settings.certificate)
    assert issued.issuer != issued.subject
    assert "Pebble" in issued.issuer.rfc4514_string()
    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.acme.test"]
    assert _spki(issued) == _spki(self_signed)  # the key stays: a TLSA 3 1 1 record holds
    assert reloads == [1]
    assert service.failures == 0
    assert service.next_check == renewal_time(settings.certificate, settings.domains)
    lifetime = issued.not_valid_after_utc - issued.not_valid_before_utc
    assert service.next_check == pytest.approx(
        issued.not_valid_before_utc.timestamp() + lifetime.total_seconds() * 2 / 3
    )
    assert not challenges._answers  # the tokens are withdrawn once the order is done

    net.run(service.check(), timeout=60)  # not due yet: nothing ordered
    assert _load(settings.certificate).serial_number == issued.serial_number
    assert reloads == [1]

    clock.now = service.next_check + 1
    net.run(service.check(), timeout=120)
    renewed = _load(settings.certificate)
    assert renewed.serial_number != issued.serial_number
    assert _spki(renewed) == _spki(issued)
    assert reloads == [1, 1]
    due = renewal_time(settings.certificate, settings.domains)
    assert service.next_check == max(due, clock.now + RETRY_FIRST)  # the clock is ahead here


def test_the_account_is_registered_once_and_reused(net, pool, tmp_path, pebble, challenges):
    service, clock, settings, _ = _service(net, pool, tmp_path, pebble, challenges)
    net.run(service.check(), timeout=120)
    account = (tmp_path / "tls" / "acme" / "account.json").read_text()
    assert oct((tmp_path / "tls" / "acme" / "account.key").stat().st_mode & 0o777) == "0o600"
    clock.now = service.next_check + 1
    net.run(service.check(), timeout=120)
    assert (tmp_path / "tls" / "acme" / "account.json").read_text() == account


def test_a_failed_validation_keeps_the_old_certificate_and_backs_off(
    net, pool, tmp_path, pebble, challenges
):
    service, clock, settings, reloads = _service(
        net, pool, tmp_path, pebble, challenges, domains=("nowhere.acme.test",)
    )
    before = (tmp_path / "tls" / "cert.pem").read_bytes()
    net.run(service.check(), timeout=120)
    assert (tmp_path / "tls" / "cert.pem").read_bytes() == before
    assert service.failures == 1
    assert "validation failed: nowhere.acme.test" in service.last_error
    assert service.next_check == clock.now + RETRY_FIRST
    assert reloads == []
    assert not challenges._answers


def test_an_unreachable_ca_is_retried_with_doubling_delays(net, pool, tmp_path, pebble, challenges):
    closed = f"https://127.0.0.1:{pebble_support.free_port()}/dir"
    service, clock, _, reloads = _service(net, pool, tmp_path, pebble, challenges, directory=closed)
    net.run(service.check(), timeout=60)
    assert service.next_check == clock.now + RETRY_FIRST
    net.run(service.check(), timeout=60)
    assert service.next_check == clock.now + 2 * RETRY_FIRST
    assert service.failures == 2 and reloads == []
    assert service.last_error.startswith(f"directory {closed}")


def _get(net, pool, port: int, path: str) -> tuple[int, bytes]:
    """A GET by http.client in a thread, while the reactor serves it."""
    import http.client

    from twisted.internet import threads

    def fetch() -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    return net.run(threads.deferToThreadPool(net.reactor, pool, fetch))


def test_plain_http_listener_answers_pending_challenges_only(net, pool, challenges):
    challenges.publish("tok-1", "tok-1.thumbprint")
    assert _get(net, pool, challenges.port, "/.well-known/acme-challenge/tok-1") == (
        200,
        b"tok-1.thumbprint",
    )
    assert _get(net, pool, challenges.port, "/.well-known/acme-challenge/other")[0] == 404
    challenges.withdraw("tok-1")
    assert _get(net, pool, challenges.port, "/.well-known/acme-challenge/tok-1")[0] == 404
    assert _get(net, pool, challenges.port, "/inbox")[0] == 308  # everything else: to HTTPS


def test_renewal_time_is_now_for_a_self_signed_or_too_narrow_certificate(tmp_path):
    certificate, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    assert renewal_time(certificate, ("mail.acme.test",)) == 0.0  # none at all
    ensure_self_signed(certificate, key, "mail.acme.test")
    assert renewal_time(certificate, ("mail.acme.test",)) == 0.0
