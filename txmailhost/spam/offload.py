"""Scoring in a child process, so the spam score doesn't share the server's GIL.

The score is pure Python CPU work (parsing, rules, tokens) plus two SQLite reads, about half a
millisecond for a 4 KiB message. Run in the filters' thread, it competes with the reactor
thread for the one GIL: every system call either thread makes hands the GIL over, the filter
thread's caches go cold, and measured at 50 SMTP connections the score cost the server
twice its own CPU time (1.1 ms a message in the thread against 0.55 alone) and the reactor
waited for the GIL behind it — filtering took 57% off the messages per second. In a child
process the score runs on another core with warm caches, and the filters' thread only
sends the capped start of the message and waits, the GIL let go.

The child (``python -m txmailhost.spam.scorechild``, ``scorechild.py``) opens the same token
store (SQLite, WAL: the server's trainer and ``txmailhost spam train`` write it meanwhile)
and answers requests on the channels it inherits (a socket pair per filter thread,
``_Child``), one request at a time on each. A frame is a 4-octet big-endian length and its
content; a request is three frames: a JSON header (owners, envelope sender, the connection
rules already decided, whether the sample was cut short), the message's header section and
the start of its body (``sample.read_capped``); the answer is JSON (one score per owner).
JSON rather than pickle: the child parses what strangers sent and its answers are only
data.

Nothing waits for the child: it is started when messages come ``START_RATE`` a second
or faster (below that the GIL is hardly contended), and ends after ``MAX_IDLE`` seconds
without one. Until it has started (its imports take a few tenths of a second), and after it
failed, the thread scores the message itself, as before, and the child is started again
(at most once a second). When the server ends, the channels close and the child, reading
end of file, ends too (killed after ``STUCK_AFTER`` seconds if it doesn't).
"""

from __future__ import annotations

import contextlib
import json
import queue
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
RESTART_MAX = 300.0
# Channels to the child: as many as the filters' threads (``service.py``), so a thread never
# waits for one; a thread beyond them waits for a free one.
CHANNELS = 8
STUCK_AFTER = 5.0  # seconds a child told to end may take before it is killed  # a child that can't start at all is tried at most this often


class OffloadError(Exception):
    """The child couldn't answer (not running, died, too slow, said something wrong)."""


