"""DMARC (RFC 7489): the policy of the From domain and whether the message meets it.

A small evaluator of our own on publicsuffixlist rather than the ``dmarc`` package: that
package fetches records itself (we need every lookup through our resolver, with its cache
and temporary errors kept apart) and lags the RFC's record discovery; what DMARC needs
beyond SPF and DKIM results is about a hundred lines: find the record (6.6.3: at
``_dmarc.FROM``, else at ``_dmarc.ORGDOMAIN``), parse its tags (6.3), check alignment
(3.1: relaxed compares organisational domains, strict compares names) and apply ``pct``.

The organisational domain comes from the public suffix list that the ``publicsuffixlist``
package ships inside itself (pinned with the package: no download at run time), loaded once
a process by ``txmailhost/publicsuffix.py``, which the spam filter's URI block lists share.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from txmailhost.asciinum import number_or
from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.publicsuffix import organizational_domain

POLICIES = ("none", "quarantine", "reject")


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    identifier, from_domain = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return identifier == from_domain
    return organizational_domain(identifier) == organizational_domain(from_domain)


@dataclass(frozen=True)
class Policy:
    domain: str  # where the record was found (the From domain or its organisational domain)
    p: str
    sp: str
    adkim: str
    aspf: str
    pct: int
    rua: tuple[str, ...]

    def for_domain(self, from_domain: str) -> str:
        """The policy that applies to mail from ``from_domain`` (sp= for subdomains)."""
        return self.p if from_domain == self.domain else self.sp


MAX_RUA = 2  # report addresses of a record used, the first ones


def parse_record(domain: str, text: str) -> Policy | None:
    """A DMARC record's policy; None for one that isn't usable (6.6.3: no v=DMARC1 first,
    or no valid p= — kept as p=none when a valid rua= asks for reports)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    if not re.fullmatch(r"\s*v\s*=\s*DMARC1\s*(;.*)?", text, re.S | re.I):
        return None
    p = tags.get("p", "").lower()
    # RFC 7489 6.2: a receiver may limit the report addresses (it need support only two);
    # 2,000 of them made 2,000 reports a day, and 51 KB of log per message
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())[:MAX_RUA]
    if p not in POLICIES:
        if not rua:
            return None
        p = "none"
    sp = tags.get("sp", "").lower()
    sp = sp if sp in POLICIES else p
    pct_text = tags.get("pct", "100")
    pct = min(number_or(pct_text, 100), 100)
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    return Policy(domain, p, sp, adkim, aspf, pct, rua)


def fetch_policy(resolver: MailAuthResolver, from_domain: str) -> Policy | None:
    """The policy for ``from_domain``, or None when there is none. Raises ``DNSTempError``."""
    for domain in dict.fromkeys([from_domain, organizational_domain(from_domain)]):
        records = [
            r.decode("utf-8", "replace")
            for r in resolver.txt(f"_dmarc.{domain}")
            if r[:8].lower().startswith(b"v=dmarc1")
        ]
        if len(records) == 1:  # more than one: as if none (6.6.3 step 5)
            policy = parse_record(domain, records[0])
            if policy is not None:
                return policy
    return None


@dataclass(frozen=True)
class DMARCResult:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str
    policy: str = "none"  # what the domain asks for this message: none | quarantine | reject
    reason: str = ""


def evaluate(
    from_domain: str,
    policy: Policy | None,
    spf: tuple[str, str] | None,
    dkim: list[tuple[str, str]],
    rng: random.Random | None = None,
) -> DMARCResult:
    """``spf`` is (result, domain) of the MAIL FROM (or HELO) check; ``dkim`` (result, d=)
    per signature. ``pct`` below 100 applies the policy to that share of failing mail and
    the next milder one to the rest (6.6.4)."""
    if policy is None:
        return DMARCResult("none", from_domain, "none", "no DMARC record")
    if spf is not None and spf[0] == "pass" and aligned(spf[1], from_domain, policy.aspf):
        return DMARCResult("pass", from_domain, "none", "SPF aligned")
    for result, domain in dkim:
        if result == "pass" and aligned(domain, from_domain, policy.adkim):
            return DMARCResult("pass", from_domain, "none", "DKIM aligned")
    asked = policy.for_domain(from_domain)
    if policy.pct < 100 and (rng or random).randrange(100) >= policy.pct:
        asked = {"reject": "quarantine", "quarantine": "none"}.get(asked, "none")
    return DMARCResult("fail", from_domain, asked, "neither SPF nor DKIM aligned and passed")
