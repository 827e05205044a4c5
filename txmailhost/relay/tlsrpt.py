"""SMTP TLS reporting (RFC 8460): how our TLS sessions to each domain went, mailed to the domain.

The courier records every delivery session it ran with TLS required — under a domain's
MTA-STS policy (``policy-type: sts``), or because ``relay.tls`` / REQUIRETLS asked for it
(``no-policy-found``), or under an MX host's DANE TLSA records (``tlsa``) — as a success, or as a failure with its RFC 8460 4.3 result type
(``starttls-not-supported``, ``validation-failure``, ``dnssec-invalid`` when a TLSA lookup
failed). Opportunistic sessions are not counted:
whether they were encrypted is not a policy outcome.

Once a day (``send``) each domain that publishes ``_smtp._tls.DOMAIN TXT "v=TLSRPTv1;
rua=mailto:..."`` gets one report: the JSON of RFC 8460 4.4, gzip'd, as an
``application/tlsrpt+gzip`` attachment of a ``multipart/report; report-type="tlsrpt"``
message (5.3), from the null sender so a failing report never bounces. ``https:`` rua
addresses are not used (only mail). Counts live in memory: a restart loses the day's counts,
never mail.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import dns.exception
import dns.resolver
from twisted.internet import threads
from twisted.logger import Logger

from txmailhost.relay.mtasts import STSPolicy

log = Logger()

STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
VALIDATION_FAILURE = "validation-failure"
DNSSEC_INVALID = "dnssec-invalid"
_MAILTO = re.compile(r"mailto:([^@\s,;!]+@[A-Za-z0-9.-]+)", re.I)
# What a decoded URI may be: printable ASCII before the "@" (the report is an ASCII message;
# no "<", ">" or '"' to break out of "To: <...>"), a host name after it
_ADDRESS = re.compile(r"[!#-+\-./0-9=?A-Z^-~]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")
# Report addresses of a record used, the first ones: RFC 8460 sets no limit, but a record
# listing a thousand would have us mail the report a thousand times a day (RFC 7489 6.2 lets
# a DMARC reporter stop at two; the same here).
MAX_RUA = 2


@dataclass
class _Counts:
    policy_type: str
    policy_string: tuple[str, ...]
    mx_host: tuple[str, ...]
    success: int = 0
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)


def rua_addresses(texts: list[str]) -> list[str]:
    """The ``mailto:`` addresses of the one ``v=TLSRPTv1`` record among ``texts`` (RFC 8460
    3); none when there isn't exactly one. A URI is %-decoded (RFC 6068 2: ``tls%2Drpt@``
    is ``tls-rpt@``) and used only if what it decodes to is still one plain address; each
    address is used once, and at most ``MAX_RUA`` of them."""
    found = [t for t in texts if t.startswith("v=TLSRPTv1")]
    if len(found) != 1:
        return []
    addresses: dict[str, None] = {}
    for part in found[0].split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip() == "rua":
            for uri in value.split(","):
                match = _MAILTO.fullmatch(uri.strip())
                if match is None:
                    continue
                address = urllib.parse.unquote(match.group(1), errors="replace")
                if _ADDRESS.fullmatch(address):
                    local, _, domain = address.rpartition("@")
                    addresses[f"{local}@{domain.lower()}"] = None
    return list(addresses)[:MAX_RUA]


def _policy_string(policy: STSPolicy) -> tuple[str, ...]:
    lines = ["version: STSv1", f"mode: {policy.mode}"]
    lines += [f"mx: {mx}" for mx in policy.mx]
    return (*lines, f"max_age: {policy.max_age}")


def _policy_entry(domain: str, counts: _Counts) -> dict[str, Any]:
    """One ``policies`` entry of RFC 8460 4.4: the policy applied and how its sessions went."""
    policy: dict[str, Any] = {"policy-type": counts.policy_type, "policy-domain": domain}
    if counts.policy_string:
        policy["policy-string"] = list(counts.policy_string)
    if counts.mx_host:
        policy["mx-host"] = list(counts.mx_host)
    details = [
        {
            "result-type": result,
            **({"sending-mta-ip": ip} if ip else {}),
            "receiving-mx-hostname": mx,
            "failed-session-count": n,
        }
        for (result, ip, mx), n in sorted(counts.failures.items())
    ]
    return {
        "policy": policy,
        "summary": {
            "total-successful-session-count": counts.success,
            "total-failure-session-count": sum(counts.failures.values()),
        },
        "failure-details": details,
    }


_ISO = "%Y-%m-%dT%H:%M:%SZ"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime(_ISO)


def _epoch(iso: str) -> int:
    """A report's ``date-range`` time as the file name gives it: seconds since the epoch."""
    return int(datetime.strptime(iso, _ISO).replace(tzinfo=UTC).timestamp())


