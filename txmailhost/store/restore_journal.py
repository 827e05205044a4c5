"""The journal of a Maildir restore in progress: what makes killing one safe.

``MaildirRestore`` links a mailbox's restored files in, then names them in the index in one
transaction. Killed between the two (``kill -9``, a power cut), it left the files behind,
and the next reconcile (the running server's, or the next run's) indexed them as mail another
tool had put there: under fresh UIDs and the mailbox's own UIDVALIDITY, so the run again
added every message a second time. Now, before the first link, the names go into
``DIR/txmailhost-restoring.json`` with a token, and the index transaction stores that token
(meta ``restore_token``). The next restore of the mailbox reads the journal before anything
else: a token the index holds means the restore committed; another means it didn't, and its
files, with any index rows a reconcile gave them meanwhile, are removed, as if it had never
begun.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator

from txmailhost import _safeio
from txmailhost.store import index as _index
from txmailhost.store.maildir import read_header

JOURNAL = "txmailhost-restoring.json"
COMMITTED = "restore_token"  # the index meta key the restore's transaction sets


@contextlib.contextmanager
def linking(
    directory: str, sources: list[str], targets: list[str]
) -> Iterator[tuple[str, list[bytes | None]]]:
    """Journal ``targets``, then link each staged file in ``sources`` to its target durably;
    yields the token for the index transaction to store, and each file's header (None when
    unreadable). A failure before the body is done removes the links and the journal."""
    token = secrets.token_hex(16)
    record = {"token": token, "files": [os.path.relpath(t, directory) for t in targets]}
    _safeio.write_atomic(os.path.join(directory, JOURNAL), json.dumps(record).encode())
    linked: list[str] = []
    try:
        for source, target in zip(sources, targets, strict=True):
            _safeio.link_durably(source, target)
            linked.append(target)
        # The files are durable before the index names them.
        _safeio.fsync_dirs(os.path.join(directory, sub) for sub in ("cur", "new"))
        yield token, [_header(target) for target in targets]
    except BaseException:
        for target in linked:
            with contextlib.suppress(OSError):
                os.unlink(target)
        end(directory)
        raise


def end(directory: str) -> None:
    """The restore committed (or undid its links): the journal has served."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, JOURNAL))


def undo_interrupted(directory: str) -> bool:
    """Remove what a restore killed before its commit left in ``directory``; True if there
    was something to remove (the caller tells the mailbox's sessions)."""
    try:
        with open(os.path.join(directory, JOURNAL), "rb") as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        return False
    index = _index.MailboxIndex(directory)
    with index.write() as db:
        committed = index.meta(db).get(COMMITTED) == record["token"]
        if not committed:
            _remove(directory, index, db, {_base(name) for name in record["files"]})
    end(directory)
    return not committed


def _remove(directory: str, index: _index.MailboxIndex, db: sqlite3.Connection, names: set[str]):
    """The files whose base names are ``names``, wherever their flags have moved them, and
    the rows a reconcile may have given them (expunged, so sessions that saw them learn)."""
    adopted = [uid for uid, name in db.execute("SELECT uid, name FROM messages") if name in names]
    if adopted:
        index.remove(adopted, db)
    for sub in ("new", "cur"):
        for filename in os.listdir(os.path.join(directory, sub)):
            if _base(filename) in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, sub, filename))
    _safeio.fsync_dirs(os.path.join(directory, sub) for sub in ("cur", "new"))


def _base(filename: str) -> str:
    return os.path.basename(filename).partition(":2,")[0]


def _header(path: str) -> bytes | None:
    try:
        return read_header(path)
    except OSError:  # unreadable: read (or not) on use
        return None
