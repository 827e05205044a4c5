"""``python -m bench.nxdomain_server``: a DNS server on 127.0.0.1 answering NXDOMAIN to everything.

``bench.spam_anchor`` points rspamd's resolver here, so that its RBL, SURBL, SPF, DMARC and
other look-ups are all made, all come back at once, and none leaves the machine. It prints
its UDP port (ephemeral) as the first line of stdout, then serves until terminated.

Why not the tests' ``tests/support/names_server.py``: twisted.names, and the zone file read
again for every query, cost 1.6-1.9 ms of CPU a message at rspamd's dozen or so queries a
message, on the two cores the bench measures, where an operator's local resolver (unbound,
answering from its cache) costs next to nothing. This answers from the query's own bytes: the
header turned into a reply and the question echoed, no records.
"""

from __future__ import annotations

import socket
import struct
import sys

_HEADER = struct.Struct("!HHHHHH")  # id, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
_QR, _AA, _RD, _RA = 0x8000, 0x0400, 0x0100, 0x0080
NXDOMAIN, NOTIMP = 3, 4


def answer(query: bytes) -> bytes | None:
    """The reply to ``query``: NXDOMAIN for a standard query of one question (RFC 1035 4.1),
    NOTIMP for other opcodes; None (no reply) for a response or a malformed packet."""
    if len(query) < _HEADER.size:
        return None
    ident, flags, questions = struct.unpack_from("!HHH", query)
    if flags & _QR or questions != 1:
        return None
    end = _HEADER.size
    while True:  # the question's name: labels up to the root; no compression in a query
        if end >= len(query) or query[end] & 0xC0:
            return None
        if query[end] == 0:
            break
        end += 1 + query[end]
    end += 1 + 4  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    opcode = (flags >> 11) & 0xF
    rcode = NXDOMAIN if opcode == 0 else NOTIMP
    reply_flags = _QR | (opcode << 11) | _AA | (flags & _RD) | _RA | rcode
    return _HEADER.pack(ident, reply_flags, 1, 0, 0, 0) + query[_HEADER.size : end]


def main() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        print(server.getsockname()[1], flush=True)
        while True:
            query, client = server.recvfrom(4096)
            reply = answer(query)
            if reply is not None:
                server.sendto(reply, client)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
