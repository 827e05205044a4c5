"""``fdlimit``: the open-file limit raised to what ``max_connections`` may need."""

from __future__ import annotations

import dataclasses
import resource
from types import SimpleNamespace

import pytest

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
