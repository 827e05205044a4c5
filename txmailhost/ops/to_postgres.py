"""``txmailhost migrate maildir-to-postgres``: move a one-node installation into PostgreSQL.

What moves, from this data directory into the database of ``--dsn`` (default ``[store] dsn``):

- the accounts: every table of ``DATA/accounts.sqlite`` the database has (domains, users with
  their password hashes, aliases, forwards, quotas, login origins, admins, app passwords);
- the mail: every user's mailboxes under ``DATA/mail`` with their UIDVALIDITY, UIDs, UIDNEXT,
  flags and keywords, INTERNALDATEs and modseqs (``store/postgres_restore.py``), and their
  subscriptions, so IMAP clients recognise every mailbox and download nothing again, and
  their IMAP METADATA entries (RFC 5464: the account's and each mailbox's
  ``txmailhost-*metadata.json``) and their access control lists (RFC 4314: what each mailbox
  grants other users, ``DATA/mail/txmailhost-acl.sqlite``), so shared folders stay shared;
- the relay queue: every message of ``DATA/queue`` with each recipient's state, attempts and
  next attempt (``PostgresQueueStore.import_envelope``).

- the state a PostgreSQL store keeps in the database rather than in each node's directory:
  the SRS keys, every user's Sieve scripts and running vacation replies (``node_state.py``).

The administrator's ``DATA/sieve/global`` scripts stay files. The source is only read. Stop
the server first: mail arriving meanwhile would be left behind.

Idempotent: a row that exists is kept, a mailbox that holds messages in the database is
skipped (each mailbox is copied in one transaction: all or nothing), a queued message already
there is skipped; a run cut short is completed by running it again. Each mailbox prints a
progress line. Then every mailbox, account and queued message is compared (``--verify-only``
does just that): UIDVALIDITY, each message's UID, flags, size and INTERNALDATE, each
METADATA entry's value and each grant of access. The exit status is 1 when something differs. Finally set ``[store]
backend``, ``[store] accounts`` and ``[queue] backend`` to ``"postgres"`` and start the server.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import Any

from txmailhost.ops.mailbox_admin import AdminError, emit, json_option, result_of
from txmailhost.ops.node_state import copy_node_state, differences
from txmailhost.store.interfaces import MessageSource
from txmailhost.store.restore import RestoredMessage

# accounts.sqlite's tables, parents before children (foreign keys)
_ACCOUNT_TABLES = (
    "domains",
    "users",
    "login_origins",
    "aliases",
    "forwards",
    "admins",
    "app_passwords",
)


def register(sources: Any, with_accounts: Callable[..., Callable[[argparse.Namespace], int]]):
    """Add ``maildir-to-postgres`` to ``txmailhost migrate``'s sources."""
    command = sources.add_parser(
        "maildir-to-postgres",
        help="copy accounts, mail (keeping UIDs) and the queue into PostgreSQL, then verify",
    )
    command.add_argument("--dsn", help="the database (default: [store] dsn)")
    command.add_argument(
        "--verify-only", action="store_true", help="only compare the two, copy nothing"
    )
    json_option(command)
    command.set_defaults(run=with_accounts(_run))


class _Lazy(MessageSource):
    """A message of the Maildir store, opened only when the database reads it (one file open
    at a time, whatever the mailbox's size)."""

    __slots__ = ("_opener",)

    def __init__(self, opener: Callable[[], Any], size: int) -> None:
        super().__init__(size=size)
        self._opener = opener

    def open(self) -> Any:
        return self._opener()


def _run(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    dsn = args.dsn or config.store.dsn
    if not dsn:
        raise AdminError("no database: give --dsn, or set [store] dsn")
    import psycopg

    from txmailhost.queue.postgres import PostgresQueueStore
    from txmailhost.queue.spool import Spool
    from txmailhost.store import (
        backends,
        postgres_restore,  # noqa: F401 - registers IMailboxRestore
        s3blobs,
    )
    from txmailhost.store.pgstate import SharedState
    from txmailhost.store.postgres import PostgresStore

    try:
        target = PostgresStore(dsn, None, None, blobs=s3blobs.from_config(config.store))
    except psycopg.OperationalError as e:
        raise AdminError(f"can't reach the database: {e}".strip()) from e
    source = backends.build("maildir", config.mail_root)
    state = SharedState(dsn)
    queue = PostgresQueueStore(dsn, migrate=False)
    spool = Spool(config.queue_dir)
    quiet = bool(args.json)
    report: dict[str, Any] = {}
    try:
        users = _users(config.accounts_path)
        if not args.verify_only:
            report["accounts"] = _copy_accounts(config.accounts_path, dsn)
            _progress(quiet, f"accounts: {report['accounts']}")
            report["mail"] = _copy_mail(source, target, users, quiet)
            report["queue"] = _copy_queue(spool, queue, quiet)
            report["node_state"] = copy_node_state(config.data_dir, users, state)
            _progress(quiet, f"SRS keys and Sieve: {report['node_state']}")
        problems = _verify(source, target, users, spool, queue, dsn, config.accounts_path)
        problems += differences(config.data_dir, users, state)
    finally:
        state.close()
        queue.close()
        target.close()
    report["problems"] = problems

    def lines() -> list[str]:
        if not problems:
            return ["verified: every account, mailbox, message and queued message matches"]
        return [f"MISMATCH: {p}" for p in problems]

    emit(args, report, lines)
    return 1 if problems else 0


def _progress(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, flush=True)


def _users(accounts_path: str) -> list[str]:
    with sqlite3.connect(f"file:{accounts_path}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT address FROM users ORDER BY address")]


