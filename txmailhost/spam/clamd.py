"""The ``clamd`` filter: each message streamed to ClamAV's daemon before it is accepted.

clamd's ``INSTREAM`` command (clamd(8)) takes the data as chunks, each a 4-octet big-endian
length and that many octets, ended by a zero length; it answers ``stream: OK``,
``stream: NAME FOUND`` or ``... ERROR``, terminated by a NUL with the ``z`` prefix. The message
goes over in ``CHUNK``-octet pieces read from the filter's stream, so a 50 MiB message costs
one chunk of memory (DESIGN invariant 2); at most ``max_size`` octets are sent (clamd refuses
more than its ``StreamMaxLength``, 25 MiB by default; set them alike).

- infected: refused (``554 5.7.1 virus found: NAME``), before the ``250``, so nobody gets a
  bounce carrying the virus back;
- clamd unreachable, slow past ``timeout`` (for the whole exchange) or answering an error:
  ``on_unavailable`` — ``"tempfail"`` (451 4.7.1: the client keeps the message and
  retries; the default, as a scanner outage must not let viruses through) or ``"tag"``
  (accepted with ``X-Virus-Scanned: unavailable``); logged either way;
- clean: accepted with ``X-Virus-Scanned: clamd on HOSTNAME``.

``socket`` is a UNIX socket path (Debian's clamd: ``/run/clamav/clamd.ctl``) or
``tcp:HOST:PORT``. All listeners are scanned by default, submission too: a user's infected
machine should not send through us either.
"""

from __future__ import annotations

import socket as sockets
import struct
import time
from typing import Any, BinaryIO

from twisted.logger import Logger

from txmailhost.asciinum import is_number
from txmailhost.filters.base import MessageFilter, fields_named
from txmailhost.filters.interfaces import Client, Transaction, Verdict
from txmailhost.spam.sample import read_capped

log = Logger()

CHUNK = 64 * 1024
_REPLY_CAP = 4096


class ClamdError(Exception):
    """clamd could not give an answer (unreachable, timed out, or said ERROR)."""


def parse_endpoint(description: str) -> tuple[int, Any]:
    """(address family, address) for ``/path`` or ``unix:/path`` or ``tcp:HOST:PORT``."""
    if description.startswith("tcp:"):
        host, _, port = description[4:].rpartition(":")
        if not host or not is_number(port):
            raise ValueError(f"clamd socket {description!r}: expected tcp:HOST:PORT")
        family = sockets.AF_INET6 if ":" in host else sockets.AF_INET
        return family, (host.strip("[]"), int(port))
    path = description[5:] if description.startswith("unix:") else description
    if not path.startswith("/"):
        raise ValueError(f"clamd socket {description!r}: expected an absolute path or tcp:")
    return sockets.AF_UNIX, path


class Deadline:
    """One exchange's whole ``timeout``, shared by its steps: each socket operation gets what
    is left of it (``arm``). A timeout per operation alone let an engine that trickles its
    reply (an octet every few seconds), or reads the message that slowly, hold a thread of
    the filters' pool for hours after the chain had given up on it; enough of those and no
    message could be filtered at all."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def arm(self, conn: sockets.socket) -> None:
        """Give ``conn``'s next operation what is left; ``TimeoutError`` when nothing is."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer within {self.seconds:g}s")
        conn.settimeout(left)


def instream(endpoint: tuple[int, Any], stream: BinaryIO, timeout: float, max_size: int) -> str:
    """Scan ``stream`` with clamd's INSTREAM; the reply without its ``stream: `` prefix
    (``OK`` or ``NAME FOUND``). ``timeout`` is for the whole exchange. Raises
    ``ClamdError``."""
    family, address = endpoint
    deadline = Deadline(timeout)
    try:
        with sockets.socket(family, sockets.SOCK_STREAM) as conn:
            deadline.arm(conn)
            conn.connect(address)
            conn.sendall(b"zINSTREAM\0")
            sent = 0
            while sent < max_size:
                chunk = stream.read(min(CHUNK, max_size - sent))
                if not chunk:
                    break
                deadline.arm(conn)
                conn.sendall(struct.pack(">I", len(chunk)) + chunk)
                sent += len(chunk)
            deadline.arm(conn)
            conn.sendall(struct.pack(">I", 0))
            reply = b""
            while not reply.endswith(b"\0") and len(reply) < _REPLY_CAP:
                deadline.arm(conn)
                data = conn.recv(_REPLY_CAP)
                if not data:
                    break
                reply += data
    except OSError as e:
        raise ClamdError(f"clamd at {address}: {e}") from None
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    if text.startswith("stream:"):
        text = text[len("stream:") :].strip()
    if text == "OK" or text.endswith(" FOUND"):
        return text
    raise ClamdError(f"clamd at {address} answered {text[:200]!r}")


class ClamdFilter(MessageFilter):
    """``[filters] chain = [..., "clamd"]`` (see the module docstring)."""

    name = "clamd"
    blocking = True  # a socket to clamd: the filters' thread pool

    def __init__(
        self,
        *,
        host: Any = None,
        socket: str = "/run/clamav/clamd.ctl",
        timeout: float = 20.0,
        max_size_mib: float = 25.0,
        on_unavailable: str = "tempfail",
        listeners: list[str] | tuple[str, ...] = ("smtp", "submission", "submissions"),
    ) -> None:
        if on_unavailable not in ("tempfail", "tag"):
            raise ValueError('on_unavailable must be "tempfail" or "tag"')
        self.endpoint = parse_endpoint(socket)
        self.timeout = float(timeout)
        self.max_size = int(max_size_mib * 1024 * 1024)
        self.on_unavailable = on_unavailable
        self.listeners = frozenset(listeners)
        self.hostname = host.hostname if host is not None else "localhost"

    def skips(self, client: Client) -> bool:
        """Only the configured listeners' mail is scanned."""
        return client.listener not in self.listeners

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Verdict:
        if client.listener not in self.listeners:
            return Verdict.accept()
        # The sender's own X-Virus-Scanned goes, whatever clamd says: below ours, a reader
        # looking past the topmost field would take "clamd on mx" written by a sender (say,
        # under our "unavailable") as our scan.
        forged = fields_named(read_capped(message, 0)[0], ("X-Virus-Scanned",))
        message.seek(0)
        try:
            result = instream(self.endpoint, message, self.timeout, self.max_size)
        except ClamdError as e:
            log.error(
                "clamd: {error}; message {queue_id}: {action}",
                error=str(e),
                queue_id=transaction.queue_id,
                action=self.on_unavailable,
            )
            if self.on_unavailable == "tag":
                return Verdict.accept(headers=(("X-Virus-Scanned", "unavailable"),), remove=forged)
            return Verdict.tempfail("virus scanner unavailable, try again later")
        if result.endswith(" FOUND"):
            signature = result[: -len(" FOUND")]
            log.info(
                "clamd: {queue_id} from {client} infected: {signature}",
                queue_id=transaction.queue_id,
                client=client.address,
                signature=signature,
            )
            return Verdict.reject(f"virus found: {signature}", code=554)
        return Verdict.accept(
            headers=(("X-Virus-Scanned", f"clamd on {self.hostname}"),), remove=forged
        )
