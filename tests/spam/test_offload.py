"""Scoring in a child process (``offload.py``, ``scorechild.py``): the same scores as in the
server's thread, asked from the reactor and answered in order, a child that dies or hangs is
replaced and its messages scored in the thread, and the child ends with the server.

The server's side runs on a reactor of the test's own, in a thread (``Live``): everything
``ScoringProcess`` does is on the reactor thread, as in the server."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time

import pytest
from twisted.internet.defer import gatherResults
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from tests.support.workers import running
from txmailhost.delivery.incoming import prefixed
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.filters.registry import FilterHost
from txmailhost.spam import frames, offload, sample, scorechild
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.offload import OffloadError, ScoringProcess
from txmailhost.spam.sample import read_capped, sample_of_bytes
from txmailhost.spam.scoring import Scorer, SpamFilter, store_path
from txmailhost.spam.tokens import tokens

OUTSIDE = Client("192.0.2.1", helo="mx.promo.example", listener="smtp")
SPAM = (
    b"From: deals@promo.example\r\nSubject: CHEAP WATCHES BUY NOW!!!\r\n\r\n"
    b"Buy now: cheap replica watches, lowest price!!! http://bit.ly/x\r\n"
)
HAM = (
    b"From: carol@example.org\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <a@example.org>\r\nSubject: lunch\r\n\r\nNoon at the usual place?\r\n"
)


# A child that says it is ready on its first channel, then neither reads, answers nor ends
# (SIGTERM ignored too): stuck, as far as the server can tell.
SILENT_CHILD = (
    "import signal,socket,struct,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "fds=[a[5:] for a in sys.argv if a.startswith('--fd=')];"
    "s=socket.socket(fileno=int(fds[0])); s.sendall(struct.pack('>I',5)+b'ready');"
    "time.sleep(60)"
)


class Live:
    """A reactor of the test's own, running in a thread; ``call`` runs a function on it and
    returns its result (a Deferred's, once it fires) or raises its exception."""

    def __init__(self) -> None:
        self.reactor = EPollReactor()
        self.thread = threading.Thread(
            target=self.reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
        )
        self.thread.start()

    def call(self, function, *args):
        return blockingCallFromThread(self.reactor, function, *args)

    def stop(self) -> None:
        self.reactor.callFromThread(self.reactor.stop)
        self.thread.join(10)


@pytest.fixture
def live():
    reactor = Live()
    yield reactor
    reactor.stop()


@pytest.fixture
def filters_pool():
    """The filters' threads of a server, for a ``SpamFilter`` on ``live``'s reactor."""
    pool = ThreadPool(1, 2, name="test-filters")
    pool.start()
    yield pool
    pool.stop()


def trained_store(tmp_path) -> TokenStore:
    store = TokenStore(store_path(str(tmp_path)), min_messages=3)
    for i in range(4):
        spam = sample_of_bytes(*read_capped(io.BytesIO(SPAM.replace(b"x", str(i).encode()))))
        ham = sample_of_bytes(*read_capped(io.BytesIO(HAM.replace(b"Noon", f"N{i}".encode()))))
        store.learn("alice@example.test", f"s{i}", tokens(spam), True)
        store.learn("alice@example.test", f"h{i}", tokens(ham), False)
    store.set_sender("bob@example.test", "deals@promo.example", "block")
    store.set_threshold("alice@example.test", 4.0)
    return store


def wait_ready(live: Live, process: ScoringProcess, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not process.ready:
        with pytest.raises(OffloadError):
            live.call(process.score, {}, b"", b"")  # starts it; fails "starting" meanwhile
        assert time.monotonic() < deadline, "the scoring process didn't start"
        time.sleep(0.05)


def request(message: bytes, owners: list[str | None]):
    head, body, truncated = read_capped(io.BytesIO(message))
    header = {
        "owners": owners,
        "sender": "deals@promo.example",
        "connection": [["HELO_NXDOMAIN", 1.0, "the HELO name doesn't resolve"]],
        "truncated": truncated,
    }
    return header, head, body


def ask(live: Live, process: ScoringProcess, message: bytes, owners: list[str | None]):
    return live.call(process.score, *request(message, owners))


@pytest.fixture
def child(tmp_path, live):
    process = ScoringProcess(
        trained_store(tmp_path), "mx.example.test", live.reactor, 20.0, start_rate=0
    )
    wait_ready(live, process)
    yield process
    live.call(process.close)


def test_the_child_scores_as_the_thread_does(tmp_path, live, child):
    scorer = Scorer(TokenStore(store_path(str(tmp_path)), min_messages=3), "mx.example.test")
    owners = [None, "alice@example.test", "bob@example.test"]
    connection = [frames.rule_from_list(["HELO_NXDOMAIN", 1.0, "the HELO name doesn't resolve"])]
    for message in (SPAM, HAM):
        expected = scorer.score_each(
            sample_of_bytes(*read_capped(io.BytesIO(message))),
            owners,
            "deals@promo.example",
            connection,
        )
        got = ask(live, child, message, owners)
        assert [(t, [r.name for r in hits], b, own) for t, hits, b, own in got] == [
            (s.total, [r.name for r in s.hits], s.bayes, s.threshold) for s in expected
        ]
    spam_for_alice = ask(live, child, SPAM, ["alice@example.test"])[0]
    assert spam_for_alice[2] is not None and spam_for_alice[2] > 0.9  # the classifier spoke
    assert spam_for_alice[3] == 4.0  # alice's own threshold
    names = [r.name for r in ask(live, child, HAM, ["bob@example.test"])[0][1]]
    assert "USER_BLOCKED" in names


def test_requests_sent_together_get_their_own_answers_in_order(live, child):
    """Forty requests written before the first answer comes (as the reactor does for forty
    sessions at the end of their data): each message gets its own score."""
    messages = [SPAM if i % 2 else HAM for i in range(40)]

    def all_at_once():
        return gatherResults([child.score(*request(m, ["alice@example.test"])) for m in messages])

    results = live.call(all_at_once)
    spam = ask(live, child, SPAM, ["alice@example.test"])
    ham = ask(live, child, HAM, ["alice@example.test"])
    assert spam != ham
    assert results == [spam if m is SPAM else ham for m in messages]


def test_a_child_far_behind_is_sent_no_more_until_it_catches_up(live, child, monkeypatch):
    """At most ``MAX_PENDING`` requests wait for answers; the next message is scored in the
    thread (its request isn't written), and once answers come the child is asked again."""
    monkeypatch.setattr(offload, "MAX_PENDING", 3)

    def four_at_once():
        asked = [child.score(*request(HAM, [None])) for _ in range(4)]
        behind = []
        asked[3].addErrback(lambda failure: behind.append(failure.value))
        return gatherResults(asked[:3]).addCallback(lambda answers: (answers, behind))

    answers, behind = live.call(four_at_once)
    assert len(answers) == 3 and all(answers)
    assert len(behind) == 1 and "behind" in str(behind[0])
    assert child.ready and ask(live, child, HAM, [None])


def test_a_killed_child_is_replaced_and_meanwhile_the_thread_scores(tmp_path, live, filters_pool):
    trained_store(tmp_path)
    host = FilterHost(str(tmp_path), "mx.example.test", reactor=live.reactor, pool=filters_pool)
    f = SpamFilter(host=host, dns_checks=False, bayes_min_messages=3)
    assert f.offload is not None and not f.blocking
    alone = SpamFilter(host=FilterHost(str(tmp_path), "mx.example.test"), bayes_min_messages=3)
    assert alone.offload is None and alone.blocking  # no reactor: it blocks
    transaction = Transaction("deals@promo.example", ("alice@example.test",))
    in_thread = alone.end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM))

    def judged():
        return live.call(f.end_of_data, OUTSIDE, transaction, io.BytesIO(SPAM))

    assert judged() == in_thread  # scored in the filters' thread; starts the child
    wait_ready(live, f.offload)
    first = f.offload.pid
    assert judged() == in_thread
    os.kill(first, signal.SIGKILL)
    for _ in range(3):  # the end of the channel is seen; meanwhile the thread scores
        assert judged() == in_thread
    time.sleep(offload.RESTART_AFTER)
    wait_ready(live, f.offload)
    assert f.offload.pid != first
    assert judged() == in_thread
    pid = f.offload.pid
    live.call(f.close)
    wait_gone(pid, "the scoring process outlived close()")


