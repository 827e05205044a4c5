"""One provisioned user's Maildir store, run on the synchronous pool, and one message file."""

from __future__ import annotations

import pytest

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.store.maildir import MaildirStore

USER = "alice@example.test"
MSG = b"Subject: test\r\nFrom: a@b.test\r\n\r\nhello\r\n"


@pytest.fixture
def store(tmp_path):
    s = MaildirStore(str(tmp_path / "mail"), SyncReactor(), SyncThreadPool())
    s.provision_sync(USER)
    return s


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "msg"
    path.write_bytes(MSG)
    return str(path)
