"""``InboundChecks``: SPF, DKIM and DMARC on mail arriving at the inbound listener, as a filter.

At the end of data (``filters/``, before the 250) it checks SPF for the MAIL FROM (or HELO)
identity, verifies every DKIM signature and the ARC chain (RFC 8617; reported, not yet used
to override DMARC), evaluates the From domain's DMARC policy, and adds
one ``Authentication-Results:`` field naming us (``results.py``), deleting any that arrived
claiming our name (``Verdict.remove``). What a failure gets is the
administrator's choice (``[mailauth]``, docs/admin.rst):

- DMARC fail under ``p=reject``: ``dmarc_reject`` = refused ``550 5.7.1`` (default), Junk,
  or only the header field; under ``p=quarantine``: ``dmarc_quarantine`` = Junk (default) or
  the field; ``p=none`` and ``pct`` sampling as RFC 7489 6.6.4 says.
- SPF ``fail`` is refused at MAIL FROM only with ``spf_fail = "reject"`` (else DMARC
  judges: forwarded mail fails SPF and may still pass DKIM).
- Mail from a relay of ``trusted_relays`` (a front or backup MX, fetchmail over loopback)
  has SPF checked for the client that relay received it from, as its ``Received:`` field on
  top says (``txmailhost/received.py``), not for the relay: its own address is in no
  sender's SPF record. Such a client is never refused at MAIL FROM (who sent the message is
  known only with its header); when the relay wrote no client down, the relay is the client.
- A temporary DNS failure answers ``451 4.7.1`` only where the policy would refuse the mail
  (so a sender retries rather than losing mail to a DNS hiccup), else it is noted. All of a
  message's lookups share ``dns_budget`` seconds (``MailAuthResolver.budget``).
- A header section past ``HEADER_LIMIT`` is judged as a ``p=reject`` spoof would be.

Messages from domains that ask for aggregate reports (``rua=``) are recorded for them
(``reports.py``). Mail from authenticated users (submission) is never checked: it is ours, and SPF of our own
domain for a roaming user's address would be meaningless.

Where it runs: in a server (``attach``), on the reactor thread first, with the resolver
answering only from its cache (``MailAuthResolver.cached_only``) and for a message held in
memory; when a lookup isn't cached, or the message was spilled to a file, that attempt is
thrown away and the check runs in the filters' threads, within the client's share of them
(``fairness.py``), where DNS may block. A message from a sender seen within its records'
TTLs (most mail, and every message of a busy sender) then costs no trip to a thread and back:
the server's CPU a message grows by 0.26 ms with the checks on at 50 connections, against
0.61 ms with the trip (docs/benchmarks-mailauth.rst). The day's report line is written in a thread either way.
Made alone (tests, the CLI), the filter is blocking and the chain runs it in its threads.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txmailhost.delivery.incoming import in_memory
from txmailhost.filters.base import MessageFilter
from txmailhost.filters.fairness import run_in_share
from txmailhost.filters.interfaces import ACCEPT, Action, Client, Transaction, Verdict
from txmailhost.mailauth.authors import author_domains
from txmailhost.mailauth.bodyhash import HEADER_LIMIT, HeaderTooLarge, header_end, split_header
from txmailhost.mailauth.dmarc import DMARCResult, Policy, aligned, evaluate, fetch_policy
from txmailhost.mailauth.reports import ReportLog, recorded_domain, recorded_selector
from txmailhost.mailauth.resolver import DNSTempError, MailAuthResolver
from txmailhost.mailauth.results import authentication_results, claims_us
from txmailhost.mailauth.spf import SPFResult, check_spf
from txmailhost.mailauth.verify import ARCResult, DKIMResult, authenticate_message
from txmailhost.received import Network, last_external, received_values, within

log = Logger()

MAX_AUTHOR_DOMAINS = 8  # distinct From domains judged one by one (RFC 7489 6.6.1)
# Seconds all of one message's DNS lookups may take together (``MailAuthResolver.budget``),
# within the filter chain's 30 s: past them a lookup is a temperror, so the checks still
# answer in time with their own verdict (451 only where the policy would refuse), rather
# than the chain's ``on_error`` for an overrun (with ``on_error = "accept"``, no checks).
DNS_BUDGET = 20.0

# Which of several author domains' results stands for the message: a failure under the
# strictest policy first, then the uncertain, then the unauthenticated; "pass" only when all
# passed.
_SEVERITY = {
    ("fail", "reject"): 7, ("fail", "quarantine"): 6, ("fail", "none"): 5,
    ("temperror", "none"): 4, ("permerror", "none"): 3, ("none", "none"): 2,
    ("pass", "none"): 1,
}  # fmt: skip


def _numbered_fields(header: bytes) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) of each field of a header section, counted as
    ``Verdict.remove`` numbers them for the delivery that removes them
    (``delivery.incoming.strip_fields``): every line that doesn't begin with white space
    starts one, a line without a colon too (named by all of it, with no value). Counting only
    well-formed fields, a line ``Authentication-Results`` put before a forged field made the
    removal take that line and keep the field."""
    found: list[tuple[str, str]] = []
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if found:
                more = line.decode("utf-8", "replace").strip()
                found[-1] = (found[-1][0], f"{found[-1][1]} {more}")
            continue
        if not line:
            continue
        name, _, value = line.partition(b":")  # the name as strip_fields reads it
        found.append((name.strip().decode("ascii", "replace").lower(),
                      value.decode("utf-8", "replace").strip()))  # fmt: skip
    return found


