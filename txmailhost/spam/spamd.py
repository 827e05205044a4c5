"""The ``spamd`` filter: SpamAssassin's daemon asked for its verdict over the SPAMC protocol.

For an operator who runs SpamAssassin already (its rules, its network tests, its Bayes) and
wants its word at the end of data. The request is SPAMC/1.5's ``SYMBOLS`` (spamd(1p),
``spamc`` source): a ``Content-length``, optionally the ``User`` whose preferences to use, the
message; the reply's ``Spam: True ; 15.3 / 5.0`` line and the body's rule names make the
verdict. The message goes to a spooled temporary file first (in memory up to 1 MiB, on disk
beyond) because spamd wants its length before the bytes, and at most ``max_size_kib`` octets
are sent (spamc's own default is 500 KiB: larger mail is rarely spam and costly to scan).

- spamd says spam: ``Junk`` (with ``X-Spamd-Status: Yes, score=S required=R tests=...``;
  an ``X-Spamd-Status`` the sender wrote is removed, whatever spamd said);
- ``reject_score`` (0 = off) and spamd's score at or above it: ``550 5.7.1``;
- spamd unreachable, slow past ``timeout`` (for the whole exchange) or answering an error
  or nonsense: the message is accepted untagged by spamd, and the failure logged and
  counted (``failures``) — an outside engine that is down never holds up mail
  (``[filters] on_error`` still applies to a filter that overruns the chain's budget).

Like the ``spam`` filter it looks at mail from outside only (``listeners``, no AUTH).
"""

from __future__ import annotations

import io
import re
import socket as sockets
import tempfile
from typing import Any, BinaryIO

from twisted.logger import Logger

from txmailhost.filters.base import MessageFilter, fields_named
from txmailhost.filters.interfaces import ACCEPT, Client, Transaction, Verdict
from txmailhost.spam.clamd import Deadline, parse_endpoint
from txmailhost.spam.rspamd import replayed

log = Logger()

_CHUNK = 64 * 1024
_REPLY_CAP = 64 * 1024
_SPAM_LINE = re.compile(
    rb"^Spam:\s*(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)", re.I | re.M
)


class SpamdError(Exception):
    """spamd gave no usable answer."""


def check(
    endpoint: tuple[int, Any],
    message: BinaryIO,
    timeout: float,
    max_size: int,
    user: str | None = None,
) -> tuple[bool, float, float, list[str]]:
    """(is spam, score, required, rule names) from spamd for ``message``."""
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as copy:
        size = 0
        while size < max_size:
            chunk = message.read(min(_CHUNK, max_size - size))
            if not chunk:
                break
            copy.write(chunk)
            size += len(chunk)
        copy.seek(0)
        head = f"SYMBOLS SPAMC/1.5\r\nContent-length: {size}\r\n"
        if user and user.isprintable():  # never a line break of its own into the request
            head += f"User: {user}\r\n"
        family, address = endpoint
        deadline = Deadline(timeout)
        try:
            with sockets.socket(family, sockets.SOCK_STREAM) as conn:
                deadline.arm(conn)
                conn.connect(address)
                # UTF-8: an SMTPUTF8 recipient's name (an ASCII-only request refused its mail
                # with a 451 at every attempt, never delivered)
                conn.sendall(head.encode("utf-8") + b"\r\n")
                while chunk := copy.read(_CHUNK):
                    deadline.arm(conn)
                    conn.sendall(chunk)
                conn.shutdown(sockets.SHUT_WR)
                reply = b""
                while len(reply) < _REPLY_CAP:
                    deadline.arm(conn)
                    data = conn.recv(_REPLY_CAP)
                    if not data:
                        break
                    reply += data
        except OSError as e:
            raise SpamdError(f"spamd at {address}: {e}") from None
    status, _, rest = reply.partition(b"\r\n")
    if not status.startswith(b"SPAMD/") or b" 0 " not in status:
        raise SpamdError(f"spamd at {address} answered {status[:200]!r}")
    found = _SPAM_LINE.search(rest)
    if found is None:
        raise SpamdError(f"spamd at {address}: no Spam: line in {rest[:200]!r}")
    body = rest.partition(b"\r\n\r\n")[2].decode("ascii", "replace")
    names = [name.strip() for name in body.split(",") if name.strip()]
    is_spam = found.group(1).lower() in (b"true", b"yes")
    try:  # "1.2.3" matches the pattern but is no number
        score, required = float(found.group(2)), float(found.group(3))
    except ValueError:
        raise SpamdError(f"spamd at {address}: no score in {found.group(0)[:200]!r}") from None
    return is_spam, score, required, names


class SpamdFilter(MessageFilter):
    """``[filters] chain = [..., "spamd"]`` (see the module docstring)."""

    name = "spamd"
    blocking = True  # a socket to spamd: the filters' thread pool

    def __init__(
        self,
        *,
        host: Any = None,
        socket: str = "tcp:127.0.0.1:783",
        timeout: float = 15.0,
        max_size_kib: int = 500,
        reject_score: float = 0.0,
        per_user: bool = False,
        listeners: list[str] | tuple[str, ...] = ("smtp",),
    ) -> None:
        self.endpoint = parse_endpoint(socket)
        self.timeout = float(timeout)
        self.max_size = int(max_size_kib) * 1024
        self.reject_score = float(reject_score)
        self.per_user = per_user
        self.listeners = frozenset(listeners)
        self.failures = 0  # spamd unreachable, slow or wrong: counted and logged

    def skips(self, client: Client) -> bool:
        """Our users' own mail and other listeners are not sent to spamd."""
        return bool(client.authenticated_as) or client.listener not in self.listeners

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Verdict:
        if client.authenticated_as or client.listener not in self.listeners:
            return ACCEPT
        recipients = transaction.recipients
        user = recipients[0].lower() if self.per_user and len(recipients) == 1 else None
        start = _start_of(message, self.max_size)
        forged = fields_named(start, ("X-Spamd-Status",))  # the sender's: never as ours
        message = replayed(io.BytesIO(start), message)
        try:
            is_spam, score, required, names = check(
                self.endpoint, message, self.timeout, self.max_size, user
            )
        except SpamdError as e:
            self.failures += 1
            log.error(
                "spamd: {error}; message {queue_id} accepted without its verdict"
                " ({failures} failures so far)",
                error=str(e),
                queue_id=transaction.queue_id,
                failures=self.failures,
            )
            return Verdict.accept(remove=forged)
        tests = ",".join(names) or "none"
        status = f"{'Yes' if is_spam else 'No'}, score={score:.1f} required={required:.1f}"
        fields = (("X-Spamd-Status", f"{status} tests={tests}"),)
        if self.reject_score and score >= self.reject_score:
            return Verdict.reject(f"message refused as spam (spamd score {score:.1f})")
        if is_spam:
            return Verdict.junk(f"spamd score {score:.1f}", headers=fields, remove=forged)
        return Verdict.accept(headers=fields, remove=forged)


def _start_of(message: BinaryIO, limit: int) -> bytes:
    """The message's start, through its header section (at most ``limit`` octets): where
    the sender's own ``X-Spamd-Status`` would be."""
    start = b""
    while b"\r\n\r\n" not in start and len(start) < limit:
        chunk = message.read(min(_CHUNK, limit - len(start)))
        if not chunk:
            break
        start += chunk
    return start
