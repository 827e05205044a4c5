"""DMARC aggregate reports: results recorded per message, one report a day per policy
domain sent to its rua address (RFC 7489 7.2), external destinations only if they agree."""

from __future__ import annotations

import email
import gzip
import io
import time
from xml.etree import ElementTree as ET

from twisted.internet.task import Clock

from tests.mailauth.test_checks import message, zone  # noqa: F401 - the fixture
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.mailauth.checks import InboundChecks
from txmailhost.mailauth.reports import DMARCReports, ReportLog, mailto_addresses


class InlinePool:
    """deferToThreadPool's pool, running the work at once (the test has no threads)."""

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        try:
            onResult(True, f(*args, **kwargs))
        except Exception as e:
            onResult(False, e)


class InlineReactor(Clock):
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def test_recorded_results_become_one_report_per_policy_domain(zone, names, resolver, tmp_path):  # noqa: F811
    names.add("_report._dmarc.reports.test", "TXT", "v=DMARC1")  # wildcard-free: not this
    names.add("bank.test._report._dmarc.reports.test", "TXT", "v=DMARC1")
    log = ReportLog(str(tmp_path / "dmarc"))
    checks = InboundChecks(resolver, "mx.example.test", reports=log)
    client = Client("127.0.0.1", helo="mx.good.test")
    day = time.time()
    for author, sender in [("a@good.test", "a@good.test")] * 2 + [
        ("ceo@bank.test", "ceo@bank.test")
    ]:
        data = zone.sign_bytes(message(author)) if author.endswith("good.test") else message(author)
        checks.end_of_data(client, Transaction(sender, ("alice@example.test",)), io.BytesIO(data))
    # good.test has no rua=: nothing recorded; bank.test (rua=mailto:r@bank.test) once.
    [entry] = log.entries(time.strftime("%Y-%m-%d", time.gmtime(day)))
    assert entry["header_from"] == "bank.test" and entry["disposition"] == "reject"
    assert entry["spf"]["result"] == "fail" and entry["dkim_aligned"] == "fail"
    # A second domain with an external rua that agrees, and one whose doesn't.
    log.record({**entry, "header_from": "bank.test",
                "policy": {**entry["policy"], "rua": ["mailto:agg@reports.test!10m"]}})  # fmt: skip
    log.record({**entry, "header_from": "other.test",
                "policy": {**entry["policy"], "domain": "other.test",
                           "rua": ["mailto:agg@reports.test"]}})  # fmt: skip

    sent: list[tuple[str, bytes]] = []

    async def send(address, data):
        sent.append((address, data))

    reactor = InlineReactor()
    reactor.advance(day + 86400)
    service = DMARCReports(log, resolver, "mx.example.test", send, reactor, InlinePool())
    service._tick()
    assert [address for address, _ in sent] == ["agg@reports.test"]
    mail = email.message_from_bytes(sent[0][1])
    assert mail["Subject"].startswith("Report Domain: bank.test Submitter: mx.example.test")
    [part] = [p for p in mail.walk() if p.get_filename()]
    assert part.get_filename().startswith("mx.example.test!bank.test!")
    feedback = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
    assert feedback.findtext("policy_published/domain") == "bank.test"
    assert feedback.findtext("policy_published/p") == "reject"
    counts = sorted(int(r.findtext("row/count")) for r in feedback.findall("record"))
    assert counts == [2]  # the same source and results: one row, counted twice
    assert feedback.findtext("record/row/policy_evaluated/disposition") == "reject"
    assert log.finished_days(reactor.seconds()) == []  # the day is marked sent


def test_mailto_addresses_keep_only_mail_destinations():
    assert mailto_addresses(["mailto:a@x.test!10m", "https://x.test/r", "mailto:bad address"]) == [
        "a@x.test"
    ]


def test_only_the_first_two_report_addresses_of_a_record_are_used():
    """RFC 7489 6.2 lets a receiver limit them (it need support two): a record of 2,000
    addresses made 2,000 reports a day."""
    from txmailhost.mailauth.dmarc import parse_record

    addresses = ",".join(f"mailto:r{n}@example.test" for n in range(2000))
    policy = parse_record("example.test", f"v=DMARC1; p=none; rua={addresses}")
    assert policy is not None
    assert policy.rua == ("mailto:r0@example.test", "mailto:r1@example.test")
