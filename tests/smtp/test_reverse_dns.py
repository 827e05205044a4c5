"""The client's reverse DNS name, looked up at connect (``reversedns.py``): forward-confirmed,
written into our ``Received:`` as Postfix writes it, handed to the filters (rspamd's
``Hostname``), and never looked up for our own networks. Against the twisted.names test DNS,
the session on the test reactor (its thread pool runs the lookups at once)."""

from __future__ import annotations

import os
from typing import BinaryIO

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from tests.smtp.test_server import Session
from tests.support.fixtures import make_world
from txmailhost import reversedns
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.filters.base import ACCEPT, MessageFilter
from txmailhost.filters.chain import FilterChain
from txmailhost.filters.interfaces import Client, Transaction, Verdict
from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.ops import metrics
from txmailhost.received import Hop, parse
from txmailhost.reversedns import ReverseDNS
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory
from txmailhost.spam.rspamd import RspamdClient

CLIENT = "192.0.2.7"  # the test session's peer (TEST-NET-1)
PTR = "7.2.0.192.in-addr.arpa"


class Recorder(MessageFilter):
    """Keeps the Client each message's filters were given."""

    name = "recorder"

    def __init__(self) -> None:
        self.clients: list[Client] = []

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Verdict:
        self.clients.append(client)
        return ACCEPT


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user("alice@example.test")
    return w


def deliver(world, names, peer: str = CLIENT, budget: float = 5.0) -> tuple[bytes, Client]:
    """One message from ``peer`` to alice; (what was stored, the Client the filter saw)."""
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    recorder = Recorder()
    resolver = MailAuthResolver([names.address], timeout=0.5)
    factory = SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        hostname="mx.example.test",
        reactor=world.reactor,
        filters=FilterChain([recorder], world.reactor, world.pool, timeout=10),
        reverse_dns=ReverseDNS(resolver, world.reactor, world.pool, budget=budget),
    )
    s = Session(factory, StringTransport(peerAddress=IPv4Address("TCP", peer, 40000)))
    s.read()
    s.send(b"EHLO pc17.sender.test\r\nMAIL FROM:<a@sender.test>\r\n")
    s.send(b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert s.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").startswith(b"250 ")
    (stored,) = world.inbox_files("alice@example.test")
    (client,) = recorder.clients
    return stored, client


def received(stored: bytes) -> str:
    field = stored.split(b"\r\nReceived: ", 1)[1].split(b";", 1)[0]
    return " ".join(field.decode().split())


def counted(result: str) -> float:
    return metrics.REVERSE_DNS.labels(result)._value.get()


def test_a_verified_name_goes_into_received_and_to_the_filters(world, names):
    names.add(PTR, "PTR", "mail.sender.test")
    names.add("mail.sender.test", "A", CLIENT)
    before = counted("name")
    stored, client = deliver(world, names)
    assert counted("name") == before + 1  # txmailhost_smtp_reverse_dns{result="name"}
    assert received(stored).startswith("from pc17.sender.test (mail.sender.test [192.0.2.7])")
    assert client.reverse_name == "mail.sender.test"
    # what SpamAssassin, rspamd and our own relayed checks read of it downstream
    assert parse(received(stored)) == Hop(CLIENT, "pc17.sender.test", "mail.sender.test")


@pytest.mark.parametrize("pointing", [None, "192.0.2.99"])
def test_no_name_or_one_that_doesnt_resolve_back_is_unknown(world, names, pointing):
    if pointing:  # a PTR anyone with the reverse zone could write: not confirmed
        names.add(PTR, "PTR", "mail.bank.test")
        names.add("mail.bank.test", "A", pointing)
    stored, client = deliver(world, names)
    assert received(stored).startswith("from pc17.sender.test (unknown [192.0.2.7])")
    assert client.reverse_name == ""
    assert parse(received(stored)) == Hop(CLIENT, "pc17.sender.test", "")


def test_dns_that_doesnt_answer_leaves_the_name_unknown_and_the_mail_taken(world, names):
    names.fail(PTR, "silent")
    stored, client = deliver(world, names, budget=1.0)
    assert received(stored).startswith("from pc17.sender.test ([192.0.2.7])")
    assert client.reverse_name is None
    assert parse(received(stored)).rdns is None  # not "no name": not known


@pytest.mark.parametrize("peer", ["127.0.0.1", "10.1.2.3", "192.168.7.7"])
def test_our_own_networks_are_not_looked_up(world, names, peer):
    names.fail(f"{'.'.join(reversed(peer.split('.')))}.in-addr.arpa", "silent")
    stored, client = deliver(world, names, peer=peer)
    assert received(stored).startswith(f"from pc17.sender.test ([{peer}])")
    assert client.reverse_name is None


@pytest.mark.parametrize(
    ("name", "hostname"), [("mail.sender.test", "mail.sender.test"), ("", "unknown"), (None, None)]
)
def test_rspamd_is_told_the_name_as_postfixs_milter_tells_it(name, hostname):
    client = Client(CLIENT, reverse_name=name, helo="pc17.sender.test")
    fields = dict(RspamdClient._envelope(client, Transaction("a@sender.test", ("b@x.test",))))
    assert fields.get("Hostname") == hostname


def test_lookups_under_way_are_bounded_and_clients_past_it_are_not_looked_up(monkeypatch):
    """A flood of connections while DNS is slow holds at most ``max_in_flight`` of the
    filters' threads; the clients past it get no name (their mail is taken as ever)."""
    under_way: list[Deferred] = []

    def held(*_args: object) -> Deferred:
        under_way.append(Deferred())
        return under_way[-1]

    monkeypatch.setattr(reversedns, "run_in_share", held)

    class Uncached:
        def from_cache(self, work, *args):
            return False, None

    reverse_dns = ReverseDNS(Uncached(), reactor=None, pool=None, max_in_flight=2)
    skipped = counted("skipped")
    results: list[str | None] = []
    for i in range(1, 5):
        reverse_dns.lookup(f"192.0.2.{i}").addCallback(results.append)
    assert len(under_way) == 2 and reverse_dns.skipped == 2 == counted("skipped") - skipped
    assert results == [None, None]  # the two past the bound, at once
    under_way[0].callback("mail.one.test")
    under_way[1].callback("")
    assert results == [None, None, "mail.one.test", ""] and reverse_dns.in_flight == 0
    reverse_dns.lookup("192.0.2.5")  # room again
    assert len(under_way) == 3


def test_a_lookup_that_breaks_leaves_the_name_unknown_and_the_session_alone():
    class Broken:
        def from_cache(self, work, *args):
            raise RuntimeError("a resolver bug")

    results: list[str | None] = []
    ReverseDNS(Broken(), reactor=None, pool=None).lookup("192.0.2.7").addCallback(results.append)
    assert results == [None]
