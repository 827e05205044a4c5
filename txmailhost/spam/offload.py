"""Scoring in a child process, so the spam score doesn't share the server's GIL.

The score is pure Python CPU work (parsing, rules, tokens) plus two SQLite reads, about a
quarter of a millisecond for a 4 KiB message. Run in the filters' thread, it competes with
the reactor thread for the one GIL: every system call either thread makes hands the GIL
over, the filter thread's caches go cold, and at 50 SMTP connections filtering took 41-45%
off the messages per second. In a child process the score runs on another core with warm
caches.

The reactor talks to the child itself, over one socket pair adopted as a Twisted connection
(``_Channel``): it writes a message's request and goes on serving the other sessions; the
answers come back in the order asked and each fires its message's ``Deferred``. No server
thread waits for the child. When the filters' threads sent the requests and each blocked on
its own answer, every message cost four wake-ups across threads and processes (the reactor
waking a thread, the thread the child, the child the thread, the thread the reactor), each
taking the GIL from the reactor: at 50 connections filtering cost the machine 0.96 ms of
CPU a message (the child's score 0.58 ms of it) against 0.63 ms now (0.47 ms), and 31% of
the messages per second against 26% (docs/benchmarks-spam.rst).

The child (``python -m txmailhost.spam.scorechild``, ``scorechild.py``) opens the same token
store (SQLite, WAL: the server's trainer and ``txmailhost spam train`` write it meanwhile)
and answers the requests in the order they come. A frame is a 4-octet big-endian length and
its content (Twisted's ``Int32StringReceiver`` on our side); a request is three frames: a
JSON header (owners, envelope sender, the connection rules already decided, whether the
sample was cut short), the message's header section and the start of its body
(``sample.read_capped``); the answer is JSON (one score per owner). JSON rather than pickle:
the child parses what strangers sent and its answers are only data.

Nothing waits for the child: it is started when messages come ``START_RATE`` a second
or faster (below that the GIL is hardly contended), and ends after ``MAX_IDLE`` seconds
without one. Until it has started (its imports take a few tenths of a second), and after it
failed, a message is scored in the filters' thread, as before, and the child is started
again (at most once a second). A child that answers nothing for ``timeout`` seconds is
killed and its messages are scored in the thread. When the server ends, the channel closes
and the child, reading end of file, ends too (killed after ``STUCK_AFTER`` seconds if it
doesn't).

Everything here runs on the reactor thread except the start (``_start``: the fork and the
child's imports, in a thread of its own) and the wait for the child's end (``_watch``); both
hand their result to the reactor with ``callFromThread``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from txmailhost.spam import rules
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.frames import IDLE, MAX_FRAME, Frames, encode, rule_from_list

log = Logger()

# Started when messages come this fast (a second), ended after this long without any: as
# Postfix's processes (max_idle), the child costs memory (13 MiB) only when it saves time.
START_RATE = 10.0
MAX_IDLE = 300.0
RESTART_AFTER = 1.0  # seconds before starting another child after one ended or failed
RESTART_MAX = 300.0  # a child that can't start at all is tried at most this often
STUCK_AFTER = 5.0  # seconds a child told to end may take before it is killed
# Requests written and not yet answered: beyond this many (each up to the sample's cap,
# 256 KiB) a message is scored in the filters' thread instead, so a child that falls
# behind a flood of large messages holds at most a few MiB of them in our buffers.
MAX_PENDING = 64

Scores = list[tuple[float, list[rules.Rule], float | None, float | None]]


class OffloadError(Exception):
    """The child couldn't answer (not running, died, too slow, said something wrong)."""


