"""The ``spam`` filter: one score per message from the rules, the classifier and sender lists.

At the end of data, for mail from outside (the ``smtp`` listener, no AUTH), it reads a bounded
sample of the message (``sample.py``), adds up the scores of the content rules that fire
(``rules.py``), the classifier's BAYES_xx rule (``bayes.py``: the recipient's own counts once
trained enough, else everyone's), the recipient's allowed/blocked senders, the DNS lists on
the client (``connection.py``) and on the domains the message links to (``uribl.py``) and,
when ``rspamd`` names its normal worker, rspamd's score times ``rspamd_weight`` (the rule
``RSPAMD``, ``rspamd.py``); then:

- every message gets ``X-Spam-Status: Yes|No, score=S required=J tests=...``,
  ``X-Spam-Score: S`` and ``X-Spam-Report:`` (one line per rule that fired: score, name,
  what it means), as SpamAssassin writes them, so client filters already know them;
- a score of ``junk_score`` or more (or the recipient's own threshold, ``txmailhost spam
  threshold``) goes to the recipient's Junk folder (per recipient: one recipient's training,
  allow list or threshold doesn't decide for another);
- rspamd down, slow or the message larger than ``rspamd_max_size_kib``: the score is ours
  alone, the message gets ``X-Spam-Rspamd: unavailable (...)`` (or ``skipped``) and the log
  a warning (fail-open: an outside engine never holds up mail);
- a score of ``reject_score`` or more, when that is set (0 is off, the default), is refused
  with ``550 5.7.1`` — before the ``250``, so nobody is sent a bounce — when it is so for
  every recipient.

Ours go on top, where readers and Sieve look first; the sender's own ``X-Spam-Status``,
``X-Spam-Score``, ``X-Spam-Report``, ``X-Spam-Flag`` and ``X-Spam-Level`` are removed (as
SpamAssassin removes them), so a spammer's ``X-Spam-Status: No, score=-10`` is never read
below ours as our word. Settings (``[filters.settings.spam]``) are this class's keywords.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from txmailhost.accounts.addresses import fold_local
from txmailhost.delivery.incoming import in_memory
from txmailhost.filters.base import MessageFilter, fields_named
from txmailhost.filters.fairness import run_in_share
from txmailhost.filters.interfaces import ACCEPT, Client, Transaction, Verdict
from txmailhost.pools import run_in
from txmailhost.received import Hop, received_values
from txmailhost.spam import rules
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.connection import DNS_BUDGET, ConnectionChecks
from txmailhost.spam.frames import rule_as_list
from txmailhost.spam.links import link_domains
from txmailhost.spam.offload import OffloadError, ScoringProcess
from txmailhost.spam.rspamd import RspamdClient, RspamdError, replayed, spool
from txmailhost.spam.sample import read_capped, sample_of_bytes
from txmailhost.spam.scorer import Score, Scorer, bayes_rule, sender_addresses
from txmailhost.spam.uribl import MOST as MOST_DOMAINS
from txmailhost.spam.uribl import UriblChecks

# Score, Scorer and the rest moved to scorer.py (for the scoring process); still here.
__all__ = [
    "Score",
    "Scorer",
    "SpamFilter",
    "bayes_rule",
    "owner_of",
    "sender_addresses",
    "store_path",
]

# The fields ours are (``Score.fields``) and SpamAssassin's level bar: a sender's copy is
# removed. Not ``X-Spam-Rspamd``: the ``rspamd`` filter writes it too, above what we read.
OWN_FIELDS = ("X-Spam-Status", "X-Spam-Score", "X-Spam-Report", "X-Spam-Flag", "X-Spam-Level")


def store_path(data_dir: str) -> str:
    """Where the classifier's counts and the sender lists are kept."""
    return os.path.join(data_dir, "spam", "bayes.sqlite")


def owner_of(address: str) -> str:
    """The key a recipient's training is kept under: the address as accounts keep it,
    lower-cased and in NFC (``accounts.addresses.fold_local``; the domain is ASCII)."""
    return fold_local(address.strip())


