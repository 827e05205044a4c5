"""DMARC aggregate reports: results recorded per message, one report a day per policy
domain sent to its rua address (RFC 7489 7.2), external destinations only if they agree."""

from __future__ import annotations

import email
import gzip
import io
import time
from xml.etree import ElementTree as ET

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from tests.mailauth.test_checks import message, zone  # noqa: F401 - the fixture
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.mailauth.checks import InboundChecks
from txmailhost.mailauth.reports import DMARCReports, ReportLog, mailto_addresses, report_xml


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


def _entry(domain: str, rua: list[str], **changes) -> dict:
    """One recorded message from ``domain`` (what ``InboundChecks`` writes)."""
    return {
        "source_ip": "192.0.2.1",
        "header_from": domain,
        "policy": {
            "domain": domain,
            "p": "none",
            "sp": "none",
            "pct": 100,
            "adkim": "r",
            "aspf": "r",
            "rua": rua,
        },
        "disposition": "none",
        "dkim_aligned": "pass",
        "spf_aligned": "pass",
        "dkim": [{"domain": domain, "selector": "s1", "result": "pass"}],
        "spf": {"domain": domain, "scope": "mfrom", "result": "pass"},
        **changes,
    }


def _run_reports(log, resolver, send):
    """One run of the report service the day after the records were written."""
    reactor = InlineReactor()
    reactor.advance(time.time() + 86400)
    service = DMARCReports(log, resolver, "mx.example.test", send, reactor, InlinePool())
    with capturedLogs() as events:
        service._tick()
    return reactor, events


def _report_domains(sent) -> list[tuple[str, str]]:
    found = []
    for address, data in sent:
        [part] = [p for p in email.message_from_bytes(data).walk() if p.get_filename()]
        feedback = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
        found.append((address, feedback.findtext("policy_published/domain")))
    return found


def test_a_hostile_rua_neither_stops_the_other_reports_nor_the_day(names, resolver, tmp_path):
    """``rua=mailto:x@`` with its domain's "agreement" at ``rpt.test._report._dmarc.``: the
    empty domain reached the To: field, the header parser raised, and every report of that
    day and of all later days was lost, each run failing on the oldest day again."""
    names.add("rpt.test._report._dmarc", "TXT", "v=DMARC1")
    log = ReportLog(str(tmp_path / "dmarc"))
    log.record(_entry("rpt.test", ["mailto:x@"]))
    log.record(_entry("good.test", ["mailto:agg@good.test"]))
    sent: list[tuple[str, bytes]] = []

    async def send(address, data):
        sent.append((address, data))

    reactor, events = _run_reports(log, resolver, send)
    assert _report_domains(sent) == [("agg@good.test", "good.test")]
    assert log.finished_days(reactor.seconds()) == []
    assert not [e for e in events if e["log_level"] is LogLevel.critical]


def test_a_report_that_cant_be_built_or_sent_is_skipped_with_one_warning(resolver, tmp_path):
    """A record the writer can't read (here one without SPF results) and a destination
    whose hand-off fails cost their own report, not the others' nor the day."""
    log = ReportLog(str(tmp_path / "dmarc"))
    broken = _entry("broken.test", ["mailto:r@broken.test"])
    del broken["spf"]
    log.record(broken)
    log.record(_entry("down.test", ["mailto:r@down.test"]))
    log.record(_entry("good.test", ["mailto:agg@good.test"]))
    sent: list[tuple[str, bytes]] = []

    async def send(address, data):
        if address.endswith("@down.test"):
            raise OSError(28, "No space left on device")
        sent.append((address, data))

    reactor, events = _run_reports(log, resolver, send)
    assert _report_domains(sent) == [("agg@good.test", "good.test")]
    assert log.finished_days(reactor.seconds()) == []
    warnings = [formatEvent(e) for e in events if e["log_level"] is LogLevel.warn]
    assert len(warnings) == 2
    assert "broken.test" in warnings[0] and "r@down.test" in warnings[1]
    assert not [e for e in events if "log_failure" in e or e["log_level"] is LogLevel.critical]


@pytest.mark.parametrize(
    "uri",
    [
        "mailto:x@",
        "mailto:@x.test",
        "mailto:x",
        "mailto:a@x",  # one label: not a domain mail can go to
        "mailto:a@-x.test",
        "mailto:a\x00b@x.test",
        "mailto:a\tb@x.test",
        "mailto:a@x.test\t",
        "mailto:a@x.te\x00st",
        "mailto:a%00b@x.test",
        "mailto:a%ffb@x.test",  # not UTF-8
        "mailto:a b@x.test",
        "mailto:a<b>@x.test",
    ],
)
def test_a_mailto_without_a_valid_address_is_no_destination(uri):
    assert mailto_addresses([uri]) == []


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("mailto:a@x.test?subject=hello", "a@x.test"),
        ("mailto:Agg@Reports.X.Test!10m", "Agg@reports.x.test"),
        ("MAILTO:dmarc%2Breports@x.test", "dmarc+reports@x.test"),  # RFC 6068 2: %-encoded
        ("mailto:r@bücher.test", "r@xn--bcher-kva.test"),
    ],
)
def test_a_mailto_address_is_its_addr_spec_without_query_or_size(uri, address):
    assert mailto_addresses([uri]) == [address]


