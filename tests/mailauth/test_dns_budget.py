"""All of one message's DNS lookups share a budget: a sender chooses how many names a
message makes us look up, and DNS that never answers must not hold a filter thread for
their timeouts added up."""

from __future__ import annotations

import base64
import hashlib
import io
import time

import pytest

from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.mailauth.checks import InboundChecks
from txmailhost.mailauth.resolver import DNSTempError, MailAuthResolver

CLIENT = Client("127.0.0.9", helo="mx.sender.test", listener="smtp")
EMPTY_BH = base64.b64encode(hashlib.sha256(b"body\r\n").digest()).decode()


def _silent_message(names, sets: int = 10, sigs: int = 8, authors: int = 8) -> bytes:
    """SPF, DKIM keys, DMARC records and ARC keys whose DNS never answers."""
    names.fail("slow.test", "silent")
    lines = []
    for i in range(sets, 0, -1):
        lines += [
            f"ARC-Seal: i={i}; a=rsa-sha256; cv={'none' if i == 1 else 'pass'}; "
            f"d=arc{i}.slow.test; s=as; b=AAAA",
            f"ARC-Message-Signature: i={i}; a=rsa-sha256; c=relaxed/relaxed; "
            f"d=arc{i}.slow.test; s=ams; h=from; bh={EMPTY_BH}; b=AAAA",
            f"ARC-Authentication-Results: i={i}; mx.arc{i}.slow.test; spf=pass",
        ]
        names.fail(f"as._domainkey.arc{i}.slow.test", "silent")
        names.fail(f"ams._domainkey.arc{i}.slow.test", "silent")
    for i in range(sigs):
        lines.append(
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d{i}.slow.test; s=k; "
            f"h=from; bh={EMPTY_BH}; b=AAAA"
        )
        names.fail(f"k._domainkey.d{i}.slow.test", "silent")
    for i in range(authors):
        names.fail(f"_dmarc.f{i}.slow.test", "silent")
    froms = ", ".join(f"a@f{i}.slow.test" for i in range(authors))
    lines += [f"From: {froms}", "To: bob@example.test", "", "body", ""]
    return "\r\n".join(lines).encode()


def test_a_message_whose_dns_never_answers_is_judged_within_its_budget(names):
    # 1 SPF + 20 ARC keys + 8 DKIM keys + 8 DMARC records, each timing out: 37 timeouts
    # (117 with 50 ARC sets, ten minutes at the default 5 s). The budget ends them.
    resolver = MailAuthResolver([names.address], timeout=0.5)
    message = _silent_message(names)
    checks = InboundChecks(resolver, "mx.example.test", dns_budget=3.0)
    started = time.monotonic()
    verdict = checks.end_of_data(CLIENT, Transaction("a@slow.test", ("bob@x.test",), "Q"),
                                 io.BytesIO(message))  # fmt: skip
    assert time.monotonic() - started < 5.0
    assert verdict.action is Action.TEMPFAIL  # a DMARC temperror under dmarc_reject
    assert "not available" in verdict.reason


def test_a_spent_budget_fails_lookups_at_once_and_budgets_nest(names):
    names.add("fast.test", "TXT", "v=spf1 -all")
    resolver = MailAuthResolver([names.address], timeout=2.0)
    with resolver.budget(10):
        assert resolver.txt("fast.test") == [b"v=spf1 -all"]
        with resolver.budget(0):  # the inner one is the shorter
            started = time.monotonic()
            with pytest.raises(DNSTempError, match="spent"):
                resolver.txt("other.fast.test")
            assert time.monotonic() - started < 0.1
        assert resolver.txt("fast.test") == [b"v=spf1 -all"]  # the outer one again
    assert resolver.txt("fast.test") == [b"v=spf1 -all"]  # no budget: as before