class SpamFilter(MessageFilter):
    """``[filters] chain = ["spam"]``; the keywords are ``[filters.settings.spam]``."""

    name = "spam"
    # Parsing and SQLite: the filters' thread pool, unless the score is offloaded (then the
    # filter runs on the reactor and sends only what blocks to the pool; ``__init__``).
    blocking = True

    def __init__(
        self,
        *,
        host: Any = None,
        junk_score: float = 5.0,
        reject_score: float = 0.0,
        body_cap_kib: int = 256,
        bayes: bool = True,
        bayes_min_messages: int = 20,
        bayes_max_tokens: int = 2_000_000,
        bayes_max_age_days: float = 180.0,
        bayes_global_per_user: int = 1000,
        listeners: list[str] | tuple[str, ...] = ("smtp",),
        authserv_id: str = "",
        dnsbl: dict[str, float] | None = None,
        dnswl: dict[str, float] | None = None,
        rhsbl: dict[str, float] | None = None,
        rdns: bool = True,
        dns_checks: bool = True,
        dns_budget: float = DNS_BUDGET,
        trusted_relays: list[str] | tuple[str, ...] = (),
        uribl: dict[str, float] | None = None,
        uribl_skip: list[str] | tuple[str, ...] = (),
        uribl_max_domains: int = MOST_DOMAINS,
        rspamd: str = "",
        rspamd_weight: float = 1.0,
        rspamd_timeout: float = 5.0,
        rspamd_max_size_kib: int = 2048,
        rspamd_retry_after: float = 30.0,
        separate_process: bool = True,
    ) -> None:
        if reject_score and reject_score <= junk_score:
            raise ValueError("reject_score must be 0 (off) or above junk_score")
        self.junk_score = float(junk_score)
        self.reject_score = float(reject_score)
        self.body_cap = int(body_cap_kib) * 1024
        self.listeners = frozenset(listeners)
        store = None
        if bayes and host is not None:
            store = TokenStore(
                store_path(host.data_dir),
                min_messages=int(bayes_min_messages),
                max_tokens=int(bayes_max_tokens),
                max_age_days=float(bayes_max_age_days),
                global_per_user=int(bayes_global_per_user),
            )
        elif int(bayes_global_per_user) < 0:  # the trainer's store is built from it too
            raise ValueError("bayes_global_per_user must be 0 or more")
        if not authserv_id and host is not None:
            authserv_id = host.hostname
        self.scorer = Scorer(store, authserv_id)
        # the server's one resolver and its cache, shared with mail authentication
        resolver = getattr(host, "resolver", None) if dns_checks else None
        self.connection = ConnectionChecks(
            host.hostname if host is not None else "", resolver, dnsbl, dnswl, rhsbl, bool(rdns),
            float(dns_budget), trusted_relays,
        )  # fmt: skip
        # URI block lists on the domains the message links to (``uribl.py``): with DNS only
        uribl_checks = UriblChecks(
            resolver, uribl or {}, uribl_skip, host.hostname if host is not None else "",
            int(uribl_max_domains), float(dns_budget),
        )  # fmt: skip
        self.uribl = uribl_checks if uribl_checks.zones and resolver is not None else None
        self.rspamd = (
            RspamdClient(rspamd, rspamd_timeout, rspamd_max_size_kib, rspamd_retry_after)
            if rspamd
            else None
        )
        self.rspamd_weight = float(rspamd_weight)
        # Scoring in a child process (offload.py), asked from the reactor: off the server's
        # GIL, and no thread waits for it. Only for a server's filter (``host`` with its
        # reactor and the filters' threads): one made alone, by a test or the CLI, is a
        # blocking filter that scores in its caller's thread.
        self._reactor = getattr(host, "reactor", None)
        self._pool = getattr(host, "pool", None)
        self._slots = getattr(host, "slots", None)  # this client's share of the threads
        self.offload = None
        if separate_process and store is not None and self._reactor and self._pool:
            self.offload = ScoringProcess(store, authserv_id, self._reactor)
        self.blocking = self.offload is None

    def close(self) -> None:
        """At the server's stop: the scoring process ends."""
        if self.offload is not None:
            self.offload.close()

    def _ask_rspamd(
        self, client: Client, transaction: Transaction, message: BinaryIO
    ) -> tuple[BinaryIO, list[rules.Rule], tuple[tuple[str, str], ...]]:
        """(the message again, for the sample; the ``RSPAMD`` rule with rspamd's weighted
        score, or nothing; an ``X-Spam-Rspamd`` note when rspamd wasn't heard)."""
        assert self.rspamd is not None
        copy, size, whole = spool(message, self.rspamd.max_size)
        if not whole:
            note = f"skipped (larger than {self.rspamd.max_size // 1024} KiB)"
            return replayed(copy, message), [], (("X-Spam-Rspamd", note),)
        try:
            reply = self.rspamd.check(copy, size, client, transaction)
        except RspamdError as e:
            note = f"unavailable ({e}); not in the score"
            return replayed(copy, message), [], (("X-Spam-Rspamd", note),)
        weighted = round(reply.score * self.rspamd_weight, 1)
        rule = rules.Rule("RSPAMD", weighted, f"rspamd: {reply.summary()}", None)
        return replayed(copy, message), [rule], ()

    def _prepare(self, client: Client, transaction: Transaction, message: BinaryIO) -> _Prepared:
        """What is known before the content is scored: rspamd's answer, the connection
        checks (DNS lists, reverse DNS, HELO) and the capped sample's octets."""
        # the message's DNS time starts now: the URI block lists get what the checks leave
        dns_deadline = time.monotonic() + self.connection.dns_budget
        notes: tuple[tuple[str, str], ...] = ()
        rspamd_rules: list[rules.Rule] = []
        if self.rspamd is not None:
            message, rspamd_rules, notes = self._ask_rspamd(client, transaction, message)
            try:
                head, body, truncated = read_capped(message, self.body_cap)
            finally:
                message.close()  # the spooled copy (the chain closes the message itself)
        else:
            head, body, truncated = read_capped(message, self.body_cap)
        received = received_values(head)  # read only for a trusted client, as far as needed
        seen, hop = self.connection.checked(
            client.address, client.helo, transaction.sender, received
        )
        seen += rspamd_rules
        forged = fields_named(head, OWN_FIELDS)
        return _Prepared(
            head, body, truncated, seen, notes, forged, arrival(hop), client.address, dns_deadline
        )

    def _blocks(self, client: Client, message: BinaryIO) -> bool:
        """Whether preparing this message blocks: rspamd is asked over HTTP, DNS about the
        client (the checks' answers may be in the resolver's cache, but finding out may
        not), or the sample is read from a file (a message too large to be held in memory)."""
        return (
            self.rspamd is not None
            or self.connection.asks_dns(client.address)
            or not in_memory(message)
        )

    def _score_here(self, transaction: Transaction, prepared: _Prepared) -> list[Score]:
        """Scored in this thread: the filters' thread (the child is starting, failed, or
        there is none), or the caller's (the CLI, tests)."""
        sample = sample_of_bytes(prepared.head, prepared.body, prepared.truncated, digest=False)
        scores = self.scorer.score_each(
            sample, _owners(transaction), transaction.sender, prepared.seen, prepared.arrival
        )
        if self.uribl is None:
            return scores
        found = self.uribl.hits(link_domains(sample.urls), prepared.dns_deadline)
        return _with_rules(scores, found)

    def _offloaded(self, prepared: _Prepared, transaction: Transaction) -> Deferred[Verdict]:
        """On the reactor thread: the child's scores, else the filters' thread's."""
        assert self.offload is not None
        header = {
            "owners": _owners(transaction),
            "sender": transaction.sender,
            "connection": [rule_as_list(rule) for rule in prepared.seen],
            "truncated": prepared.truncated,
            "arrival": prepared.arrival,
        }
        if self.uribl is not None:
            header["domains"] = True

        def received(answer: Any) -> Verdict | Deferred[Verdict]:
            answers, domains = answer
            scores = [Score(t, tuple(hits), bayes, own) for t, hits, bayes, own in answers]
            if self.uribl is None or not self.uribl.asked(domains):
                return self._verdict(scores, transaction, prepared.notes, prepared.forged)
            listed = self._uribl_hits(domains, prepared)
            return listed.addCallback(
                lambda found: self._verdict(
                    _with_rules(scores, found), transaction, prepared.notes, prepared.forged
                )
            )

        def here(failure: Failure) -> Deferred[Verdict]:
            failure.trap(OffloadError)
            scored = run_in(self._reactor, self._pool, self._score_here, transaction, prepared)
            return scored.addCallback(self._verdict, transaction, prepared.notes, prepared.forged)

        answered = self.offload.score_and_domains(header, prepared.head, prepared.body)
        return answered.addCallbacks(received, here)

    def _uribl_hits(self, domains: list[str], prepared: _Prepared) -> Deferred[list[rules.Rule]]:
        """On the reactor thread: the URI block lists' rules, from the resolver's cache when
        every answer is there, else looked up in the filters' threads."""
        assert self.uribl is not None
        resolver, deadline = self.uribl.resolver, prepared.dns_deadline
        if hasattr(resolver, "from_cache"):  # a MailAuthResolver
            answered, found = resolver.from_cache(self.uribl.hits, domains, deadline)
            if answered:
                return succeed(found)
        return run_in_share(
            self._slots, prepared.client_address, self._reactor, self._pool, self.uribl.hits,
            domains, deadline,
        )  # fmt: skip

    def _required(self, score: Score) -> float:
        """The recipient's own threshold (``txmailhost spam threshold``), else the server's."""
        return self.junk_score if score.threshold is None else score.threshold

    def skips(self, client: Client) -> bool:
        """Our users' own mail and other listeners are not scored."""
        return bool(client.authenticated_as) or client.listener not in self.listeners

    def end_of_data(
        self, client: Client, transaction: Transaction, message: BinaryIO
    ) -> Verdict | Deferred[Verdict]:
        if self.skips(client):
            return ACCEPT
        if self.offload is None:  # a blocking filter: this is the filters' thread
            prepared = self._prepare(client, transaction, message)
            scores = self._score_here(transaction, prepared)
            return self._verdict(scores, transaction, prepared.notes, prepared.forged)
        # The reactor thread: what blocks goes to the filters' threads, the score to the child.
        resolver = self.connection.resolver
        only_dns = (
            self.rspamd is None
            and in_memory(message)
            and self.connection.asks_dns(client.address)
            and hasattr(resolver, "from_cache")  # a MailAuthResolver
        )
        if only_dns:
            # First tried here, from the resolver's cache alone (a client seen within its
            # records' TTLs, as every message of a session after its first); when a lookup
            # isn't cached, all of it again in a thread.
            data = message.read()
            answered, prepared = resolver.from_cache(
                self._prepare, client, transaction, io.BytesIO(data)
            )
            if answered:
                return self._offloaded(prepared, transaction)
            message = io.BytesIO(data)
        if not self._blocks(client, message):  # asked at once (not through a fired Deferred)
            return self._offloaded(self._prepare(client, transaction, message), transaction)
        ready = run_in_share(
            self._slots, client.address, self._reactor, self._pool, self._prepare, client,
            transaction, message,
        )  # fmt: skip
        return ready.addCallback(self._offloaded, transaction)

    def _verdict(
        self,
        scored: list[Score],
        transaction: Transaction,
        notes: tuple[tuple[str, str], ...] = (),
        forged: tuple[tuple[str, int], ...] = (),
    ) -> Verdict:
        """``forged``: the sender's copies of our fields, removed from what is delivered."""
        recipients = transaction.recipients
        first = recipients[0] if len(recipients) == 1 else None
        shown = scored[0]
        scores = {first: shown} if first else dict(zip(recipients, scored[1:], strict=True))
        required = {r: self._required(s) for r, s in scores.items()}
        fields = shown.fields(required[first] if first else self.junk_score) + notes
        if (
            self.reject_score
            and scores
            and all(s.total >= self.reject_score for s in scores.values())
        ):
            return Verdict.reject(f"message refused as spam (score {shown.total:.1f})")
        junk = frozenset(r for r, s in scores.items() if s.total >= required[r])
        if junk:
            return Verdict.junk(
                f"spam score {shown.total:.1f}", junk, headers=fields, remove=forged
            )
        return Verdict.accept(headers=fields, remove=forged)


