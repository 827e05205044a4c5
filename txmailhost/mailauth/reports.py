"""DMARC aggregate reports (RFC 7489 7.2): what we saw, per sending domain, once a day.

Every inbound message whose From domain publishes a DMARC policy with ``rua=`` leaves one
JSON line in ``DATA/dmarc/YYYY-MM-DD.jsonl`` (UTC day; ``ReportLog.record``, from the
filters' thread): the source address, the From domain, the policy found, what we did
(``disposition``), and the DKIM and SPF results with their alignment.

``DMARCReports`` (a service) wakes a few minutes after midnight UTC, and at start: each
finished day's file becomes one report per policy domain — the RFC 7489 appendix C XML,
gzip'd, attached to a message whose subject and file name follow 7.2.1.1 — sent to the
domain's ``rua`` mailto: addresses through the server's DSN path (``return_to_sender``: the
null sender, so a report can't bounce back and forth; DKIM-signed there when the host
name's domain has keys). A ``rua`` in another organisation's domain is used only if that
domain agrees (7.1: a ``POLICY._report._dmarc.RUA-DOMAIN`` TXT record starting
``v=DMARC1``). A sent day's file is renamed ``.sent``, kept for the administrator.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import re
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from xml.etree import ElementTree as ET

from twisted.application.service import Service
from twisted.internet import threads
from twisted.logger import Logger

from txmailhost.accounts.addresses import canonical_address, canonical_domain
from txmailhost.accounts.interfaces import AccountError
from txmailhost.mailauth.dmarc import organizational_domain
from txmailhost.mailauth.resolver import DNSTempError

log = Logger()

# Not in a URI (RFC 3986 2), and what the accounts' rules would strip from an address's ends
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x1f\x7f-\x9f\s]")
# Outside XML 1.0's Char production (2.2): not writable in a document, escaped or not
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# RFC 6376 3.1: a selector is sub-domain *("." sub-domain), labels as in a host name
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# RFC 7489 6.4: a dmarc-uri's size, and the power of two each unit stands for (6.2)
_SIZE = re.compile(r"([0-9]{1,20})([kmgtKMGT]?)")
_UNIT_BITS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


class ReportLog:
    """The per-day record files in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def record(self, entry: dict[str, Any], now: float | None = None) -> None:
        """Append one message's results (blocking: a worker thread)."""
        now = time.time() if now is None else now
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        line = json.dumps({"time": int(now), **entry}, sort_keys=True) + "\n"
        path = os.path.join(self.directory, f"{_day(now)}.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
        finally:
            os.close(fd)

    def finished_days(self, now: float | None = None) -> list[str]:
        """Days before today (UTC) with records not reported yet."""
        today = _day(time.time() if now is None else now)
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n[:-6] for n in names if n.endswith(".jsonl") and n[:-6] < today)

    def entries(self, day: str) -> list[dict[str, Any]]:
        found = []
        with open(os.path.join(self.directory, f"{day}.jsonl")) as f:
            for line in f:
                try:
                    found.append(json.loads(line))
                except ValueError:  # a line cut by a crash: skipped
                    continue
        return found

    def mark_sent(self, day: str) -> None:
        path = os.path.join(self.directory, f"{day}.jsonl")
        os.replace(path, path[: -len(".jsonl")] + ".sent")


def recorded_selector(selector: str) -> str:
    """A DKIM ``s=`` as the day's records keep it: "" (no selector) unless it is one. The
    sender writes it, and ``a\x01b`` made the report to the From domain unreadable."""
    return selector if len(selector) <= 253 and _SELECTOR.fullmatch(selector) else ""


def recorded_domain(domain: str) -> str:
    """A DKIM ``d=`` or SPF domain as the day's records keep it: canonical, "" unless it
    is a domain name."""
    try:
        return canonical_domain(domain)
    except AccountError:
        return ""


def _text(parent: ET.Element, tag: str, value: Any) -> ET.Element:
    """ElementTree escapes ``<`` and ``&`` but writes controls as they are, which no XML
    parser reads: each character XML 1.0 can't carry becomes U+FFFD."""
    element = ET.SubElement(parent, tag)
    element.text = _NOT_XML_CHAR.sub("\ufffd", str(value))
    return element


