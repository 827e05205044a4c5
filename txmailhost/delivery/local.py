"""Local mail: acknowledged once durable in the spool, linked into its mailboxes just after.

DESIGN's path of a message makes the queue the one durable hand-off, and this is that hand-off
for mail whose every recipient is local. The message is written into one of the spool's spare
files (``spares.py``, ``DATA/queue/spare/``), whose name was made durable when the file was
made. Its envelope (arrival, size, CRC-32, the recipients and what was asked for each: a
plus-address's folder, Junk; and the sender's ESMTP options, which a Sieve redirect passes
on) is an extended attribute of
that same file, set before the one fsync that precedes the ``250``: bytes and
the record that points to them are durable together (DESIGN invariant 1). Delivering into the
Maildir before the ``250``, as before, cost a second device flush per message (the file, then
the Maildir directory); Postfix also answers after one flush, of its queue file.

A thread of its own (``LocalDelivery``) then asks the delivery agent (``agent.py``) which
mailbox each copy goes into, and links each file into its mailboxes in batches:
every link, one fsync per Maildir directory, one index transaction per mailbox. Readers of a
mailbox with deliveries announced but not finished wait for them (``store/pending.py``), so a
client that sends and then looks sees its message.

After a crash, ``recover_sync`` (run at start, before anything listens) reads every file in the
directory. One whose record matches its size and CRC-32 was acknowledged, or could have been,
and is delivered again: its Maildir names derive from the spool file's name, so copies linked before
the crash are found rather than doubled. A file without a record, or with one that doesn't
match (the crash came before its fsync), was never acknowledged, and is swept with the stock.

A file system without extended attributes (``records_supported``) keeps the old path:
``submission.py`` delivers before the ``250``. Every call into the store goes through
``mailboxes.py``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txmailhost import xtext
from txmailhost._safeio import log_not_stored
from txmailhost.delivery import mailboxes
from txmailhost.delivery.agent import DeliveryAgent, LocalRecipient
from txmailhost.delivery.interfaces import (
    BODY_7BIT,
    BODY_8BITMIME,
    BODY_BINARYMIME,
    MessageOptions,
    RecipientOptions,
)
from txmailhost.ops import metrics
from txmailhost.ops.eventlog import PRERENDERED

log = Logger()

XATTR = "user.txmailhost"
MAX_RECORD = 3072  # fits one extended-attribute block; larger envelopes take the old path

_PLAIN = MessageOptions()
_NO_WISHES = RecipientOptions()
# Version 2's one-letter codes (``SpooledLocal``)
_BODIES = {BODY_8BITMIME: "8", BODY_BINARYMIME: "B"}
_RETS = {"FULL": "F", "HDRS": "H"}
_NOTIFY = {"SUCCESS": "S", "FAILURE": "F", "DELAY": "D", "NEVER": "N"}


def _options_line(options: MessageOptions) -> str:
    codes = _BODIES.get(options.body, "") + _RETS.get(options.ret, "")
    codes += ("U" if options.smtputf8 else "") + ("T" if options.requiretls else "")
    return f"{codes}\t{xtext.encode(options.envid)}" if options.envid else codes


def _parse_options(line: str) -> MessageOptions:
    codes, _, envid = line.partition("\t")
    known = set("8BFHUT")
    if not set(codes) <= known or len(set(codes)) != len(codes):
        raise ValueError(f"unknown message options {codes!r}")
    body = BODY_BINARYMIME if "B" in codes else BODY_8BITMIME if "8" in codes else BODY_7BIT
    ret = "FULL" if "F" in codes else "HDRS" if "H" in codes else ""
    return MessageOptions(
        body, "U" in codes, ret, xtext.decode(envid) if envid else "", "T" in codes
    )


def _recipient_flags(user: str, junk: bool, dsn: RecipientOptions | None) -> tuple[str, str]:
    """A version 2 recipient line's flags and ORCPT field."""
    flags = "j" if junk else ""
    if dsn is None:
        return flags, ""
    flags += "".join(_NOTIFY[n] for n in dsn.notify)
    if dsn.orcpt == f"rfc822;{user}":
        return flags + "o", ""
    kind, _, address = dsn.orcpt.partition(";")
    return flags, f"{kind};{xtext.encode(address)}" if dsn.orcpt else ""


