"""``fdlimit``: the open-file limit raised to what ``max_connections`` may need."""

from __future__ import annotations

import dataclasses
import errno
import os
import resource
from types import SimpleNamespace

import pytest
from twisted.logger import Logger, LogLevel, capturedLogs
from twisted.python.failure import Failure

from txmailhost import fdlimit
from txmailhost.config import ListenConfig


def _config(max_connections: int, workers: int = 1, listeners: int = 2) -> SimpleNamespace:
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})
    names = ["smtp", "imap", "pop3", "submission"][:listeners]
    listen = dataclasses.replace(listen, **{n: f"tcp:{2000 + i}" for i, n in enumerate(names)})
    return SimpleNamespace(
        listen=listen, security=SimpleNamespace(max_connections=max_connections), workers=workers
    )


def test_what_the_listeners_may_hold_plus_room_for_files():
    assert fdlimit.needed(_config(1000)) == 2 * 1000 + fdlimit.RESERVE


def test_workers_each_need_more_than_an_even_share():
    assert fdlimit.needed(_config(10_000, workers=4)) == 7500 + fdlimit.RESERVE


@pytest.fixture
def restored_limit():
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    except (ValueError, OSError):  # a raised hard limit can't be lowered back without root
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (before[0], resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )


def test_the_soft_limit_is_raised_never_lowered(restored_limit):
    soft, hard = restored_limit
    low = min(256, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    wanted = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
    raised, _ = fdlimit.raise_to(wanted)
    assert raised >= wanted
    assert fdlimit.raise_to(16)[0] == raised  # asking for less changes nothing


def test_a_limit_that_stays_short_is_logged(restored_limit, monkeypatch):
    soft, hard = restored_limit
    monkeypatch.setattr(fdlimit, "raise_to", lambda wanted: (100, 100))
    events = []
    monkeypatch.setattr(fdlimit.log, "warn", lambda fmt, **kw: events.append(kw))
    assert fdlimit.prepare(_config(5000)) == 100
    assert events and events[0]["wanted"] == 2 * 5000 + fdlimit.RESERVE


def test_asking_for_more_than_setrlimit_takes_raises_as_far_as_allowed(restored_limit):
    """A huge ``max_connections`` once ended the start in an OverflowError traceback."""
    soft, hard = fdlimit.raise_to(10**18)
    assert soft == hard or hard == resource.RLIM_INFINITY
    assert hard == resource.RLIM_INFINITY or hard <= fdlimit.ceiling()


def test_check_config_previews_a_limit_the_server_could_not_reach(monkeypatch):
    monkeypatch.setattr(fdlimit.resource, "getrlimit", lambda _which: (1024, 4096))
    monkeypatch.setattr(fdlimit, "ceiling", lambda: 4096)  # what root could raise to
    note = fdlimit.preview(_config(5000))
    assert note is not None and f"LimitNOFILE={2 * 5000 + fdlimit.RESERVE}" in note
    assert fdlimit.preview(_config(1000)) is None


def test_shortage_warning_takes_emfile_and_enfile_once_a_minute():
    now = [0.0]
    shortage = fdlimit.ShortageWarning(Logger(), lambda: now[0])
    with capturedLogs() as events:
        for n in range(130):
            now[0] = float(n)
            code = errno.ENFILE if n % 2 else errno.EMFILE
            assert shortage.handled(Failure(OSError(code, os.strerror(code))), "polling")
    assert [e["log_level"] for e in events] == [LogLevel.warn] * 3


def test_shortage_warning_leaves_other_failures_to_the_caller():
    shortage = fdlimit.ShortageWarning(Logger(), lambda: 0.0)
    with capturedLogs() as events:
        assert not shortage.handled(Failure(OSError(errno.EACCES, "denied")), "polling")
        assert not shortage.handled(Failure(ValueError("a bug")), "polling")
    assert events == []
