"""Moving and deleting from the webmail (web/moving.py) take IMAP MOVE's path through the store:
a message keeps its flags and INTERNALDATE, leaves its folder, and where the store moves in one
step (Maildir: a rename) is in one folder only, a crash part way too."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet.defer import Deferred

from tests.support.fixtures import BACKENDS, make_world
from tests.support.syncpool import result
from txmailhost.store import backends
from txmailhost.store.index import MailboxIndex
from txmailhost.store.interfaces import MessageSource
from txmailhost.web import moving
from txmailhost.web.context import WebContext

ALICE = "alice@example.test"
DATE = 1_577_872_800.0  # 2020-01-01 10:00 UTC: what the client said, not the file's mtime
FLAGS = frozenset({"\\Flagged", "\\Seen", "$label"})


class Killed(BaseException):
    """The process dies here: nothing after it runs, no handler catches it."""


def _world(tmp_path, backend: str):
    world = make_world(tmp_path, backend)
    world.add_user(ALICE)
    result(world.store.create_mailbox(ALICE, "Work"))
    inbox = result(world.store.open(ALICE, "INBOX"))
    for subject in (b"one", b"two"):
        message = MessageSource.from_bytes(b"Subject: %s\r\n\r\nbody\r\n" % subject)
        result(inbox.append(message, sorted(FLAGS), DATE))
    return world


def _post(world, handler, **form: str):
    """``handler`` run for ALICE's session on a POST of ``form`` (past the site's checks)."""
    request = SimpleNamespace(args={k.encode(): [v.encode()] for k, v in form.items()})
    session = SimpleNamespace(user=ALICE, account=SimpleNamespace(store=world.store))
    ctx = WebContext(request, SimpleNamespace(observers=()), session)  # type: ignore[arg-type]
    return result(Deferred.fromCoroutine(handler(ctx)))


def _messages(store, folder: str) -> list[tuple[bytes, frozenset[str], float]]:
    box = result(store.open(ALICE, folder))
    uids = [info.uid for info in result(box.snapshot()).messages]
    return [(m.content, m.flags, m.internaldate) for m in result(box.messages(uids, content=True))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_move_and_delete_keep_flags_and_date_and_leave_the_source(tmp_path, backend):
    world = _world(tmp_path, backend)
    one, two = _messages(world.store, "INBOX")

    moved = _post(world, moving.move, folder="INBOX", uid="1", target="Work")
    deleted = _post(world, moving.delete, folder="INBOX", uid="2")

    assert moved.status == deleted.status == 303
    assert _messages(world.store, "INBOX") == []
    assert _messages(world.store, "Work") == [one]
    assert _messages(world.store, "Trash") == [two]
    assert one[1:] == two[1:] == (FLAGS, DATE)


@pytest.mark.parametrize("route", ["move", "delete"])
def test_a_crash_once_the_message_reached_the_target_leaves_it_in_one_folder(
    tmp_path, monkeypatch, route
):
    """Killed as the target indexes the message, before anything more happens: Maildir
    moved the file (a rename), so the store started afresh finds it there only, where a
    copy followed by an expunge would leave it in both folders."""
    world = _world(tmp_path, "maildir")
    real_add = MailboxIndex.add

    def killed(index, *args, **kwargs):
        real_add(index, *args, **kwargs)
        raise Killed

    monkeypatch.setattr(MailboxIndex, "add", killed)
    with pytest.raises(Killed):
        if route == "move":
            _post(world, moving.move, folder="INBOX", uid="1", target="Work")
        else:
            _post(world, moving.delete, folder="INBOX", uid="1")
    monkeypatch.undo()

    target = "Work" if route == "move" else "Trash"
    restarted = backends.build("maildir", world.store.root, world.reactor, world.pool)
    counts = {f: len(_messages(restarted, f)) for f in ("INBOX", target)}
    assert counts == {"INBOX": 1, target: 1}  # message two stays; message one is moved once
