"""The domains a message links to, for the URI block lists (``uribl.py``): found by the
scoring process in the sample's URLs, looked up by the server. Kept apart from ``uribl.py``
so that the scoring process imports no DNS or Twisted code for them."""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import Iterable

from txmailhost.publicsuffix import registrable_domain

LINK_DOMAINS_CAP = 30  # domains the scoring process hands back (before the skip list)
# A bounded cost whatever the message holds: its first URLS_READ links are read, and of
# them the first HOSTS_READ distinct hosts taken apart (an IDNA one costs ~50 us)
URLS_READ = 1000
HOSTS_READ = 60
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def link_domains(urls: Iterable[str], cap: int = LINK_DOMAINS_CAP) -> list[str]:
    """The registrable domains of the hosts of ``urls`` (within ``URLS_READ`` and
    ``HOSTS_READ``), distinct, in order, at most ``cap``."""
    found: dict[str, None] = {}
    seen: set[str] = set()
    for url in itertools.islice(urls, URLS_READ):
        match = _AUTHORITY.match(url)
        if match is None or match.group(0) in seen:  # a host's other links: nothing new
            continue
        if len(seen) >= HOSTS_READ:
            break
        seen.add(match.group(0))
        host = _host(match)
        domain = registrable_domain(host) if host is not None else None
        if domain is not None and domain not in found:
            found[domain] = None
            if len(found) >= cap:
                break
    return list(found)


def url_host(url: str) -> str | None:
    """The host name of ``url`` (``http://``, ``https://`` or a bare ``www.`` one) in lower
    case and A-labels, or None when it has none that DNS could hold: an address (a host
    whose last label is a number, which browsers read as IPv4: ``192.0.2.1``,
    ``3627734091``, ``0xd8.0x3a.0xd6.0xce``; an IPv6 literal), a name without a dot, a label
    that is not letters, digits and hyphens."""
    match = _AUTHORITY.match(url)
    return None if match is None else _host(match)


# scheme (http or https, or none: "www."), then the authority up to a path, query or
# fragment (a backslash ends it too, as browsers read it); user information dropped
_AUTHORITY = re.compile(r"\s*(?:(https?)://|(?=www\.))(?:[^/?#\\]*@)?([^/?#\\]*)", re.IGNORECASE)
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")


def _host(match: re.Match[str]) -> str | None:
    host = match.group(2)
    if host.startswith("["):  # an IPv6 literal
        return None
    host = host.partition(":")[0]
    if "%" in host:  # browsers decode it: http://%77%77%77.example.com/
        try:
            host = urllib.parse.unquote(host, errors="strict")
        except UnicodeDecodeError:
            return None
    host = host.lower().rstrip(".")
    last = host.rpartition(".")[2]
    if not host or last == host or _NUMBER.fullmatch(last):
        return None  # no dot, or an address written some way
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        return None
    return host
