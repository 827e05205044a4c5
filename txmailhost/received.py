"""The client before our relay: who handed a message to a relay we trust, from its ``Received:``.

Mail does not always come straight from the sender's server. It comes through the operator's
own machines: a front MX or a backup MX on the LAN, fetchmail or getmail injecting what they
fetched from a provider over loopback, a content filter handing mail back. For those clients
what the server knows of the connection says nothing of the sender: the client is the
operator's own, and who really sent the message is one hop further back, written down by that
relay in the ``Received:`` field it added on top (RFC 5321 4.4). SpamAssassin (its "trusted"
relays and ``-lastexternal`` rules), rspamd (its received parsing) and policyd-spf behind a
relay read that hop too. Two parts of the server do:

- the spam filter's connection checks (``spam/connection.py``), for loopback, private and
  link-local clients and the networks of ``[filters.settings.spam] trusted_relays``;
- SPF (``mailauth/checks.py``), for the networks of ``[mailauth] trusted_relays`` only: what
  SPF finds decides DMARC, so a relay is trusted there only when the administrator names it
  (a LAN machine could otherwise write a ``Received:`` naming an address a domain's SPF
  allows).

``last_external`` walks the ``Received:`` fields from the top: past the ones whose client
address is trusted too (ours first: it names the relay), to the first whose client is not.
That one was written by a relay we trust about a client we don't: its address, the HELO it
gave, and the reverse DNS name the relay found for it, if the relay's format records one.
Fields below it were written by machines we know nothing about, and are never read (a sender
forges those freely). Fields that name no client address (``from mail@localhost``, qmail's
``invoked by uid``) are stepped over.

The formats read (the "from" clause, before `` by ``):

- Postfix, Sendmail and what copies them: ``HELO (NAME [ADDRESS])``; Postfix writes
  ``unknown`` as the name when the address has none, Sendmail nothing (``HELO ([ADDRESS])``);
  an ident (``user@NAME``) and Sendmail's ``(may be forged)`` are allowed.
- Exim: ``NAME ([ADDRESS] helo=HELO)``, or ``[ADDRESS] (helo=HELO)`` when it found none.
- qmail: ``NAME (HELO HELO) (ADDRESS)``, ``unknown`` as the name when it found none.
- Anything else with an address literal in its from clause: the address and HELO, the
  name not recorded (``rdns`` is None), as for Microsoft's servers, which look up no name,
  and ours when it didn't (``[smtp] reverse_dns`` off, a loopback client).
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from txmailhost.peer import literal_ip

# How many Received: fields are read from the top before giving up: a real path has a few;
# a header padded with hundreds must not cost a regex each.
MAX_FIELDS = 20
# Characters of a field read: a real one is a few hundred; a header section may be 1 MiB,
# and a trusted client's message is read on the reactor thread.
MAX_CHARS = 2048

_ADDRESS = r"(?:IPv6:)?(?P<address>[0-9A-Fa-f.:]{3,45})"
_FROM = re.compile(r"\A\s*from\s+(?P<clause>.*?)\s+by\s", re.IGNORECASE | re.DOTALL)
# Postfix / Sendmail: HELO (ident@NAME [ADDRESS]) or HELO ([ADDRESS]), with extras after
_SENDMAIL = re.compile(
    r"\A(?P<helo>\S+)\s+\((?:[^\s@()]+@)?(?P<name>[^\s()\[\]@]*)\s*\[" + _ADDRESS + r"\]"
)
# Exim: NAME ([ADDRESS]:port helo=HELO) / [ADDRESS] (helo=HELO) / NAME ([ADDRESS])
_EXIM_NAMED = re.compile(
    r"\A(?P<name>[^\s\[\]()]+)\s+\(\[" + _ADDRESS + r"\](?::\d+)?(?:\s+helo=(?P<helo>[^\s)]+))?"
)
_EXIM_BARE = re.compile(
    r"\A\[" + _ADDRESS + r"\](?::\d+)?(?:\s+\((?:port=\d+\s*)?(?:helo=(?P<helo>[^\s)]+))?)?"
)
# qmail: NAME (HELO helo) (info@ADDRESS) / NAME (ADDRESS)
_QMAIL = re.compile(
    r"\A(?P<name>[^\s()]+)\s+(?:\(HELO\s+(?P<helo>[^\s)]*)\)\s+)?\((?:[^\s@()]*@)?\[?"
    + _ADDRESS
    + r"\]?\)"
)
_EXIM_BY = "(Exim "
_ANY_LITERAL = re.compile(r"\[" + _ADDRESS + r"\]")
# The relays whose format has no name in it, so that "no name" says nothing: Microsoft's
# (SMTPSVC, Exchange); and ours when it didn't look the client up (``from HELO ([ADDRESS])``;
# looked up, it writes Postfix's form).
_NAMELESS_BY = "Microsoft SMTP"  # "with Microsoft SMTPSVC", "with Microsoft SMTP Server"
_OURS_BY = "(txmailhost)"


@dataclass(frozen=True)
class Hop:
    """A client as the relay that received from it wrote it down."""

    address: str
    helo: str
    rdns: str | None  # the relay found this name; "" it found none; None its format doesn't say
    # when the relay received the message (its field's date, Unix time), if it says
    received_at: float | None = None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(given: Iterable[str]) -> tuple[Network, ...]:
    """A ``trusted_relays`` setting: addresses and networks (``192.0.2.25``,
    ``198.51.100.0/24``); ``ValueError`` naming the first that is neither."""
    if isinstance(given, str) or not all(isinstance(n, str) for n in given):
        raise ValueError('trusted_relays must be a list of addresses or networks ("a/len")')
    found = []
    for text in given:
        try:
            found.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an address or network") from None
    return tuple(found)


def within(address: str, among: tuple[Network, ...]) -> bool:
    """Whether ``address`` (text, as a client's or a field's) is in one of ``among``."""
    parsed = literal_ip(address) if among else None
    return parsed is not None and any(parsed in network for network in among)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse(value: str) -> Hop | None:
    """The client a ``Received:`` field's value names, or None when it names no address."""
    value = " ".join(value[:MAX_CHARS].split())
    match = _FROM.match(value)
    if match is None:
        return None
    clause = match.group("clause")
    by = value[match.end("clause") :]
    says_name = _NAMELESS_BY not in by
    if _OURS_BY in by and re.match(r"\S+ \(\[", clause):
        says_name = False  # ours, without a name: the client wasn't looked up
    if _EXIM_BY in by:
        # Exim puts the name first, so "NAME ([ADDRESS])" is Sendmail's shape for no name
        if (found := _EXIM_NAMED.match(clause)) and (address := _address(found["address"])):
            return _hop(address, found["helo"] or found["name"], found["name"], says_name)
        if (found := _EXIM_BARE.match(clause)) and (address := _address(found["address"])):
            return _hop(address, found["helo"] or "", "", says_name)
    if (found := _SENDMAIL.match(clause)) and (address := _address(found["address"])):
        return _hop(address, found["helo"], found["name"], says_name)
    if (found := _QMAIL.match(clause)) and (address := _address(found["address"])):
        return _hop(address, found["helo"] or found["name"], found["name"], says_name)
    if (found := _ANY_LITERAL.search(clause)) and (address := _address(found["address"])):
        return _hop(address, clause.split()[0], "", False)
    return None