def test_a_child_that_doesnt_answer_is_ended_after_the_time_limit(tmp_path, live):
    store = TokenStore(store_path(str(tmp_path)))
    process = ScoringProcess(store, "", live.reactor, 0.5, start_rate=0)
    process.argv = [sys.executable, "-c", SILENT_CHILD]
    wait_ready(live, process)
    pid = process.pid
    started = time.monotonic()
    with pytest.raises(OffloadError, match="no answer"):
        ask(live, process, SPAM, [None])
    assert time.monotonic() - started < 5
    assert not process.ready  # the next message starts another
    wait_gone(pid, "the stuck child was not killed")
    live.call(process.close)


def test_a_child_stuck_when_the_server_ends_is_killed(tmp_path, live, monkeypatch):
    """At the server's end the child reads the end of its channel and ends; one that
    doesn't (stuck in a message) is killed after ``STUCK_AFTER`` seconds. A message it
    owed an answer is scored in the thread."""
    monkeypatch.setattr(offload, "STUCK_AFTER", 0.5)
    store = TokenStore(store_path(str(tmp_path)))
    process = ScoringProcess(store, "", live.reactor, 30.0, start_rate=0)
    process.argv = [sys.executable, "-c", SILENT_CHILD]
    wait_ready(live, process)
    pid = process.pid
    owed = []

    def ask_then_close():
        process.score(*request(HAM, [None])).addErrback(owed.append)
        process.close()

    live.call(ask_then_close)
    assert len(owed) == 1 and owed[0].check(OffloadError)
    wait_gone(pid, "the stuck child outlived the server")


