"""Mail authentication on the reactor thread from the resolver's cache, in a thread otherwise.

``InboundChecks`` attached to a server's filter host tries each message on the reactor with
lookups answered only from the cache (``MailAuthResolver.cached_only``); a lookup that isn't
cached throws the attempt away and the message is checked in the filters' threads. The
verdicts must be the same either way, the network must never be asked on the reactor, and the
day's report lines are still written (in a thread).
"""

from __future__ import annotations

import io
import tempfile
import time
from types import SimpleNamespace

import pytest
from twisted.internet.defer import Deferred

from tests.mailauth.test_checks import message, zone  # noqa: F401 - the fixture
from tests.mailauth.test_reports import InlineReactor
from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.mailauth.checks import CheckPolicy, InboundChecks
from txmailhost.mailauth.reports import ReportLog
from txmailhost.mailauth.resolver import NotCached

CLIENT = Client("127.0.0.1", helo="mx.good.test", listener="smtp")


class CountingPool:
    """The filters' threads, run at once and counted: how many trips a check took."""

    def __init__(self) -> None:
        self.trips = 0

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.trips += 1
        try:
            onResult(True, f(*args, **kwargs))
        except Exception as e:
            onResult(False, e)


def attached(resolver, policy=None, reports=None):
    checks = InboundChecks(resolver, "mx.example.test", policy, reports=reports)
    pool = CountingPool()
    checks.attach(SimpleNamespace(reactor=InlineReactor(), pool=pool, slots=None))
    assert checks.blocking is False  # the chain now asks it on the reactor
    return checks, pool


def answer(result):
    """A verdict, whether it came at once or (through the inline pool) already fired."""
    if isinstance(result, Deferred):
        found = []
        result.addBoth(found.append)
        [verdict] = found
        assert not hasattr(verdict, "raiseException"), verdict
        return verdict
    return result


def _swallow(lookup, name):
    try:
        return lookup(name)
    except Exception:
        return "temperror"


def test_cached_only_answers_from_the_cache_and_never_from_the_network(zone, names, resolver):  # noqa: F811
    with resolver.cached_only() as attempt, pytest.raises(NotCached):
        resolver.txt("_dmarc.good.test")
    assert attempt.missed
    assert resolver.txt("_dmarc.good.test") == [b"v=DMARC1; p=reject"]  # asked, now cached
    assert resolver.txt("_dmarc.nowhere.good.test") == []  # NXDOMAIN, cached too
    names.stop()  # from here on the network has nothing to say
    with resolver.cached_only() as attempt:
        assert resolver.txt("_dmarc.good.test") == [b"v=DMARC1; p=reject"]
        assert resolver.txt("_dmarc.nowhere.good.test") == []
        with pytest.raises(NotCached):
            resolver.txt("_dmarc.other.test")
    assert attempt.missed
    # what the filters call: (False, None) when a lookup wasn't cached, whatever the work
    # made of the NotCached (pyspf and dkimpy turn it into a temperror)
    assert resolver.from_cache(resolver.txt, "_dmarc.good.test") == (True, [b"v=DMARC1; p=reject"])
    assert resolver.from_cache(lambda: resolver.txt("_dmarc.x.test") and 1 / 0) == (False, None)
    swallowed = resolver.from_cache(lambda: _swallow(resolver.txt, "_dmarc.y.test"))
    assert swallowed == (False, None)


def test_a_cached_sender_is_checked_on_the_reactor_with_the_same_verdict(zone, resolver):  # noqa: F811
    checks, pool = attached(resolver)
    signed = zone.sign_bytes(message("a@good.test"))
    transaction = Transaction("a@good.test", ("alice@example.test",), "Q1")
    first = checks.end_of_data(CLIENT, transaction, io.BytesIO(signed))
    assert isinstance(first, Deferred) and pool.trips == 1  # DNS to ask: a thread
    second = checks.end_of_data(CLIENT, transaction, io.BytesIO(signed))
    assert not isinstance(second, Deferred) and pool.trips == 1  # all cached: no trip
    assert answer(first) == second
    assert second.action is Action.ACCEPT
    [(_name, value)] = second.headers
    assert "spf=pass" in value and "dkim=pass" in value and "dmarc=pass" in value