def _columns(db: Any, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _copy_accounts(accounts_path: str, dsn: str) -> dict[str, int]:
    """Copy each table's rows (the columns both sides have); existing rows are kept."""
    import psycopg

    copied: dict[str, int] = {}
    with (
        sqlite3.connect(f"file:{accounts_path}?mode=ro", uri=True) as db,
        psycopg.connect(dsn) as conn,
    ):
        for table in _ACCOUNT_TABLES:
            theirs = set(
                conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                    (table,),
                ).fetchall()
            )
            columns = [c for c in _columns(db, table) if (c,) in theirs]
            if not columns:
                continue
            names = ", ".join(columns)
            rows = db.execute(f"SELECT {names} FROM {table}").fetchall()
            marks = ", ".join(["%s"] * len(columns))
            new = 0
            for row in rows:
                new += conn.execute(
                    f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                    row,
                ).rowcount
            if table == "app_passwords" and rows:
                conn.execute(
                    "SELECT setval('app_passwords_id_seq', (SELECT max(id) FROM app_passwords))"
                )
            copied[table] = new
        conn.commit()
    return copied


def _restored(mailbox: Any) -> tuple[Any, list[RestoredMessage]]:
    snapshot = result_of(mailbox.snapshot())
    messages = [
        RestoredMessage(
            m.uid,
            frozenset(m.flags),
            m.internaldate,
            m.modseq,
            _Lazy(lambda uid=m.uid: result_of(mailbox.open_message(uid)), m.size),
        )
        for m in snapshot.messages
    ]
    return snapshot, messages


def _copy_mail(source: Any, target: Any, users: list[str], quiet: bool) -> dict[str, int]:
    from txmailhost.store.restore import IMailboxRestore

    restorer = IMailboxRestore(target)
    done = {"mailboxes": 0, "messages": 0, "skipped": 0, "metadata": 0, "acl": 0}
    for user in users:
        there = set(result_of(target.list_mailboxes(user)))
        for name in result_of(source.list_mailboxes(user)):
            snapshot, messages = _restored(result_of(source.open(user, name)))
            restored = None
            if name not in there or not _same(target, user, name, snapshot):
                restored = restorer.restore_sync(
                    user, name, snapshot.uidvalidity, snapshot.uidnext, messages
                )
            if restored is None:
                done["skipped"] += 1
                _progress(quiet, f"mail: {user}/{name}: in the database already, skipped")
                continue
            done["mailboxes"] += 1
            done["messages"] += len(messages)
            _progress(
                quiet,
                f"mail: {user}/{name}: {len(messages)} message(s),"
                f" UIDVALIDITY {snapshot.uidvalidity}",
            )
        subscribed = set(result_of(source.subscriptions(user)))
        for name in set(result_of(target.subscriptions(user))) | subscribed:
            result_of(target.subscribe(user, name, name in subscribed))
        granted = _copy_acls(source, target, user)
        if granted:
            done["acl"] += granted
            _progress(quiet, f"acl: {user}: {granted} access right{'' if granted == 1 else 's'}")
        entries = _copy_metadata(source, target, user)
        if entries:
            done["metadata"] += entries
            _progress(
                quiet, f"metadata: {user}: {entries} METADATA entr{'y' if entries == 1 else 'ies'}"
            )
    return done


def _metadata_of(source: Any, target: Any, user: str) -> Iterator[tuple[str | None, Any, Any]]:
    """(mailbox, its entries here, its entries in the database) for the account's own
    entries (mailbox None) and each of the user's mailboxes in both."""
    there = set(result_of(target.list_mailboxes(user)))
    for name in (None, *result_of(source.list_mailboxes(user))):
        if name is None or name in there:
            yield (
                name,
                result_of(source.get_metadata(user, name)),
                result_of(target.get_metadata(user, name)),
            )