# A message with more DKIM signatures and ARC sets than this is checked in a thread even when
# its keys are cached: each verification is a modular exponentiation of the sender's chosen
# key size (up to ``verify.MAX_RSA_BITS``), and on the reactor nothing else would run
# meanwhile (in a thread, the reactor gets the GIL back between them).
INLINE_SIGNATURES = 4
# Nor is a message whose header section is longer than this: the fields the checks parse
# (From: for DMARC, every signature's h= list) cost time with their length, about 0.4 us a
# character for an address list, and one of 256 KiB held the reactor a tenth of a second.
# Ordinary mail has a few KiB; a mailing list's or a forwarded message's, tens.
INLINE_HEADER = 64 * 1024
_SIGNATURE_FIELD = re.compile(rb"(?im)^(?:dkim-signature|arc-seal|arc-message-signature)[ \t]*:")


def _inline(data: bytes) -> bool:
    """Whether checking ``data`` may start on the reactor thread: a header section (where
    ``split_header`` ends it) of at most ``INLINE_HEADER`` octets, with at most
    ``INLINE_SIGNATURES`` signature fields (DKIM, ARC)."""
    end = header_end(data)
    header = data if end < 0 else data[:end]
    return len(header) <= INLINE_HEADER and (
        len(_SIGNATURE_FIELD.findall(header)) <= INLINE_SIGNATURES
    )


@dataclass(frozen=True)
class CheckPolicy:
    """What failures get (``[mailauth]``): see the module docstring."""

    dmarc_reject: str = "reject"  # reject | junk | tag
    dmarc_quarantine: str = "junk"  # junk | tag
    spf_fail: str = "tag"  # reject | tag


