"""The sweep of what a crash left in a Maildir's tmp/ (store/staging.py): files older than
36 hours, and sooner those whose writer, a process of this host, is gone; never a live
process's file, another host's young one, or anything but a plain file."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

from tests.store.conftest import USER
from tests.support.syncpool import result
from txmailhost.store import maildir, staging
from txmailhost.store.maildir import MaildirStore

HOUR = 3600


def _staged_by_a_process_that_ended(directory: str, kind: str = "append") -> str:
    """A file as a killed server leaves it: written under ``staging.prefix`` by a process
    that is gone now."""
    code = (
        "import sys, tempfile; from txmailhost.store import staging;"
        f"fd, path = tempfile.mkstemp(prefix=staging.prefix({kind!r}), dir={directory!r});"
        "print(path)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return done.stdout.decode().strip()


def _ours(directory: str, kind: str = "append") -> str:
    fd, path = tempfile.mkstemp(prefix=staging.prefix(kind), dir=directory)
    os.close(fd)
    return path


def _aged(path: str, hours: float) -> str:
    then = time.time() - hours * HOUR
    os.utime(path, (then, then))
    return path


def _leftover(path: str, hours: float, size: int = 0) -> str:
    """A file of ``size`` octets last written ``hours`` ago."""
    with open(path, "wb") as f:
        f.write(b"x" * size)
    return _aged(path, hours)


@pytest.mark.skipif(not staging._NAMESPACE, reason="needs /proc/self/ns/pid (Linux)")
def test_files_of_a_process_of_this_host_that_ended_go_at_once(tmp_path):
    gone = [_staged_by_a_process_that_ended(str(tmp_path), k) for k in ("append", "imap-append")]
    live = _ours(str(tmp_path))
    assert staging.sweep(str(tmp_path)) == (2, 0)
    assert os.listdir(tmp_path) == [os.path.basename(live)]
    assert not any(os.path.exists(path) for path in gone)


def test_files_older_than_36_hours_go_whoever_wrote_them(tmp_path):
    _leftover(str(tmp_path / "1700000000.P77.other-host"), 37, 10)
    young = _leftover(str(tmp_path / "1700000001.P77.other-host"), 35, 10)
    own_old = _aged(_ours(str(tmp_path)), 40)
    assert staging.sweep(str(tmp_path)) == (2, 10)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(young)]
    assert not os.path.exists(own_old)


def test_another_hosts_file_and_a_live_process_file_and_directories_stay(tmp_path):
    other_host = tmp_path / f".append.P1N{staging._NAMESPACE}.elsewhere.example.abcd1234"
    other_host.write_bytes(b"")
    other_namespace = tmp_path / f".append.P1N{staging._NAMESPACE + 1}.{staging._HOST}.abcd1234"
    other_namespace.write_bytes(b"")
    parent = tmp_path / f".append.P{os.getppid()}N{staging._NAMESPACE}.{staging._HOST}.abcd1234"
    parent.write_bytes(b"")
    (tmp_path / "a-directory").mkdir()
    _aged(str(tmp_path / "a-directory"), 100)
    before = sorted(os.listdir(tmp_path))
    assert staging.sweep(str(tmp_path)) == (0, 0)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_leftover_still_linked_into_a_mailbox_leaves_the_message(store, source):
    """Killed between the link into the mailbox and the removal of the staged name."""
    tmp = store.staging_directory(USER)
    staged = os.path.join(tmp, "1700000000.leftover")
    with open(source, "rb") as f, open(staged, "wb") as out:
        out.write(f.read())
    store._add_file(maildir.user_directory(store.root, USER), staged, 0, "", None)
    _aged(staged, 40)
    assert staging.sweep(tmp) == (1, 0)  # its octets stay: the message holds them
    inbox = result(store.open(USER, "INBOX"))
    assert result(inbox.open_message(1)).read().startswith(b"Subject: test")


def test_opening_a_mailbox_sweeps_its_owners_tmp_at_most_once_an_hour(store, monkeypatch):
    tmp = store.staging_directory(USER)
    first = _leftover(os.path.join(tmp, "first"), 40)
    store = MaildirStore(store.root)  # a server started since: not swept yet
    result(store.open(USER, "Sent"))
    assert not os.path.exists(first)
    second = _leftover(os.path.join(tmp, "second"), 40)
    result(store.open(USER, "INBOX"))
    assert os.path.exists(second)  # swept a moment ago
    now = time.monotonic() + maildir.SWEEP_INTERVAL + 1
    monkeypatch.setattr(maildir.time, "monotonic", lambda: now)
    result(store.open(USER, "INBOX"))
    assert not os.path.exists(second)


def test_the_sweep_at_start_covers_every_users_tmp(tmp_path):
    store = MaildirStore(str(tmp_path / "mail"))
    users = [USER, "bob@example.org"]
    leftovers = []
    for user in users:
        store.provision_sync(user)
        leftovers.append(_leftover(os.path.join(store.staging_directory(user), "x"), 40, 100))
    fresh = MaildirStore(str(tmp_path / "mail"))  # the next process
    assert result(fresh.sweep_staging()) == (2, 200)
    assert not any(os.path.exists(path) for path in leftovers)
