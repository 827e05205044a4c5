"""An SPF check has a total time (RFC 7208 4.6.4): a record within every lookup limit whose
DNS answers come just before each timeout is a ``temperror`` after ``spf.QUERY_TIME``, not a
filter thread held for minutes (111 lookups of 0.9 s each, 8 such messages, and a sender
with a good record got 451)."""

from __future__ import annotations

import time

from txmailhost.mailauth import spf


class SlowDNS:
    """Every MX name answers after ``delay`` seconds with an address; the record asks for 10
    "mx" terms of 10 names each (within RFC 7208's limits)."""

    timeout = 5.0

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lookups = 0

    def spf_lookup(self, name, qtype, tcpfallback=True, timeout=30):
        self.lookups += 1
        if qtype == "TXT" and name == "slow.test":
            terms = " ".join(f"mx:m{n}.slow.test" for n in range(10))
            return [((name, qtype), [f"v=spf1 {terms} -all".encode()])]
        time.sleep(self.delay)
        if qtype == "MX":
            return [((name, qtype), (10, f"h{k}.{name}")) for k in range(10)]
        if qtype == "A":
            return [((name, qtype), "192.0.2.1")]
        return []


def test_a_check_past_its_total_time_is_a_temperror(monkeypatch):
    monkeypatch.setattr(spf, "QUERY_TIME", 1.0)
    dns = SlowDNS(0.2)
    started = time.monotonic()
    result = spf.check_spf(dns, "198.51.100.7", "someone@slow.test", "mail.slow.test")
    assert result.result == "temperror", result
    assert time.monotonic() - started < 2.5
    assert dns.lookups < 15  # of the 111 the record would make
