"""A header section past ``HEADER_LIMIT`` is not mail without an author (no DMARC policy
applied): it is judged as a spoof of a ``p=reject`` domain would be."""

from __future__ import annotations

import io

import pytest

from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.mailauth.bodyhash import HEADER_LIMIT, HeaderTooLarge, split_header
from txmailhost.mailauth.checks import InboundChecks

CLIENT = Client("127.0.0.9", helo="mx.sender.test", listener="smtp")


@pytest.fixture
def bank(names):
    names.add("bank.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    names.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject")


def test_a_header_section_past_the_limit_is_judged_as_a_p_reject_spoof(bank, resolver):
    filler = "".join(f"X-Filler-{i}: {'a' * 990}\r\n" for i in range(1100))  # 1.06 MiB
    message = f"From: ceo@bank.test\r\nSubject: pay\r\n{filler}\r\nnow\r\n".encode()
    with pytest.raises(HeaderTooLarge):
        split_header(io.BytesIO(message))  # its end lies past HEADER_LIMIT: not "found"
    checks = InboundChecks(resolver, "mx.example.test")
    verdict = checks.end_of_data(CLIENT, Transaction("x@forger.test", ("bob@x.test",), "Q"),
                                 io.BytesIO(message))  # fmt: skip
    assert verdict.action is Action.REJECT, verdict  # it was delivered: no author, no policy
    assert "header section" in verdict.reason


def test_split_header_reads_a_header_section_up_to_the_limit():
    header = b"X: " + b"a" * (HEADER_LIMIT - 7) + b"\r\n\r\n"
    assert len(header) == HEADER_LIMIT
    stream = io.BytesIO(header + b"body\r\n")
    found, first = split_header(stream)
    assert found == header
    assert first + stream.read() == b"body\r\n"
