"""``FilterChain``: how verdicts combine, failures and time budgets, and header rendering."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from tests.filters.example import ExampleFilter
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.filters.base import MessageFilter
from txmailhost.filters.chain import FilterChain, render_fields
from txmailhost.filters.interfaces import Action, Client, Transaction, Verdict
from txmailhost.filters.registry import FilterConfigError, FilterHost, build_chain, register

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


# -- blocking filters: one trip to the pool for consecutive ones, each with its own budget --


class BlockingSays(Says):
    blocking = True

    def __init__(self, verdict: Verdict, name: str = "blocking", reactor=None, takes=0.0):
        super().__init__(verdict, name)
        self.reactor = reactor
        self.takes = takes  # seconds of the reactor's clock this filter "takes"
        self.seen: list[bytes] = []

    def end_of_data(self, client, transaction, message):
        self.seen.append(message.read())
        if self.takes:
            self.reactor.advance(self.takes)
        return super().end_of_data(client, transaction, message)


class CountingPool(SyncThreadPool):
    def __init__(self) -> None:
        self.trips = 0

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.trips += 1
        super().callInThreadWithCallback(onResult, f, *args, **kwargs)


class HeldPool(SyncThreadPool):
    """Holds each piece of work until the test runs it: a worker thread that is slow."""

    def __init__(self) -> None:
        self.held: list = []

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.held.append(lambda: SyncThreadPool.callInThreadWithCallback(
            self, onResult, f, *args, **kwargs))  # fmt: skip

    def run_next(self) -> None:
        self.held.pop(0)()


def ask_chain(chain):
    message = b"Subject: x\r\n\r\nbody\r\n"
    return Deferred.fromCoroutine(chain.end_of_data(CLIENT, TX, lambda: io.BytesIO(message)))


def test_consecutive_blocking_filters_share_one_trip_and_see_earlier_fields():
    pool = CountingPool()
    first = BlockingSays(Verdict.accept(headers=(("X-First", "1"),)), "first")
    second = BlockingSays(Verdict.junk("spam", headers=(("X-Second", "2"),)), "second")
    chain = FilterChain([first, second], SyncReactor(), pool)
    decision = result(ask_chain(chain))
    assert pool.trips == 1
    assert second.seen[0].startswith(b"X-First: 1\r\nSubject: x")
    assert decision.fields == (("X-First", "1"), ("X-Second", "2"))
    assert decision.junk == frozenset(TX.recipients)


def test_a_filter_on_the_reactor_between_blocking_ones_splits_the_trips():
    pool = CountingPool()
    filters = [
        BlockingSays(Verdict.accept()),
        Says(Verdict.accept()),
        BlockingSays(Verdict.accept()),
    ]
    result(ask_chain(FilterChain(filters, SyncReactor(), pool)))
    assert pool.trips == 2 and [f.asked for f in filters] == [1, 1, 1]


class SkipsFor(BlockingSays):
    """A blocking filter with nothing to do for clients of one address."""

    def __init__(self, verdict: Verdict, address: str) -> None:
        super().__init__(verdict, "skips")
        self.address = address

    def skips(self, client):
        return client.address == self.address


def test_a_filter_that_skips_the_client_costs_no_trip_and_is_not_asked():
    pool = CountingPool()
    skipping = SkipsFor(Verdict.reject("never"), CLIENT.address)
    decision = result(ask_chain(FilterChain([skipping], SyncReactor(), pool)))
    assert pool.trips == 0 and skipping.asked == 0 and decision.refusal is None


def test_a_filter_that_skips_other_clients_is_asked():
    pool = CountingPool()
    other = SkipsFor(Verdict.reject("asked"), "198.51.100.1")
    decision = result(ask_chain(FilterChain([other], SyncReactor(), pool)))
    assert pool.trips == 1 and other.asked == 1 and decision.refusal is not None


def test_a_failing_skips_is_logged_and_the_filter_asked():
    class Broken(BlockingSays):
        def skips(self, client):
            raise RuntimeError("broken skips")

    broken = Broken(Verdict.accept())
    caught = EventLoggingObserver()
    globalLogPublisher.addObserver(caught)
    try:
        result(ask_chain(FilterChain([broken], SyncReactor(), CountingPool())))
    finally:
        globalLogPublisher.removeObserver(caught)
    assert broken.asked == 1
    assert any("skips failed" in str(e.get("log_format")) for e in caught)


def test_a_refusal_in_a_batch_stops_it_before_the_next_filter():
    second = BlockingSays(Verdict.accept())
    chain = FilterChain([BlockingSays(Verdict.reject("no")), second], SyncReactor(), CountingPool())
    assert result(ask_chain(chain)).refusal.action is Action.REJECT
    assert second.asked == 0


def test_a_blocking_filter_that_answers_past_its_budget_gets_the_default():
    reactor = SyncReactor()
    slow = BlockingSays(Verdict.accept(headers=(("X-Slow", "1"),)), "slow", reactor, takes=6)
    after = BlockingSays(Verdict.accept(headers=(("X-After", "1"),)), "after", reactor, takes=4)
    chain = FilterChain([slow, after], reactor, CountingPool(), timeout=5, on_error="accept")
    decision = result(ask_chain(chain))
    assert decision.refusal is None
    assert decision.fields == (("X-After", "1"),)  # the late answer is ignored; 4 s is in time
    chain = FilterChain([slow], reactor, CountingPool(), timeout=5)
    assert result(ask_chain(chain)).refusal.action is Action.TEMPFAIL


def test_a_hanging_blocking_filter_is_given_up_and_the_rest_asked_anew():
    reactor, pool = SyncReactor(), HeldPool()
    hangs = BlockingSays(Verdict.accept(headers=(("X-Late", "1"),)), "hangs")
    after = BlockingSays(Verdict.junk("spam"), "after")
    chain = FilterChain([hangs, after], reactor, pool, timeout=5, on_error="accept")
    pending = ask_chain(chain)
    reactor.advance(4.9)
    assert not pending.called
    reactor.advance(0.2)  # the first filter's budget is spent: "after" goes to the pool anew
    assert len(pool.held) == 2 and not pending.called
    pool.run_next()  # the abandoned batch gets a thread at last: it asks nothing
    pool.run_next()
    decision = result(pending)
    assert decision.fields == () and decision.junk == frozenset(TX.recipients)
    assert hangs.asked == 0 and after.asked == 1


def test_a_batch_still_queued_when_its_budget_ends_asks_nothing_later():
    """When the filters' threads are all held up (one check stuck on a slow DNS server,
    say), the batches queued behind them time out and their sessions get the default. A
    thread freed later must not then run those checks, whose answers nobody waits for."""
    reactor, pool = SyncReactor(), HeldPool()
    queued = BlockingSays(Verdict.accept(headers=(("X-Late", "1"),)), "queued")
    chain = FilterChain([queued], reactor, pool, timeout=5)
    pending = ask_chain(chain)
    reactor.advance(5.1)
    assert result(pending).refusal.action is Action.TEMPFAIL
    pool.run_next()  # a thread takes the batch at last
    assert queued.asked == 0


# -- one client may hold at most ``per_client`` of the threads (fairness.py) -------------------


def ask_from(chain, address):
    message = b"Subject: x\r\n\r\nbody\r\n"
    client = Client(address, helo="c.test")
    return Deferred.fromCoroutine(chain.end_of_data(client, TX, lambda: io.BytesIO(message)))


def test_a_client_with_its_share_of_the_threads_busy_waits_and_others_do_not():
    """Two slow checks of one client's hold its two slots: its third message waits outside
    the threads' queue, another client's goes to the threads at once, and the third gets its
    thread as soon as one of the client's own ends."""
    reactor, pool = SyncReactor(), HeldPool()
    check = BlockingSays(Verdict.accept(), "dns")
    chain = FilterChain([check], reactor, pool, timeout=30, per_client=2)
    first, second = ask_from(chain, "192.0.2.66"), ask_from(chain, "192.0.2.66")
    third = ask_from(chain, "192.0.2.66")
    assert len(pool.held) == 2 and chain.slots.waiting("192.0.2.66") == 1
    other = ask_from(chain, "198.51.100.1")
    assert len(pool.held) == 3  # not behind the first client's third
    pool.held.pop(2)()
    assert result(other).refusal is None
    pool.run_next()
    assert result(first).refusal is None
    assert len(pool.held) == 2  # the third went to the threads when the first was done
    pool.run_next()
    pool.run_next()
    assert result(second).refusal is None and result(third).refusal is None
    assert chain.slots.in_use("192.0.2.66") == 0 and check.asked == 4


