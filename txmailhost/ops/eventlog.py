"""The event log: the server's own log events in ``[log] file``, text or JSON, rotated by size.

twistd's ``--logfile`` keeps getting everything, as before; this is a second observer on the
global log publisher that keeps what an operator searches: txmailhost's events at level info
and above (one per SMTP transaction, queueing, delivery attempt, local delivery, login and
session end, each with its ``queue_id``, addresses, user and client as fields), plus every
warning and error from anywhere. ``txmailhost log grep`` reads it back (``log_grep.py``).

Formats (``[log] format``):

- ``text``: ``2026-12-04T05:55:30.123456+00:00 [txmailhost.smtp.server#info] smtp smtp ...``:
  the time, the namespace and level, and the event's text, one line;
- ``json``: one object a line: ``time`` (ISO 8601), ``ts`` (seconds since the epoch),
  ``level``, ``namespace``, ``text``, and each field of the event whose value is a string,
  number, boolean or a list of them (``queue_id``, ``sender``, ``rcpt``, ``user``, ``peer``,
  ``code`` ...). Line breaks inside values are escaped, so one line is always one event.

Rotation (``[log] max_size``, ``keep``) is Twisted's ``LogFile``: FILE becomes FILE.1, FILE.1
becomes FILE.2 ..., and files beyond ``keep`` are deleted. Writes come from the reactor and
from worker threads (the local delivery thread logs too), so they take a lock.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.python.logfile import LogFile

_SCALAR = (str, int, float, bool, type(None))
# Written escaped in the text format (``\\r``, ``\\x1b``): a line break other than LF (which
# continues the event on a tab-indented line) read as a new line by ``log grep`` and ``less``,
# so "x\r2026-... [txmailhost.auth#info] login ok" in a logged value was an event of its own;
# an escape sequence drove the terminal of whoever ran ``tail``.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# A lone surrogate: an octet that is no UTF-8, kept as Python's surrogate escape (a mailbox
# name a Sieve script made of a From: of Latin-1 octets, say). It can't be written as UTF-8:
# the write raised, and Twisted logged that traceback instead of the event. Written as the
# octet it stands for (``\xe1``), in both formats.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
log = Logger()


def _octet(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def escape_octets(event: dict[str, Any]) -> None:
    """An observer that writes, in place, each lone surrogate of an event's text values as
    the octet it stands for (``_octet``), before any other observer formats it: twistd's own
    log file could no more write one than ``EventLog`` could (the event lost, a traceback
    instead). Installed first on the global publisher (``install_octet_escaping``): the
    observers after it see the same event."""
    for key, value in event.items():
        if isinstance(value, str) and not value.isascii() and _SURROGATE.search(value):
            event[key] = _SURROGATE.sub(_octet, value)


def install_octet_escaping(publisher: Any = None) -> None:
    """Put ``escape_octets`` on ``publisher`` (the global one), once. Called as the service
    is made, before twistd adds its log file's observer, so it comes first."""
    from twisted.logger import globalLogPublisher

    publisher = publisher if publisher is not None else globalLogPublisher
    if escape_octets not in getattr(publisher, "_observers", ()):
        publisher.addObserver(escape_octets)


def _writable(value: Any) -> Any:
    """``value`` with its lone surrogates written as the octets they stand for."""
    if isinstance(value, str) and _SURROGATE.search(value):
        return _SURROGATE.sub(_octet, value)
    if isinstance(value, list):
        return [_writable(v) for v in value]
    return value


# The format of an event whose text the caller rendered itself into its ``line`` field (the
# per-message events: str.format run by every observer cost ~25 us an event each).
PRERENDERED = "{line}"


def log_path(config: Any) -> str:
    """``[log] file`` as an absolute path ("" when the event log is off)."""
    if not config.log.file:
        return ""
    return os.path.join(config.data_dir, os.path.expanduser(config.log.file))


def wanted(event: dict[str, Any]) -> bool:
    """txmailhost's events from info up, and everyone's warnings and errors."""
    level = event.get("log_level", LogLevel.info)
    if level >= LogLevel.warn:
        return True
    namespace = event.get("log_namespace") or ""
    return level >= LogLevel.info and namespace.startswith("txmailhost")


def _text_of(event: dict[str, Any]) -> str:
    if event.get("log_format") is PRERENDERED and isinstance(event.get("line"), str):
        text = event["line"]
    else:
        text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback()
    return text


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    fields = {}
    prerendered = event.get("log_format") is PRERENDERED
    for key, value in event.items():
        if key.startswith("log_") or key in ("format", "message", "system", "time"):
            continue
        if prerendered and key == "line":  # the text itself
            continue
        if isinstance(value, _SCALAR):
            fields[key] = value
        elif isinstance(value, list | tuple | frozenset | set) and all(
            isinstance(v, str | int | float) for v in value
        ):
            fields[key] = sorted(value) if isinstance(value, frozenset | set) else list(value)
        elif isinstance(value, bytes):
            fields[key] = value.decode("utf-8", "replace")
    return fields