def _hop(address: str, helo: str, name: str, says_name: bool) -> Hop:
    if not says_name:
        return Hop(address, helo, None)
    name = name.lower().rstrip(".")
    return Hop(address, helo, "" if name in ("unknown", "unverified") else name)


def last_external(received: Iterable[str], trusted: Callable[[str], bool]) -> Hop | None:
    """The first client, from the top, that ``trusted`` doesn't trust, as the relay above it
    wrote it down; None when every field up to ``MAX_FIELDS`` names a trusted client or none."""
    for index, value in enumerate(received):
        if index >= MAX_FIELDS:
            return None
        hop = parse(value)
        if hop is not None and not trusted(hop.address):
            return dataclasses.replace(hop, received_at=field_date(value))
    return None


def field_date(value: str) -> float | None:
    """The date a ``Received:`` field ends with (after its last ";", RFC 5322 3.6.7), as Unix
    time; None when there is none that parses. One without a zone (``-0000``) is UTC."""
    text = value[-200:].rpartition(";")[2].strip()
    if not text:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def received_values(head: bytes) -> Iterator[str]:
    """The ``Received:`` field values of a header section (CRLF lines), from the top,
    unfolded; read as far as they are asked for. Found by searching the lowered section
    (every loopback message is asked this, on the reactor thread), not line by line."""
    end = head.find(b"\r\n\r\n")
    section = b"\r\n" + (head if end < 0 else head[: end + 2])
    lowered = section.lower()
    at = lowered.find(b"\r\nreceived:")
    while at >= 0:
        start = at + len(b"\r\nreceived:")
        stop = section.find(b"\r\n", start)
        while stop >= 0 and section[stop + 2 : stop + 3] in (b" ", b"\t"):
            stop = section.find(b"\r\n", stop + 2)  # a folded line: the field goes on
        stop = len(section) if stop < 0 else stop
        yield section[start : min(stop, start + MAX_CHARS)].replace(b"\r\n", b" ").decode("latin-1")
        at = lowered.find(b"\r\nreceived:", stop)