def test_a_client_waiting_past_the_budget_for_its_own_checks_gets_the_default():
    reactor, pool = SyncReactor(), HeldPool()
    check = BlockingSays(Verdict.accept(), "dns")
    chain = FilterChain([check], reactor, pool, timeout=20, per_client=1)
    stuck = ask_from(chain, "2001:db8::1")
    waiting = ask_from(chain, "2001:db8::2")  # the same /64: the same client
    reactor.advance(20.1)
    assert result(waiting).refusal.action is Action.TEMPFAIL
    assert result(stuck).refusal.action is Action.TEMPFAIL  # past its budget too
    assert len(pool.held) == 1 and chain.slots.waiting("2001:db8::/64") == 0
    # the thread of the check given up is still busy: the client's slot stays taken...
    assert chain.slots.in_use("2001:db8::/64") == 1
    pool.run_next()  # ...until it ends
    assert chain.slots.in_use("2001:db8::/64") == 0


def test_the_slot_wait_counts_in_the_budget():
    """The budget runs from when the message asked: a check that got its slot late has
    only what is left of it."""
    reactor, pool = SyncReactor(), HeldPool()
    check = BlockingSays(Verdict.accept(headers=(("X-Checked", "1"),)), "dns")
    chain = FilterChain([check], reactor, pool, timeout=10, per_client=1, on_error="accept")
    ask_from(chain, "192.0.2.9")
    late = ask_from(chain, "192.0.2.9")
    reactor.advance(8)
    pool.run_next()  # the first ends at 8 s: the second gets the slot with 2 s left
    reactor.advance(2.1)
    assert result(late).fields == ()  # given up at 10 s, with on_error
    pool.run_next()
    assert check.asked == 1  # the late batch asked nothing


