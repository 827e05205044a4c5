"""``FilterChain``: how verdicts combine, failures and time budgets, and header rendering."""

from __future__ import annotations

import io

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from tests.filters.example import ExampleFilter
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.filters.base import MessageFilter
from txmailhost.filters.chain import FilterChain, render_fields
from txmailhost.filters.interfaces import Action, Client, Transaction, Verdict
from txmailhost.filters.registry import FilterConfigError, build_chain, register

CLIENT = Client("192.0.2.7", helo="c.test")
TX = Transaction("x@remote.test", ("a@example.test", "b@example.test"))


class Says(MessageFilter):
    def __init__(self, verdict: Verdict, name: str = "says") -> None:
        self.verdict = verdict
        self.name = name
        self.asked = 0

    def end_of_data(self, client, transaction, message):
        self.asked += 1
        return self.verdict


def decide(*filters, on_error="tempfail"):
    chain = FilterChain(list(filters), SyncReactor(), SyncThreadPool(), on_error=on_error)
    message = b"Subject: x\r\n\r\nbody\r\n"
    return result(
        Deferred.fromCoroutine(chain.end_of_data(CLIENT, TX, lambda: io.BytesIO(message)))
    )


def test_header_fields_add_up_in_chain_order():
    one = Says(Verdict.accept((("X-One", "1"),)))
    two = Says(Verdict.junk("spammy", headers=(("X-Two", "2"),)))
    decision = decide(one, two)
    assert decision.refusal is None and decision.fields == (("X-One", "1"), ("X-Two", "2"))
    assert decision.junk == set(TX.recipients)


class Reads(MessageFilter):
    """Keeps what it was shown, reading in small pieces as a streaming scanner does."""

    name = "reads"
    seen = b""

    def end_of_data(self, client, transaction, message):
        while chunk := message.read(7):
            self.seen += chunk
        return Verdict.accept()


def test_each_filter_sees_the_fields_earlier_filters_added_above_the_message():
    first, second = Reads(), Reads()
    one = Says(Verdict.accept((("Authentication-Results", "mx.test; dmarc=pass"),)))
    two = Says(Verdict.accept((("X-Two", "2"),)))
    decide(first, one, two, second)
    assert first.seen == b"Subject: x\r\n\r\nbody\r\n"
    assert second.seen == (
        b"Authentication-Results: mx.test; dmarc=pass\r\nX-Two: 2\r\nSubject: x\r\n\r\nbody\r\n"
    )


def test_a_tempfail_stops_the_chain():
    later = Says(Verdict.accept())
    decision = decide(Says(Verdict.tempfail("busy")), later)
    assert decision.refusal.action is Action.TEMPFAIL and later.asked == 0


def test_a_reject_of_some_recipients_drops_them_and_of_all_refuses():
    some = decide(Says(Verdict.reject("no", recipients=frozenset({"b@example.test"}))))
    assert some.refusal is None and some.dropped == {"b@example.test"}
    everyone = frozenset(TX.recipients)
    assert decide(Says(Verdict.reject("no", recipients=everyone))).refusal is not None


class Raises(MessageFilter):
    name = "raises"

    def end_of_data(self, client, transaction, message):
        raise ValueError("broken")


def test_a_failing_filter_is_logged_and_gets_the_default():
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    try:
        decision = decide(Raises())
    finally:
        globalLogPublisher.removeObserver(observer)
    assert decision.refusal.action is Action.TEMPFAIL
    logged = [e for e in observer if e.get("filter") == "raises"]
    assert logged and logged[0]["stage"] == "data" and logged[0]["default"] == "tempfail"
    assert decide(Raises(), on_error="accept").refusal is None


def test_a_filter_returning_something_else_than_a_verdict_counts_as_failing():
    assert decide(Says("yes")).refusal.action is Action.TEMPFAIL  # type: ignore[arg-type]


def test_field_values_are_folded_so_no_filter_can_end_the_header_section():
    rendered = render_fields([("X-Spam", "yes\r\n\r\nInjected: body"), ("Bad Name", "x")])
    assert rendered == b"X-Spam: yes\r\n\tInjected: body\r\n"


def test_filters_are_found_by_path_and_by_registered_name():
    chain = build_chain(("tests.filters.example:ExampleFilter",), {}, None, None, 5, "tempfail")
    assert [f.name for f in chain.filters] == ["example"]
    register("example-registered", ExampleFilter)
    settings = {"example-registered": {"header": "X-Mine"}}
    chain = build_chain(("example-registered",), settings, None, None, 5, "accept")
    assert chain.filters[0].header == "X-Mine" and chain.on_error == "accept"
    assert build_chain((), {}, None, None, 5, "tempfail") is None


@pytest.mark.parametrize(
    "name", ["no-such-filter", "tests.filters.example:Missing", "no.such.module:F"]
)
def test_an_unknown_filter_name_is_a_configuration_error(name):
    with pytest.raises(FilterConfigError, match="filter"):
        build_chain((name,), {}, None, None, 5, "tempfail")


def test_only_the_stages_a_filter_overrides_are_asked():
    assert ExampleFilter().stages == {"rcpt", "data"}
    chain = FilterChain([ExampleFilter(), Raises()], SyncReactor(), SyncThreadPool())
    assert [chain.asks(s) for s in ("connect", "helo", "mail", "rcpt", "data")] == [
        False, False, False, True, True,
    ]  # fmt: skip
