"""The client before a trusted relay (``txmailhost/received.py``), read from the ``Received:`` field the
relay wrote: the formats of Postfix, Sendmail, Exim, qmail and Microsoft's servers, the trust
walk, and the connection checks on that client (through the real server:
``tests/e2e/test_spam.py``)."""

from __future__ import annotations

import io

import pytest

from tests.spam.test_connection import checks, named
from txmailhost.received import (
    MAX_CHARS,
    MAX_FIELDS,
    Hop,
    last_external,
    parse,
    received_values,
)
from txmailhost.spam.connection import ConnectionChecks


@pytest.mark.parametrize(
    ("value", "hop"),
    [
        (  # Postfix, with a reverse name and with none ("unknown")
            "from mail.sender.test (mail.sender.test [192.0.2.7])\r\n\tby mx.example.test "
            "(Postfix) with ESMTPS id 4F1; Mon, 7 Dec 2026 08:00:00 +0000",
            Hop("192.0.2.7", "mail.sender.test", "mail.sender.test"),
        ),
        (
            "from hello.test (unknown [192.0.2.7]) by mx.example.test (Postfix) with SMTP id 1",
            Hop("192.0.2.7", "hello.test", ""),
        ),
        (  # Sendmail: an ident, "(may be forged)", and nothing at all for no name
            "from lugh.tuatha.org (root@lugh.tuatha.org [194.125.145.45]) by dogma.slashnull.org "
            "(8.11.6/8.11.6) with ESMTP id g72LqWv13294",
            Hop("194.125.145.45", "lugh.tuatha.org", "lugh.tuatha.org"),
        ),
        (
            "from rev.test (host.rev.test [192.0.2.7] (may be forged)) by mx (8.15.2/8.15.2) id 1",
            Hop("192.0.2.7", "rev.test", "host.rev.test"),
        ),
        (
            "from mandark.labs.netnoteinc.com ([213.105.180.140]) by dogma.slashnull.org "
            "(8.11.6/8.11.6) with ESMTP id g4D3kCe15097",
            Hop("213.105.180.140", "mandark.labs.netnoteinc.com", ""),
        ),
        (  # IPv6, bare and as Sendmail's "IPv6:" literal
            "from mx.sender.test (mx.sender.test [IPv6:2001:db8::25]) by mx (8.17.1/8.17.1)",
            Hop("2001:db8::25", "mx.sender.test", "mx.sender.test"),
        ),
        (
            "from mx.sender.test (unknown [2001:db8::25]) by mx.example.test (Postfix) id 1",
            Hop("2001:db8::25", "mx.sender.test", ""),
        ),
        (  # Exim: the name first, else the address; HELO apart when it differs
            "from mail.sender.test ([192.0.2.7] helo=pc17) by mx with esmtps (Exim 4.96) id 1",
            Hop("192.0.2.7", "pc17", "mail.sender.test"),
        ),
        (
            "from mail.sender.test ([192.0.2.7]:51234) by mx with esmtp (Exim 4.96) id 1",
            Hop("192.0.2.7", "mail.sender.test", "mail.sender.test"),
        ),
        (
            "from [192.0.2.7] (helo=pc17) by mx with esmtp (Exim 4.96) id 1",
            Hop("192.0.2.7", "pc17", ""),
        ),
        (  # qmail
            "from unknown (HELO pc17.sender.test) (192.0.2.7) by mail.example.test with SMTP",
            Hop("192.0.2.7", "pc17.sender.test", ""),
        ),
        (
            "from mail.sender.test (192.0.2.7) by mail.example.test with SMTP; 7 Dec 2026",
            Hop("192.0.2.7", "mail.sender.test", "mail.sender.test"),
        ),
        (  # Microsoft's servers and ours record no name: no name says nothing
            "from html ([206.216.197.214]) by webcust2.example.test with Microsoft "
            "SMTPSVC(5.5.1877.197.19); Wed, 15 May 2002 00:55:53 -0700",
            Hop("206.216.197.214", "html", None),
        ),
        (
            "from EXCH01 (192.0.2.7) by EXCH02.example.test (10.1.1.2) with Microsoft SMTP "
            "Server (version=TLS1_2) id 15.1.2507.6",
            Hop("192.0.2.7", "EXCH01", None),
        ),
        (
            "from pc17.sender.test ([192.0.2.7])\r\n\tby mx.example.test (txmailhost) with "
            "ESMTP id 1DfQ2;\r\n\tMon, 07 Dec 2026 08:00:00 +0000",
            Hop("192.0.2.7", "pc17.sender.test", None),
        ),
        (  # ours, having looked the client up (reversedns.py)
            "from pc17.sender.test (unknown [192.0.2.7])\r\n\tby mx.example.test (txmailhost) "
            "with ESMTP id 1DfQ2;\r\n\tMon, 07 Dec 2026 08:00:00 +0000",
            Hop("192.0.2.7", "pc17.sender.test", ""),
        ),
    ],
)
def test_the_client_is_read_from_each_mtas_format(value, hop):
    assert parse(value) == hop


