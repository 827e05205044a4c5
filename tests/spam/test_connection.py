"""Connection and envelope checks (issue 17 item 1) against the twisted.names test DNS: DNS
block and allow lists with their weights and refusal codes, RHSBL on the sender's domain,
HELO sanity, reverse DNS; and that they reach the spam score."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import time

import dns.exception

from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.filters.registry import FilterHost
from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.spam.connection import ConnectionChecks, reversed_name
from txmailhost.spam.scoring import SpamFilter

CLIENT = "192.0.2.7"  # TEST-NET-1: checked like any public address


def checks(resolver, **lists) -> ConnectionChecks:
    return ConnectionChecks("mx.example.test", resolver, **lists)


def named(hits) -> set[str]:
    return {rule.name for rule in hits}


def with_good_rdns(names, address: str = CLIENT, name: str = "mail.sender.test") -> None:
    names.add(ipaddress.ip_address(address).reverse_pointer, "PTR", name)
    names.add(name, "A", address)


def test_reversed_names_for_lists():
    assert reversed_name(ipaddress.ip_address("192.0.2.7")) == "7.2.0.192"
    assert reversed_name(ipaddress.ip_address("2001:db8::1")).startswith("1.0.0.0.")


def test_a_listed_client_scores_the_zones_weight_and_refusal_codes_do_not(names, resolver):
    with_good_rdns(names)
    names.add("mail.sender.test", "MX", "10 mail.sender.test.")
    names.add("7.2.0.192.bl.test", "A", "127.0.0.2")
    names.add("7.2.0.192.refusing.test", "A", "127.255.255.254")  # "public resolver"
    names.add("7.2.0.192.odd.test", "A", "10.0.0.1")  # not a 127/8 answer: ignored
    names.add("7.2.0.192.wl.test", "A", "127.0.10.2")
    c = checks(
        resolver,
        dnsbl={"bl.test": 3.0, "refusing.test": 4.0, "odd.test": 2.0, "clean.test": 5.0},
        dnswl={"wl.test": 2.0},
    )
    hits = c.hits(CLIENT, "mail.sender.test", "someone@sender.test")
    assert named(hits) == {"DNSBL:bl.test", "DNSWL:wl.test"}
    assert {r.name: r.score for r in hits} == {"DNSBL:bl.test": 3.0, "DNSWL:wl.test": -2.0}


def test_rhsbl_checks_the_envelope_senders_domain(names, resolver):
    with_good_rdns(names)
    names.add("spammy.test.rhs.test", "A", "127.0.1.2")
    c = checks(resolver, rhsbl={"rhs.test": 2.5})
    assert named(c.hits(CLIENT, "mail.sender.test", "x@spammy.test")) == {"RHSBL:rhs.test"}
    assert named(c.hits(CLIENT, "mail.sender.test", "x@fine.test")) == set()
    assert named(c.hits(CLIENT, "mail.sender.test", None)) == set()  # the null sender


def test_helo_sanity(names, resolver):
    with_good_rdns(names)
    c = checks(resolver)
    assert named(c.hits(CLIENT, "192.0.2.7", None)) == {"HELO_BARE_IP"}
    assert named(c.hits(CLIENT, "[192.0.2.7]", None)) == set()  # a literal is legal
    assert named(c.hits(CLIENT, "mx.example.test", None)) == {"HELO_OUR_NAME"}
    assert named(c.hits(CLIENT, "localhostish", None)) == {"HELO_NO_FQDN"}
    assert named(c.hits(CLIENT, "nowhere.sender.test", None)) == {"HELO_NXDOMAIN"}
    assert named(c.hits(CLIENT, "mail.sender.test", None)) == set()


def test_reverse_dns_missing_or_not_confirmed(names, resolver):
    names.add("mail.sender.test", "A", CLIENT)
    c = checks(resolver)
    assert named(c.hits(CLIENT, "mail.sender.test", None)) == {"RDNS_NONE"}
    names.add("7.2.0.192.in-addr.arpa", "PTR", "liar.sender.test")
    names.add("liar.sender.test", "A", "192.0.2.99")
    fresh = checks(MailAuthResolver([names.address], timeout=2.0))  # no cached NXDOMAIN
    assert named(fresh.hits(CLIENT, "mail.sender.test", None)) == {"RDNS_MISMATCH"}


def test_own_networks_are_never_checked(resolver):
    c = checks(resolver, dnsbl={"bl.test": 3.0})
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "fd00::1"):
        assert c.hits(address, "192.0.2.7", None) == []


def test_the_checks_reach_the_spam_score(tmp_path, names):
    names.add("7.2.0.192.bl.test", "A", "127.0.0.2")
    host = FilterHost(str(tmp_path), "mx.example.test", MailAuthResolver([names.address]))
    spam = SpamFilter(host=host, dnsbl={"bl.test": 6.0}, bayes=False)
    message = (
        b"From: a@sender.test\r\nTo: alice@example.test\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000"
        b"\r\nMessage-ID: <m@sender.test>\r\nSubject: hello\r\n\r\nhi\r\n"
    )
    verdict = spam.end_of_data(
        Client(CLIENT, helo="mail.sender.test", listener="smtp"),
        Transaction("a@sender.test", ("alice@example.test",)),
        io.BytesIO(message),
    )
    status = dict(verdict.headers)["X-Spam-Status"]
    assert status.startswith("Yes, score=") and "DNSBL:bl.test" in status
    assert verdict.recipients == {"alice@example.test"}  # to Junk


class _Answers:
    """A resolver that knows only its table of A records (no network)."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.asked: list[str] = []

    @contextlib.contextmanager
    def budget(self, seconds: float):
        yield

    def lookup(self, name: str, rdtype: str) -> list:
        self.asked.append(name)
        answer = self.records.get(name)
        return [type("A", (), {"address": answer})()] if answer and rdtype == "A" else []