class _Child:
    """A running child: its process and its channels, one socket pair each.

    A filter thread takes a free channel, writes its request, and reads the answer itself:
    the kernel wakes it when the answer is there, with nothing between. The child serves
    every channel, the next request always waiting on one of them while the filters are
    busy. Through one socket, a thread of our own read the answers and woke each waiting
    thread in turn (an ``Event``): two more wake-ups of the server's threads a message, each
    taking the GIL from the reactor — measured at 50 connections with a child that answers
    at once, that alone cost a fifth of the messages per second.

    A thread waits for the process to end (``_watch``): the child that ended for want of
    work, or died, is then known to be gone and reaped at once. A channel is closed by
    whoever holds it when the child is gone: the thread using it, or ``_close_free``."""

    def __init__(
        self, process: subprocess.Popen[bytes], channels: list[Frames], ended: Any
    ) -> None:
        self.process = process
        self.channels = channels
        self._free: queue.SimpleQueue[Frames] = queue.SimpleQueue()
        for channel in channels:
            self._free.put(channel)
        self._state = threading.Lock()
        self.dead = False
        self._ended = ended
        threading.Thread(target=self._watch, name="txmailhost-spam-child", daemon=True).start()

    def ask(self, frames: tuple[bytes, ...], timeout: float) -> dict[str, Any]:
        """The child's answer to a request of ``frames``; ``OffloadError`` when it can't
        give one in ``timeout`` seconds (the child is then ended and started again)."""
        try:
            channel = self._free.get(timeout=timeout)
        except queue.Empty:
            raise OffloadError("no free channel to the scoring process") from None
        why = ""
        try:
            channel.sock.settimeout(timeout)
            send(channel.sock, *frames)
            answer = channel.read()
        except TimeoutError:
            why = f"no answer in {timeout:g} s"
        except (OSError, EOFError, ValueError) as e:
            why = f"{type(e).__name__}: {e}"
        else:
            if answer != IDLE:
                self._give_back(channel)
                try:
                    return json.loads(answer)
                except ValueError as e:
                    raise OffloadError(f"an answer that isn't JSON ({e})") from None
        channel.sock.close()
        if self.dead:  # it was ended meanwhile (by another thread, or it ended, idle)
            raise OffloadError("the scoring process has ended")
        self.fail(why)  # IDLE: the child ended for want of work ("" says so)
        raise OffloadError(why or "the scoring process ended, idle")

    def _give_back(self, channel: Frames) -> None:
        with self._state:
            if not self.dead:
                self._free.put(channel)
                return
        channel.sock.close()

    def _close_free(self) -> None:
        with self._state:
            while True:
                try:
                    self._free.get_nowait().sock.close()
                except queue.Empty:
                    return

    def fail(self, why: str) -> None:
        """The child is ended (it may be stuck) and the threads reading its channels wake."""
        with self._state:
            if self.dead:
                return
            self.dead = True
        if why:
            log.warn("spam: the scoring process failed ({why}); it is started again", why=why)
        else:
            log.info("spam: the scoring process ended, idle")
        self.stop(kill=bool(why))
        self._ended(self)

    def stop(self, kill: bool) -> None:
        """Readers wake with the end of file, and so does the child (``kill``: or now)."""
        for channel in self.channels:
            with contextlib.suppress(OSError):
                channel.sock.shutdown(socket.SHUT_RDWR)
        self._close_free()
        if kill:
            with contextlib.suppress(OSError):
                self.process.kill()
        else:  # it ends when it reads the end of its channels; one stuck in a message is ended
            threading.Thread(target=self._kill_if_stuck, daemon=True).start()

    def _kill_if_stuck(self) -> None:
        try:
            self.process.wait(timeout=STUCK_AFTER)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.process.kill()

    def _watch(self) -> None:
        """The process ended: on its own (for want of work, status 0; or it died), which
        ``fail`` then records, or after ``fail``/``stop``; either way its free channels go."""
        status = self.process.wait()
        self.fail("" if status == 0 else f"it ended with status {status}")
        self._close_free()


class ScoringProcess:
    """The server's side: one child, asked by the filters' threads (see ``_Child``)."""

    def __init__(
        self,
        store: TokenStore,
        authserv_id: str,
        timeout: float = 10.0,
        start_rate: float = START_RATE,
        max_idle: float = MAX_IDLE,
        channels: int = CHANNELS,
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
        self.channels = max(1, channels)
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
        answer = child.ask((json.dumps(header).encode(), head, body), self.timeout)
        if not isinstance(answer, dict) or "error" in answer:  # this message only
            raise OffloadError(str(answer.get("error") if isinstance(answer, dict) else answer))
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
        pairs = [socket.socketpair() for _ in range(self.channels)]
        ours = [pair[0] for pair in pairs]
        theirs = [pair[1] for pair in pairs]
        fds = [sock.fileno() for sock in theirs]
        process = None
        try:
            process = subprocess.Popen(
                [*self.argv, *(f"--fd={fd}" for fd in fds)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
            )
            for sock in theirs:
                sock.close()
            ours[0].settimeout(60.0)  # the child's imports, on a busy machine
            channels = [Frames(sock) for sock in ours]
            if channels[0].read() != b"ready":
                raise ValueError("the scoring process didn't say it was ready")
        except (OSError, EOFError, ValueError) as e:
            log.warn("spam: the scoring process didn't start ({error})", error=e)
            for sock in ours + theirs:
                sock.close()
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
                child = self._child = _Child(process, channels, self._ended)
        if child is None:
            for sock in ours:
                sock.close()
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
            with child._state:
                child.dead = True
            child.stop(kill=False)  # it reads the end of its channels and ends