@pytest.mark.parametrize(
    "value",
    [
        "(qmail 27061 invoked by uid 104); 21 Aug 2002 15:15:21 -0000",
        "(from mail@localhost) by int-mx1.example.test (8.11.6/8.11.6) id g7LCUqx17585",
        "by mx.example.test (Postfix, from userid 1000) id 5C1; Mon, 7 Dec 2026",
        "from a (b [192.0.2.300]) by x (Postfix)",  # not an address
        "from nowhere by x with local",
    ],
)
def test_a_field_that_names_no_client_address_is_none(value):
    assert parse(value) is None


def _trusted(address: str) -> bool:
    return address.startswith(("127.", "10."))


def test_the_walk_stops_at_the_first_client_not_trusted_and_reads_nothing_below():
    received = [
        "from relay.lan ([10.0.0.5]) by mx.example.test (txmailhost) with ESMTP id 1",
        "(qmail 1 invoked from network); 7 Dec 2026",
        "from localhost (localhost [127.0.0.1]) by relay.lan (Postfix) with ESMTP id 2",
        "from pc17 (unknown [192.0.2.7]) by relay.lan (Postfix) with ESMTP id 3",
        # written by the sender's machine or anyone on the way: never read
        "from trusted.example (trusted.example [10.9.9.9]) by pc17 (Postfix) id 4",
    ]
    assert last_external(received, _trusted) == Hop("192.0.2.7", "pc17", "")
    assert last_external(received[:3], _trusted) is None  # every client trusted
    padded = ["from lan ([10.0.0.5]) by mx (Postfix) id 1"] * MAX_FIELDS + received[3:]
    assert last_external(padded, _trusted) is None  # not read past MAX_FIELDS


def test_received_values_are_unfolded_from_the_top_and_the_body_is_not_read():
    head = (
        b"Return-Path: <a@sender.test>\r\nReceived: from a ([10.0.0.5])\r\n\tby mx id 1;\r\n"
        b"\tMon, 7 Dec 2026\r\nSubject: x\r\nreceived: from b ([192.0.2.7]) by relay id 2\r\n"
        b"\r\nReceived: from body ([192.0.2.9]) by nobody\r\n"
    )
    assert list(received_values(head)) == [
        " from a ([10.0.0.5]) \tby mx id 1; \tMon, 7 Dec 2026",
        " from b ([192.0.2.7]) by relay id 2",
    ]


RELAYED = [
    "from relay.lan ([127.0.0.1]) by mx.example.test (txmailhost) with ESMTP id 1",
    "from pc17 (unknown [192.0.2.7]) by relay.lan (Postfix) with ESMTP id 2",
]


def test_a_trusted_clients_sender_is_checked_as_the_relay_wrote_it_down(names, resolver):
    names.add("7.2.0.192.bl.test", "A", "127.0.0.2")
    c = checks(resolver, dnsbl={"bl.test": 3.0})
    hits = c.hits("127.0.0.1", "relay.lan", "x@sender.test", RELAYED)
    assert named(hits) == {"HELO_NO_FQDN", "RDNS_NONE", "DNSBL:bl.test"}
    assert all("(192.0.2.7, relayed)" in rule.description for rule in hits if "bl" not in rule.name)
    # what the relay says of the client's name is believed; none is asked of DNS
    named_client = ["from mail.sender.test (mail.sender.test [192.0.2.8]) by relay (Postfix)"]
    assert c.hits("10.0.0.5", "relay.lan", None, named_client) == []
    assert c.hits("127.0.0.1", "relay.lan", None, []) == []  # no Received: nothing to check


def test_trusted_relays_extend_trust_to_a_public_relay(names, resolver):
    relay = "198.51.100.25"  # TEST-NET-2: a backup MX at another provider
    received = [f"from backup.test (backup.test [{relay}]) by mx (txmailhost) id 1", RELAYED[1]]
    plain = checks(resolver)
    # untrusted, the relay itself is checked (it has no reverse DNS here)
    assert named(plain.hits(relay, "backup.test", None, received)) == {
        "RDNS_NONE",
        "HELO_NXDOMAIN",
    }
    trusting = ConnectionChecks("mx.example.test", resolver, trusted_relays=["198.51.100.0/24"])
    assert named(trusting.hits(relay, "backup.test", None, received)) == {
        "HELO_NO_FQDN",
        "RDNS_NONE",
    }
    assert trusting.asks_dns(relay) is False  # nothing to ask DNS about the client before it
    assert ConnectionChecks("mx", resolver, dnsbl={"bl.test": 1}).asks_dns("127.0.0.1")


