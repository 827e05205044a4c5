"""One provisioned user's Maildir store, run on the synchronous pool, message files, a full
disk for its index, and what the store logs."""

from __future__ import annotations

import pytest
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.store import index
from txmailhost.store.maildir import MaildirStore

USER = "alice@example.test"
MSG = b"Subject: test\r\nFrom: a@b.test\r\n\r\nhello\r\n"


@pytest.fixture
def store(tmp_path):
    s = MaildirStore(str(tmp_path / "mail"), SyncReactor(), SyncThreadPool())
    s.provision_sync(USER)
    return s


def fill_up(path: str) -> None:
    """The index at ``path`` takes no more pages: what a full disk does to its next write (on
    this thread's connection, the one the store uses here)."""
    db = index._connect(path)
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


@pytest.fixture
def big(tmp_path):
    """A message whose header is cached in the index: it needs new pages there."""
    path = tmp_path / "big"
    path.write_bytes(b"Subject: " + b"x" * 20000 + b"\r\n\r\nbody\r\n")
    return str(path)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "msg"
    path.write_bytes(MSG)
    return str(path)


@pytest.fixture
def logged():
    """Every event logged while the test runs."""
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)
