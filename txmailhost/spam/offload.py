"""Scoring in a child process, so the spam score doesn't share the server's GIL.

The score is pure Python CPU work (parsing, rules, tokens) plus two SQLite reads, about half a
millisecond for a 4 KiB message. Run in the filters' thread, it competes with the reactor
thread for the one GIL: every system call either thread makes hands the GIL over, the filter
thread's caches go cold, and measured at 50 SMTP connections the score cost the server
twice its own CPU time (1.1 ms a message in the thread against 0.55 alone) and the reactor
waited for the GIL behind it — filtering took 57% off the messages per second. In a child
process the score runs on another core with warm caches, and the filters' thread only
sends the capped start of the message and waits, the GIL let go.

The child (``python -m txmailhost.spam.scorechild``, ``scorechild.py``) opens the same token store (SQLite, WAL:
the server's trainer and ``txmailhost spam train`` write it meanwhile) and answers one
request at a time on a socket it inherits. A frame is a 4-octet big-endian length and its
content; a request is three frames: a JSON header (owners, envelope sender, the connection rules
already decided, whether the sample was cut short), the message's header section and the
start of its body (``sample.read_capped``); the answer is JSON (one score per owner). JSON rather than pickle: the child parses what strangers sent
and its answers are only data.

Nothing waits for the child: it is started when messages come ``START_RATE`` a second
or faster (below that the GIL is hardly contended), and ends after ``MAX_IDLE`` seconds
without one. Until it has started (its imports take a few tenths of a second), and after it
failed, the thread scores the message itself, as before, and the child is started again
(at most once a second). When the server ends, the socket closes
and the child, reading end of file, ends too.
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

from twisted.logger import Logger

from txmailhost.spam import rules
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.frames import IDLE, Frames, rule_from_list, send

log = Logger()

# Started when messages come this fast (a second), ended after this long without any: as
# Postfix's processes (max_idle), the child costs memory (13 MiB) only when it saves time.
START_RATE = 10.0
MAX_IDLE = 300.0
RESTART_AFTER = 1.0  # seconds before starting another child after one ended or failed
RESTART_MAX = 300.0  # a child that can't start at all is tried at most this often


class OffloadError(Exception):
    """The child couldn't answer (not running, died, too slow, said something wrong)."""


class _Waiting:
    """A request sent to the child and not yet answered."""

    __slots__ = ("done", "answer")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: dict[str, Any] | OffloadError | None = None


