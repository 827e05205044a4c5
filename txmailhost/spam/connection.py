"""Connection and envelope checks for the spam score (issue 17, item 1): who is sending, before
what they sent. Each is a named rule in ``rules.RULES`` (``txmailhost spam rules``) or, for
DNS lists, a rule named after its zone with the weight configured for it.

- HELO sanity (no DNS): a bare IP address instead of a name (``HELO_BARE_IP``), a name with
  no dot (``HELO_NO_FQDN``), or our own host name said by someone else (``HELO_OUR_NAME``);
  with DNS, a name that has no address or MX (``HELO_NXDOMAIN``).
- Reverse DNS: no PTR for the client address (``RDNS_NONE``), or a PTR name whose addresses
  don't include the client (``RDNS_MISMATCH``, forward-confirmed reverse DNS).
- DNS block and allow lists on the client address (``dnsbl``, ``dnswl`` zones and their
  weights: a block list's weight is positive, an allow list's negative) and on the envelope
  sender's domain (``rhsbl``). An answer in 127.0.0.0/8 means listed, except the codes lists
  use to say the query itself was refused (Spamhaus's 127.255.255.252/254/255 for a public
  or abusive resolver and its DBL's 127.0.1.255 for a query it doesn't take, DNSWL's
  127.0.0.255, URIBL's and SURBL's 127.0.0.1 "query blocked"): those are logged and count as
  not listed, since reading them as "listed" would mark every message of a server using a
  public resolver. A sender domain that is an address literal (``user@[192.0.2.1]``) is not
  looked up in the RHSBLs: they list names, and answer such a query with a refusal.

A message's lookups share ``dns_budget`` seconds (``MailAuthResolver.budget``): past them a
lookup counts as unanswered (no verdict), so a DNS server or list that has stopped answering
costs each message at most that, and the spam filter still answers within the chain's
``timeout`` instead of every message from outside getting its ``on_error`` (451).

Clients on loopback, private (RFC 1918, RFC 4193) and link-local addresses are not checked:
they are the operator's own machines, never on a public list and seldom in public DNS. Nor
are the relays of ``trusted_relays``. When such a client hands on mail it received (a front
or backup MX, fetchmail, a content filter), the client it received it from is checked
instead, as the relay wrote it down in its ``Received:`` field (``txmailhost/received.py``): the HELO
checks on the HELO it recorded, ``RDNS_NONE`` when it recorded no reverse DNS name, and the
address lists on its address. (Not ``HELO_NXDOMAIN`` and ``RDNS_MISMATCH``: what DNS says
now of a name given then is another question.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from typing import Any

from twisted.logger import Logger

from txmailhost.peer import is_own_network as is_own
from txmailhost.peer import literal_ip
from txmailhost.received import Hop, last_external, networks, within
from txmailhost.reversedns import reverse
from txmailhost.spam import rules

log = Logger()

_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.255.255.0/24",  # Spamhaus: public or abusive resolver, bad DQS key
        "127.0.0.255/32",  # DNSWL: too many queries
        "127.0.1.255/32",  # Spamhaus DBL: a query it doesn't take (an address)
        "127.0.0.1/32",  # URIBL, SURBL: query blocked (a public resolver, too many queries)
    )
)
_LISTED = ipaddress.ip_network("127.0.0.0/8")
# Seconds all of one message's connection-check lookups may take together: within the
# chain's 30 s with room for rspamd's 5 s and the score itself. Without it, a black-holed
# resolver cost each lookup its 5 s timeout: HELO (3), reverse DNS (2), each list (1 each)
# came to a minute, far past the chain's budget.
DNS_BUDGET = 15.0


def reversed_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The DNS list form of an address: 192.0.2.7 -> 7.2.0.192; IPv6 as reversed nibbles."""
    return address.reverse_pointer.rsplit(".", 2)[0]  # less .in-addr.arpa / .ip6.arpa


def _via(rule: rules.Rule, hop: Hop) -> rules.Rule:
    """``rule`` about the client a trusted relay received from: the report says which."""
    return rules.Rule(rule.name, rule.score, f"{rule.description} ({hop.address}, relayed)", None)


def zone_rule(zone: str, weight: float, what: str) -> rules.Rule:
    return rules.Rule(f"{what}:{zone}", float(weight), f"listed in {zone} ({what.lower()})", None)


