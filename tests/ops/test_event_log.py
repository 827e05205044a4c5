"""The event log's formats and ``log grep``'s reading, without a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure

from txmailhost.ops.eventlog import EventLog, format_event, wanted
from txmailhost.ops.log_grep import AdminError, parse_since, read_events, rotations, story

QID = "1A23FA45E9DF5FC392C"


def event(text: str, level=LogLevel.info, namespace="txmailhost.queue.scheduler", **fields):
    return {"log_format": text, "log_level": level, "log_namespace": namespace,
            "log_time": 1_800_000_000.5, **fields}  # fmt: skip


def test_text_and_json_lines_carry_the_same_event() -> None:
    e = event("queued {queue_id} for {rcpts}", queue_id=QID, rcpts="bob@far.test")
    text = format_event(e, "text")
    assert text == (
        "2027-01-15T08:00:00.500000+00:00 [txmailhost.queue.scheduler#info] "
        f"queued {QID} for bob@far.test"
    )
    record = json.loads(format_event(e, "json"))
    assert record["queue_id"] == QID and record["rcpts"] == "bob@far.test"
    assert record["text"] == f"queued {QID} for bob@far.test" and record["ts"] == 1_800_000_000.5


def test_a_traceback_stays_inside_its_event() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failure = Failure()
    e = event("delivery failed", LogLevel.critical, log_failure=failure)
    text = format_event(e, "text")
    assert all(line.startswith("\t") for line in text.splitlines()[1:])
    assert "\n" not in format_event(e, "json")


def test_only_our_info_and_everyones_warnings_are_kept() -> None:
    assert wanted(event("x"))
    assert not wanted(event("x", LogLevel.debug))
    assert not wanted(event("x", namespace="twisted.web.server"))
    assert wanted(event("x", LogLevel.warn, namespace="twisted.web.server"))


def test_rotated_files_are_read_oldest_first_and_bounded(tmp_path) -> None:
    log = EventLog(str(tmp_path / "log" / "events.log"), "text", max_size=4096, keep=3)
    for n in range(200):
        log(event("line {n} of {queue_id}", n=n, queue_id=QID))
    log.close()
    paths = rotations(str(tmp_path / "log" / "events.log"))
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "events.log.3", "events.log.2", "events.log.1", "events.log",
    ]  # fmt: skip
    numbers = [int(e.text.split("line ")[1].split()[0]) for e in read_events(paths)]
    assert numbers == sorted(numbers) and numbers[-1] == 199 and numbers[0] > 0


def test_an_address_finds_the_events_of_the_messages_it_names(tmp_path) -> None:
    other = "1A23FA45E9DF5FC3999"
    lines = [
        format_event(event("queued {q} for carol@far.test", q=QID), "text"),
        format_event(event("queued {q} for dave@far.test", q=other), "text"),
        format_event(event("{q} to <carol@far.test> deferred: 451", q=QID), "json"),
        format_event(event("queue: {queue_id} done, removed", queue_id=QID), "text"),
        format_event(event("queued x for xcarol@far.test.example"), "text"),
    ]
    (tmp_path / "ev.log").write_text("\n".join(lines) + "\n")
    events = list(read_events([str(tmp_path / "ev.log")]))
    found = story(events, "carol@far.test")
    assert [e.text.split("] ", 1)[-1] for e in found] == [
        f"queued {QID} for carol@far.test",
        f"{QID} to <carol@far.test> deferred: 451",
        f"queue: {QID} done, removed",
    ]
    assert [e.text for e in story(events, other.lower())] == [events[1].text]


def test_since_takes_dates_and_durations() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert parse_since("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(AdminError):
        parse_since("yesterday", now)


def test_an_unwritable_log_directory_does_not_stop_the_server(tmp_path) -> None:
    from twisted.logger import globalLogPublisher

    from txmailhost.ops.eventlog import EventLogService

    (tmp_path / "log").write_text("a file where the directory should be")
    service = EventLogService(str(tmp_path / "log" / "txmailhost.log"), "text", 4096, 2)
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        service.startService()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert service.observer is None
    assert any("serving without it" in format_event(e, "text") for e in seen)
    service.stopService()


def test_a_full_disk_drops_events_with_a_warning_a_minute_not_a_traceback_each(
    tmp_path, monkeypatch
) -> None:
    """A write that failed raised out of the observer: Twisted disabled it with a critical
    traceback for every event (287 of them for 150 refused messages on a full disk)."""
    from twisted.logger import globalLogPublisher

    log = EventLog(str(tmp_path / "log" / "events.log"), "text", 1 << 20, 2)
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    globalLogPublisher.addObserver(log)
    full = {"on": True}
    write = log._file.write

    def writes(data):
        if full["on"]:
            raise OSError(28, "No space left on device")
        return write(data)

    monkeypatch.setattr(log._file, "write", writes)
    clock = [1000.0]
    monkeypatch.setattr("txmailhost.ops.eventlog.time.monotonic", lambda: clock[0])
    try:
        for n in range(5):
            globalLogPublisher(event(f"queued {n}"))
        clock[0] += 61
        globalLogPublisher(event("queued 5"))
        full["on"] = False
        globalLogPublisher(event("queued 6"))
    finally:
        globalLogPublisher.removeObserver(log)
        globalLogPublisher.removeObserver(seen.append)
    texts = [formatEvent(e) for e in seen]
    assert not any(e.get("log_failure") for e in seen)
    assert not any("disabling observer" in t for t in texts)
    reports = [t for t in texts if "event log" in t]
    assert len(reports) == 3, reports  # at the first failure, a minute later, and recovered
    assert "No space left on device" in reports[0] and "1 event(s) dropped" in reports[0]
    assert "5 event(s) dropped" in reports[1]  # the four in the minute, and this one
    assert "written again" in reports[2] and "0 more" in reports[2]
    written = (tmp_path / "log" / "events.log").read_text()
    assert "queued 6" in written and "queued 4" not in written
    assert "written again" in written and "can't be written" not in written
    log.close()


def test_an_overlong_line_is_cut_and_the_events_after_it_still_read(tmp_path) -> None:
    """A line of 3 million characters was held whole (``--file /dev/zero``: for ever)."""
    first = format_event(event("queued {q} for carol@far.test", q=QID), "text")
    later = format_event(event("{q} delivered", q=QID), "text")
    (tmp_path / "ev.log").write_text(first + "x" * 3_000_000 + "\n" + later + "\n")
    events = list(read_events([str(tmp_path / "ev.log")]))
    assert len(events[0].text) == 1 << 20
    assert [e.text.split("] ", 1)[-1] for e in story(events, QID)] == [
        events[0].text.split("] ", 1)[-1],
        f"{QID} delivered",
    ]


def test_a_log_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path) -> None:
    """In a process of its own: the old code waited for a writer for ever."""
    os.mkfifo(tmp_path / "ev.log")
    command = [sys.executable, "-m", "txmailhost.cli", "log", "grep", "--file",
               str(tmp_path / "ev.log"), QID]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == f"txmailhost: error: {tmp_path / 'ev.log'}: not a regular file\n"


def test_a_carriage_return_in_a_logged_value_forges_no_event(tmp_path) -> None:
    """``log grep`` (and ``less``) read a lone CR as a line break: a value holding
    ``\\r2026-... [txmailhost.auth#info] ...`` was an event of its own in the text log."""
    forged = f"\r2026-12-06T00:00:00+00:00 [txmailhost.queue#info] {QID} delivered\x1b[2J"
    line = format_event(event("login failed for {user}", user="x" + forged), "text")
    assert "\r" not in line and "\x1b" not in line
    (tmp_path / "ev.log").write_text(line + "\n", newline="")
    events = list(read_events([str(tmp_path / "ev.log")]))
    assert len(events) == 1
    assert events[0].text.endswith("login failed for x\\r2026-12-06T00:00:00+00:00 "
                                   f"[txmailhost.queue#info] {QID} delivered\\x1b[2J")  # fmt: skip
    assert story(events, QID) == events  # found as the line it is, not as a delivery


def test_a_carriage_return_in_twistds_log_starts_no_event(tmp_path) -> None:
    """twistd's own log writes a value's CR as it is (``log grep --file twistd.log``)."""
    forged = f"2026-12-06T00:00:00+00:00 [txmailhost.queue#info] {QID} delivered"
    text = f"2026-12-06T00:00:01+0000 [-] login failed for x\r{forged}\r\n"
    (tmp_path / "twistd.log").write_text(text, newline="")
    events = list(read_events([str(tmp_path / "twistd.log")]))
    assert [e.text for e in events] == [
        f"2026-12-06T00:00:01+0000 [-] login failed for x\r{forged}"
    ]


def test_log_grep_prints_an_events_control_characters_escaped(tmp_path, capsys) -> None:
    from txmailhost.cli import main

    text = f"2026-12-06T00:00:01+0000 [-] {QID} from x\r\x1b[2J\n"
    (tmp_path / "twistd.log").write_text(text, newline="")
    assert main(["log", "grep", "--file", str(tmp_path / "twistd.log"), QID]) == 0
    assert capsys.readouterr().out == f"2026-12-06T00:00:01+0000 [-] {QID} from x\\r\\x1b[2J\n"


@pytest.mark.parametrize("style", ["text", "json"])
def test_an_octet_that_is_no_utf8_is_written_as_that_octet(tmp_path, style) -> None:
    """A value holding a surrogate escape (a mailbox name a Sieve script made of a Latin-1
    From:) could not be written: the write raised, and Twisted logged that instead."""
    path = tmp_path / "events.log"
    observer = EventLog(str(path), style, 1 << 20, 2)
    observer(
        event("sieve: no mailbox {mailbox}", LogLevel.warn, mailbox="Tom\udce1?", names=["x\udcff"])
    )
    written = path.read_text(encoding="utf-8")
    assert "sieve: no mailbox Tom\\xe1?" in (
        written if style == "text" else json.loads(written)["text"]
    )
    if style == "json":
        assert json.loads(written)["mailbox"] == "Tom\\xe1?"
        assert json.loads(written)["names"] == ["x\\xff"]