class _Child:
    """A running child: its process and socket, the requests sent in order and not yet
    answered, and the thread that reads the answers (in the same order).

    Requests are pipelined: a thread writes its request and waits for its answer without
    holding anything, so the child always has the next message queued. One request at a
    time (a lock held from the write to the answer) left the child idle three quarters of
    the time on a busy machine, each turn waiting for threads to be scheduled and to get
    the GIL back."""

    def __init__(self, process: subprocess.Popen[bytes], frames: Frames, ended: Any) -> None:
        self.process = process
        self.sock = frames.sock
        self.frames = frames
        self.waiting: collections.deque[_Waiting] = collections.deque()
        self.sending = threading.Lock()  # a request's frames go out together, in turn
        self.dead = False
        self._ended = ended
        threading.Thread(target=self._read, name="txmailhost-spam-answers", daemon=True).start()

    def ask(self, frames: tuple[bytes, ...]) -> _Waiting:
        waiting = _Waiting()
        failed = ""
        with self.sending:
            if self.dead:
                raise OffloadError("the scoring process has ended")
            self.waiting.append(waiting)
            try:
                send(self.sock, *frames)
            except OSError as e:
                failed = f"{type(e).__name__}: {e}"
        if failed:
            self.fail(failed)  # ``waiting`` is told too
        return waiting

    def _read(self) -> None:
        try:
            while True:
                frame = self.frames.read()
                if frame == IDLE:  # the child ends, nothing having come for a while
                    self.fail("")
                    return
                answer = json.loads(frame)
                waiting = self.waiting.popleft()
                waiting.answer = answer
                waiting.done.set()
        except (OSError, EOFError, ValueError, IndexError) as e:
            self.fail(f"{type(e).__name__}: {e}")

    def fail(self, why: str) -> None:
        """The child is ended (it may be stuck) and whatever waits for it is told."""
        with self.sending:
            if self.dead:
                return
            self.dead = True
        if why:
            log.warn("spam: the scoring process failed ({why}); it is started again", why=why)
        else:
            log.info("spam: the scoring process ended, idle")
        self.stop(kill=True)
        while self.waiting:
            waiting = self.waiting.popleft()
            waiting.answer = OffloadError(why)
            waiting.done.set()
        self._ended(self)

    def stop(self, kill: bool) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # the reader wakes; the child reads the end
        self.sock.close()
        if kill:
            self.process.kill()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ScoringProcess:
    """The server's side: one child, asked by the filters' threads (see ``_Child``)."""

    def __init__(
        self,
        store: TokenStore,
        authserv_id: str,
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
        self.timeout = timeout
        self.start_rate = start_rate
        self._second = 0  # the whole second messages are being counted in, and their count
        self._in_second = 0
        self._state = threading.Lock()
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

    def score(
        self, header: dict[str, Any], head: bytes, body: bytes
    ) -> list[tuple[float, list[rules.Rule], float | None, float | None]]:
        """(total, rules, classifier probability, own threshold) per owner of ``header``;
        ``OffloadError`` when the child can't say (the caller scores it itself)."""
        child = self._child
        if child is None:
            if self._busy():
                self._start_soon()
            raise OffloadError("no scoring process (yet)")
        waiting = child.ask((json.dumps(header).encode(), head, body))
        if not waiting.done.wait(self.timeout):
            child.fail(f"no answer in {self.timeout:g} s")
        answer = waiting.answer
        if isinstance(answer, OffloadError):
            raise answer
        if answer is None or "error" in answer:  # this message only; the child goes on
            raise OffloadError(str(answer and answer["error"]))
        return [
            (float(total), [rule_from_list(r) for r in hits], bayes, threshold)
            for total, hits, bayes, threshold in answer["scores"]
        ]

    def _busy(self) -> bool:
        """Whether messages come at ``start_rate`` a second or more: below that the GIL is
        hardly contended, and a process would be memory for nothing."""
        now = int(time.monotonic())
        if now != self._second:
            self._second, self._in_second = now, 0
        self._in_second += 1
        return self._in_second > self.start_rate

    def _start_soon(self) -> None:
        with self._state:
            if self._closed or self._starting:
                return
            if time.monotonic() - self._last_start < self._pause:
                return
            self._starting = True
            self._last_start = time.monotonic()
        threading.Thread(target=self._start, name="txmailhost-spam-start", daemon=True).start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        process = None
        try:
            process = subprocess.Popen(
                [*self.argv, "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
            )
            theirs.close()
            ours.settimeout(60.0)  # the child's imports, on a busy machine
            frames = Frames(ours)
            if frames.read() != b"ready":
                raise ValueError("the scoring process didn't say it was ready")
            ours.settimeout(None)  # each request has its own time limit (``score``)
        except (OSError, EOFError, ValueError) as e:
            log.warn("spam: the scoring process didn't start ({error})", error=e)
            ours.close()
            theirs.close()
            if process is not None:
                process.kill()
                process.wait()
            with self._state:
                self._starting = False
                self._pause = min(RESTART_MAX, self._pause * 2)
            return
        with self._state:
            self._starting = False
            self._pause = RESTART_AFTER
            if self._closed:
                child = None
            else:
                child = self._child = _Child(process, frames, self._ended)
        if child is None:
            ours.close()
            process.wait()
            return
        log.info("spam: scoring in process {pid}", pid=process.pid)

    def _ended(self, child: _Child) -> None:
        with self._state:
            if self._child is child:
                self._child = None

    def close(self) -> None:
        """The child ends (it reads the end of its socket); a start under way is dropped."""
        with self._state:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            with child.sending:
                child.dead = True
            child.stop(kill=False)
