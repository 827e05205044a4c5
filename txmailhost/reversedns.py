"""The SMTP client's reverse DNS name, looked up when it connects, as Postfix's smtpd does.

What the name is used for: our ``Received:`` field records it (RFC 5321 4.4's TCP-info,
``from HELO (NAME [ADDRESS])``, Postfix's ``unknown`` when there is none), which is what
SpamAssassin and rspamd read downstream; rspamd is told it in ``Hostname`` (without one it
takes every client for one without a name: ``HFILTER_HOSTNAME_UNKNOWN``, 2.5 points on every
message); the spam checks' ``RDNS_NONE`` and ``RDNS_MISMATCH``.

The name counts only forward-confirmed (FCrDNS): a PTR name whose A or AAAA records hold the
address, since anyone who controls a block's reverse zone can name it ``mail.example.com``.
The lookups start at connect and run while the client greets and sends its envelope; they
ask the server's one resolver (``mailauth.resolver.MailAuthResolver``, ``[relay]
nameservers`` and its cache): on the reactor when the answers are cached, else in the
filters' threads within the client's share of them, so a flood of connections from one
network can't take the threads from everybody else, and at most ``MAX_IN_FLIGHT`` at once,
so a flood from many can't take them from the messages' checks (a client past it is simply
not looked up). Loopback, private and link-local
clients are not looked up (the operator's own machines, seldom in public DNS).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from txmailhost.filters.fairness import run_in_share
from txmailhost.ops import metrics
from txmailhost.peer import ip_of, is_own_network

log = Logger()

BUDGET = 5.0  # seconds the lookups of one client share; past them: not known
# Lookups in the filters' threads at once, at most: the rest of the threads stay for the
# messages' checks however many clients connect (a flood while DNS is slow would otherwise
# hold every thread for BUDGET seconds); a client connecting past it isn't looked up.
MAX_IN_FLIGHT = 4
MAX_NAMES = 3  # PTR names tried for a forward match (Postfix: the first; SpamAssassin: all)


@dataclass(frozen=True)
class Reverse:
    """What DNS says of an address's name: its PTR names, and the first of them that
    resolves back to it ("" when none does)."""

    names: tuple[str, ...]
    verified: str


def reverse(
    resolver: Any, address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> Reverse | None:
    """The forward-confirmed reverse DNS of ``address``; None when DNS didn't answer (a
    temporary error: no verdict either way). Blocks: a thread's work, or the reactor's from
    the resolver's cache."""
    from txmailhost.mailauth.resolver import DNSTempError

    try:
        pointers = resolver.lookup(address.reverse_pointer, "PTR")
        names = tuple(p.target.to_text(omit_final_dot=True).lower() for p in pointers)
        rdtype = "A" if isinstance(address, ipaddress.IPv4Address) else "AAAA"
        for name in names[:MAX_NAMES]:
            if any(ip_of(r.address) == address for r in resolver.lookup(name, rdtype)):
                return Reverse(names, name)
    except DNSTempError as e:
        log.debug("reverse DNS of {address}: {error}", address=str(address), error=e)
        return None
    return Reverse(names, "")


class ReverseDNS:
    """``lookup(address)``: a Deferred firing with the client's verified name, "" when it
    has none, or None when it wasn't looked up or DNS didn't answer in time."""

    def __init__(
        self,
        resolver: Any,
        reactor: Any,
        pool: Any,
        slots: Any = None,
        budget: float = BUDGET,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.resolver = resolver
        self.reactor = reactor
        self.pool = pool
        self.slots = slots
        self.budget = budget
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.skipped = 0  # clients not looked up because max_in_flight were under way

    def lookup(self, address: str) -> Deferred[str | None]:
        parsed = ip_of(address)
        if parsed is None or is_own_network(address):
            return succeed(None)
        try:
            answered, found = self.resolver.from_cache(reverse, self.resolver, parsed)
        except Exception:  # never the session's problem: the name is just not known
            log.failure("reverse DNS of {address} failed", address=address)
            return succeed(None)
        if answered:
            return succeed(_counted(_name(found)))
        if self.in_flight >= self.max_in_flight:
            self.skipped += 1
            metrics.reverse_dns("skipped")
            return succeed(None)
        self.in_flight += 1
        looked_up = run_in_share(
            self.slots, address, self.reactor, self.pool, self._in_thread, parsed
        )
        looked_up.addErrback(self._failed, address)
        looked_up.addBoth(self._done)
        return looked_up

    def _done(self, name: str | None) -> str | None:
        self.in_flight -= 1
        return _counted(name)

    def _in_thread(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        with self.resolver.budget(self.budget):
            return _name(reverse(self.resolver, address))

    @staticmethod
    def _failed(failure: Any, address: str) -> None:
        log.failure("reverse DNS of {address} failed", failure, address=address)
        return None


def _counted(name: str | None) -> str | None:
    """``name``, counted in the metrics by what it is."""
    metrics.reverse_dns("unknown" if name is None else "name" if name else "none")
    return name


def _name(found: Reverse | None) -> str | None:
    return None if found is None else found.verified