def format_event(event: dict[str, Any], style: str) -> str:
    """One line (no newline at the end) for ``event`` in ``style`` ("text" or "json")."""
    ts = event.get("log_time")
    if ts is None:
        ts = datetime.now(UTC).timestamp()
    when = datetime.fromtimestamp(ts, UTC).isoformat()
    level = getattr(event.get("log_level"), "name", "info")
    namespace = event.get("log_namespace") or "-"
    text = _writable(_text_of(event))
    if style == "json":
        record = {"time": when, "ts": ts, "level": level, "namespace": namespace, "text": text}
        for key, value in _fields(event).items():
            record.setdefault(_writable(key), _writable(value))
        return json.dumps(record, ensure_ascii=False, default=str)
    text = _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)
    return f"{when} [{namespace}#{level}] " + text.replace("\n", "\n\t")


class EventLog:
    """An observer for the global log publisher writing ``wanted`` events to a rotating file.

    A write that fails (a full disk, a read-only or failing file system) drops the event and
    says so at most once a ``REPORT_EVERY`` seconds, with the count dropped, to the other
    observers (twistd's log), and once more when writing works again. Raising instead made
    Twisted disable the observer with a critical traceback for every event: a flood against
    a full disk buried the log in them.
    """

    REPORT_EVERY = 60.0

    def __init__(self, path: str, style: str, max_size: int, keep: int) -> None:
        directory, name = os.path.split(path)
        os.makedirs(directory, mode=0o750, exist_ok=True)
        self.path = path
        self.style = style
        self._file = LogFile(
            name, directory, rotateLength=max_size, defaultMode=0o640, maxRotatedFiles=keep
        )
        self._lock = threading.Lock()
        self._dropped = 0  # events not written since the last report
        self._failing = False  # the last write failed
        self._reported = float("-inf")  # time.monotonic() of the last report
        self._reporting = threading.local()  # our own report is not written here

    def __call__(self, event: dict[str, Any]) -> None:
        if not wanted(event) or getattr(self._reporting, "on", False):
            return
        line = format_event(event, self.style) + "\n"
        with self._lock:
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as e:
                self._dropped += 1
                report = self._due(e)
            else:
                report = self._due(None) if self._failing else None
        if report is not None:
            self._report(*report)

    def _due(self, error: OSError | None) -> tuple[OSError | None, int] | None:
        """(the error or None for "writing again", the events dropped) when a report is
        due; under the lock."""
        now = time.monotonic()
        self._failing = error is not None
        if error is not None and now - self._reported < self.REPORT_EVERY:
            return None
        dropped, self._dropped = self._dropped, 0
        self._reported = now if error is not None else float("-inf")
        return error, dropped

    def _report(self, error: OSError | None, dropped: int) -> None:
        """To every observer; the failure's report not to this one (it would fail again),
        the recovery's here too, where the gap is."""
        if error is None:
            log.warn("event log {path} is written again; {dropped} more event(s) were dropped",
                     path=self.path, dropped=dropped)  # fmt: skip
            return
        self._reporting.on = True
        try:
            log.warn("event log {path} can't be written ({why}): {dropped} event(s) dropped; "
                     "told again in a minute if it goes on", path=self.path,
                     why=error.strerror or error, dropped=dropped)  # fmt: skip
        finally:
            self._reporting.on = False

    def close(self) -> None:
        with self._lock:
            self._file.close()


class EventLogService(Service):
    """Adds the event log observer while the server runs."""

    def __init__(self, path: str, style: str, max_size: int, keep: int) -> None:
        self.args = (path, style, max_size, keep)
        self.observer: EventLog | None = None

    def startService(self) -> None:
        super().startService()
        try:
            self.observer = EventLog(*self.args)
        except OSError as e:  # mail matters more than its log: run on, say why loudly
            log.critical("event log {path} can't be written ({why}); serving without it",
                         path=self.args[0], why=e.strerror or e)  # fmt: skip
            return
        globalLogPublisher.addObserver(self.observer)

    def stopService(self) -> None:
        super().stopService()
        if self.observer is not None:
            globalLogPublisher.removeObserver(self.observer)
            self.observer.close()
            self.observer = None


def build_event_log(config: Any) -> Service:
    """The event log service of ``[log]`` (a service doing nothing when ``file`` is "")."""
    path = log_path(config)
    if not path:
        return Service()
    return EventLogService(path, config.log.format, config.log.max_size, config.log.keep)