def report_xml(
    policy_domain: str, entries: list[dict[str, Any]], org: str, email: str, report_id: str,
    begin: int, end: int,
) -> bytes:  # fmt: skip
    """The aggregate report (RFC 7489 appendix C) for ``entries`` of one policy domain."""
    feedback = ET.Element("feedback")
    _text(feedback, "version", "1.0")
    meta = ET.SubElement(feedback, "report_metadata")
    _text(meta, "org_name", org)
    _text(meta, "email", email)
    _text(meta, "report_id", report_id)
    span = ET.SubElement(meta, "date_range")
    _text(span, "begin", begin)
    _text(span, "end", end)
    policy = entries[-1]["policy"]
    published = ET.SubElement(feedback, "policy_published")
    _text(published, "domain", policy_domain)
    _text(published, "adkim", policy["adkim"])
    _text(published, "aspf", policy["aspf"])
    _text(published, "p", policy["p"])
    _text(published, "sp", policy["sp"])
    _text(published, "pct", policy["pct"])
    rows: Counter[str] = Counter()
    for entry in entries:
        key = {k: entry[k] for k in ("source_ip", "disposition", "dkim_aligned",
                                     "spf_aligned", "header_from", "dkim", "spf")}  # fmt: skip
        rows[json.dumps(key, sort_keys=True)] += 1
    for key, count in sorted(rows.items()):
        row = json.loads(key)
        record = ET.SubElement(feedback, "record")
        r = ET.SubElement(record, "row")
        _text(r, "source_ip", row["source_ip"])
        _text(r, "count", count)
        evaluated = ET.SubElement(r, "policy_evaluated")
        _text(evaluated, "disposition", row["disposition"])
        _text(evaluated, "dkim", row["dkim_aligned"])
        _text(evaluated, "spf", row["spf_aligned"])
        identifiers = ET.SubElement(record, "identifiers")
        _text(identifiers, "header_from", row["header_from"])
        results = ET.SubElement(record, "auth_results")
        for signature in row["dkim"]:
            dkim = ET.SubElement(results, "dkim")
            _text(dkim, "domain", signature["domain"])
            if signature["selector"]:  # optional in the schema (appendix C)
                _text(dkim, "selector", signature["selector"])
            _text(dkim, "result", signature["result"])
        spf = ET.SubElement(results, "spf")
        _text(spf, "domain", row["spf"]["domain"])
        _text(spf, "scope", row["spf"]["scope"])
        _text(spf, "result", row["spf"]["result"])
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(feedback)