@pytest.mark.parametrize("given", ["10.0.0.0/8", ["10.0.0.0/8", "not a network"], [10]])
def test_trusted_relays_that_dont_parse_are_refused(given):
    with pytest.raises(ValueError):
        ConnectionChecks("mx.example.test", None, trusted_relays=given)


def test_a_field_is_read_only_as_far_as_a_real_one_goes():
    """A header section may be 1 MiB; a trusted client's is read on the reactor thread, so
    no field costs more than ``MAX_CHARS`` of parsing however long it is."""
    padding = b"\t" + b"(x [" * 100_000 + b"\r\n"
    head = b"Received: from pad" + b"\r\n" + padding + b"Received: " + RELAYED[1].encode()
    first, second = received_values(head + b"\r\n\r\n")
    assert len(first) <= MAX_CHARS and second == " " + RELAYED[1]
    assert parse(first) is None
    assert last_external([first, second], _trusted) == Hop("192.0.2.7", "pc17", "")


FETCHED = (  # fetched from an ISP's mailbox and handed on over loopback, as fetchmail does
    b"Received: from localhost (localhost [127.0.0.1]) by home.example (txmailhost) with"
    b" ESMTP id 1; Tue, 3 Sep 2002 18:00:00 +0000\r\n"
    b"Received: from pc17 (unknown [192.0.2.7]) by mx.isp.example (Postfix) with ESMTP id 2;"
    b" Tue, 3 Sep 2002 10:00:00 +0000\r\n"
    b"From: a@sender.test\r\nTo: alice@example.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@sender.test>\r\nDate: Tue, 3 Sep 2002 14:00:00 +0000\r\n\r\nhi\r\n"
)


def test_mail_a_relay_hands_on_is_dated_against_when_the_relay_received_it(tmp_path):
    """DATE_IN_FUTURE compares the Date with the message's arrival: for mail a trusted relay
    hands on, when that relay received it (its Received: date), not when we did; a relay's
    clock ahead of ours counts as now."""
    from txmailhost.filters.interfaces import Client, Transaction
    from txmailhost.filters.registry import FilterHost
    from txmailhost.spam.scoring import SpamFilter, arrival

    f = SpamFilter(host=FilterHost(str(tmp_path), "mx.example.test"), dns_checks=False)
    transaction = Transaction("a@sender.test", ("alice@example.test",))

    def status(client: str, message: bytes) -> str:
        verdict = f.end_of_data(Client(client, listener="smtp"), transaction, io.BytesIO(message))
        return dict(verdict.headers)["X-Spam-Status"]

    assert "DATE_IN_FUTURE" in status("127.0.0.1", FETCHED)  # 4 h ahead of 10:00
    assert "DATE_IN_FUTURE" not in status("192.0.2.9", FETCHED)  # straight from it: now
    later = FETCHED.replace(b"Date: Tue, 3 Sep 2002 14:00", b"Date: Tue, 3 Sep 2002 12:00")
    assert "DATE_IN_FUTURE" not in status("127.0.0.1", later)  # 2 h: within the slack
    assert arrival(None) is None
    assert arrival(Hop("192.0.2.7", "pc17", "", 1031047200.0)) == 1031047200.0
    assert arrival(Hop("192.0.2.7", "pc17", "", 4e9), now=2e9) == 2e9  # never past now


def test_the_scoring_process_judges_at_the_arrival_it_is_sent():
    """The reactor sends the arrival with the request; the child scores at it."""
    import json

    from txmailhost.spam.scorechild import _answer
    from txmailhost.spam.scorer import Scorer

    head, _, body = FETCHED.partition(b"\r\n\r\n")
    request = {"owners": [None], "sender": "a@sender.test", "connection": [], "truncated": False}
    for arrival, fires in ((1031047200.0, True), (None, False), ("soon", False)):
        answer = _answer(Scorer(None), json.dumps({**request, "arrival": arrival}).encode(),
                         head + b"\r\n\r\n", body)  # fmt: skip
        hits = [rule[0] for rule in json.loads(answer)["scores"][0][1]]
        assert ("DATE_IN_FUTURE" in hits) is fires
