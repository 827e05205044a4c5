"""The author domains of a message: the domains of its From field (RFC 7489 3.1, 6.6.1), the
domains DMARC judges and the one DKIM signing signs for.

DMARC protects the address the reader sees, so the question is "what could a mail client
show here", asked of hostile input:

- Every address either of our two parsers reads counts (``addresslist.every_reading``): they
  disagree on malformed lists the way mail clients do, and the attacker picks the list.
- Every From field counts, and so does a field written ``From :`` (RFC 5322 4.5.3 allows
  space before the colon). RFC 5322 allows one From field; a second one is how a spoofer
  shows one domain to the reader and another to the checks.
- A From in which neither parser finds an address (an encoded word ``=?utf-8?b?...?=``
  hiding one, which clients that decode first will show; a comment never closed) counts
  every ``@domain`` in it, decoded too: no author domain means no DMARC policy applied.

A message whose From names several domains is judged for each (RFC 7489 6.6.1: "apply the
most strict policy selected among the checks that fail"). Reading never raises: a parser
that failed on nested comments once gave "no author", DMARC ``permerror``, and a
``p=reject`` domain's policy was skipped for a spoof of it.
"""

from __future__ import annotations

import email.header
import functools
import re

from txmailhost import headerfields
from txmailhost.accounts.addresses import canonical_domain
from txmailhost.accounts.interfaces import AccountError
from txmailhost.addresslist import every_reading
from txmailhost.encodedwords import decode_header

_AT_DOMAIN = re.compile(r'@([^\s<>()\[\]",;:@\\]+)')
# From fields up to this long (all of a message's together) have their reading remembered:
# a sender's From repeats from message to message, and reading it twice over is about a
# tenth of a millisecond, most of the checks' own work for an unsigned message.
KEPT_LENGTH = 512


def author_domains(header: bytes) -> list[str]:
    """The distinct domains (A-labels, lower case, in order) of every address a mail client
    could show as the author of the message whose header section is ``header``."""
    values = headerfields.values(header, "from")
    if sum(map(len, values)) <= KEPT_LENGTH:
        return list(_kept_domains(tuple(values)))
    return _read_domains(values)


@functools.lru_cache(maxsize=4096)
def _kept_domains(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_read_domains(list(values)))


def _read_domains(values: list[str]) -> list[str]:
    found = _domains(every_reading(values))
    if not found:  # no address at all: whatever looks like a domain after an "@"
        texts = values + [_decoded(value) for value in values if "=?" in value]
        found = _domains([f"@{domain}" for text in texts for domain in _AT_DOMAIN.findall(text)])
    return found


def _domains(addresses: list[str]) -> list[str]:
    """The DNS domains of ``addresses``: no address literals, no single labels, nothing that
    isn't a host name (a policy lookup for it would only ask the DNS nonsense)."""
    found = (_domain(address.rpartition("@")[2]) for address in addresses if "@" in address)
    return list(dict.fromkeys(domain for domain in found if domain))


def _domain(text: str) -> str | None:
    try:
        return canonical_domain(text)
    except AccountError:
        return None


def _decoded(value: str) -> str:
    try:
        return str(email.header.make_header(decode_header(value)))
    except Exception:  # a malformed encoded word: nothing more to read
        return ""