def _parse_recipient(user: str, flags: str, orcpt: str) -> tuple[bool, RecipientOptions | None]:
    letters = {code: word for word, code in _NOTIFY.items()}
    if not set(flags) <= set(letters) | {"j", "o"}:
        raise ValueError(f"unknown recipient flags {flags!r}")
    notify = tuple(letters[c] for c in flags if c in letters)
    if "o" in flags:
        orcpt = f"rfc822;{user}"
    elif orcpt:
        kind, semicolon, address = orcpt.partition(";")
        if not semicolon:
            raise ValueError(f"not an ORCPT: {orcpt!r}")
        orcpt = f"{kind};{xtext.decode(address)}"
    wishes = RecipientOptions(notify, orcpt)
    return "j" in flags, wishes if wishes != _NO_WISHES else None


@dataclass(frozen=True)
class SpooledLocal:
    """One acknowledged local message in the spool.

    Its record is terse on purpose: up to about 60 octets an ext4 inode holds it inline, so
    the one fsync writes no extra block (one recipient with a 25-character address fits).
    Lines: version, CRC-32, size, arrival (hex), then one ``user[TAB folder[TAB flags]]`` per
    recipient: the folder its address asked for (INBOX when left out), ``j`` in the flags when
    a filter sent the copy to Junk. These are wishes; the delivery agent picks the mailbox
    (``agent.py``). The queue id is not in it: the copies are named after the spool file
    (``stem``), unique as long as it exists, and the message's Received: field names the id.

    Version 2 adds what the sender asked in MAIL and RCPT (``MessageOptions``, and
    ``RecipientOptions`` by user), which a user's Sieve ``redirect`` passes on: a REQUIRETLS
    message must leave with REQUIRETLS (RFC 8689 6), an SMTPUTF8 one with SMTPUTF8 (RFC 6531
    3.2). It is written only for a message that has any; one without is the version 1 record,
    octet for octet, and version 1 records (an older server's spool) are read as ever. After
    the arrival comes one line of message options: ``8`` BODY=8BITMIME, ``B`` BINARYMIME,
    ``U`` SMTPUTF8, ``T`` REQUIRETLS, ``F``/``H`` RET=FULL/HDRS, then TAB and the ENVID in
    xtext if there is one (often the line is empty). Each recipient line may then carry more
    flags: ``S``, ``F``, ``D``, ``N`` its NOTIFY (SUCCESS, FAILURE, DELAY, NEVER), ``o`` for an
    ORCPT of ``rfc822;`` and the user's own address (what a relaying Postfix sends), and after
    another TAB any other ORCPT, its address in xtext. An empty folder is INBOX. (A server
    older than version 2 would sweep such a file at start as unacknowledged: the spool must
    be empty of local mail before a downgrade.)
    """

    path: str
    arrival: int  # Unix time: the copies' INTERNALDATE
    size: int
    crc: int
    targets: tuple[tuple[str, str], ...]  # (user, folder asked for), no duplicates
    queue_id: str = ""  # for logs
    junk: frozenset[str] = frozenset()  # users whose copy a filter sent to Junk
    options: MessageOptions = MessageOptions()  # MAIL FROM's, for Sieve redirects
    dsn: Mapping[str, RecipientOptions] = field(default_factory=dict)  # user -> RCPT's

    def record(self) -> bytes:
        if self.options == _PLAIN and all(d == _NO_WISHES for d in self.dsn.values()):
            return self._record_v1()
        lines = [_options_line(self.options)]
        for user, folder in self.targets:
            flags, orcpt = _recipient_flags(user, user in self.junk, self.dsn.get(user))
            fields = [user, "" if folder == "INBOX" else folder, flags, orcpt]
            while fields[-1] == "":
                fields.pop()
            lines.append("\t".join(fields))
        rest = "\n".join(lines)
        return f"2\n{self.crc:x}\n{self.size:x}\n{self.arrival:x}\n{rest}".encode()

    def _record_v1(self) -> bytes:
        lines = []
        for user, folder in self.targets:
            if user in self.junk:
                lines.append(f"{user}\t{folder}\tj")
            else:
                lines.append(user if folder == "INBOX" else f"{user}\t{folder}")
        targets = "\n".join(lines)
        return f"1\n{self.crc:x}\n{self.size:x}\n{self.arrival:x}\n{targets}".encode()

    @property
    def recipients(self) -> list[LocalRecipient]:
        """What the delivery agent decides on."""
        return [
            LocalRecipient(u, m, u in self.junk, self.dsn.get(u, _NO_WISHES))
            for u, m in self.targets
        ]

    @classmethod
    def from_record(cls, path: str, raw: bytes) -> SpooledLocal:
        """Parse a record (version 1 or 2); ValueError if it isn't one of ours."""
        try:
            version, crc, size, arrival, *lines = raw.decode().split("\n")
            if version == "1":
                fields = [line.split("\t") for line in lines]
                if not fields or not all(f[0] and len(f) <= 3 for f in fields):
                    raise ValueError("no recipients")
                targets = tuple((f[0], f[1] if len(f) > 1 else "INBOX") for f in fields)
                junk = frozenset(f[0] for f in fields if f[2:] == ["j"])
                return cls(path, int(arrival, 16), int(size, 16), int(crc, 16), targets, junk=junk)
            if version != "2":
                raise ValueError(f"unknown record version {version!r}")
            if not lines:
                raise ValueError("no message options")
            options = _parse_options(lines[0])
            fields = [line.split("\t") for line in lines[1:]]
            if not fields or not all(f[0] and len(f) <= 4 for f in fields):
                raise ValueError("no recipients")
            targets = tuple((f[0], (f[1:2] or [""])[0] or "INBOX") for f in fields)
            junk = set()
            dsn = {}
            for f in fields:
                user, flags, orcpt = f[0], (f[2:3] or [""])[0], (f[3:4] or [""])[0]
                is_junk, wishes = _parse_recipient(user, flags, orcpt)
                if is_junk:
                    junk.add(user)
                if wishes:
                    dsn[user] = wishes
            return cls(
                path, int(arrival, 16), int(size, 16), int(crc, 16), targets,
                junk=frozenset(junk), options=options, dsn=dsn,
            )  # fmt: skip
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"not a spool record: {e}") from None

    @property
    def stem(self) -> str:
        """What the Maildir names of this message's copies start with."""
        return f"{self.arrival}.S{os.path.basename(self.path)}"

    def delivery(
        self, agent: DeliveryAgent
    ) -> tuple[str, str, float, list[tuple[str, str]], mailboxes.Flags]:
        """This message as one entry of a batch (``mailboxes.deliver_batch_sync``), its
        mailboxes (and the flags of its copies) chosen by ``agent`` now. Blocking (it may
        list the users' folders)."""
        targets, flags = agent.choose_sync(self.recipients, self.path, self.options)
        return self.path, self.stem, self.arrival, targets, flags

    def intact(self) -> bool:
        """Do the file's size and CRC-32 match the record (was the fsync complete)?"""
        crc = 0
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size != self.size:
                return False
            while chunk := f.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
        return crc == self.crc