def test_a_session_that_goes_away_while_waiting_leaves_the_line():
    reactor, pool = SyncReactor(), HeldPool()
    chain = FilterChain([BlockingSays(Verdict.accept())], reactor, pool, per_client=1)
    first = ask_from(chain, "192.0.2.9")
    gone = ask_from(chain, "192.0.2.9")
    gone.cancel()
    assert chain.slots.waiting("192.0.2.9") == 0
    pool.run_next()
    assert result(first).refusal is None and chain.slots.in_use("192.0.2.9") == 0


def test_no_limit_with_per_client_zero():
    reactor, pool = SyncReactor(), HeldPool()
    chain = FilterChain([BlockingSays(Verdict.accept())], reactor, pool, per_client=0)
    for _ in range(10):
        ask_from(chain, "192.0.2.9")
    assert len(pool.held) == 10


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"nosuch": {"x": 1}}, "filters.settings.nosuch: there is no filter 'nosuch'"),
        (
            {"greylsit": {"delay": 1}},
            "filters.settings.greylsit: there is no filter 'greylsit' (did you mean greylist?)",
        ),
        (
            {"example-registered": {"sleep": "2s"}},
            "filters.settings.example-registered.sleep: expected a number, got '2s'",
        ),
        (
            {"example-registered": {"blocking": 1}},
            "filters.settings.example-registered.blocking: expected true or false, got 1",
        ),
        (
            {"example-registered": {"sleep": True}},
            "filters.settings.example-registered.sleep: expected a number, got True",
        ),
        (
            {"example-registered": {"heder": "X-Mine"}},
            "filters.settings.example-registered.heder: the 'example-registered' filter has"
            " no such option (did you mean header?)",
        ),
    ],
)
def test_filter_settings_are_checked_naming_the_key(settings, problem):
    register("example-registered", ExampleFilter)
    with pytest.raises(FilterConfigError) as error:
        build_chain(("example-registered",), settings, None, None, 5, "tempfail")
    assert str(error.value) == problem