def test_a_message_the_child_fails_on_is_scored_in_the_thread(live, child):
    with pytest.raises(OffloadError, match="KeyError"):  # no "truncated"
        live.call(child.score, {"owners": [None]}, b"Subject: x\r\n\r\n", b"body")
    assert child.ready  # the child goes on with the next message
    assert ask(live, child, HAM, [None])


def test_a_child_that_cant_start_is_tried_less_and_less_often(tmp_path, live):
    store = TokenStore(store_path(str(tmp_path)))
    process = ScoringProcess(store, "", live.reactor, start_rate=0)
    process.argv = [sys.executable, "-c", "raise SystemExit(3)", "--fd"]
    starts = 0
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        before = process._last_start
        with pytest.raises(OffloadError):
            ask(live, process, HAM, [None])  # scored in the thread each time
        starts += process._last_start != before
        time.sleep(0.02)
    assert 2 <= starts <= 3  # at 0, then 1 s and 2 s later: not once a second
    assert not process.ready
    live.call(process.close)


def test_no_child_until_messages_come_fast_and_none_after_a_quiet_spell(tmp_path, live):
    store = TokenStore(store_path(str(tmp_path)))
    process = ScoringProcess(store, "", live.reactor, start_rate=5, max_idle=1)
    for _ in range(3):  # a trickle: scored in the thread, no process started for it
        with pytest.raises(OffloadError):
            ask(live, process, HAM, [None])
    time.sleep(1.5)
    assert not process.ready
    wait_ready(live, process)  # a burst (this loop asks 20 times a second) starts it
    pid = process.pid
    assert ask(live, process, HAM, [None])
    deadline = time.monotonic() + 10
    while process.ready or _running(pid):  # a second without a message: it ends
        assert time.monotonic() < deadline, "the idle child didn't end"
        time.sleep(0.05)
    wait_ready(live, process)  # and the next burst starts another
    assert process.pid != pid
    live.call(process.close)


