"""The store backends by the name ``[store] backend`` gives them: one entry per backend.

A new backend (PostgreSQL, shared blob storage) is a module implementing ``IMailStore`` plus
one entry here; ``service.py`` and the CLI build whatever the config names through ``build``.
Each factory imports its module only when chosen, so naming a backend costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python.threadpool import ThreadPool


def _maildir(
    mail_root: str, reactor: Any, pool: ThreadPool | None, dsn: str, text_index: bool, blobs: Any
) -> Any:
    import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 folder-name codec

    from txmailhost.store.maildir import MaildirStore

    return MaildirStore(mail_root, reactor, pool, text_index=text_index)


def _memory(
    mail_root: str, reactor: Any, pool: ThreadPool | None, dsn: str, text_index: bool, blobs: Any
) -> Any:
    from txmailhost.store.memory import MemoryStore

    return MemoryStore(reactor, pool)


def _postgres(
    mail_root: str, reactor: Any, pool: ThreadPool | None, dsn: str, text_index: bool, blobs: Any
) -> Any:
    from txmailhost.store.postgres import PostgresStore

    return PostgresStore(dsn, reactor, pool, blobs=blobs)


BACKENDS: dict[str, Callable[[str, Any, ThreadPool | None, str, bool, Any], Any]] = {
    "maildir": _maildir,
    "memory": _memory,
    "postgres": _postgres,
}

# Backends that need a database server named by ``[store] dsn``: tests that build every
# backend by name (tests/support/backends.py) run these only where they start one.
NEEDS_SERVER = frozenset({"postgres"})

# Backends whose mail is gone when the process stops: the server says so loudly at start.
VOLATILE = frozenset({"memory"})


def build(
    backend: str,
    mail_root: str,
    reactor: Any = None,
    pool: ThreadPool | None = None,
    dsn: str = "",
    text_index: bool = True,
    blobs: Any = None,
) -> Any:
    """The ``IMailStore`` named ``backend``; ``mail_root`` is ``DATA/mail`` (where a store
    on disk keeps its files), ``dsn`` the database of a store in one (``[store] dsn``).
    Without ``pool`` a store does its work before each call returns (the CLI, which has no
    reactor running). ``text_index`` (``[store] text_index``) is for the stores that keep
    one (Maildir); the others search by reading every message. ``blobs``: the object store
    (``s3blobs.S3Blobs``, ``[store] blobs = "s3"``) a database store keeps bodies in."""
    return BACKENDS[backend](mail_root, reactor, pool, dsn, text_index, blobs)
