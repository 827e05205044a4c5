"""The queue on disk: one message file and one JSON envelope per queued message.

Layout under ``DATA/queue/`` (``tmp/`` belongs to the SMTP server's incoming files)::

    msg/ID          the message as received (a hard link to the server's fsync'd file)
    env/ID.json     the envelope: sender, arrival, and each recipient's state
    control/        requests from the admin CLI: ``ID.bounce``, ``ID.delete``, ``ID.retry``, ``flush``

An envelope is plain JSON, so ``cat DATA/queue/env/ID.json`` answers "what happened to this
message?". Recipient states: ``pending`` (not tried yet), ``deferred`` (tried, temporary
failure, ``next_attempt`` says when again), ``delivered``, ``bounced``; each with ``attempts``,
``status`` (RFC 3463), ``diagnostic`` (the last reply), ``remote_mta``, and the sender's DSN
wishes for it (``notify``, ``orcpt``: RFC 3461). The message's own wishes sit beside the sender:
``body`` (7BIT, 8BITMIME, BINARYMIME), ``smtputf8``, ``ret``, ``envid``, ``requiretls``. Every
field added since the first version has a default, so older envelopes still load.

Durability (DESIGN invariant 1; mox's queue.Add order): the message is linked and its directory
fsync'd first, then the envelope is written through ``_safeio.write_atomic`` (temp file, fsync,
rename, directory fsync). An envelope therefore never points at a missing message; a message
without an envelope is the remnant of an unacknowledged add or of a removal, and is swept on
load. Removal unlinks the envelope first for the same reason.

Every function here blocks on the disk: the queue runs them in the service's thread pool.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from zope.interface import implementer

from txmailhost import _safeio
from txmailhost.delivery.interfaces import BODY_7BIT, MessageOptions, RecipientOptions
from txmailhost.queue.interfaces import IQueueRecords

PENDING = "pending"
DEFERRED = "deferred"
DELIVERED = "delivered"
BOUNCED = "bounced"
ACTIVE_STATES = (PENDING, DEFERRED)

REQUEST_KINDS = ("bounce", "delete", "retry", "hold", "release", "requeue", "adopt")
HEADER_LIMIT = 64 * 1024
_QUEUE_ID = re.compile(r"^[A-Za-z0-9]{6,40}$")


@dataclass
class Recipient:
    address: str
    state: str = PENDING
    attempts: int = 0
    next_attempt: float = 0.0
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    # RFC 3461: NOTIFY values ([] when not given: FAILURE and DELAY) and ORCPT "type;address"
    notify: list[str] = field(default_factory=list)
    orcpt: str = ""

    def dsn_options(self) -> RecipientOptions:
        return RecipientOptions(tuple(self.notify), self.orcpt)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass
class Envelope:
    """A queued message: who sent it, when it arrived, and each recipient's state."""

    queue_id: str
    sender: str | None  # None is the null reverse-path <>
    arrival: float
    size: int
    recipients: list[Recipient] = field(default_factory=list)
    hops: int = 0  # Received: header fields, for loop detection
    delay_warned: bool = False
    held: bool = False  # ``queue hold``: kept, never attempted, until ``queue release``
    # The sender's ESMTP wishes (``MessageOptions``); envelopes spooled before these fields
    # existed load with the defaults, which is what their messages were sent with.
    body: str = BODY_7BIT
    smtputf8: bool = False
    ret: str = ""
    envid: str = ""
    requiretls: bool = False

    def message_options(self) -> MessageOptions:
        return MessageOptions(self.body, self.smtputf8, self.ret, self.envid, self.requiretls)

    def active(self) -> list[Recipient]:
        return [r for r in self.recipients if r.active]

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Envelope:
        """The envelope ``raw`` holds; ValueError for anything that isn't one (not JSON, not an
        object, a field missing, unknown or of the wrong type, a bad queue id or state), so
        one odd file is set aside instead of stopping the queue."""
        checked = _checked(cls, json.loads(raw), "the envelope")
        checked["recipients"] = [
            Recipient(**_checked(Recipient, r, f"recipient {n}"))
            for n, r in enumerate(checked.get("recipients", []), 1)
        ]
        check_queue_id(checked["queue_id"])
        for r in checked["recipients"]:
            if r.state not in (*ACTIVE_STATES, DELIVERED, BOUNCED):
                raise ValueError(f"recipient {r.address}: unknown state {r.state!r}")
        return cls(**checked)


# What each field's annotation allows in JSON (``bool`` is no number here, though Python's is).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list[str]": (list,),
    "list[Recipient]": (list,),
}