class InboundChecks(MessageFilter):
    name = "mailauth"
    blocking = True

    def __init__(
        self,
        resolver: MailAuthResolver,
        authserv_id: str,
        policy: CheckPolicy | None = None,
        listeners: tuple[str, ...] = ("smtp",),
        reports: ReportLog | None = None,
        dns_budget: float = DNS_BUDGET,
        trusted_relays: tuple[Network, ...] = (),
    ) -> None:
        self.resolver = resolver
        self.trusted_relays = trusted_relays
        self.dns_budget = dns_budget
        self.reports = reports
        self.authserv_id = authserv_id
        self.policy = policy or CheckPolicy()
        self.listeners = listeners
        self._host: Any = None  # the server's reactor, filters' threads and slots (``attach``)

    def attach(self, host: Any) -> None:
        """Run on ``host``'s reactor, sending only what blocks to its threads (see the
        module docstring); ``host`` is a ``FilterHost`` with a reactor and a pool."""
        if host is not None and host.reactor is not None and host.pool is not None:
            self._host = host
            self.blocking = False

    @property
    def stages(self) -> frozenset[str]:
        # MAIL costs a worker thread trip only when SPF may refuse there.
        return frozenset({"mail", "data"} if self.policy.spf_fail == "reject" else {"data"})

    def _applies(self, client: Client) -> bool:
        return client.authenticated_as is None and client.listener in self.listeners

    def skips(self, client: Client) -> bool:
        """Authenticated submission and other listeners: no trip to the pool at all."""
        return not self._applies(client)

    def mail_from(self, client: Client, sender: str | None) -> Verdict | Deferred[Verdict]:
        if not self._applies(client) or self.policy.spf_fail != "reject":
            return ACCEPT
        if within(client.address, self.trusted_relays):
            return ACCEPT  # its client is in the header, checked at the end of data
        return self._run(client, self._spf_verdict, client, sender)

    def _spf_verdict(self, client: Client, sender: str | None) -> tuple[Verdict, None]:
        with self.resolver.budget(self.dns_budget):
            spf = check_spf(self.resolver, client.address, sender, client.helo)
        if spf.result == "fail":
            verdict = Verdict.reject(
                f"SPF: {spf.domain} does not allow {client.address} to send its mail"
            )
        elif spf.result == "temperror":
            verdict = Verdict.tempfail(f"SPF: DNS of {spf.domain} not available, try again later")
        else:
            verdict = ACCEPT
        return verdict, None

    def end_of_data(
        self, client: Client, transaction: Transaction, message: BinaryIO
    ) -> Verdict | Deferred[Verdict]:
        if not self._applies(client):
            return ACCEPT
        if self._host is not None and in_memory(message):
            data = message.read()  # each attempt reads its own copy
            return self._run(client, self._checked_octets, client, transaction, data,
                             inline=_inline(data))  # fmt: skip
        # Made alone (this is a thread), or a spilled body, which is read in a thread.
        return self._run(client, self._checked, client, transaction, message, inline=False)

    def _checked_octets(
        self, client: Client, transaction: Transaction, data: bytes
    ) -> tuple[Verdict, dict[str, Any] | None]:
        return self._checked(client, transaction, io.BytesIO(data))

    def _checked(
        self, client: Client, transaction: Transaction, message: BinaryIO
    ) -> tuple[Verdict, dict[str, Any] | None]:
        with self.resolver.budget(self.dns_budget):
            return self._check_message(client, transaction, message)

    def _run(
        self, client: Client, check: Any, *args: Any, inline: bool = True
    ) -> Verdict | Deferred[Verdict]:
        """``check(*args)``, a verdict and the report line it asks for: at once when the
        filter was made alone (its caller is a thread); else first on the reactor, from the
        cache (``inline``), then, if a lookup wasn't cached, in the filters' threads."""
        if self._host is None:
            return self._recorded(check(*args))
        if inline:
            answered, result = self.resolver.from_cache(check, *args)
            if answered:
                verdict, entry = result
                if entry is not None:  # a file append: not on the reactor
                    written = self._in_thread(None, self._write_record, entry)
                    written.addErrback(lambda f: log.failure("dmarc: recording failed", f))
                return verdict
        return self._in_thread(client, lambda: self._recorded(check(*args)))

    def _recorded(self, result: tuple[Verdict, dict[str, Any] | None]) -> Verdict:
        verdict, entry = result
        if entry is not None:
            self._write_record(entry)
        return verdict

    def _in_thread(self, client: Client | None, work: Any, *args: Any) -> Deferred[Any]:
        """``work(*args)`` in the filters' threads, within ``client``'s share of them (no
        client: the day's report line, held by nobody's share)."""
        host = self._host
        slots = host.slots if client is not None else None
        address = client.address if client is not None else ""
        return run_in_share(slots, address, host.reactor, host.pool, work, *args)

    def _check_message(
        self, client: Client, transaction: Transaction, message: BinaryIO
    ) -> tuple[Verdict, dict[str, Any] | None]:
        """The verdict, and the line for the day's aggregate reports when the From domain
        asks for them (written by the caller: a thread's work)."""
        try:
            header, first = split_header(message)
            too_large = False
        except HeaderTooLarge:
            header, first, too_large = b"", b"", True
        source, helo = self._spf_client(client, header)
        spf = check_spf(self.resolver, source, transaction.sender, helo)
        if source != client.address:
            spf = replace(spf, relayed_from=source)
        if header:
            dkim, arc = authenticate_message(header, first, message, self.resolver)
        else:
            dkim, arc = [], ARCResult("none")
        if too_large:
            # Its From can't be read (it may come after the first MiB), nor its fields
            # removed: judged as a spoof of a p=reject domain would be (dmarc_reject), not
            # as mail without an author, which no policy applies to.
            reason = f"header section longer than {HEADER_LIMIT >> 20} MiB: not authenticated"
            dmarc, policy = DMARCResult("fail", "", "reject", reason), None
        else:
            dmarc, policy = self._dmarc(header, spf, dkim)
        value = authentication_results(self.authserv_id, spf, dkim, dmarc, arc)
        fields = (("Authentication-Results", value),)
        verdict = self._decide(spf, dkim, dmarc, fields)
        entry = None
        if self.reports is not None and policy is not None and policy.rua:
            entry = self._record(source, spf, dkim, dmarc, policy, verdict)
        forged = self._forged_results(header)
        if forged and verdict.action in (Action.ACCEPT, Action.JUNK):
            verdict = replace(verdict, remove=forged)
        return verdict, entry

    def _spf_client(self, client: Client, header: bytes) -> tuple[str, str | None]:
        """The address and HELO SPF judges: the client's; for a relay of ``trusted_relays``,
        those of the client it received the message from, as its ``Received:`` field wrote
        them down (past any more of our trusted relays above it), when it wrote one down."""
        if header and within(client.address, self.trusted_relays):
            hop = last_external(
                received_values(header), lambda address: within(address, self.trusted_relays)
            )
            if hop is not None:
                return hop.address, hop.helo or None
        return client.address, client.helo

    def _forged_results(self, header: bytes) -> tuple[tuple[str, int], ...]:
        """The arriving Authentication-Results fields that claim our authserv-id (RFC 8601
        5: removed, nobody else may speak for us), as (name, n) for ``Verdict.remove``."""
        if b"authentication-results" not in header.lower():
            return ()
        found = []
        n = 0
        for name, value in _numbered_fields(header):
            if name == "authentication-results":
                n += 1
                if claims_us(value, self.authserv_id):
                    found.append(("Authentication-Results", n))
        return tuple(found)

    def _dmarc(
        self, header: bytes, spf: SPFResult, dkim: list[DKIMResult]
    ) -> tuple[DMARCResult, Policy | None]:
        """The DMARC result for the message's author domains (``authors.py``): with several,
        the worst of theirs, the strictest failing policy first (RFC 7489 6.6.1)."""
        domains = author_domains(header) if header else []
        if not domains:
            return DMARCResult("permerror", "", "none", "no author domain in From"), None
        if len(domains) > MAX_AUTHOR_DOMAINS:
            # Each is a DNS lookup or two: past the cap, judged as a spoof of a p=reject
            # domain would be (the administrator's dmarc_reject says what that gets).
            reason = f"From names {len(domains)} domains, more than {MAX_AUTHOR_DOMAINS}"
            return DMARCResult("fail", "", "reject", reason), None
        judged: list[tuple[DMARCResult, Policy | None]] = []
        for domain in domains:
            try:
                policy = fetch_policy(self.resolver, domain)
            except DNSTempError as e:
                judged.append((DMARCResult("temperror", domain, "none", str(e)), None))
                continue
            result = evaluate(domain, policy, (spf.result, spf.domain),
                              [(r.result, r.domain) for r in dkim])  # fmt: skip
            judged.append((result, policy))
        return max(judged, key=lambda pair: _SEVERITY.get((pair[0].result, pair[0].policy), 0))

    def _record(
        self,
        source: str,
        spf: SPFResult,
        dkim: list[DKIMResult],
        dmarc: DMARCResult,
        policy: Policy,
        verdict: Verdict,
    ) -> dict[str, Any]:
        """One line for the day's aggregate reports (``reports.py``); ``source``: the address
        SPF judged (a trusted relay's client, else the client)."""
        disposition = {Action.REJECT: "reject", Action.JUNK: "quarantine"}.get(
            verdict.action, "none"
        )
        domain = dmarc.from_domain
        dkim_ok = any(r.result == "pass" and aligned(r.domain, domain, policy.adkim) for r in dkim)
        spf_ok = spf.result == "pass" and aligned(spf.domain, domain, policy.aspf)
        entry = {
            "source_ip": source,
            "header_from": domain,
            "policy": {
                "domain": policy.domain,
                "p": policy.p,
                "sp": policy.sp,
                "pct": policy.pct,
                "adkim": policy.adkim,
                "aspf": policy.aspf,
                "rua": list(policy.rua),
            },  # fmt: skip
            "disposition": disposition,
            "dkim_aligned": "pass" if dkim_ok else "fail",
            "spf_aligned": "pass" if spf_ok else "fail",
            "dkim": [
                {
                    "domain": recorded_domain(r.domain),
                    "selector": recorded_selector(r.selector),
                    "result": r.result,
                }
                for r in dkim
            ],  # fmt: skip
            "spf": {
                "domain": recorded_domain(spf.domain),
                "scope": spf.identity,
                "result": spf.result,
            },
        }
        return entry

    def _write_record(self, entry: dict[str, Any]) -> None:
        """``entry`` appended to the day's records (blocking); never fails the mail."""
        assert self.reports is not None
        try:
            self.reports.record(entry)
        except OSError as e:
            log.error("dmarc: recording for reports failed: {error}", error=e)

    def _decide(
        self,
        spf: SPFResult,
        dkim: list[DKIMResult],
        dmarc: DMARCResult,
        fields: tuple[tuple[str, str], ...],
    ) -> Verdict:
        uncertain = spf.result == "temperror" or any(r.result == "temperror" for r in dkim)
        would_reject = self.policy.dmarc_reject == "reject"
        if dmarc.result == "temperror":
            if would_reject:
                return Verdict.tempfail(
                    f"DMARC policy of {dmarc.from_domain} not available, try again later"
                )
            return Verdict.accept(headers=fields)
        if dmarc.result != "fail":
            return Verdict.accept(headers=fields)
        action = {"reject": self.policy.dmarc_reject, "quarantine": self.policy.dmarc_quarantine}
        chosen = action.get(dmarc.policy, "tag")
        if chosen == "reject":
            if uncertain:  # a key or SPF record we couldn't fetch might have made it pass
                return Verdict.tempfail("sender authentication not available, try again later")
            if not dmarc.from_domain:  # no one domain's policy: the reason says why
                return Verdict.reject(f"DMARC: {dmarc.reason}")
            return Verdict.reject(
                f"DMARC: {dmarc.from_domain} asks to refuse mail it did not authenticate"
            )
        if chosen == "junk":
            judged = dmarc.from_domain or dmarc.reason
            return Verdict.junk(f"DMARC {dmarc.policy} for {judged}", headers=fields)
        return Verdict.accept(headers=fields)
