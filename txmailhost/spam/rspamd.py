"""rspamd asked over its HTTP protocol: ``POST /checkv2`` on its normal worker (port 11333).

For an operator who runs rspamd already (its rules, its fuzzy hashes, its neural network) and
wants its word at the end of data. The request is rspamd's protocol (rspamd.com/doc/developers/
protocol.html): the message as the body, the envelope in header fields — ``From`` (the
reverse path; left out for ``<>``), one ``Rcpt`` per recipient, ``IP``, ``Helo``,
``Hostname`` (the client's verified reverse DNS name, ``unknown`` when it has none, left
out when it wasn't looked up), ``User`` (the AUTH name) and ``Queue-Id``
— and the reply is JSON: ``score``, ``required_score``, ``action`` ("no action", "greylist",
"add header", "rewrite subject", "soft reject", "reject") and ``symbols`` (name -> score).

Two ways to use it:

- **one more score** (``[filters.settings.spam] rspamd = "http://127.0.0.1:11333"``): the
  ``spam`` filter adds rspamd's score times ``rspamd_weight`` to its own total as the rule
  ``RSPAMD`` (``scoring.py``), so rspamd, our rules and the user's Bayes make one verdict;
- **the whole verdict** (``[filters] chain = [..., "rspamd"]``, ``RspamdFilter`` below):
  rspamd's action decides: ``reject`` -> ``550 5.7.1`` (or Junk with ``reject = false``),
  ``soft reject`` -> ``451 4.7.1``, ``add header``/``rewrite subject`` -> Junk, anything else
  accepted; ``X-Spam-Rspamd:`` records what it said either way.

The cost per message is bounded: at most ``max_size_kib`` octets are read (a larger message
is not sent: rspamd's proxy skips large mail the same way, and a cut-off MIME message would
be judged on garbage), every step of the exchange gets what remains of ``timeout``, the
reply is read up to 1 MiB, and after a failure rspamd is not asked again for
``retry_after`` seconds (a black-holed rspamd would otherwise cost every message the whole
timeout). rspamd down, slow or answering nonsense (a score of ``NaN`` too) fails open: the message goes on without
its verdict, with ``X-Spam-Rspamd: unavailable (...)``, a warning in the log and a count in
``txmailhost_filter_engine_failures``.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from twisted.logger import Logger

from txmailhost.filters.base import MessageFilter
from txmailhost.filters.interfaces import Client, Transaction, Verdict
from txmailhost.ops import metrics
from txmailhost.spam.clamd import Deadline

log = Logger()

_CHUNK = 64 * 1024
_REPLY_CAP = 1024 * 1024
_SPOOL_IN_MEMORY = 1024 * 1024
JUNK_ACTIONS = frozenset(["add header", "rewrite subject"])
_ACTIONS = frozenset(["no action", "greylist", "soft reject", "reject"]) | JUNK_ACTIONS


@dataclass(frozen=True)
class RspamdReply:
    """What rspamd said of one message (the parts of ``/checkv2``'s JSON we use)."""

    score: float
    required: float  # rspamd's ``required_score``: its reject threshold
    action: str
    symbols: tuple[tuple[str, float], ...]  # by weight, heaviest first
    message: str = ""  # ``messages.smtp_message``: the reply text rspamd suggests

    def summary(self, limit: int = 12) -> str:
        """``action="add header" score=7.5 required=15.0 symbols=A(3.0),B(2.5)``: for the
        header field and the report; the symbols heaviest first, at most ``limit``."""
        shown = ",".join(f"{name}({score:g})" for name, score in self.symbols[:limit])
        more = len(self.symbols) - limit
        if more > 0:
            shown += f",+{more}"
        return (
            f'action="{self.action}" score={self.score:.1f} required={self.required:.1f}'
            f" symbols={shown or 'none'}"
        )


class RspamdError(Exception):
    """rspamd gave no usable answer; ``reason`` is the metrics label."""

    def __init__(self, text: str, reason: str = "error") -> None:
        super().__init__(text)
        self.reason = reason


def parse_reply(body: bytes) -> RspamdReply:
    """``/checkv2``'s JSON, checked: a reply that isn't one raises ``RspamdError``."""
    try:
        data = json.loads(body)
        score = float(data["score"])
        required = float(data["required_score"])
        action = str(data["action"])
        symbols = data.get("symbols") or {}
        weighted = [
            (str(name), float((symbol or {}).get("score", 0.0))) for name, symbol in symbols.items()
        ]
        message = str((data.get("messages") or {}).get("smtp_message", ""))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RspamdError(f"not a /checkv2 reply ({e!r}): {body[:200]!r}") from None
    if action not in _ACTIONS:
        raise RspamdError(f"unknown action {action!r}")
    # JSON as Python reads it has NaN and Infinity: a NaN score made the spam filter's total
    # NaN, which is never at or above a threshold (spam by our own rules went to INBOX)
    if not all(math.isfinite(n) for n in (score, required, *(w for _name, w in weighted))):
        raise RspamdError(f"a score that is no number: {body[:200]!r}")
    weighted.sort(key=lambda item: (-abs(item[1]), item[0]))
    return RspamdReply(score, required, action, tuple(weighted), message[:200])


def spool(message: BinaryIO, limit: int) -> tuple[BinaryIO, int, bool]:
    """(a copy of up to ``limit`` octets of ``message``, its size, whether that is all of
    it): rspamd needs the length first. In memory up to 1 MiB, on disk beyond."""
    copy = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - returned
    size = 0
    while size <= limit:
        chunk = message.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        copy.write(chunk)
        size += len(chunk)
    copy.seek(0)
    return copy, size, size <= limit  # type: ignore[return-value]


def replayed(copy: BinaryIO, rest: BinaryIO) -> BinaryIO:
    """A stream of ``copy`` from its start, then what is left of ``rest``: the message again,
    for a reader after ``spool`` (the spam score's sample), without reading it twice.
    Closing it closes ``copy``, not ``rest``."""
    copy.seek(0)
    return io.BufferedReader(_Replay(copy, rest))  # type: ignore[return-value]


class _Replay(io.RawIOBase):
    def __init__(self, copy: BinaryIO, rest: BinaryIO) -> None:
        self._copy = copy
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._copy.read(len(buffer)) or self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Closes the copy; ``rest`` belongs to whoever gave it."""
        self._copy.close()
        super().close()


class RspamdClient:
    """rspamd's normal worker at ``url``, with the time and size budgets of one check."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:11333",
        timeout: float = 5.0,
        max_size_kib: int = 2048,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"rspamd url {url!r}: http://HOST:PORT expected")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 11333
        self.path = (parts.path.rstrip("/") or "") + "/checkv2"
        self.timeout = float(timeout)
        self.max_size = int(max_size_kib) * 1024
        self.retry_after = float(retry_after)
        self.clock = clock
        self.failures = 0
        self._quiet_until = 0.0  # after a failure: not asked before this (``clock`` time)

    def check(
        self, copy: BinaryIO, size: int, client: Client, transaction: Transaction
    ) -> RspamdReply:
        """rspamd's verdict on the spooled message ``copy`` of ``size`` octets (``spool``).
        Raises ``RspamdError``, after counting and logging the failure."""
        if self.clock() < self._quiet_until:
            raise self._failed(RspamdError("skipped after a recent failure", "backoff"), False)
        try:
            reply = self._ask(copy, size, self._envelope(client, transaction))
        except RspamdError as e:
            raise self._failed(e, True) from None
        return reply

    def _failed(self, error: RspamdError, fresh: bool) -> RspamdError:
        self.failures += 1
        metrics.engine_failure("rspamd", error.reason)
        if fresh:
            self._quiet_until = self.clock() + self.retry_after
            log.warn(
                "rspamd at {url}: {error}; mail goes on without its verdict, and it is not"
                " asked again for {retry_after:g}s ({failures} failures so far)",
                url=self.url,
                error=str(error),
                retry_after=self.retry_after,
                failures=self.failures,
            )
        return error

    @staticmethod
    def _envelope(client: Client, transaction: Transaction) -> list[tuple[str, str]]:
        fields = [("IP", client.address)]
        if transaction.sender:
            fields.append(("From", transaction.sender))
        fields += [("Rcpt", recipient) for recipient in transaction.recipients]
        if client.helo:
            fields.append(("Helo", client.helo))
        if client.reverse_name is not None:  # "unknown": looked up, none (Postfix's milter)
            fields.append(("Hostname", client.reverse_name or "unknown"))
        if client.authenticated_as:
            fields.append(("User", client.authenticated_as))
        if transaction.queue_id:
            fields.append(("Queue-Id", transaction.queue_id))
        # a value with a line break (or another control character) would end the field or
        # confuse rspamd's parser: none of ours may carry one
        return [(name, value) for name, value in fields if value.isprintable()]

    def _ask(self, copy: BinaryIO, size: int, envelope: list[tuple[str, str]]) -> RspamdReply:
        deadline = Deadline(self.timeout)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.connect()
            # every send and receive, http.client's reading of the reply's lines included,
            # gets what is left of the budget: a socket timeout alone is per operation, and
            # an rspamd trickling its reply held the thread for as long as it liked
            connection.sock = _DeadlineSocket(connection.sock, deadline)
            connection.putrequest("POST", self.path, skip_accept_encoding=True)
            for name, value in [*envelope, ("Content-Length", str(size)),
                                ("Connection", "close")]:  # fmt: skip
                # UTF-8, as rspamd reads them: http.client's own Latin-1 failed on an
                # SMTPUTF8 recipient (日本@example.jp), and the message got 451 for ever
                connection.putheader(name, value.encode("utf-8"))
            connection.endheaders()
            copy.seek(0)
            while chunk := copy.read(_CHUNK):
                connection.sock.sendall(chunk)
            response = connection.getresponse()
            body = response.read(_REPLY_CAP + 1)
        except TimeoutError as e:
            raise RspamdError(f"no answer within {self.timeout:g}s ({e})", "timeout") from None
        except (OSError, http.client.HTTPException) as e:
            raise RspamdError(f"{type(e).__name__}: {e}", "down") from None
        finally:
            connection.close()
        if response.status != 200:
            raise RspamdError(f"HTTP {response.status} {response.reason}: {body[:200]!r}")
        if len(body) > _REPLY_CAP:
            raise RspamdError("reply larger than 1 MiB")
        return parse_reply(body)