def _checked(kind: type, value: object, what: str) -> dict[str, Any]:
    """``value`` checked as the JSON form of the dataclass ``kind``: an object with every
    required field, no unknown one, each of its field's type; ValueError otherwise."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    declared = {f.name: f for f in fields(kind)}
    unknown = sorted(set(value) - set(declared))
    if unknown:
        raise ValueError(f"{what} has unknown fields: {', '.join(unknown)}")
    for name, f in declared.items():
        required = f.default is MISSING and f.default_factory is MISSING
        if name not in value:
            if required:
                raise ValueError(f"{what} has no {name}")
            continue
        field_value, allowed = value[name], _JSON_TYPES[str(f.type)]
        wrong = not isinstance(field_value, allowed) or (
            isinstance(field_value, bool) and bool not in allowed
        )
        if f.type == "list[str]" and not wrong:
            wrong = not all(isinstance(item, str) for item in field_value)
        if isinstance(field_value, float) and not math.isfinite(field_value):
            wrong = True
        if wrong:
            raise ValueError(f"{what}: {name} is not {f.type}")
    return dict(value)


def check_queue_id(queue_id: str) -> str:
    """``queue_id`` if it is one (6 to 40 ASCII letters and digits), else ValueError. Ids from
    outside (the admin CLI, request file names) become file names under ``env/``, ``msg/``
    and ``control/``: ``../../x`` would reach out of the spool."""
    if not _QUEUE_ID.fullmatch(queue_id):
        raise ValueError(f"{queue_id!r} is not a queue id (6 to 40 letters and digits)")
    return queue_id


def new_queue_id() -> str:
    """Time-ordered (milliseconds in hex) then random, like the SMTP server's ids."""
    return f"{int(time.time() * 1000):x}{secrets.token_hex(4)}".upper()


def count_received(header: bytes) -> int:
    """How many ``Received:`` fields the header block holds (RFC 5321 6.3 loop detection)."""
    return len(re.findall(rb"(?im)^received[ \t]*:", header))


def read_header(path: str, limit: int = HEADER_LIMIT) -> bytes:
    """The header section of the message at ``path`` (up to the empty line), at most ``limit``."""
    with open(path, "rb") as f:
        head = f.read(limit)
    end = head.find(b"\r\n\r\n")
    return head if end < 0 else head[: end + 2]


def read_whole(path: str, limit: int) -> bytes | None:
    """The message at ``path`` without our leading ``Return-Path:`` line, or None when it is
    larger than ``limit`` (a RET=FULL DSN then carries the headers only: RFC 3461 4.3)."""
    if os.path.getsize(path) > limit:
        return None
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if data[:12].lower() == b"return-path:":
        data = data[data.find(b"\r\n") + 2 :]
    return data