class TLSReports:
    """Counts sessions per policy domain and sends the daily reports.

    ``deliver(address, message)`` hands a report to the mail system (the queue's
    ``ReturnToSender``: local or relayed like any DSN); set it before the first ``send``.
    """

    def __init__(self, reactor: Any, pool: Any, resolver: Any, hostname: str) -> None:
        self._reactor = reactor
        self._pool = pool
        self._resolver = resolver
        self.hostname = hostname
        self.deliver: Callable[[str, bytes], Awaitable[None]] | None = None
        self._counts: dict[str, _Counts] = {}
        self._tlsa_counts: dict[str, _Counts] = {}  # DANE sessions: a policy of their own
        self._since = time.time()

    def record(
        self,
        domain: str,
        policy: STSPolicy | None,
        *,
        mx_host: str,
        failure: str = "",
        address: str = "",
        sending_ip: str = "",
        tlsa: tuple[str, ...] | None = None,
    ) -> None:
        """One session to ``mx_host`` of ``domain``: a success, or ``failure`` (a result type).

        ``tlsa``: the session ran under the host's DANE records (their text), not ``policy``.
        """
        domain = domain.lower()
        table = self._counts if tlsa is None else self._tlsa_counts
        counts = table.get(domain)
        if counts is None:
            if tlsa is not None:
                counts = _Counts("tlsa", (), ())
            elif policy is not None:
                counts = _Counts("sts", _policy_string(policy), policy.mx)
            else:
                counts = _Counts("no-policy-found", (), ())
            table[domain] = counts
        if tlsa is not None:
            counts.policy_string = tuple(dict.fromkeys((*counts.policy_string, *tlsa)))
            counts.mx_host = tuple(dict.fromkeys((*counts.mx_host, mx_host)))
        if failure:
            counts.failures[(failure, sending_ip, mx_host)] += 1
        else:
            counts.success += 1

    def counts(self, domain: str) -> tuple[int, int]:
        """(successful, failed) sessions recorded for ``domain`` since the last report."""
        found = [
            t[domain.lower()] for t in (self._counts, self._tlsa_counts) if domain.lower() in t
        ]
        return (
            sum(c.success for c in found),
            sum(sum(c.failures.values()) for c in found),
        )

    def report(
        self, domain: str, counts: _Counts | list[_Counts], start: float, end: float
    ) -> dict[str, Any]:
        """The RFC 8460 4.4 JSON object for one policy domain (one entry per policy type)."""
        return {
            "organization-name": self.hostname,
            "date-range": {"start-datetime": _iso(start), "end-datetime": _iso(end)},
            "contact-info": f"postmaster@{self.hostname}",
            "report-id": f"{int(end)}.{secrets.token_hex(6)}@{self.hostname}",
            "policies": [
                _policy_entry(domain, c) for c in (counts if isinstance(counts, list) else [counts])
            ],
        }

    def message(self, domain: str, to: str, report: dict[str, Any], now: float) -> bytes:
        """The report as mail (RFC 8460 5.3)."""
        report_id = report["report-id"]
        start = report["date-range"]["start-datetime"]
        end = report["date-range"]["end-datetime"]
        # RFC 8460 5.1: sender!policy-domain!begin!end!unique-id.json.gz, the times in
        # seconds since the epoch and the unique-id letters and digits only
        unique = re.sub(r"[^A-Za-z0-9]", "", report_id.partition("@")[0])
        name = f"{self.hostname}!{domain}!{_epoch(start)}!{_epoch(end)}!{unique}.json.gz"
        payload = gzip.compress(json.dumps(report, indent=1).encode())
        encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n").decode("ascii")
        boundary = f"tlsrpt.{secrets.token_hex(8)}"
        return (
            f"From: TLS reports <MAILER-DAEMON@{self.hostname}>\r\n"
            f"To: <{to}>\r\n"
            f"Subject: Report Domain: {domain} Submitter: {self.hostname}"
            f" Report-ID: <{report_id}>\r\n"
            f"Date: {formatdate(now)}\r\n"
            f"Message-ID: <{report_id}>\r\n"
            f"TLS-Report-Domain: {domain}\r\n"
            f"TLS-Report-Submitter: {self.hostname}\r\n"
            "Auto-Submitted: auto-generated\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type="tlsrpt"; boundary="{boundary}"\r\n'
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"This is an SMTP TLS report (RFC 8460) for {domain} from {self.hostname}.\r\n\r\n"
            f"--{boundary}\r\n"
            "Content-Type: application/tlsrpt+gzip\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
            f"{encoded}\r\n"
            f"--{boundary}--\r\n"
        ).encode("ascii")

    async def send(self) -> int:
        """Mail the reports for everything counted since the last call; how many went out."""
        now = time.time()
        by_domain: dict[str, list[_Counts]] = {}
        for table in (self._counts, self._tlsa_counts):
            for domain, domain_counts in table.items():
                by_domain.setdefault(domain, []).append(domain_counts)
        start = self._since
        self._counts, self._tlsa_counts, self._since = {}, {}, now
        sent = 0
        for domain, domain_counts in sorted(by_domain.items()):
            try:
                addresses = await threads.deferToThreadPool(
                    self._reactor, self._pool, self._rua, domain
                )
            except dns.exception.DNSException as e:
                log.info("tls-rpt: no report for {domain}: {e}", domain=domain, e=e)
                continue
            report = self.report(domain, domain_counts, start, now)
            for address in addresses:
                if self.deliver is None:
                    break
                try:
                    await self.deliver(address, self.message(domain, address, report, now))
                except Exception:
                    log.failure(
                        "tls-rpt: report for {domain} to {to} failed", domain=domain, to=address
                    )
                    continue
                sent += 1
                log.info("tls-rpt: report for {domain} sent to {to}", domain=domain, to=address)
        return sent

    def _rua(self, domain: str) -> list[str]:
        try:
            answer = self._resolver.resolver.resolve(f"_smtp._tls.{domain}", "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return rua_addresses([b"".join(rr.strings).decode("ascii", "replace") for rr in answer])