def _running(pid: int | None) -> bool:
    return pid is not None and running(pid)


def wait_gone(pid: int | None, what: str) -> None:
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_frames_come_whole_however_the_octets_arrive():
    import socket
    import threading

    ours, theirs = socket.socketpair()
    reader = frames.Frames(ours)
    reader.CHUNK = 7  # small reads: frames split across them, several in one
    parts = [b"", b"x", b"hello" * 1000, b"ready", bytes(range(256)) * 300]
    sender = threading.Thread(target=frames.send, args=(theirs, *parts))
    sender.start()
    assert [reader.read() for _ in parts] == parts
    sender.join()
    frames.send(theirs, b"a", b"b")
    assert reader.read() == b"a"
    assert reader.buffered()  # "b" came with it: no wait for the socket
    assert reader.read() == b"b" and not reader.buffered()
    theirs.sendall(b"\xff\xff\xff\xff")  # a length no frame has
    with pytest.raises(ValueError):
        reader.read()
    theirs.close()
    with pytest.raises(EOFError):
        reader.read()
    ours.close()


def test_the_child_answers_each_channel_on_that_channel(tmp_path):
    """Requests on several channels at once are each answered on their own channel; a
    channel's end (the server's) ends the child."""
    import json
    import socket
    import threading

    from txmailhost.spam import scorechild

    pairs = [socket.socketpair() for _ in range(3)]
    ours = [frames.Frames(pair[0]) for pair in pairs]
    server = threading.Thread(
        target=scorechild.serve,
        args=([pair[1] for pair in pairs], Scorer(trained_store(tmp_path), "mx")),
        daemon=True,
    )
    server.start()
    assert ours[0].read() == b"ready"

    def request(message: bytes) -> tuple[bytes, ...]:
        head, body, truncated = read_capped(io.BytesIO(message))
        owners = ["alice@example.test"]
        header = {"owners": owners, "sender": None, "connection": [], "truncated": truncated}
        return (json.dumps(header).encode(), head, body)

    for rounds in range(2):
        sent = [SPAM, HAM, SPAM] if rounds == 0 else [HAM, HAM, SPAM]
        for channel, message in zip(ours, sent, strict=True):
            channel.sock.settimeout(20)
            frames.send(channel.sock, *request(message))
        totals = [json.loads(channel.read())["scores"][0][0] for channel in ours]
        assert [total >= 5 for total in totals] == [m is SPAM for m in sent]
        assert not any(channel.buffered() for channel in ours)  # one answer each
    ours[1].sock.close()
    server.join(20)
    assert not server.is_alive()


def test_an_idle_child_says_so_on_every_channel_and_ends(tmp_path):
    import socket
    import threading

    from txmailhost.spam import scorechild

    pairs = [socket.socketpair() for _ in range(2)]
    server = threading.Thread(
        target=scorechild.serve,
        args=([pair[1] for pair in pairs], Scorer(None, "mx"), 0.2),
        daemon=True,
    )
    server.start()
    ours = [frames.Frames(pair[0]) for pair in pairs]
    assert ours[0].read() == b"ready"
    assert [channel.read() for channel in ours] == [frames.IDLE, frames.IDLE]
    server.join(20)
    assert not server.is_alive()


