"""``txmailhost log grep QUEUE_ID|ADDRESS [--since WHEN]``: one message's (or one address's)
story from the event log, rotated files included, oldest first.

For a queue id: every event naming it (the SMTP transaction that received it, its queueing,
each delivery attempt, local delivery, bounce). For an address: every event naming the
address, and then every event of each message those events name by queue id, so a search for
a recipient also shows the attempts and the bounce of the mail sent to it.

Reads ``[log] file`` and its rotations (FILE.N ... FILE.1, FILE), or the files given with
``--file`` (twistd's log, with its own rotations, is read the same way), in either format of
``eventlog.py``; an event's continuation lines (a traceback) stay with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from txmailhost.asciinum import is_number
from txmailhost.config import load_config
from txmailhost.ops.eventlog import log_path
from txmailhost.ops.mailbox_admin import AdminError, emit, json_option

_QUEUE_ID = re.compile(r"\b[0-9A-F]{15,40}\b")
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_LINE = 1 << 20  # characters of a log line kept; the event log's own are far shorter


@dataclass
class Event:
    """One logged event: its time (None when the line has none), its lines and, for a JSON
    line, its fields."""

    time: datetime | None
    lines: list[str]
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def queue_ids(self) -> set[str]:
        found = set(_QUEUE_ID.findall(self.text))
        if isinstance(self.fields.get("queue_id"), str):
            found.add(self.fields["queue_id"].upper())
        return found

    def document(self) -> dict[str, Any]:
        if self.fields:
            return self.fields
        return {"time": self.time.isoformat() if self.time else None, "text": self.text}


def register(commands: Any) -> None:
    log = commands.add_parser("log", help="search the event log")
    actions = log.add_subparsers(metavar="ACTION", required=True)
    grep = actions.add_parser(
        "grep", help="every event of a message (queue id) or an address, rotated files too"
    )
    grep.add_argument("term", metavar="QUEUE_ID|ADDRESS")
    grep.add_argument(
        "--since",
        metavar="WHEN",
        help="only events from then on: 2026-12-04, 2026-12-04T08:00, or 30m, 2h, 7d ago",
    )
    grep.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="read this log (and its rotations PATH.1, PATH.2, ...) instead of [log] file; "
        "may be repeated, e.g. for twistd's --logfile",
    )
    json_option(grep)
    grep.set_defaults(run=_grep)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text.strip().lower())
    if relative:
        return now - timedelta(seconds=int(relative[1]) * _UNITS[relative[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(
            f"--since {text!r}: expected a date, a date and time, or 30m/2h/7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def rotations(path: str) -> list[str]:
    """``path`` and its rotated copies, oldest first (FILE.N ... FILE.1, FILE)."""
    directory, name = os.path.split(path)
    numbered = []
    try:
        for entry in os.listdir(directory or "."):
            suffix = entry[len(name) + 1 :]
            if entry.startswith(name + ".") and is_number(suffix):
                numbered.append((int(suffix), os.path.join(directory, entry)))
    except FileNotFoundError:
        return []
    files = [p for _n, p in sorted(numbered, reverse=True)]
    return files + ([path] if os.path.exists(path) else [])


def _time_of(line: str) -> datetime | None:
    stamp = line.split(" ", 1)[0]
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _lines(path: str) -> Iterator[str]:
    """The lines of a log file, each cut at ``MAX_LINE`` characters (the rest of a longer
    one is skipped as it is read, not held: a log of one endless line filled memory). Only
    a regular file is read, opened without blocking (``--file /dev/zero`` read for ever, a
    FIFO waited for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    # Only LF ends a line: twistd's log writes a value's CR as it is, and read as a line
    # break it started a forged event ("x\r2026-... [txmailhost.queue#info] ... delivered")
    with open(fd, encoding="utf-8", errors="replace", newline="\n") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AdminError(f"{path}: not a regular file")
        while chunk := f.readline(MAX_LINE):
            line = chunk
            while not chunk.endswith("\n") and len(chunk) == MAX_LINE:
                chunk = f.readline(MAX_LINE)  # the rest of an overlong line
            yield line.rstrip("\n").removesuffix("\r")


def read_events(paths: list[str]) -> Iterator[Event]:
    """The events of the files, in order; a line that starts no event continues the last."""
    for path in paths:
        current: Event | None = None
        for line in _lines(path):
            if line.startswith("{"):
                try:
                    fields = json.loads(line)
                except ValueError:
                    fields = None
                if isinstance(fields, dict):
                    if current is not None:
                        yield current
                    when = _time_of(str(fields.get("time", "")))
                    current = Event(when, [str(fields.get("text", line))], fields)
                    continue
            when = _time_of(line)
            if when is None and current is not None:
                current.lines.append(line)
                continue
            if current is not None:
                yield current
            current = Event(when, [line])
        if current is not None:
            yield current


def _printable(text: str) -> str:
    """An event as printed: control characters other than tab and LF escaped (``\\r``,
    ``\\x1b``), as a log written before they were escaped (or twistd's) may hold them."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def _address_pattern(address: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.+-])" + re.escape(address) + r"(?![\w-]|\.\w)", re.IGNORECASE)


def story(events: list[Event], term: str) -> list[Event]:
    """The events of the message ``term`` names (a queue id), or of an address and the
    messages its events name."""
    if "@" in term:
        pattern = _address_pattern(term.strip("<>"))
        naming = {
            id(e) for e in events if pattern.search(e.text) or pattern.search(json.dumps(e.fields))
        }
        ids: set[str] = set()
        for e in events:
            if id(e) in naming:
                ids |= e.queue_ids()
        return [e for e in events if id(e) in naming or e.queue_ids() & ids]
    wanted = term.upper()
    return [e for e in events if wanted in e.queue_ids()]


def _grep(args: argparse.Namespace) -> int:
    if args.file:
        paths = [p for given in args.file for p in rotations(os.path.abspath(given))]
        missing = [given for given in args.file if not rotations(os.path.abspath(given))]
        if missing:
            raise AdminError(f"{missing[0]}: no such log file")
    else:
        config = load_config(args.data, args.config)
        path = log_path(config)
        if not path:
            raise AdminError('[log] file is "": no event log to search (give --file)')
        paths = rotations(path)
        if not paths:
            raise AdminError(f"{path}: no event log yet (the server writes it as it runs)")
    since = parse_since(args.since) if args.since else None
    events = [e for e in read_events(paths) if since is None or (e.time and e.time >= since)]
    found = story(events, args.term)
    emit(args, [e.document() for e in found], lambda: [_printable(e.text) for e in found])
    return 0 if found else 1