class ConnectionChecks:
    """The checks for one message; ``resolver`` (a ``MailAuthResolver``) is used from the
    filters' thread, None for the checks that need no DNS only."""

    def __init__(
        self,
        hostname: str,
        resolver: Any = None,
        dnsbl: Mapping[str, float] | None = None,
        dnswl: Mapping[str, float] | None = None,
        rhsbl: Mapping[str, float] | None = None,
        rdns: bool = True,
        dns_budget: float = DNS_BUDGET,
        trusted_relays: Iterable[str] = (),
    ) -> None:
        self.hostname = hostname.lower().rstrip(".")
        self.trusted_relays = networks(trusted_relays)
        self.resolver = resolver
        self.dns_budget = dns_budget
        self.dnsbl = {z.strip(".").lower(): float(w) for z, w in (dnsbl or {}).items()}
        self.dnswl = {z.strip(".").lower(): -abs(float(w)) for z, w in (dnswl or {}).items()}
        self.rhsbl = {z.strip(".").lower(): float(w) for z, w in (rhsbl or {}).items()}
        self.rdns = rdns

    def trusted(self, client_address: str) -> bool:
        """Is the client one of ours, or a relay we trust to write down who it received from?"""
        return is_own(client_address) or within(client_address, self.trusted_relays)

    def asks_dns(self, client_address: str) -> bool:
        """Whether ``hits`` may ask DNS for this client (then it blocks: the filters'
        threads); for a trusted relay, only when there are lists to ask about the client
        before it and the sender."""
        if self.resolver is None:
            return False
        return not self.trusted(client_address) or self._has_lists()

    def _has_lists(self) -> bool:
        return bool(self.dnsbl or self.dnswl or self.rhsbl)

    def hits(
        self,
        client_address: str,
        helo: str | None,
        sender: str | None,
        received: Iterable[str] = (),
    ) -> list[rules.Rule]:
        """The rules that fire on the client, or (a trusted client) on the client before it,
        read from ``received``: the ``Received:`` field values from the top, ours first."""
        return self.checked(client_address, helo, sender, received)[0]

    def checked(
        self,
        client_address: str,
        helo: str | None,
        sender: str | None,
        received: Iterable[str] = (),
    ) -> tuple[list[rules.Rule], Hop | None]:
        """``hits``, and for a trusted client the client before it as its relay wrote it
        down (with when the relay received the message), else None."""
        hop = None
        if self.trusted(client_address):
            hop = last_external(received, self.trusted)
            if hop is None:
                return [], None
        budget = nullcontext() if self.resolver is None else self.resolver.budget(self.dns_budget)
        with budget:
            if hop is not None:
                return self._relayed(hop, sender), hop
            return self._hits(client_address, helo, sender), None

    def _relayed(self, hop: Hop, sender: str | None) -> list[rules.Rule]:
        """The checks on a client a trusted relay received from, as it wrote it down."""
        found = [_via(rule, hop) for rule in self._helo(hop.helo)]
        if self.rdns and hop.rdns == "":
            found.append(_via(rules.BY_NAME["RDNS_NONE"], hop))
        address = literal_ip(hop.address)
        if self.resolver is not None and address is not None:
            found += self._lists(address, sender)
        return found

    def _hits(self, client_address: str, helo: str | None, sender: str | None) -> list[rules.Rule]:
        found = self._helo(helo or "")
        address = literal_ip(client_address)
        if self.resolver is None or address is None:
            return found
        name_given = bool(helo) and not found and not helo.startswith("[")  # a sane name
        if name_given and not self._exists(helo or ""):
            found.append(rules.BY_NAME["HELO_NXDOMAIN"])
        if self.rdns:
            found += self._reverse(address)
        return found + self._lists(address, sender)

    def _lists(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, sender: str | None
    ) -> list[rules.Rule]:
        """The DNS block and allow lists on ``address``, the RHSBLs on ``sender``'s domain."""
        found = []
        name = reversed_name(address)
        for zone, weight in {**self.dnsbl, **self.dnswl}.items():
            if listed(self.resolver, f"{name}.{zone}", zone):
                what = "DNSWL" if zone in self.dnswl else "DNSBL"
                found.append(zone_rule(zone, weight, what))
        domain = (sender or "").rpartition("@")[2].lower().strip(".")
        if domain and "." in domain and not domain.startswith("["):
            for zone, weight in self.rhsbl.items():
                if listed(self.resolver, f"{domain}.{zone}", zone):
                    found.append(zone_rule(zone, weight, "RHSBL"))
        return found

    def _helo(self, helo: str) -> list[rules.Rule]:
        name = helo.strip().lower().rstrip(".")
        if not name:
            return []
        if literal_ip(name) is not None and not name.startswith("["):
            return [rules.BY_NAME["HELO_BARE_IP"]]  # RFC 5321 4.1.3: literals go in brackets
        if name.startswith("["):
            return []
        if name == self.hostname:
            return [rules.BY_NAME["HELO_OUR_NAME"]]
        if "." not in name:
            return [rules.BY_NAME["HELO_NO_FQDN"]]
        return []

    def _exists(self, name: str) -> bool:
        for rdtype in ("A", "AAAA", "MX"):
            records = lookup(self.resolver, name, rdtype)
            if records is None or records:
                return True  # no answer is not proof of absence
        return False

    def _reverse(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[rules.Rule]:
        found = reverse(self.resolver, address)
        if found is None:  # DNS didn't answer: no verdict
            return []
        if not found.names:
            return [rules.BY_NAME["RDNS_NONE"]]
        return [] if found.verified else [rules.BY_NAME["RDNS_MISMATCH"]]


def lookup(resolver: Any, name: str, rdtype: str) -> list[Any] | None:
    """The records, or None when DNS didn't answer (a temporary error: no verdict)."""
    from txmailhost.mailauth.resolver import DNSTempError

    try:
        return resolver.lookup(name, rdtype)
    except DNSTempError as e:
        log.debug("spam: DNS {rdtype} {name}: {error}", rdtype=rdtype, name=name, error=e)
        return None


def listed(resolver: Any, name: str, zone: str) -> bool:
    """Does the DNS list ``zone`` list ``name`` (the query, zone included)? An answer in
    127.0.0.0/8 that is none of the codes lists use to refuse a query (``_REFUSED``)."""
    records = lookup(resolver, name, "A")
    if not records:
        return False
    found = False
    for record in records:
        answer = literal_ip(record.address)
        if answer is None or answer not in _LISTED:
            continue
        if any(answer in n for n in _REFUSED):
            log.warn(
                "spam: {zone} refused our query ({answer}): use a resolver of your own "
                "for DNS lists (the answer counts as not listed)",
                zone=zone,
                answer=str(answer),
            )
            return False
        found = True
    return found