def _signed_by(selector: bytes, domain: bytes) -> bytes:
    """Mail from a@victim.test with a (not verifying) signature naming ``selector``."""
    signature = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + domain
                 + b"; s=" + selector + b"; h=from; bh=AAAA; b=AAAA\r\n")  # fmt: skip
    return signature + message("a@victim.test")


@pytest.mark.parametrize(
    ("selector", "domain"),
    [
        (b"a\x01b", b"victim.test"),
        (b"a\x00b", b"victim.test"),
        (b"s1", b"victim\x0c.test"),
        (b"a<b&c", b"victim.test"),
        (b"a\xffb", b"victim.test"),
    ],  # fmt: skip
)
def test_control_characters_a_sender_signs_with_keep_the_report_well_formed(
    names, resolver, tmp_path, selector, domain
):
    """Anyone can send mail "From" another domain with a signature naming any selector:
    ``s=a\\x01b`` was written raw into the XML report sent to that domain, which then
    could not be parsed. An ``s=`` that isn't a selector (RFC 6376 3.1) is recorded as
    none, and leaves the report's ``<selector>`` out; a ``d=`` that isn't a domain name
    as empty."""
    names.add("_dmarc.victim.test", "TXT", "v=DMARC1; p=none; rua=mailto:agg@victim.test")
    log = ReportLog(str(tmp_path / "dmarc"))
    checks = InboundChecks(resolver, "mx.example.test", reports=log)
    transaction = Transaction("a@victim.test", ("alice@example.test",))
    checks.end_of_data(Client("127.0.0.1"), transaction, io.BytesIO(_signed_by(selector, domain)))
    sent: list[tuple[str, bytes]] = []

    async def send(address, data):
        sent.append((address, data))

    _run_reports(log, resolver, send)
    [(_, data)] = sent
    [part] = [p for p in email.message_from_bytes(data).walk() if p.get_filename()]
    feedback = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
    [dkim] = feedback.findall("record/auth_results/dkim")
    if selector == b"s1":
        assert (dkim.findtext("selector"), dkim.findtext("domain")) == ("s1", "")
    else:
        assert dkim.find("selector") is None and dkim.findtext("domain") == "victim.test"


def test_characters_xml_cant_carry_are_replaced_in_a_report():
    """Records written before selectors were checked (or any other text): XML 1.0 has no
    way to write most C0 controls, lone surrogates or U+FFFE, escaped or not."""
    entry = _entry("victim.test", ["mailto:agg@victim.test"])
    entry["dkim"] = [{"domain": "victim.test", "selector": "a\x00\x01\x0c\ud800\ufffeb\tc",
                      "result": "fail"}]  # fmt: skip
    xml = report_xml("victim.test", [entry], "mx.example.test", "m@x.test", "id", 0, 1)
    feedback = ET.fromstring(xml)
    assert feedback.findtext("record/auth_results/dkim/selector") == "a" + "\ufffd" * 5 + "b\tc"


def test_a_report_over_a_destinations_size_limit_is_not_sent_there(resolver, tmp_path):
    """RFC 7489 6.2: ``mailto:r@x!100`` takes reports of at most 100 octets (units ``k``,
    ``m``, ``g``, ``t`` powers of two); the limit was dropped and every report sent."""
    log = ReportLog(str(tmp_path / "dmarc"))
    log.record(_entry("small.test", ["mailto:agg@small.test!100", "mailto:big@small.test!1k"]))
    log.record(_entry("good.test", ["mailto:agg@good.test!10m", "mailto:b@good.test!1K"]))
    sent: list[tuple[str, bytes]] = []

    async def send(address, data):
        sent.append((address, data))

    reactor, events = _run_reports(log, resolver, send)
    assert all(len(data) > 1024 for _address, data in sent)  # so "1k" is too small
    assert _report_domains(sent) == [("agg@good.test", "good.test")]
    assert email.message_from_bytes(sent[0][1])["To"] == "agg@good.test"
    assert log.finished_days(reactor.seconds()) == []
    skipped = [formatEvent(e) for e in events if "over the" in formatEvent(e)]
    assert len(skipped) == 3
    assert {s.split(" not sent to ")[1].split(":")[0] for s in skipped} == {
        "b@good.test",
        "agg@small.test",
        "big@small.test",
    }


def test_an_address_named_twice_gets_the_report_once(resolver, tmp_path):
    log = ReportLog(str(tmp_path / "dmarc"))
    log.record(_entry("good.test", ["mailto:agg@good.test", "mailto:agg@GOOD.test!10m"]))
    sent: list[tuple[str, bytes]] = []

    async def send(address, data):
        sent.append((address, data))

    _run_reports(log, resolver, send)
    assert _report_domains(sent) == [("agg@good.test", "good.test")]


@pytest.mark.parametrize("size", ["", "5x", "k", "-1", "1.5m", "123456789012345678901"])
def test_a_mailto_whose_size_is_not_one_is_no_destination(size):
    """What follows the "!" must be a size (6.4; at most a 64-bit number): a report can't
    be known to fit anything else."""
    assert mailto_addresses([f"mailto:agg@x.test!{size}"]) == []
