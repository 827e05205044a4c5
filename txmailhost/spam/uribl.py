"""URI block lists: the domains a message links to, looked up in DNS lists of the domains
spam advertises (Spamhaus DBL, SURBL, URIBL), as SpamAssassin's ``URIBL_*`` rules and
rspamd's SURBL module do.

A spammer changes the client address and the sender with every run, but the message has to
send its reader somewhere, and these lists name those domains, often soon after a run
starts, before the classifier has learned its words (SpamAssassin and rspamd ship with them
on). ``[filters.settings.spam] uribl = { "zone" = weight }`` turns them on.

- **Which domains**: the sample's URLs (the text's and the HTML links'), each host's
  registrable domain (the public suffix list's: ``http://www.shop.example.co.uk/`` is
  looked up as ``example.co.uk``), distinct, in the order the message gives them, at most ``most`` (20, SpamAssassin's ``uridnsbl_max_domains``) a message, so a
  message of a thousand links costs twenty queries a zone (``links.py`` bounds the work of
  finding them too). A host written as an address, a
  name without a dot or one that can't be a DNS name is not looked up (the domain lists take
  names only; Spamhaus answers an address with a refusal), nor are the server's own domain
  and ``uribl_skip``'s (domains every message links to: asking about them is only load on the
  list).
- **Where**: the scoring process reads the sample; it hands the domains back with its scores
  (``links.link_domains``, in the scoring process without
  this module's DNS code), and the server asks DNS — from the resolver's cache on the
  reactor when every answer is there, else in the filters' threads — within what is left of
  the message's ``dns_budget`` after the connection checks (so that the two together stay
  within the chain's timeout); past it, a lookup counts as unanswered (not listed).
- **What counts**: an answer in 127.0.0.0/8, except the codes a list refuses a query with
  (URIBL's and SURBL's 127.0.0.1, the DBL's 127.0.1.255: ``connection.listed``, logged).
  Each zone that lists one of the domains adds its weight once, as the rule
  ``URIBL:<zone>``, whose report line names the domain.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from txmailhost.publicsuffix import registrable_domain
from txmailhost.spam import rules
from txmailhost.spam.connection import DNS_BUDGET, listed

MOST = 20  # domains looked up a message (SpamAssassin's uridnsbl_max_domains)


class UriblChecks:
    """The URI block lists of one server: ``zones`` (zone -> weight) asked through
    ``resolver`` (a ``MailAuthResolver``) about at most ``most`` domains a message."""

    def __init__(
        self,
        resolver: Any,
        zones: Mapping[str, float],
        skip: Iterable[str] = (),
        own: str = "",
        most: int = MOST,
        dns_budget: float = DNS_BUDGET,
    ) -> None:
        if int(most) < 1:
            raise ValueError("uribl_max_domains must be 1 or more")
        if not isinstance(zones, Mapping):
            raise TypeError('uribl must be a table of zone = weight: { "dbl.example" = 2.5 }')
        self.resolver = resolver
        self.zones = {z.strip(".").lower(): float(w) for z, w in zones.items()}
        # as the domains are compared: "www.example.com" skips example.com
        self.skip = {registrable_domain(d) or d.strip(".").lower() for d in [*skip, own] if d}
        self.most = int(most)
        self.dns_budget = dns_budget

    def asked(self, domains: Iterable[str]) -> list[str]:
        """The domains of a message that are looked up: not skipped, at most ``most``."""
        return [d for d in domains if d not in self.skip][: self.most]

    def hits(self, domains: Iterable[str], deadline: float | None = None) -> list[rules.Rule]:
        """One rule per zone that lists one of ``domains`` (the first it lists, in order).
        ``deadline`` (``time.monotonic()``): when the message's ``dns_budget`` ends, shared
        with the connection checks made before the score; None: all of it from now."""
        asked = self.asked(domains)
        if not asked or self.resolver is None:
            return []
        seconds = self.dns_budget if deadline is None else deadline - time.monotonic()
        if seconds <= 0:
            return []  # the message's time for DNS is spent: no verdict
        found = []
        with self.resolver.budget(seconds):
            for zone, weight in self.zones.items():
                for domain in asked:
                    if listed(self.resolver, f"{domain}.{zone}", zone):
                        found.append(
                            rules.Rule(
                                f"URIBL:{zone}",
                                weight,
                                f"links to {domain}, listed in {zone} (URI block list)",
                                None,
                            )
                        )
                        break
        return found
