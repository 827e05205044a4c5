"""Scoring in a child process (``offload.py``, ``scorechild.py``): the same scores as in the
server's thread, a child that dies or hangs is replaced and its messages scored in the thread,
and the child ends with the server."""

from __future__ import annotations

import io
import os
import signal
import sys
import time

import pytest

from tests.support.workers import running
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.filters.registry import FilterHost
from txmailhost.spam import frames, offload
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


def wait_ready(process: ScoringProcess, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not process.ready:
        with pytest.raises(OffloadError):
            process.score({}, b"", b"")  # starts it; answers "starting" meanwhile
        assert time.monotonic() < deadline, "the scoring process didn't start"
        time.sleep(0.05)


def ask(process: ScoringProcess, message: bytes, owners: list[str | None]):
    head, body, truncated = read_capped(io.BytesIO(message))
    header = {
        "owners": owners,
        "sender": "deals@promo.example",
        "connection": [["HELO_NXDOMAIN", 1.0, "the HELO name doesn't resolve"]],
        "truncated": truncated,
    }
    return process.score(header, head, body)


@pytest.fixture
def child(tmp_path):
    process = ScoringProcess(trained_store(tmp_path), "mx.example.test", 20.0, start_rate=0)
    wait_ready(process)
    yield process
    process.close()


def test_the_child_scores_as_the_thread_does(tmp_path, child):
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
        got = ask(child, message, owners)
        assert [(t, [r.name for r in hits], b, own) for t, hits, b, own in got] == [
            (s.total, [r.name for r in s.hits], s.bayes, s.threshold) for s in expected
        ]
    spam_for_alice = ask(child, SPAM, ["alice@example.test"])[0]
    assert spam_for_alice[2] is not None and spam_for_alice[2] > 0.9  # the classifier spoke
    assert spam_for_alice[3] == 4.0  # alice's own threshold
    assert "USER_BLOCKED" in [r.name for r in ask(child, HAM, ["bob@example.test"])[0][1]]


def test_requests_from_many_threads_get_their_own_answers(child):
    import threading

    results: dict[int, list] = {}

    def one(i: int) -> None:
        message = SPAM if i % 2 else HAM
        results[i] = ask(child, message, ["alice@example.test"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spam, ham = ask(child, SPAM, ["alice@example.test"]), ask(child, HAM, ["alice@example.test"])
    assert all(results[i] == (spam if i % 2 else ham) for i in range(40))
    assert spam != ham


def test_a_killed_child_is_replaced_and_meanwhile_the_thread_scores(tmp_path):
    trained_store(tmp_path)
    f = SpamFilter(
        host=FilterHost(str(tmp_path), "mx.example.test"), dns_checks=False, bayes_min_messages=3
    )
    assert f.offload is not None
    transaction = Transaction("deals@promo.example", ("alice@example.test",))
    in_thread = f.end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM))  # starts the child
    wait_ready(f.offload)
    first = f.offload.pid
    assert f.end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM)) == in_thread
    os.kill(first, signal.SIGKILL)
    for _ in range(3):  # the end of the socket is seen; meanwhile the thread scores
        assert f.end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM)) == in_thread
    time.sleep(offload.RESTART_AFTER)
    wait_ready(f.offload)
    assert f.offload.pid != first
    assert f.end_of_data(OUTSIDE, transaction, io.BytesIO(SPAM)) == in_thread
    pid = f.offload.pid
    f.close()
    wait_gone(pid, "the scoring process outlived close()")


def test_a_child_that_doesnt_answer_is_ended_after_the_time_limit(tmp_path):
    process = ScoringProcess(TokenStore(store_path(str(tmp_path))), "", 0.5, start_rate=0)
    process.argv = [sys.executable, "-c", SILENT_CHILD]
    wait_ready(process)
    pid = process.pid
    started = time.monotonic()
    with pytest.raises(OffloadError, match="no answer"):
        ask(process, SPAM, [None])
    assert time.monotonic() - started < 5
    assert not process.ready  # the next message starts another
    wait_gone(pid, "the stuck child was not killed")
    process.close()


def test_a_child_stuck_when_the_server_ends_is_killed(tmp_path, monkeypatch):
    """At the server's end the child reads the end of its channels and ends; one that
    doesn't (stuck in a message) is killed after ``STUCK_AFTER`` seconds."""
    monkeypatch.setattr(offload, "STUCK_AFTER", 0.5)
    process = ScoringProcess(TokenStore(store_path(str(tmp_path))), "", 5.0, start_rate=0)
    process.argv = [sys.executable, "-c", SILENT_CHILD]
    wait_ready(process)
    pid = process.pid
    process.close()
    wait_gone(pid, "the stuck child outlived the server")


def test_a_message_the_child_fails_on_is_scored_in_the_thread(child):
    with pytest.raises(OffloadError, match="KeyError"):
        child.score({"owners": [None]}, b"Subject: x\r\n\r\n", b"body")  # no "truncated"
    assert child.ready  # the child goes on with the next message
    assert ask(child, HAM, [None])


def test_a_child_that_cant_start_is_tried_less_and_less_often(tmp_path):
    process = ScoringProcess(TokenStore(store_path(str(tmp_path))), "", start_rate=0)
    process.argv = [sys.executable, "-c", "raise SystemExit(3)", "--fd"]
    starts = 0
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        before = process._last_start
        with pytest.raises(OffloadError):
            ask(process, HAM, [None])  # scored in the thread each time
        starts += process._last_start != before
        time.sleep(0.02)
    assert 2 <= starts <= 3  # at 0, then 1 s and 2 s later: not once a second
    assert not process.ready
    process.close()


def test_no_child_until_messages_come_fast_and_none_after_a_quiet_spell(tmp_path):
    process = ScoringProcess(TokenStore(store_path(str(tmp_path))), "", start_rate=5, max_idle=1)
    for _ in range(3):  # a trickle: scored in the thread, no process started for it
        with pytest.raises(OffloadError):
            ask(process, HAM, [None])
    time.sleep(1.5)
    assert not process.ready
    wait_ready(process)  # a burst (this loop asks 20 times a second) starts it
    pid = process.pid
    assert ask(process, HAM, [None])
    deadline = time.monotonic() + 10
    while process.ready or _running(pid):  # a second without a message: it ends
        assert time.monotonic() < deadline, "the idle child didn't end"
        time.sleep(0.05)
    wait_ready(process)  # and the next burst starts another
    assert process.pid != pid
    process.close()


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
