"""METADATA entries (RFC 5464) kept as files, for the Maildir store (``IMetadataStore``).

A mailbox's entries live in its own Maildir++ directory (``txmailhost-metadata.json``; INBOX's
in the user's directory), so RENAME carries them and DELETE removes them with no extra step;
the account's ("server") entries are in ``txmailhost-server-metadata.json`` in the user's
directory. The files are JSON readable with ``cat``: an entry's value is a string when it is
UTF-8, else ``{"base64": "..."}``. Writes go through ``_safeio.write_atomic`` (temp file,
fsync, rename, fsync of the directory), so a SETMETADATA answered OK survives a crash.

A change is a read, a modification and a write: it holds an ``flock`` on the file's directory
meanwhile, so the server's workers (processes of their own) and the CLI never lose one
another's changes, and the entry limit is checked against what is really there.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping

from txmailhost import _safeio
from txmailhost.store.interfaces import TooManyEntries

MAILBOX_FILE = "txmailhost-metadata.json"
SERVER_FILE = "txmailhost-server-metadata.json"
_lock = threading.Lock()  # one read-modify-write at a time in this process


def read(path: str) -> dict[str, bytes]:
    """The entries in ``path``; none when it doesn't exist (or isn't a JSON object)."""
    try:
        with open(path, "rb") as f:
            stored = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        return {}  # unreadable: treated as empty rather than failing every GETMETADATA
    if not isinstance(stored, dict):
        return {}
    entries = {}
    for name, value in stored.items():
        if isinstance(value, str):
            entries[name] = value.encode("utf-8")
        elif isinstance(value, dict) and isinstance(value.get("base64"), str):
            entries[name] = base64.b64decode(value["base64"])
    return entries


def update(path: str, changes: dict[str, bytes | None], limit: int | None = None) -> None:
    """Apply ``changes`` to the entries in ``path`` and write them back durably;
    ``TooManyEntries`` (nothing written) past ``limit`` entries."""
    with _lock, _safeio.directory_locked(os.path.dirname(path)):
        entries = changed(read(path), changes, limit)
        if not entries and not os.path.exists(path):
            return
        _safeio.write_atomic(path, _encode(entries))


def changed(
    entries: Mapping[str, bytes], changes: dict[str, bytes | None], limit: int | None
) -> dict[str, bytes]:
    """``entries`` with ``changes`` applied (None removes); ``TooManyEntries`` when they grow
    past ``limit`` (a change that doesn't add entries is always taken: one that makes room in
    a mailbox found above the limit must not be refused)."""
    after = dict(entries)
    for name, value in changes.items():
        if value is None:
            after.pop(name, None)
        else:
            after[name] = value
    if limit is not None and len(after) > limit and len(after) > len(entries):
        raise TooManyEntries(f"{len(after)} metadata entries, at most {limit}")
    return after


def _encode(entries: dict[str, bytes]) -> bytes:
    stored: dict[str, object] = {}
    for name in sorted(entries):
        value = entries[name]
        try:
            stored[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            stored[name] = {"base64": base64.b64encode(value).decode("ascii")}
    return json.dumps(stored, indent=1, ensure_ascii=False).encode("utf-8")