@implementer(IQueueRecords)
class Spool:
    """The files of the queue under ``root`` (``DATA/queue``)."""

    def __init__(self, root: str, sweep_grace: float = 0.0) -> None:
        self.root = root
        # With several worker processes another one may be half-way through ``add`` while
        # this one loads: what it sweeps must be older than this (seconds).
        self.sweep_grace = sweep_grace
        self.msg_dir = os.path.join(root, "msg")
        self.env_dir = os.path.join(root, "env")
        self.control_dir = os.path.join(root, "control")
        self.tmp_dir = os.path.join(root, "tmp")

    def prepare(self) -> None:
        for directory in (self.msg_dir, self.env_dir, self.control_dir, self.tmp_dir):
            _safeio.makedirs_durably(directory)

    def message_path(self, queue_id: str) -> str:
        return os.path.join(self.msg_dir, queue_id)

    def envelope_path(self, queue_id: str) -> str:
        return os.path.join(self.env_dir, queue_id + ".json")

    def choose_id(self, source_path: str, wanted: str | None = None) -> str:
        """``wanted`` (the id the 250 reply names), else the incoming file's name, when it is a
        valid id and free; otherwise a new one."""
        name = wanted or os.path.basename(source_path)
        if _QUEUE_ID.match(name) and not os.path.exists(self.message_path(name)):
            return name
        while True:
            queue_id = new_queue_id()
            if not os.path.exists(self.message_path(queue_id)):
                return queue_id

    def add(
        self,
        sender: str | None,
        recipients: list[str],
        source_path: str,
        now: float,
        queue_id: str | None = None,
        options: MessageOptions | None = None,
        recipient_options: Mapping[str, RecipientOptions] | None = None,
    ) -> Envelope:
        """Spool a copy of ``source_path`` (already fsync'd) durably, under ``queue_id`` when
        that is free; returns its envelope. ``options`` and ``recipient_options`` (by
        address) are the sender's ESMTP wishes, kept for every attempt and DSN."""
        options = options or MessageOptions()
        recipient_options = recipient_options or {}
        none = RecipientOptions()
        queue_id = self.choose_id(source_path, queue_id)
        target = self.message_path(queue_id)
        _safeio.link_durably(source_path, target)
        _safeio.fsync_dir(self.msg_dir)
        envelope = Envelope(
            queue_id=queue_id,
            sender=sender or None,
            arrival=now,
            size=os.path.getsize(target),
            recipients=[
                Recipient(
                    address,
                    next_attempt=now,
                    notify=list(recipient_options.get(address, none).notify),
                    orcpt=recipient_options.get(address, none).orcpt,
                )
                for address in recipients
            ],
            hops=count_received(read_header(target)),
            body=options.body,
            smtputf8=options.smtputf8,
            ret=options.ret,
            envid=options.envid,
            requiretls=options.requiretls,
        )
        _safeio.write_atomic(self.envelope_path(queue_id), envelope.to_json())
        return envelope

    def save(self, envelope: Envelope) -> None:
        _safeio.write_atomic(self.envelope_path(envelope.queue_id), envelope.to_json())

    def load(self, queue_id: str) -> Envelope:
        with open(self.envelope_path(check_queue_id(queue_id)), "rb") as f:
            envelope = Envelope.from_json(f.read())
        if envelope.queue_id != queue_id:  # a copied file: saving it would write the original
            raise ValueError(f"the envelope is {envelope.queue_id}'s")
        return envelope

    def envelopes(self) -> list[Envelope]:
        """``IQueueRecords``: every readable envelope, oldest first, changing nothing (unlike
        ``load_all``, the runner's start-up sweep)."""
        envelopes = []
        for queue_id in self.ids():
            try:
                envelopes.append(self.load(queue_id))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # removed meanwhile, or being replaced: the server owns these files
        return envelopes

    def header(self, queue_id: str) -> bytes:
        """The message's header section (``IQueueRecords``)."""
        return read_header(self.message_path(check_queue_id(queue_id)))

    def remove(self, queue_id: str) -> None:
        """Envelope first (its removal fsync'd: a message done must not be sent again after a
        crash), then the message; if that unlink is lost in a crash, ``load_all`` sweeps it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.envelope_path(queue_id))
        _safeio.fsync_dir(self.env_dir)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.message_path(queue_id))

    def ids(self) -> list[str]:
        """Queue ids with an envelope, oldest first (ids are time-ordered)."""
        names = os.listdir(self.env_dir) if os.path.isdir(self.env_dir) else []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def load_all(self) -> tuple[list[Envelope], list[str]]:
        """Every readable envelope, and a line for each problem found (and cleaned up).

        Temp files of interrupted writes and messages without an envelope are removed; an
        envelope that can't be parsed or whose message is missing is renamed ``*.broken`` so
        an administrator can look at it, and is not delivered. One that can't be read now
        (permissions, too many open files) is left as it is, with its message, for the next
        start. Either way the others load.
        """
        self.prepare()
        envelopes: list[Envelope] = []
        problems: list[str] = []
        kept: set[str] = set()  # not loaded, but their messages stay
        for name in os.listdir(self.env_dir):
            if name.startswith(".") and self._stale(os.path.join(self.env_dir, name)):
                os.unlink(os.path.join(self.env_dir, name))
        for queue_id in self.ids():
            try:
                envelope = self.load(queue_id)
                if not os.path.exists(self.message_path(queue_id)):
                    raise ValueError("its message file is missing")
            except ValueError as e:
                problems.append(f"envelope {queue_id} is unusable ({e}); renamed to .broken")
                os.replace(self.envelope_path(queue_id), self.envelope_path(queue_id) + ".broken")
                kept.add(queue_id)
                continue
            except OSError as e:
                problems.append(f"envelope {queue_id} could not be read ({e}); not loaded")
                kept.add(queue_id)
                continue
            envelopes.append(envelope)
        known = {e.queue_id for e in envelopes} | kept
        for name in os.listdir(self.msg_dir):
            if name not in known and self._stale(os.path.join(self.msg_dir, name)):
                os.unlink(os.path.join(self.msg_dir, name))
                problems.append(f"removed message {name} that had no envelope")
        _safeio.fsync_dirs([self.env_dir, self.msg_dir])
        return envelopes, problems

    def _stale(self, path: str) -> bool:
        """Old enough to be the leftover of a crash, not another worker's ``add`` under way."""
        if self.sweep_grace <= 0:
            return True
        try:
            return time.time() - os.stat(path).st_mtime > self.sweep_grace
        except FileNotFoundError:
            return False

    # -- requests from the admin CLI ------------------------------------------------------------

    def request(self, kind: str, queue_id: str | None = None) -> None:
        """Drop a request for the server (``flush`` has no id)."""
        if kind != "flush" and kind not in REQUEST_KINDS:
            raise ValueError(f"unknown queue request {kind!r}")
        self.prepare()
        name = "flush" if kind == "flush" else f"{check_queue_id(queue_id or '')}.{kind}"
        _safeio.write_atomic(os.path.join(self.control_dir, name), b"")

    def note_adoption(self, queue_id: str) -> None:
        """Ask the queue runner (another worker process) to take ``queue_id``, just spooled.

        Not fsync'd: a lost note only matters after a crash of the whole machine, and then the
        runner starts again and loads every envelope anyway."""
        name = os.path.join(self.control_dir, f"{queue_id}.adopt")
        with open(name, "wb"):
            pass

    def take_requests(self) -> list[tuple[str, str | None]]:
        """Pending requests as ``(kind, queue_id)``, removed from disk as they are returned."""
        try:
            names = sorted(os.listdir(self.control_dir))
        except FileNotFoundError:
            return []
        requests: list[tuple[str, str | None]] = []
        for name in names:
            if name.startswith("."):
                continue
            if name == "flush":
                requests.append(("flush", None))
            else:
                queue_id, _, kind = name.rpartition(".")
                if kind in REQUEST_KINDS and _QUEUE_ID.fullmatch(queue_id):
                    requests.append((kind, queue_id))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.control_dir, name))
        return requests