class _Channel(Int32StringReceiver):
    """The reactor's end of the socket pair: frames in, each handed to the child's record."""

    MAX_LENGTH = MAX_FRAME

    def __init__(self, child: _Child) -> None:
        self.child = child

    def stringReceived(self, string: bytes) -> None:
        self.child.answered(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self.child.fail(f"an answer of {length} octets")

    def connectionLost(self, reason: Any = None) -> None:
        self.child.fail("the channel closed")


class _ChannelFactory(Factory):
    def __init__(self, child: _Child) -> None:
        self.child = child

    def buildProtocol(self, addr: Any) -> _Channel:
        self.child.channel = _Channel(self.child)
        return self.child.channel


class _Child:
    """A running child: its process, its channel, and the requests it hasn't answered yet
    (oldest first: it answers in order). Used on the reactor thread only."""

    def __init__(
        self, reactor: Any, process: subprocess.Popen[bytes], timeout: float, ended: Any
    ) -> None:
        self.reactor = reactor
        self.process = process
        self.timeout = timeout
        self.channel: _Channel | None = None
        self.pending: collections.deque[tuple[Deferred[Any], float]] = collections.deque()
        self.dead = False
        self._timer: Any = None
        self._ended = ended

    def adopt(self, sock: socket.socket) -> None:
        """Our end of the socket pair becomes a reactor connection (Twisted takes a copy of
        the descriptor; the original is closed)."""
        sock.setblocking(False)
        try:
            self.reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, _ChannelFactory(self))
        finally:
            sock.close()
        threading.Thread(target=self._watch, name="txmailhost-spam-child", daemon=True).start()

    def ask(self, frames: tuple[bytes, ...]) -> Deferred[Any]:
        """The child's answer (parsed JSON) to a request of ``frames``, in order with the
        others; ``OffloadError`` when it can't give one in ``timeout`` seconds."""
        if self.dead or self.channel is None:
            return fail(OffloadError("the scoring process has ended"))
        if len(self.pending) >= MAX_PENDING:
            return fail(OffloadError(f"the scoring process is {MAX_PENDING} messages behind"))
        answer: Deferred[Any] = Deferred()
        self.pending.append((answer, self.reactor.seconds()))
        self.channel.transport.write(encode(*frames))
        if self._timer is None:
            self._timer = self.reactor.callLater(self.timeout, self._check)
        return answer

    def answered(self, data: bytes) -> None:
        if data == IDLE:  # it ends for want of work (anything sent meanwhile goes unread)
            self.fail("")
            return
        if not self.pending:
            self.fail("an answer to nothing asked")
            return
        waiting, _sent = self.pending.popleft()
        try:
            answer = json.loads(data)
        except ValueError as e:
            waiting.errback(OffloadError(f"an answer that isn't JSON ({e})"))
        else:
            waiting.callback(answer)

    def _check(self) -> None:
        """The oldest request waited ``timeout``: the child is stuck (or far behind)."""
        self._timer = None
        if self.dead or not self.pending:
            return
        waited = self.reactor.seconds() - self.pending[0][1]
        if waited >= self.timeout:
            self.fail(f"no answer in {self.timeout:g} s")
        else:
            self._timer = self.reactor.callLater(self.timeout - waited, self._check)

    def fail(self, why: str) -> None:
        """The child is ended (``why``: killed, it may be stuck; "": it ended, idle) and the
        messages it owed an answer are scored elsewhere."""
        if self.dead:
            return
        if why:
            log.warn("spam: the scoring process failed ({why}); it is started again", why=why)
        else:
            log.info("spam: the scoring process ended")
        self._end(bool(why), OffloadError(why or "the scoring process ended"))

    def close(self) -> None:
        """The server stops: the child reads the end of its channel and ends, and the
        messages it owed an answer are scored in the thread."""
        if not self.dead:
            self._end(False, OffloadError("the server is stopping"))

    def _end(self, kill: bool, error: OffloadError) -> None:
        """The channel closes and the child ends (``kill``: now; else a child stuck in a
        message is killed after ``STUCK_AFTER``); what it owed fails with ``error``."""
        self.dead = True
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.loseConnection()
        if kill:
            with contextlib.suppress(OSError):
                self.process.kill()
        else:
            threading.Thread(target=self._kill_if_stuck, daemon=True).start()
        self._ended(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waiting, self.pending = self.pending, collections.deque()
        for answer, _sent in waiting:
            answer.errback(error)

    def _kill_if_stuck(self) -> None:
        try:
            self.process.wait(timeout=STUCK_AFTER)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.process.kill()

    def _watch(self) -> None:
        """The process ended (idle, status 0; or it died): the reactor is told, and reaps
        nothing itself (``wait`` did)."""
        status = self.process.wait()
        why = "" if status == 0 else f"it ended with status {status}"
        self.reactor.callFromThread(self.fail, why)


def _answer(answer: Any) -> tuple[Scores, list[str]]:
    """The scores, and the domains the message links to when the request asked for them."""
    if not isinstance(answer, dict) or "error" in answer:  # this message only
        raise OffloadError(str(answer.get("error") if isinstance(answer, dict) else answer))
    scores = [
        (float(total), [rule_from_list(r) for r in hits], bayes, threshold)
        for total, hits, bayes, threshold in answer["scores"]
    ]
    domains = answer.get("domains", [])
    return scores, [d for d in domains if isinstance(d, str)] if isinstance(domains, list) else []


class ScoringProcess:
    """The server's side: one child, asked from the reactor thread (see ``_Child``)."""

    def __init__(
        self,
        store: TokenStore,
        authserv_id: str,
        reactor: Any,
        timeout: float = 10.0,
        start_rate: float = START_RATE,
        max_idle: float = MAX_IDLE,
    ) -> None:
        self.argv = [
            sys.executable, "-m", "txmailhost.spam.scorechild",
            "--store", store.path,
            "--min-messages", str(store.min_messages),
            "--max-tokens", str(store.max_tokens),
            "--max-age-days", str(store.max_age / 86400),
            "--authserv-id", authserv_id,
            "--max-idle", str(max_idle),
        ]  # fmt: skip
        self.reactor = reactor
        self.timeout = timeout
        self.start_rate = start_rate
        self._second = 0  # the whole second messages are being counted in, and their count
        self._in_second = 0
        self._child: _Child | None = None
        self._starting = False
        self._closed = False
        self._last_start = 0.0
        self._pause = RESTART_AFTER  # doubles while starts fail (no log line a second)

    @property
    def ready(self) -> bool:
        return self._child is not None

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child is not None else None

    def score(self, header: dict[str, Any], head: bytes, body: bytes) -> Deferred[Scores]:
        """(total, rules, classifier probability, own threshold) per owner of ``header``;
        fails with ``OffloadError`` when the child can't say (the caller scores it itself)."""
        return self.score_and_domains(header, head, body).addCallback(lambda answer: answer[0])

    def score_and_domains(
        self, header: dict[str, Any], head: bytes, body: bytes
    ) -> Deferred[tuple[Scores, list[str]]]:
        """``score``, and the domains the message links to (``links.link_domains``) when
        ``header`` asks for them (``"domains": true``; else none)."""
        child = self._child
        if child is None:
            if self._busy():
                self._start_soon()
            return fail(OffloadError("no scoring process (yet)"))
        return child.ask((json.dumps(header).encode(), head, body)).addCallback(_answer)

    def _busy(self) -> bool:
        """Whether messages come at ``start_rate`` a second or more: below that the GIL is
        hardly contended, and a process would be memory for nothing."""
        now = int(time.monotonic())
        if now != self._second:
            self._second, self._in_second = now, 0
        self._in_second += 1
        return self._in_second > self.start_rate

    def _start_soon(self) -> None:
        if self._closed or self._starting:
            return
        if time.monotonic() - self._last_start < self._pause:
            return
        self._starting = True
        self._last_start = time.monotonic()
        threading.Thread(target=self._start, name="txmailhost-spam-start", daemon=True).start()

    def _start(self) -> None:
        """In a thread: the fork, and the wait for the child's imports and its "ready"."""
        ours, theirs = socket.socketpair()
        process = None
        try:
            process = subprocess.Popen(
                [*self.argv, f"--fd={theirs.fileno()}"],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
            )
            theirs.close()
            ours.settimeout(60.0)  # the child's imports, on a busy machine
            if Frames(ours).read() != b"ready":
                raise ValueError("the scoring process didn't say it was ready")
        except (OSError, EOFError, ValueError) as e:
            ours.close()
            theirs.close()
            if process is not None:
                process.kill()
                process.wait()
            self.reactor.callFromThread(self._failed_start, e)
            return
        self.reactor.callFromThread(self._started, process, ours)

    def _failed_start(self, error: Exception) -> None:
        log.warn("spam: the scoring process didn't start ({error})", error=error)
        self._starting = False
        self._pause = min(RESTART_MAX, self._pause * 2)

    def _started(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self._starting = False
        self._pause = RESTART_AFTER
        child = _Child(self.reactor, process, self.timeout, self._ended)
        child.adopt(sock)
        if self._closed:
            child.close()
            return
        self._child = child
        log.info("spam: scoring in process {pid}", pid=process.pid)

    def _ended(self, child: _Child) -> None:
        if self._child is child:
            self._child = None

    def close(self) -> None:
        """The child ends (it reads the end of its channel); a start under way is dropped;
        the messages it owed are scored in the thread."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            child.close()