def test_uribl_and_dbl_refusals_are_not_listings():
    """URIBL's and SURBL's 127.0.0.1 ("query blocked", the answer to a public resolver) and
    the DBL's 127.0.1.255 counted as listed: every message of such a server got the weight."""
    resolver = _Answers({
        "7.2.0.192.bl.test": "127.0.0.1",
        "sender.test.multi.uribl.test": "127.0.0.1",
        "sender.test.dbl.test": "127.0.1.255",
        "spammy.test.dbl.test": "127.0.1.2",
    })  # fmt: skip
    c = ConnectionChecks(
        "mx.example.test", resolver, dnsbl={"bl.test": 3.0}, rdns=False,
        rhsbl={"multi.uribl.test": 2.0, "dbl.test": 2.5},
    )  # fmt: skip
    assert named(c.hits(CLIENT, None, "x@sender.test")) == set()
    assert named(c.hits(CLIENT, None, "x@spammy.test")) == {"RHSBL:dbl.test"}


def test_an_address_literal_sender_domain_is_not_sent_to_rhsbls():
    resolver = _Answers({})
    c = ConnectionChecks("mx.example.test", resolver, rdns=False, rhsbl={"dbl.test": 2.5})
    assert c.hits(CLIENT, None, "x@[192.0.2.1]") == []
    assert not any("dbl.test" in name for name in resolver.asked)


class _BlackHole(MailAuthResolver):
    """A resolver whose server never answers: each lookup waits out its whole lifetime."""

    def __init__(self, timeout: float) -> None:
        super().__init__(["192.0.2.53"], timeout=timeout)
        self.asked = 0

        def resolve(name, rdtype, search=False, lifetime=None):
            self.asked += 1
            time.sleep(timeout if lifetime is None else lifetime)
            raise dns.exception.Timeout()

        self.resolver.resolve = resolve


def test_a_dns_server_that_never_answers_costs_a_message_at_most_the_budget():
    """HELO, reverse DNS and each list waited out its own timeout: with DNS black-holed a
    message took a minute here, far past the chain's 30 s, and every message from outside
    got its ``on_error`` (451). The lookups now share ``dns_budget``: no verdict from DNS."""
    resolver = _BlackHole(timeout=1.0)
    c = ConnectionChecks(
        "mx.example.test", resolver, dnsbl={"a.test": 1, "b.test": 1, "c.test": 1},
        rhsbl={"d.test": 1}, dns_budget=1.5,
    )  # fmt: skip
    started = time.monotonic()
    hits = c.hits(CLIENT, "mail.sender.test", "x@sender.test")
    took = time.monotonic() - started
    assert hits == []  # no answer is no verdict
    assert took < 3, f"{took:.1f}s for {resolver.asked} lookups"