def report_message(
    xml: bytes, policy_domain: str, hostname: str, recipients: list[str], report_id: str,
    begin: int, end: int,
) -> bytes:  # fmt: skip
    """The message carrying one report (RFC 7489 7.2.1.1: subject, gzip'd attachment)."""
    message = EmailMessage()
    message["From"] = f"DMARC reports <MAILER-DAEMON@{hostname}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = (
        f"Report Domain: {policy_domain} Submitter: {hostname} Report-ID: <{report_id}>"
    )
    message["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
    message["Message-ID"] = make_msgid(domain=hostname)
    message.set_content(
        f"DMARC aggregate report for {policy_domain} from {hostname} (RFC 7489 7.2).\n"
    )
    message.add_attachment(
        gzip.compress(xml),
        maintype="application",
        subtype="gzip",
        filename=f"{hostname}!{policy_domain}!{begin}!{end}.xml.gz",
    )
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def size_limit(uri: str) -> int | None:
    """The ``!size`` of a ``rua`` URI in octets, None when it has none (RFC 7489 6.4:
    ``"!" 1*DIGIT ["k" / "m" / "g" / "t"]``, units powers of two, 6.2); -1 when what
    follows the ``!`` is not a size (no report can be known to fit it)."""
    _uri, bang, size = uri.partition("!")
    if not bang:
        return None
    found = _SIZE.fullmatch(size)
    if found is None:
        return -1
    return int(found.group(1)) << _UNIT_BITS[found.group(2).lower()]


def mailto_address(uri: str) -> str | None:
    """The addr-spec of one ``rua`` URI (RFC 7489 6.2: a ``!size`` limit may follow it;
    RFC 6068: ``mailto:addr-spec?hfields``, %-encoded), or None when it has none we could
    send to: a local part and a domain the accounts' rules accept, no control character,
    a size limit that is one. ``x@`` reached the ``To:`` field, and the header parser's
    IndexError stopped every report of the day, every day."""
    if not uri.lower().startswith("mailto:") or _CONTROL_OR_SPACE.search(uri):
        return None
    if size_limit(uri) == -1:
        return None
    try:
        text = urllib.parse.unquote(uri[7:].split("!", 1)[0].split("?", 1)[0], errors="strict")
        if _CONTROL_OR_SPACE.search(text):
            return None
        local = text.rpartition("@")[0]
        return f"{local}@{canonical_address(text).rpartition('@')[2]}"
    except (UnicodeDecodeError, AccountError):
        return None


def mailto_addresses(rua: Iterable[str]) -> list[str]:
    """The addresses of the ``mailto:`` URIs that have one; other URIs are ignored."""
    return list(mailto_limits(rua))


def mailto_limits(rua: Iterable[str]) -> dict[str, int | None]:
    """Each address of the ``mailto:`` URIs once, with the smallest size limit it was given
    (None: no limit); a record naming one address twice gets one report, not two."""
    found: dict[str, int | None] = {}
    for uri in rua:
        address = mailto_address(uri)
        if address is None:
            continue
        limit = size_limit(uri)
        if address in found:
            limits = [n for n in (found[address], limit) if n is not None]
            limit = min(limits) if limits else None
        found[address] = limit
    return found


class DMARCReports(Service):
    """Sends yesterday's (and any older unsent day's) reports, daily after midnight UTC.

    ``send(address, data)`` hands one message to delivery (the queue's ``return_to_sender``);
    ``resolver`` checks external report destinations."""

    def __init__(
        self,
        log_: ReportLog,
        resolver: Any,
        hostname: str,
        send: Callable[[str, bytes], Any],
        reactor: Any,
        pool: Any,
    ) -> None:
        self.log = log_
        self.resolver = resolver
        self.hostname = hostname
        self.send = send
        self.reactor = reactor
        self.pool = pool
        self._call: Any = None

    def startService(self) -> None:
        super().startService()
        self._call = self.reactor.callLater(60, self._tick)

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _tick(self) -> None:
        done = threads.deferToThreadPool(self.reactor, self.pool, self.prepare)
        done.addCallback(self._send_all)
        done.addErrback(lambda f: log.failure("dmarc: reports failed", f))
        now = self.reactor.seconds()
        next_run = (int(now) // 86400 + 1) * 86400 + 300  # 00:05 UTC
        self._call = self.reactor.callLater(next_run - now, self._tick)

    def prepare(self) -> list[tuple[str, list[str], bytes]]:
        """(day, recipients, message) for every finished day (blocking: files and DNS)."""
        out = []
        for day in self.log.finished_days(self.reactor.seconds()):
            by_domain: dict[str, list[dict[str, Any]]] = {}
            for entry in self.log.entries(day):
                by_domain.setdefault(entry["policy"]["domain"], []).append(entry)
            begin = int(datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC)
                        .timestamp())  # fmt: skip
            for domain, entries in sorted(by_domain.items()):
                try:
                    report = self._report(domain, entries, day, begin)
                except Exception as e:  # one domain's records can't cost the others' reports
                    log.warn("dmarc: no report for {domain} of {day}: {error!r}",
                             domain=domain, day=day, error=e)  # fmt: skip
                    continue
                if report is not None:
                    out.append((day, *report))
            out.append((day, [], b""))  # the day is done once its reports are handed over
        return out

    def _report(
        self, domain: str, entries: list[dict[str, Any]], day: str, begin: int
    ) -> tuple[list[str], bytes] | None:
        """(recipients, message) of ``domain``'s report, None when it has no destination."""
        limits = mailto_limits(entries[-1]["policy"]["rua"])
        recipients = self._allowed(domain, list(limits))
        if not recipients:
            return None
        report_id = f"{day}.{secrets.token_hex(6)}@{self.hostname}"
        xml = report_xml(domain, entries, self.hostname, f"MAILER-DAEMON@{self.hostname}",
                         report_id, begin, begin + 86399)  # fmt: skip
        message = report_message(xml, domain, self.hostname, recipients, report_id,
                                 begin, begin + 86399)  # fmt: skip
        # RFC 7489 6.2: a "!size" is the most the destination takes; a larger report is
        # not sent there (the message's size: it holds the report, and a little more)
        fitting = [a for a in recipients if limits[a] is None or len(message) <= limits[a]]
        for address in recipients:
            if address not in fitting:
                log.info("dmarc: report for {domain} of {day} not sent to {address}: its "
                         "{size} octets are over the {limit} the rua allows", domain=domain,
                         day=day, address=address, size=len(message), limit=limits[address])  # fmt: skip
        if not fitting:
            return None
        if fitting != recipients:
            message = report_message(xml, domain, self.hostname, fitting, report_id,
                                     begin, begin + 86399)  # fmt: skip
        return fitting, message

    def _allowed(self, policy_domain: str, addresses: list[str]) -> list[str]:
        """RFC 7489 7.1: a destination in another organisation must agree to receive."""
        allowed = []
        for address in addresses:
            rua_domain = address.rpartition("@")[2].lower()
            if organizational_domain(rua_domain) == organizational_domain(policy_domain):
                allowed.append(address)
                continue
            try:
                records = self.resolver.txt(f"{policy_domain}._report._dmarc.{rua_domain}")
            except DNSTempError:
                continue
            if any(r[:8].lower() == b"v=dmarc1" for r in records):
                allowed.append(address)
        return allowed

    async def _send_all_async(self, prepared: list[tuple[str, list[str], bytes]]) -> None:
        for day, recipients, message in prepared:
            if not recipients:
                await threads.deferToThreadPool(self.reactor, self.pool, self.log.mark_sent, day)
                log.info("dmarc: aggregate reports for {day} sent", day=day)
                continue
            for address in recipients:
                try:
                    await self.send(address, message)
                except Exception as e:  # the day's other reports still go, and it is done
                    log.warn("dmarc: report of {day} to {address} not sent: {error!r}",
                             day=day, address=address, error=e)  # fmt: skip

    def _send_all(self, prepared: list[tuple[str, list[str], bytes]]) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(self._send_all_async(prepared))
