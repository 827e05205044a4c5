"""A twisted.names DNS server for the mail-authentication tests, run as its own process.

``python -m tests.support.names_server ZONE.json [PORT]`` serves, over UDP and TCP on 127.0.0.1 and
an ephemeral port (printed as the first line of stdout), the records the test wrote into
ZONE.json. The file is read again for every query, so a test changes its zone by rewriting
the file (``tests/support/names.py`` does that). A process of its own because the code
under test resolves with blocking dnspython calls while the test's reactor may be waiting:
one process can't be both.

ZONE.json: ``{"records": [[name, type, value], ...], "silent": [name, ...],
"servfail": [name, ...]}``. TXT values longer than 255 octets are split into strings, as a
zone file must; a list value gives the strings explicitly. A silent name never answers (a
timeout), a servfail name answers SERVFAIL, a name without records NXDOMAIN.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.names import common, dns, error, server
from twisted.python import log


def _strings(value: Any) -> list[bytes]:
    if isinstance(value, list):
        return [v.encode() for v in value]
    raw = value.encode()
    return [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]


def _record(rdtype: str, value: Any) -> Any:
    if rdtype == "TXT":
        return dns.Record_TXT(*_strings(value), ttl=300)
    if rdtype == "A":
        return dns.Record_A(value, ttl=300)
    if rdtype == "AAAA":
        return dns.Record_AAAA(value, ttl=300)
    if rdtype == "MX":
        preference, exchange = value.split()
        return dns.Record_MX(int(preference), exchange.rstrip("."), ttl=300)
    if rdtype == "CNAME":
        return dns.Record_CNAME(value.rstrip("."), ttl=300)
    if rdtype == "PTR":
        return dns.Record_PTR(value.rstrip("."), ttl=300)
    if rdtype == "SRV":
        priority, weight, port, target = value.split()
        return dns.Record_SRV(int(priority), int(weight), int(port), target.rstrip("."), ttl=300)
    if rdtype == "TLSA":  # twisted.names has no TLSA class: its RDATA (RFC 6698 2.1) as is
        usage, selector, mtype, data = value.split(None, 3)
        rdata = bytes([int(usage), int(selector), int(mtype)]) + bytes.fromhex(
            "".join(data.split())
        )
        return dns.UnknownRecord(rdata, ttl=300)
    raise ValueError(f"record type {rdtype} not supported by the test server")


class ZoneFileResolver(common.ResolverBase):
    """Answers from the JSON file, authoritatively."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Any:
        with open(self.path) as f:
            zone = json.load(f)
        wanted = name.decode().lower().rstrip(".")
        if wanted in zone.get("silent", []):
            return defer.Deferred()  # never fires: the client times out
        if wanted in zone.get("servfail", []):
            return defer.fail(RuntimeError("servfail on purpose"))  # -> SERVFAIL
        answers = []
        known = False
        rdtype = dns.QUERY_TYPES.get(type, dns.EXT_QUERIES.get(type, ""))
        rdtype = "TLSA" if type == 52 else rdtype
        for _ in range(8):  # follow CNAMEs inside the zone
            cnames = []
            for owner, kind, value in zone.get("records", []):
                if owner.lower().rstrip(".") != wanted:
                    continue
                known = True
                if kind == "CNAME" and rdtype != "CNAME":
                    cnames.append(value)
                    answers.append(dns.RRHeader(wanted, dns.CNAME, payload=_record(kind, value),
                                                ttl=300, auth=True))  # fmt: skip
                elif kind == rdtype:
                    answers.append(dns.RRHeader(wanted, type, payload=_record(kind, value),
                                                ttl=300, auth=True))  # fmt: skip
            if not cnames:
                break
            wanted = cnames[0].lower().rstrip(".")
        if not known:
            return defer.fail(error.DomainError(name))
        return defer.succeed((answers, [], []))


def main(path: str, wanted_port: int = 0) -> None:
    log.err = lambda *a, **k: None  # the SERVFAILs asked for are no news
    factory = server.DNSServerFactory(authorities=[ZoneFileResolver(path)])
    for _ in range(20):
        udp = reactor.listenUDP(
            wanted_port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1"
        )
        port = udp.getHost().port
        try:
            reactor.listenTCP(port, factory, interface="127.0.0.1")
        except Exception:
            udp.stopListening()
            continue
        break
    else:
        raise SystemExit("no port free for UDP and TCP at once")
    print(port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