def records_supported(directory: str) -> bool:
    """Can files in ``directory`` carry our extended attribute (ext4, XFS, btrfs, tmpfs >= 6.6)?"""
    probe = os.path.join(directory, ".xattr-probe")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.setxattr(probe, XATTR, b"{}")
        return os.getxattr(probe, XATTR) == b"{}"
    except (OSError, AttributeError):  # AttributeError: no os.setxattr on this platform
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _recorded(directory: str) -> Iterator[tuple[str, bytes]]:
    """(path, raw record) of each file in ``directory`` that carries a record, in name order;
    spares without one, and files gone meanwhile, are left out."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            yield path, os.getxattr(path, XATTR)
        except OSError:
            continue


def spooled_local(directory: str) -> list[SpooledLocal]:
    """The acknowledged local messages waiting in ``directory`` (for ``txmailhost queue list``)."""
    found = []
    for path, raw in _recorded(directory):
        with contextlib.suppress(ValueError):
            found.append(SpooledLocal.from_record(path, raw))
    return found


class LocalDelivery(Service):
    """Links acknowledged spool files into their mailboxes, in batches, in its own thread.

    ``retire`` takes a delivered file's spool name away (``SpareFiles.retire``). A batch that
    fails is retried message by message; a message that still fails stays in the spool (its
    record intact) and is tried again after ``retry_after`` seconds, and at every start.

    The thread is a plain ``threading.Thread`` on a condition, not a Twisted pool: handing a
    message over costs a deque append (and a notify when the thread sleeps), and nothing
    comes back to the reactor per message, only failures. That hand-over was 5% of the
    reactor's time at one connection through a ``ThreadPool``.
    """

    def __init__(
        self,
        store: Any,
        directory: str,
        reactor: Any,
        retire: Any,
        batch: int = 64,
        retry_after: float = 30.0,
        linger: float = 0.02,
        agent: DeliveryAgent | None = None,
    ) -> None:
        self._store = store
        self._agent = agent if agent is not None else DeliveryAgent(store)
        self.directory = directory
        self._reactor = reactor
        self._retire = retire
        self.batch = batch
        self.retry_after = retry_after
        self.linger = linger
        self._queue: collections.deque[SpooledLocal] = collections.deque()  # append/pop atomic
        self._wake = threading.Condition()
        self._asleep = False  # the thread waits for work (set under _wake)
        self._hurry = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._retries: list[Any] = []
        self._unfinished: list[SpooledLocal] = []  # what recover_sync could not deliver
        self._directory_of: dict[tuple[str, str], str] = {}

    # -- reactor thread -----------------------------------------------------------------------

    def accept(self, item: SpooledLocal) -> None:
        """Queue ``item`` (its file fsync'd with its record) for delivery."""
        mailboxes.announce(self._store, self._directories(item))
        self._queue.append(item)
        if self._asleep:
            with self._wake:
                self._wake.notify()

    def hurry(self) -> None:
        """A reader waits for pending mail (``store/pending.py``): deliver now. Any thread."""
        with self._wake:
            self._hurry = True
            self._wake.notify()

    def _directories(self, item: SpooledLocal) -> list[str]:
        found = []
        # The mailboxes the wishes point at: the agent decides later, in the thread.
        for target in self._agent.guess(item.recipients):
            directory = self._directory_of.get(target)
            if directory is None:
                if len(self._directory_of) > 10_000:
                    self._directory_of.clear()
                directory = mailboxes.mailbox_directory(self._store, *target)
                self._directory_of[target] = directory
            found.append(directory)
        return found

    def _defer(self, failed: list[SpooledLocal]) -> None:
        for item in failed:
            log.warn(
                "local delivery of {queue_id} deferred, retrying in {delay}s (it stays in {path})",
                queue_id=item.queue_id,
                delay=self.retry_after,
                path=item.path,
            )
            self._retries.append(self._reactor.callLater(self.retry_after, self.accept, item))
        self._retries = [call for call in self._retries if call.active()]

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="txmailhost-delivery", daemon=True)
        self._thread.start()
        mailboxes.on_reader_waiting(self._store, self.hurry)
        unfinished, self._unfinished = self._unfinished, []
        for item in unfinished:
            self.accept(item)

    @staticmethod
    def holds_record(path: str) -> bool:
        """Does the spool file at ``path`` carry a record (never sweep it)?"""
        try:
            os.getxattr(path, XATTR)
        except OSError:
            return False
        return True

    def stopService(self) -> Deferred[None]:
        """Finish what was acknowledged (up to 10 s; the rest is recovered at next start)."""
        super().stopService()
        for call in self._retries:
            if call.active():
                call.cancel()
        d: Deferred[None] = Deferred()
        thread = self._thread
        if thread is None or not thread.is_alive():
            d.callback(None)
            return d
        with self._wake:
            self._stopping = True
            self._wake.notify()

        def check() -> None:
            if not thread.is_alive() or self._reactor.seconds() > deadline:
                d.callback(None)
            else:
                self._reactor.callLater(0.01, check)

        deadline = self._reactor.seconds() + 10
        check()
        return d

    # -- the delivery thread ------------------------------------------------------------------

    def _run(self) -> None:
        finished = float("-inf")
        while True:
            with self._wake:
                self._asleep = True
                while not self._queue and not self._stopping:
                    self._wake.wait()
                self._asleep = False
                if not self._queue:
                    return  # stopping, and nothing left
                if time.monotonic() - finished < 5 * self.linger and not self._stopping:
                    # Mail keeps coming: gather what arrives in the next moment into one batch
                    # (one directory fsync and one index transaction for all of it, and no
                    # delivery competing with the reactor for the interpreter while a client
                    # waits for a reply). The first mail after a quiet spell goes at once.
                    self._wake.wait_for(
                        lambda: self._hurry or self._stopping or len(self._queue) >= self.batch,
                        self.linger,
                    )
                self._hurry = False
            while self._queue:
                batch = []
                while self._queue and len(batch) < self.batch:
                    batch.append(self._queue.popleft())
                failed = self._deliver_sync(batch)
                if failed:
                    self._reactor.callFromThread(self._defer, failed)
            finished = time.monotonic()

    def _deliver_sync(self, batch: list[SpooledLocal]) -> list[SpooledLocal]:
        """Deliver ``batch``; returns the messages that failed (they stay in the spool)."""
        failed: list[SpooledLocal] = []
        try:
            entries = [item.delivery(self._agent) for item in batch]
            mailboxes.deliver_batch_sync(self._store, entries)
            done = list(zip(batch, entries, strict=True))
        except Exception:
            done = []
            for item in batch:  # one by one, to find the one that fails (links are idempotent)
                try:
                    entry = item.delivery(self._agent)
                    mailboxes.deliver_batch_sync(self._store, [entry])
                    done.append((item, entry))
                except Exception as e:
                    log_not_stored(log, e, "local delivery of {queue_id}", queue_id=item.queue_id)
                    failed.append(item)
        for item, entry in done:
            # The mailboxes the agent chose (users' Sieve scripts included), not the ones
            # the record asked for: a discarded or refiled copy is logged as what it became.
            chosen = entry[3]
            metrics.message("delivered", item.size, len(chosen))
            names = stored_in(chosen)
            log.info(PRERENDERED, line=f"delivered {item.queue_id} to {names}",
                     queue_id=item.queue_id, mailboxes=names)  # fmt: skip
            self._release(item)
        mailboxes.settle(self._store, [d for item in batch for d in self._directories(item)])
        return failed

    def _release(self, item: SpooledLocal) -> None:
        """The copies are durable: drop the record (it names every local recipient, Bcc
        included) and the spool name."""
        with contextlib.suppress(OSError):
            os.removexattr(item.path, XATTR)
        self._retire(item.path)

    def recover_sync(self) -> tuple[int, int]:
        """Deliver what a crash left acknowledged in the spool; (delivered, discarded).

        Blocking; the service runs it at start before any listener opens.
        """
        delivered = discarded = 0
        # Files without a record (spares never used or never acknowledged) are swept later.
        for path, raw in _recorded(self.directory):
            name = os.path.basename(path)
            try:
                item = SpooledLocal.from_record(path, raw)
                if not item.intact():
                    raise ValueError("its size or CRC-32 does not match (written, not fsync'd)")
            except (OSError, ValueError) as e:
                log.info("spool: discarding unacknowledged {name}: {why}", name=name, why=e)
                discarded += 1
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            try:
                entry = item.delivery(self._agent)
                mailboxes.deliver_batch_sync(self._store, [entry], recovering=True)
            except Exception as e:
                log_not_stored(log, e, "spool: delivering {name} after a restart", name=name)
                self._unfinished.append(item)  # retried once the service runs
                continue
            with contextlib.suppress(OSError):
                os.removexattr(path, XATTR)
            with contextlib.suppress(OSError):
                os.unlink(path)
            delivered += 1
            log.info(
                "spool: delivered {queue_id} to {targets} after a restart",
                queue_id=item.queue_id or name,
                targets=stored_in(entry[3]),
            )
        return delivered, discarded


def stored_in(targets: list[tuple[str, str]]) -> str:
    """The copies made, for the log: ``user/mailbox`` each, or that there were none (every
    recipient's Sieve script discarded or only redirected the message)."""
    return ", ".join(f"{u}/{b}" for u, b in targets) or "no mailbox (discarded by Sieve)"