def test_a_factory_s_refusal_names_the_option_it_is_about(tmp_path):
    """Greylisting compared a text delay with 0: "'<' not supported between instances of
    'str' and 'int'", without saying where."""
    host = FilterHost(str(tmp_path), "mx.example.test")
    with pytest.raises(FilterConfigError) as error:
        build_chain(("greylist",), {"greylist": {"delay": "5m"}}, None, None, 5, "tempfail", host)
    assert str(error.value) == "filters.settings.greylist.delay: expected a number, got '5m'"
    with pytest.raises(FilterConfigError) as error:
        build_chain(("greylist",), {"greylist": {"delay": 10, "retry_window": 5}},
                    None, None, 5, "tempfail", host)  # fmt: skip
    assert str(error.value) == (
        "filters.settings.greylist: delay must be >= 0 and retry_window above it"
    )
    settings = {"greylist": {"exempt_networks": ["10.0.0.0/33"]}}
    with pytest.raises(FilterConfigError) as error:
        build_chain(("greylist",), settings, None, None, 5, "tempfail", host)
    assert str(error.value).startswith("filters.settings.greylist.exempt_networks: '10.0.0.0/33'")


def test_settings_of_a_filter_out_of_the_chain_are_allowed(tmp_path):
    """An operator may switch a filter off for a while and keep its settings."""
    settings = {"clamd": {"socket": "/run/clamd.ctl"}, "greylist": {"delay": 60}}
    host = FilterHost(str(tmp_path), "mx.example.test")
    chain = build_chain(("greylist",), settings, None, None, 5, "tempfail", host)
    assert [f.name for f in chain.filters] == ["greylist"]


def _render_folding_every_value(fields: list[tuple[str, str]]) -> bytes:
    """``render_fields`` as first written: every value split at its line breaks."""
    import re

    out = []
    for name, value in fields:
        lines = [line.strip() for line in re.split(r"\r\n|\r|\n", value)]
        out.append(f"{name}: " + "\r\n\t".join(line for line in lines if line) + "\r\n")
    return "".join(out).encode("utf-8")


@given(st.lists(st.text(st.sampled_from(" \t\r\n\x0b\x85\u2028aZ0:;é"), max_size=12), max_size=4))
def test_one_line_values_are_rendered_as_folding_every_value_renders_them(values):
    """The shortcut for values without a line break gives the octets of the general path,
    white space of every kind at either end included."""
    fields = [(f"X-Test-{i}", value) for i, value in enumerate(values)]
    assert render_fields(fields) == _render_folding_every_value(fields)


class Later(MessageFilter):
    """Answers the end of data when the test says (as the spam score's process does)."""

    name = "later"

    def __init__(self) -> None:
        self.waiting: list[Deferred] = []

    def end_of_data(self, client, transaction, message):
        self.waiting.append(Deferred())
        return self.waiting[-1]


def test_answers_still_to_come_share_one_timer_and_each_keeps_its_budget():
    """Fifty messages waiting for a filter's answer set one reactor timer, not fifty (each
    one's cost showed in the server's instructions a message); each still gets the default
    at the end of its own budget."""
    reactor = SyncReactor()
    later = Later()
    chain = FilterChain([later], reactor, CountingPool(), timeout=5)
    pending = []
    for _ in range(50):
        pending.append(ask_chain(chain))
        reactor.advance(0.01)
    assert len(reactor.getDelayedCalls()) == 1
    for waiting in later.waiting[:49]:
        waiting.callback(Verdict.accept())
    reactor.advance(4.5)
    assert all(d.called for d in pending[:49]) and not pending[49].called
    reactor.advance(0.5)
    assert result(pending[49]).refusal.action is Action.TEMPFAIL