def test_the_child_answers_requests_sent_together_on_a_channel_in_order(tmp_path):
    """The reactor writes requests without waiting for answers: several may arrive in one
    read, and each is answered, in order, without waiting for the socket again."""
    import json
    import socket

    from txmailhost.spam import scorechild

    ours, theirs = socket.socketpair()
    server = threading.Thread(
        target=scorechild.serve,
        args=([theirs], Scorer(trained_store(tmp_path), "mx")),
        daemon=True,
    )
    server.start()
    reader = frames.Frames(ours)
    assert reader.read() == b"ready"
    sent = [SPAM, HAM, HAM, SPAM, HAM]
    parts = []
    for message in sent:
        header, head, body = request(message, ["alice@example.test"])
        parts += [json.dumps(header).encode(), head, body]
    ours.settimeout(20)
    frames.send(ours, *parts)  # one write: five requests
    totals = [json.loads(reader.read())["scores"][0][0] for _ in sent]
    assert [total >= 5 for total in totals] == [m is SPAM for m in sent]
    ours.close()
    server.join(20)
    assert not server.is_alive()


def test_only_what_blocks_goes_to_the_filters_threads(tmp_path, live, filters_pool):
    """On the reactor, the filter hands the connection checks and the reading of the sample
    to the filters' threads only for a client they ask DNS about or a message read from a
    file; a loopback client's small message is read and sent to the child from the reactor
    thread."""
    trained_store(tmp_path)
    host = FilterHost(
        str(tmp_path), "mx.example.test", resolver=object(), reactor=live.reactor, pool=filters_pool
    )
    f = SpamFilter(host=host, bayes_min_messages=3)
    threads = []

    def checked(address, helo, sender, received=()):
        threads.append(threading.current_thread() is live.thread)
        return [], None

    f.connection.checked = checked
    transaction = Transaction("deals@promo.example", ("alice@example.test",))
    local = Client("127.0.0.1", helo="client.example", listener="smtp")
    spilled = tmp_path / "spilled.eml"  # a large message's body is in a file
    spilled.write_bytes(SPAM)
    for client, stream in (
        (OUTSIDE, io.BytesIO(SPAM)),
        (local, io.BytesIO(SPAM)),
        (local, prefixed(b"X-Earlier: field\r\n", io.BytesIO(SPAM))),
        (local, prefixed(b"X-Earlier: field\r\n", open(spilled, "rb"))),  # noqa: SIM115
    ):
        verdict = live.call(f.end_of_data, client, transaction, stream)
        assert dict(verdict.headers)["X-Spam-Status"].startswith("Yes")
    # asked DNS, or read from a file: a filters' thread; else the reactor thread
    assert threads == [False, True, True, False]
    live.call(f.close)


def test_the_dns_checks_of_one_client_hold_at_most_its_share_of_the_threads(tmp_path, live):
    """The offloaded score sends its blocking part (the DNS checks) to the filters' threads
    itself, outside the chain: it takes a slot of the client's like the chain's checks
    (``fairness.ClientSlots``), so one client's slow lookups can't hold every thread."""
    from txmailhost.filters.fairness import ClientSlots

    pool = ThreadPool(4, 4, name="test-filters")
    pool.start()
    trained_store(tmp_path)
    host = FilterHost(
        str(tmp_path), "mx.example.test", reactor=live.reactor, pool=pool, slots=ClientSlots(1)
    )
    f = SpamFilter(host=host, dns_checks=False, bayes_min_messages=3)
    real_prepare = f._prepare
    release = threading.Event()
    started: list[str] = []

    def slow_prepare(client, transaction, message):
        started.append(client.address)
        if client.address == "192.0.2.66":
            release.wait(10)  # a lookup on a silent name server
        return real_prepare(client, transaction, message)

    f._prepare = slow_prepare
    f._blocks = lambda client, message: True
    transaction = Transaction("deals@promo.example", ("alice@example.test",))
    busy = Client("192.0.2.66", helo="mx.promo.example", listener="smtp")
    other = Client("198.51.100.1", helo="mx.other.example", listener="smtp")
    try:

        def until(condition) -> None:
            deadline = time.monotonic() + 10
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert condition()

        # (in a list: ``call`` would wait for a Deferred to fire)
        first = live.call(lambda: [f.end_of_data(busy, transaction, io.BytesIO(SPAM))])[0]
        until(lambda: started == ["192.0.2.66"])  # its thread is in the slow lookup
        second = live.call(lambda: [f.end_of_data(busy, transaction, io.BytesIO(SPAM))])[0]
        answered: list = []
        live.call(
            lambda: f.end_of_data(other, transaction, io.BytesIO(HAM)).addCallback(answered.append)
        )
        until(lambda: answered)  # the other client's check didn't wait
        assert started == ["192.0.2.66", "198.51.100.1"]  # the busy one's second does
        release.set()
        done: list = []
        live.call(lambda: second.addCallback(done.append) and None)
        until(lambda: done)
        assert started == ["192.0.2.66", "198.51.100.1", "192.0.2.66"]
        until(lambda: first.called)
        assert live.call(lambda: host.slots.in_use("192.0.2.66")) == 0
    finally:
        release.set()
        live.call(f.close)
        pool.stop()