class _DeadlineSocket(socket.socket):
    """A connected socket whose every send and receive gets what is left of ``deadline``
    (``TimeoutError`` once it is spent), for code that does its own reads (http.client)."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.deadline = deadline

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.deadline.arm(self)
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.deadline.arm(self)
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.deadline.arm(self)
        super().sendall(data, flags)


class RspamdFilter(MessageFilter):
    """``[filters] chain = [..., "rspamd"]``: rspamd's action is the verdict (module
    docstring). For rspamd as one score among ours, see ``[filters.settings.spam] rspamd``."""

    name = "rspamd"
    blocking = True  # a socket to rspamd: the filters' thread pool

    def __init__(
        self,
        *,
        host: Any = None,
        url: str = "http://127.0.0.1:11333",
        timeout: float = 5.0,
        max_size_kib: int = 2048,
        retry_after: float = 30.0,
        reject: bool = True,
        listeners: list[str] | tuple[str, ...] = ("smtp",),
    ) -> None:
        self.client = RspamdClient(url, timeout, max_size_kib, retry_after)
        self.reject = bool(reject)
        self.listeners = frozenset(listeners)

    def skips(self, client: Client) -> bool:
        """Our users' own mail and other listeners are not sent to rspamd."""
        return bool(client.authenticated_as) or client.listener not in self.listeners

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Verdict:
        if client.authenticated_as or client.listener not in self.listeners:
            return Verdict.accept()
        copy, size, whole = spool(message, self.client.max_size)
        with copy:
            if not whole:
                note = f"skipped (larger than {self.client.max_size // 1024} KiB)"
                return Verdict.accept(headers=(("X-Spam-Rspamd", note),))
            try:
                reply = self.client.check(copy, size, client, transaction)
            except RspamdError as e:
                return Verdict.accept(headers=(("X-Spam-Rspamd", f"unavailable ({e})"),))
        fields = (("X-Spam-Rspamd", reply.summary()),)
        reason = reply.message or f"rspamd score {reply.score:.1f}"
        if reply.action == "reject" and self.reject:
            return Verdict.reject(f"message refused as spam ({reason})")
        if reply.action == "soft reject":
            return Verdict.tempfail(f"try again later ({reason})")
        if reply.action in JUNK_ACTIONS or reply.action == "reject":
            return Verdict.junk(reason, headers=fields)
        return Verdict.accept(headers=fields)