def arrival(hop: Hop | None, now: float | None = None) -> float | None:
    """When the message arrived, for the rules that compare its dates with that
    (``DATE_IN_FUTURE``): for mail a trusted relay hands on (fetchmail, a front MX), when
    that relay received it, as its ``Received:`` field says (SpamAssassin compares with the
    ``Received:`` dates too); never later than now (a relay's clock ahead of ours). None:
    now, for mail that comes straight from the sender."""
    if hop is None or hop.received_at is None:
        return None
    return min(hop.received_at, time.time() if now is None else now)


def _with_rules(scores: list[Score], found: list[rules.Rule]) -> list[Score]:
    """``scores`` with the rules ``found`` after scoring (the URI block lists') added."""
    if not found:
        return scores
    return [
        Score(round(sum(r.score for r in (*s.hits, *found)), 1), (*s.hits, *found), s.bayes,
              s.threshold)
        for s in scores
    ]  # fmt: skip


def _owners(transaction: Transaction) -> list[str | None]:
    """Whose training and lists score the message. One recipient: their score is the one
    shown. Several: the copies share the header fields, so they show the score without
    anyone's own training or lists (no owner), and each recipient's own score decides their
    Junk folder."""
    recipients = transaction.recipients
    if len(recipients) == 1:
        return [owner_of(recipients[0])]
    return [None, *map(owner_of, recipients)]


@dataclass(frozen=True)
class _Prepared:
    """A message ready to be scored (``SpamFilter._prepare``)."""

    head: bytes
    body: bytes
    truncated: bool
    seen: list[rules.Rule]  # the connection checks' rules, rspamd's
    notes: tuple[tuple[str, str], ...]  # header fields about rspamd
    forged: tuple[tuple[str, int], ...] = ()  # the sender's X-Spam-Status etc. (OWN_FIELDS)
    arrival: float | None = None  # when a trusted relay received it (``arrival``); None: now
    client_address: str = ""  # whose share of the filters' threads a later lookup takes
    dns_deadline: float | None = None  # time.monotonic() when the message's dns_budget ends