def _copy_metadata(source: Any, target: Any, user: str) -> int:
    """Write the user's METADATA entries the database lacks or holds with another value, a
    mailbox's at once; how many. Entries only the database has are kept (as rows are)."""
    copied = 0
    for name, mine, theirs in _metadata_of(source, target, user):
        changes = {entry: value for entry, value in mine.items() if theirs.get(entry) != value}
        if changes:
            result_of(target.set_metadata(user, name, changes))
            copied += len(changes)
    return copied


def _acls_of(source: Any, target: Any, user: str) -> Iterator[tuple[str, Any, Any]]:
    """(mailbox, its access control list here, the database's) for each of the user's
    mailboxes in both; nothing when either store keeps no ACLs (RFC 4314)."""
    from txmailhost.store.interfaces import IAclStore

    if not (IAclStore.providedBy(source) and IAclStore.providedBy(target)):
        return
    there = set(result_of(target.list_mailboxes(user)))
    for name in result_of(source.list_mailboxes(user)):
        if name in there:
            yield name, result_of(source.get_acl(user, name)), result_of(target.get_acl(user, name))


def _copy_acls(source: Any, target: Any, user: str) -> int:
    """Grant in the database what the user's mailboxes grant here (another user, a group
    identifier, ``anyone``), where the database lacks it or grants otherwise; how many.
    Grants only the database has are kept (as rows are). Without this, shared folders
    stopped being shared the day the installation moved."""
    copied = 0
    for name, mine, theirs in _acls_of(source, target, user):
        for identifier, rights in mine.items():
            if theirs.get(identifier) != rights:
                result_of(target.set_acl(user, name, identifier, rights))
                copied += 1
    return copied


def _same(target: Any, user: str, name: str, snapshot: Any) -> bool:
    """The mailbox is in the database as it is here (copied by an earlier run)."""
    status = result_of(result_of(target.open(user, name)).status())
    return (status.uidvalidity, status.messages) == (snapshot.uidvalidity, len(snapshot.messages))


def _copy_queue(spool: Any, queue: Any, quiet: bool) -> dict[str, int]:
    done = {"messages": 0, "skipped": 0}
    for queue_id in spool.ids():
        try:
            envelope = spool.load(queue_id)
        except (OSError, ValueError, TypeError, KeyError) as e:
            print(f"queue: {queue_id}: unreadable, left in DATA/queue ({e})", file=sys.stderr)
            continue
        if queue.import_envelope(envelope, spool.message_path(queue_id)):
            done["messages"] += 1
            _progress(quiet, f"queue: {queue_id}: {len(envelope.active())} recipient(s) to go")
        else:
            done["skipped"] += 1
    return done


def _verify(
    source: Any,
    target: Any,
    users: list[str],
    spool: Any,
    queue: Any,
    dsn: str,
    accounts_path: str,
) -> list[str]:
    """What differs between the installation and the database (empty: nothing)."""
    import psycopg

    problems: list[str] = []
    with psycopg.connect(dsn) as conn:
        theirs = {row[0] for row in conn.execute("SELECT address FROM users")}
    problems += [f"account {u} is not in the database" for u in users if u not in theirs]
    for user in users:
        if user not in theirs:
            continue
        names = set(result_of(target.list_mailboxes(user)))
        for name in result_of(source.list_mailboxes(user)):
            if name not in names:
                problems.append(f"{user}/{name} is not in the database")
                continue
            mine = result_of(result_of(source.open(user, name)).snapshot())
            copy = result_of(result_of(target.open(user, name)).snapshot())
            if mine.uidvalidity != copy.uidvalidity:
                problems.append(
                    f"{user}/{name}: UIDVALIDITY {copy.uidvalidity}, not {mine.uidvalidity}"
                )

            def rows(snapshot: Any) -> list[tuple[Any, ...]]:
                return [
                    (m.uid, sorted(m.flags - {"\\Recent"}), m.size, int(m.internaldate))
                    for m in snapshot.messages
                ]

            if rows(mine) != rows(copy):
                problems.append(
                    f"{user}/{name}: messages differ ({len(mine.messages)} here,"
                    f" {len(copy.messages)} in the database)"
                )
        if set(result_of(source.subscriptions(user))) != set(result_of(target.subscriptions(user))):
            problems.append(f"{user}: subscriptions differ")
        for name, mine, theirs in _acls_of(source, target, user):
            if wrong := sorted(i for i, rights in mine.items() if theirs.get(i) != rights):
                problems.append(f"{user}/{name}: access rights differ: {', '.join(wrong)}")
        for name, mine, theirs in _metadata_of(source, target, user):
            if wrong := sorted(e for e, value in mine.items() if theirs.get(e) != value):
                where = f"{user}/{name}" if name is not None else f"{user} (server entries)"
                problems.append(f"{where}: METADATA entries differ: {', '.join(wrong)}")
    queued = set(queue.ids())
    problems += [
        f"queued message {q} is not in the database" for q in spool.ids() if q not in queued
    ]
    return problems
