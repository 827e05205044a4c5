"""``txmailhost db ...``: the PostgreSQL store's schema, by hand.

``db upgrade`` applies the migrations the database named by ``[store] dsn`` lacks (the server
does the same when it starts; running it first lets an administrator upgrade the database once,
before rolling the new release over the nodes) and prints the versions before and after.
``db status`` only reads the version, and says whether this release would change it.
``db gc`` deletes the objects of ``[store] blobs = "s3"`` that no message names any more
(``blobgc.py``: what a crash left behind); run it from cron, daily.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


class _NoDatabase(ValueError):
    """The command needs ``[store] backend = "postgres"``; ValueError: the CLI prints it."""


def register(
    commands: Any, with_config: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Add the ``db`` command group to the CLI's subparsers."""
    db = commands.add_parser("db", help="the PostgreSQL store's schema (store.backend = postgres)")
    actions = db.add_subparsers(metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="apply the schema migrations the database lacks")
    upgrade.set_defaults(run=with_config(_upgrade))
    status = actions.add_parser("status", help="print the schema version of the database")
    status.set_defaults(run=with_config(_status))
    gc = actions.add_parser(
        "gc", help='delete objects no message names (store.blobs = "s3"; daily, from cron)'
    )
    gc.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="leave objects younger than this alone (default: a day)",
    )
    gc.add_argument("--dry-run", action="store_true", help="count the orphans, delete nothing")
    gc.set_defaults(run=with_config(_gc))


def _connect(config: Any) -> Any:
    if config.store.backend != "postgres":
        raise _NoDatabase(
            f'store.backend is "{config.store.backend}": there is no database to manage'
            ' (db commands are for backend = "postgres")'
        )
    import psycopg

    try:
        return psycopg.connect(config.store.dsn, autocommit=True)
    except psycopg.OperationalError as e:
        raise _NoDatabase(f"can't reach the mail database: {e}".strip()) from e


def _upgrade(args: argparse.Namespace, config: Any) -> int:
    from txmailhost.store.postgres_schema import SchemaTooNew, upgrade

    with _connect(config) as conn:
        try:
            before, after = upgrade(conn)
        except SchemaTooNew as e:
            raise _NoDatabase(str(e)) from e
    if before == after:
        print(f"schema version {after}: up to date")
    else:
        print(f"schema upgraded from version {before} to {after}")
    return 0


def _status(args: argparse.Namespace, config: Any) -> int:
    from txmailhost.store.postgres_schema import LATEST, current_version

    with _connect(config) as conn:
        version = current_version(conn)
    if version == LATEST:
        print(f"schema version {version}: up to date")
    elif version < LATEST:
        print(f"schema version {version}: `txmailhost db upgrade` brings it to {LATEST}")
    else:
        print(f"schema version {version}: newer than this release ({LATEST})")
    return 0


def _gc(args: argparse.Namespace, config: Any) -> int:
    from txmailhost.store import blobgc, s3blobs
    from txmailhost.store.interfaces import StoreError

    try:
        blobs = s3blobs.from_config(config.store)
    except StoreError as e:
        raise _NoDatabase(str(e)) from e
    if blobs is None:
        raise _NoDatabase(
            'store.blobs is "postgres": bodies are rows, deleted with their messages;'
            " nothing to collect"
        )
    grace = blobgc.GRACE if args.grace is None else args.grace
    if grace < 0:
        raise _NoDatabase("--grace: expected a number of seconds, at least 0")
    with _connect(config) as conn:
        try:
            done = blobgc.collect_garbage(conn, blobs, grace, args.dry_run)
        except StoreError as e:
            raise _NoDatabase(str(e)) from e
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"examined {done.examined} objects older than {grace:g} s: {done.orphans} orphans,"
        f" {verb} {done.orphans if args.dry_run else done.deleted};"
        f" {done.aborted} unfinished uploads aborted"
    )
    return 0