def test_a_refusal_is_the_same_from_the_cache(zone, resolver):  # noqa: F811
    checks, pool = attached(resolver)
    transaction = Transaction("ceo@bank.test", ("alice@example.test",), "Q1")
    first = answer(checks.end_of_data(CLIENT, transaction, io.BytesIO(message("ceo@bank.test"))))
    second = checks.end_of_data(CLIENT, transaction, io.BytesIO(message("ceo@bank.test")))
    assert pool.trips == 1
    assert first.action is second.action is Action.REJECT and first == second


def test_spf_at_mail_from_answers_from_the_cache(zone, resolver):  # noqa: F811
    checks, pool = attached(resolver, CheckPolicy(spf_fail="reject"))
    first = answer(checks.mail_from(CLIENT, "ceo@bank.test"))
    second = checks.mail_from(CLIENT, "ceo@bank.test")
    assert pool.trips == 1 and not isinstance(second, Deferred)
    assert first.action is second.action is Action.REJECT


def test_report_lines_are_written_in_a_thread_either_way(zone, resolver, tmp_path):  # noqa: F811
    log = ReportLog(str(tmp_path / "dmarc"))
    checks, pool = attached(resolver, reports=log)
    transaction = Transaction("ceo@bank.test", ("alice@example.test",), "Q1")
    for _ in range(2):  # bank.test asks for aggregate reports (rua=)
        answer(checks.end_of_data(CLIENT, transaction, io.BytesIO(message("ceo@bank.test"))))
    # the first: checked and recorded in one trip; the second: checked here, recorded there
    assert pool.trips == 2
    entries = log.entries(time.strftime("%Y-%m-%d", time.gmtime()))
    assert [e["header_from"] for e in entries] == ["bank.test", "bank.test"]


def test_a_spilled_message_is_read_in_a_thread_even_when_cached(zone, resolver):  # noqa: F811
    checks, pool = attached(resolver)
    transaction = Transaction("ceo@bank.test", ("alice@example.test",), "Q1")
    answer(checks.end_of_data(CLIENT, transaction, io.BytesIO(message("ceo@bank.test"))))
    with tempfile.TemporaryFile() as spilled:  # a file: reading it blocks
        spilled.write(message("ceo@bank.test"))
        spilled.seek(0)
        verdict = answer(checks.end_of_data(CLIENT, transaction, spilled))
    assert pool.trips == 2 and verdict.action is Action.REJECT


def test_a_message_with_many_signatures_is_verified_in_a_thread_even_when_cached(zone, resolver):  # noqa: F811
    """Each signature costs a modular exponentiation of the key size its sender chose: past
    ``INLINE_SIGNATURES`` they are verified in a thread, where the reactor gets the GIL
    back between them, not on the reactor."""
    from txmailhost.mailauth.checks import INLINE_SIGNATURES

    checks, pool = attached(resolver)
    signed = message("a@good.test")
    for _ in range(INLINE_SIGNATURES):  # 2 signatures (Ed25519 and RSA) each time
        signed = zone.sign_bytes(signed)
    transaction = Transaction("a@good.test", ("alice@example.test",), "Q1")
    for _ in range(2):
        verdict = answer(checks.end_of_data(CLIENT, transaction, io.BytesIO(signed)))
        assert verdict.action is Action.ACCEPT
    assert pool.trips == 2  # cached the second time, and still a thread


def test_a_long_header_section_is_read_in_a_thread_even_when_cached(zone, resolver):  # noqa: F811
    """A From: of 20,000 encoded words held the reactor half a second (the standard
    library's decoding was quadratic); decoded in linear time now, such a header section
    still costs time with its length, so past ``INLINE_HEADER`` it is read in a thread."""
    from txmailhost.mailauth.checks import INLINE_HEADER

    checks, pool = attached(resolver)
    transaction = Transaction("ceo@bank.test", ("alice@example.test",), "Q1")
    answer(checks.end_of_data(CLIENT, transaction, io.BytesIO(message("ceo@bank.test"))))
    words = "\r\n ".join(["=?utf-8?b?w6k=?="] * 5000)
    long = message(f"{words} <ceo@bank.test>")
    assert pool.trips == 1 and len(long) > INLINE_HEADER
    verdict = answer(checks.end_of_data(CLIENT, transaction, io.BytesIO(long)))
    assert pool.trips == 2 and verdict.action is Action.REJECT
