"""A tiny authoritative DNS server on loopback for relay tests (never the real DNS).

It runs in its own thread with a plain UDP socket, because the code under test resolves with
blocking dnspython calls (in a thread pool, or synchronously with ``SyncThreadPool``): a server
on the test's reactor would deadlock. Records are plain text as in a zone file::

    dns = DNSServer().start()
    dns.add("example.test", "MX", "10 mx1.example.test.", "20 mx2.example.test.")
    dns.add("mx1.example.test", "A", "127.0.0.2")
    resolver = MXResolver(reactor, pool, nameservers=[dns.address])

Names with no records answer NXDOMAIN; ``servfail``/``garbage``/``silent`` make a name answer
SERVFAIL, a malformed packet, or nothing at all.

DNSSEC, as a validating resolver reports it: ``dns.sign("far.test")`` marks every name at or
under far.test as validated, so answers about them (records, NXDOMAIN, no data) carry the AD
bit when the query asked for DNSSEC (DO or AD set, RFC 6840 5.7). Nothing is really signed:
the code under test trusts its configured resolver's AD bit, as it would a local unbound.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset


class DNSServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.records: dict[tuple[dns.name.Name, str], list[str]] = {}
        self.servfail: set[dns.name.Name] = set()
        self.garbage: set[dns.name.Name] = set()
        self.silent: set[dns.name.Name] = set()
        self.signed: set[dns.name.Name] = set()
        self.queries: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self._socket.getsockname()[1]}"

    def add(self, name: str, rdtype: str, *values: str) -> DNSServer:
        self.records.setdefault((dns.name.from_text(name), rdtype.upper()), []).extend(values)
        return self

    def fail(self, name: str, how: str) -> DNSServer:
        {"servfail": self.servfail, "garbage": self.garbage, "silent": self.silent}[how].add(
            dns.name.from_text(name)
        )
        return self

    def sign(self, *zones: str) -> DNSServer:
        """Answers for names at or under each of ``zones`` are "validated" (AD set)."""
        self.signed.update(dns.name.from_text(zone) for zone in zones)
        return self

    def unsign(self, *zones: str) -> DNSServer:
        self.signed.difference_update(dns.name.from_text(zone) for zone in zones)
        return self

    def _validated(self, name: dns.name.Name) -> bool:
        return any(name.is_subdomain(zone) for zone in self.signed)

    def start(self) -> DNSServer:
        self._socket.bind((self.host, 0))
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._thread.join(2)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopped:
            try:
                data, peer = self._socket.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                reply = self._answer(data)
            except Exception:
                continue
            if reply is not None:
                self._socket.sendto(reply, peer)

    def _answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name, rdtype = question.name, dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name.to_text(), rdtype))
        if name in self.silent:
            return None
        if name in self.garbage:
            return data[:2] + b"\x81\x80\x00\x01\x00\x05garbage"
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        wants_dnssec = bool(query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO)
        validated = wants_dnssec and self._validated(name)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        for _ in range(8):  # follow CNAMEs inside our own data, like an authoritative server
            cname = self.records.get((name, "CNAME"))
            if not cname or rdtype == "CNAME":
                break
            response.answer.append(dns.rrset.from_text(name, 300, "IN", "CNAME", *cname))
            name = dns.name.from_text(cname[0])
            validated = validated and self._validated(name)
        values = self.records.get((name, rdtype))
        if values:
            response.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, *values))
        elif not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        if validated:
            response.flags |= dns.flags.AD
        return response.to_wire()
