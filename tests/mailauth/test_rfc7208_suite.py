"""The openspf.org RFC 7208 test suite (``tests/fixtures/spf/rfc7208-tests.yml``, from pyspf's
source distribution, BSD licence beside it) run through our SPF path: ``spf.check_spf`` with
a ``MailAuthResolver`` whose dnspython resolver answers from each scenario's zone data. So
what is tested is ours end to end below the network: name checks and error mapping in
``MailAuthResolver.lookup``, the record conversion in ``spf_lookup``, the identity choice
(MAIL FROM, or ``postmaster@HELO`` for the null sender) and result mapping in
``check_spf``, and pyspf's evaluation.

The zone data rules are the suite's own (pyspf's ``testspf.py``): a ``TIMEOUT`` entry times
out every query of the name without records of the asked type, ``TYPE: TIMEOUT`` that type;
names under ``error.`` that aren't listed time out, others don't exist; CNAMEs are followed;
an SPF (type 99) record is also served as TXT unless the name has TXT records; a TXT record of
no strings (``null-text``) is left out, as no DNS message can carry it. Results are
compared (a list in the suite names every acceptable result); explanation strings are not:
ours come without pyspf's "DEFAULT" placeholder and are used only in reply text.
"""

from __future__ import annotations

import contextlib
import os

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.mailauth.spf import check_spf

yaml = pytest.importorskip("yaml")

SUITE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "spf", "rfc7208-tests.yml")
IN = dns.rdataclass.IN


def _zone(data: dict) -> dict[str, list]:
    """name -> entries: "TIMEOUT" or (type, value), with SPF records doubled as TXT."""
    zone: dict[str, list] = {}
    for name, records in data.items():
        entries: list = []
        has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
        for record in records:
            if not isinstance(record, dict):
                entries.append(record)  # "TIMEOUT"
                continue
            for rtype, value in record.items():
                if rtype in ("TXT", "SPF") and isinstance(value, str) and value != "TIMEOUT":
                    value = (value,)
                if value == ("NONE",) or value == []:
                    continue  # a TXT record of no strings can't be on the wire (RFC 1035 3.3.14)
                entries.append((rtype, value))
                if rtype == "SPF" and not has_txt:
                    entries.append(("TXT", value))
        zone[name.lower().rstrip(".")] = entries
    return zone


def _rdata(rtype: str, value) -> object:
    if rtype == "A":
        return A(IN, dns.rdatatype.A, value)
    if rtype == "AAAA":
        return AAAA(IN, dns.rdatatype.AAAA, value)
    if rtype == "MX":
        preference, exchange = value
        return MX(IN, dns.rdatatype.MX, preference, dns.name.from_text(exchange))
    if rtype == "PTR":
        return PTR(IN, dns.rdatatype.PTR, dns.name.from_text(value))
    if rtype == "CNAME":
        return CNAME(IN, dns.rdatatype.CNAME, dns.name.from_text(value))
    return TXT(IN, dns.rdatatype.TXT, [s.encode("utf-8") for s in value])


class ZoneResolver:
    """What ``MailAuthResolver`` asks of ``dns.resolver.Resolver``, from one scenario's zone."""

    def __init__(self, zone: dict[str, list]) -> None:
        self.zone = zone

    def resolve(self, qname: dns.name.Name, rdtype: str, search: bool = False, depth: int = 0):
        name = b".".join(qname.labels).decode("utf-8", "replace").rstrip(".").lower()
        entries = self.zone.get(name)
        if entries is None:
            if name.startswith("error."):
                raise dns.exception.Timeout()
            raise dns.resolver.NXDOMAIN()
        answer, matched = [], False
        for entry in entries:
            if entry == "TIMEOUT":
                if not matched:
                    raise dns.exception.Timeout()
                break
            kind, value = entry
            if kind == rdtype:
                matched = True
                if value == "TIMEOUT":
                    raise dns.exception.Timeout()
                answer.append(_rdata(kind, value))
            elif kind == "CNAME" and depth < 8 and value != "TIMEOUT":
                with contextlib.suppress(dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                    answer.extend(self.resolve(dns.name.from_text(value), rdtype, depth=depth + 1))
        if not answer:
            raise dns.resolver.NoAnswer()
        return answer


def _cases():
    with open(SUITE, encoding="utf-8") as f:
        for scenario in yaml.safe_load_all(f):
            zone = _zone(scenario["zonedata"])
            for name, test in scenario["tests"].items():
                yield pytest.param(zone, test, id=name)


@pytest.mark.parametrize("zone, test", list(_cases()))
def test_rfc7208_suite(zone, test):
    resolver = MailAuthResolver(["127.0.0.1"], timeout=1.0)
    resolver.resolver = ZoneResolver(zone)
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    got = check_spf(resolver, test["host"], test["mailfrom"] or None, test["helo"])
    assert got.result in expected, (test.get("spec"), test.get("description"), got)