def test_scoring_never_hashes_the_message(tmp_path, monkeypatch):
    """The message's SHA-256 (``Sample.digest``) is for learning only: neither the scoring
    process nor the filters' thread makes it (3.6% of the child's work for a 4 KiB
    message), and their scores are what they were."""
    scorer = Scorer(trained_store(tmp_path), "mx.example.test")
    header, head, body = request(SPAM, ["alice@example.test", "bob@example.test"])
    asked = (json.dumps(header).encode(), head, body)
    before = scorechild._answer(scorer, *asked)
    assert b'"scores"' in before
    transaction = Transaction("deals@promo.example", ("alice@example.test",))
    here = SpamFilter(bayes=False).end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM))

    def no_hashing(*args: object) -> None:
        raise AssertionError("the message was hashed")

    monkeypatch.setattr(sample.hashlib, "sha256", no_hashing)
    assert scorechild._answer(scorer, *asked) == before
    assert SpamFilter(bayes=False).end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM)) == here


def test_a_client_whose_dns_answers_are_cached_is_checked_on_the_reactor(
    tmp_path, live, filters_pool
):
    """The connection checks' lookups are first tried from the resolver's cache on the reactor
    thread (``MailAuthResolver.cached_only``); only a client whose answers aren't all cached
    costs a trip to the filters' threads, and the rules found are the same either way."""
    from tests.support.names import NamesServer
    from txmailhost.mailauth.resolver import MailAuthResolver

    trained_store(tmp_path)
    (tmp_path / "dns").mkdir()
    names = NamesServer(tmp_path / "dns").start()
    try:
        names.add("1.2.0.192.bl.test", "A", "127.0.0.2")  # OUTSIDE is listed
        names.add("mx.promo.example", "A", "192.0.2.1")
        resolver = MailAuthResolver([names.address], timeout=2.0)
        host = FilterHost(
            str(tmp_path), "mx.example.test", resolver=resolver, reactor=live.reactor,
            pool=filters_pool,
        )  # fmt: skip
        f = SpamFilter(host=host, bayes_min_messages=3, dnsbl={"bl.test": 2.5}, rdns=False)
        wait_ready(live, f.offload)
        threads = []
        real_checked = f.connection.checked

        def checked(address, helo, sender, received=()):
            threads.append(threading.current_thread() is live.thread)
            return real_checked(address, helo, sender, received)

        f.connection.checked = checked
        transaction = Transaction("deals@promo.example", ("alice@example.test",))
        reports = []
        for _ in range(2):
            verdict = live.call(f.end_of_data, OUTSIDE, transaction, io.BytesIO(HAM))
            reports.append(dict(verdict.headers)["X-Spam-Report"])
        names.stop()  # the network has nothing more to say: the cache answers
        verdict = live.call(f.end_of_data, OUTSIDE, transaction, io.BytesIO(HAM))
        reports.append(dict(verdict.headers)["X-Spam-Report"])
        # the first: tried here (not cached), then in a thread; then here from the cache
        assert threads == [True, False, True, True]
        assert "DNSBL:bl.test" in reports[0] and reports[0] == reports[1] == reports[2]
        live.call(f.close)
    finally:
        names.stop()
