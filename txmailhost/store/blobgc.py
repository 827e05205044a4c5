"""Reaping orphan objects: bodies in the object store that no message row names.

Why there are any: the PostgreSQL store puts a body in the object store *before* the
transaction naming it commits, and deletes it only *after* the transaction deleting its last
row committed (``s3blobs.py``). A crash, a lost connection or an object store that failed a
DELETE between the two leaves an object nobody names — never a row without its object, which
would be a lost message. Orphans cost only storage, so they are reaped here, by hand or from
cron (``txmailhost db gc``), not by every node on a timer: listing a large bucket is slow and
paid per request, and one sweep a day is plenty.

The grace period protects uploads in flight: an object younger than it may belong to a
transaction that has not committed yet, so it is left alone whatever the rows say. S3 dates a
multipart object from the start of its upload, so the grace must exceed the longest delivery
(upload and commit); the default, a day, exceeds it by far. Unfinished multipart uploads older
than the grace (a node that died mid-upload) are aborted, which frees their parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from txmailhost.store.s3blobs import S3Blobs

GRACE = 24 * 3600.0  # seconds an object is left alone after its upload began


@dataclass
class Collected:
    """What a sweep found and did."""

    examined: int = 0  # our objects older than the grace period
    orphans: int = 0  # of those, named by no row
    deleted: int = 0  # orphans deleted (0 in a dry run)
    aborted: int = 0  # unfinished multipart uploads aborted


def collect_garbage(
    conn: Any,
    blobs: S3Blobs,
    grace: float = GRACE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Collected:
    """Delete the objects of ``blobs`` older than ``grace`` seconds that no ``messages`` row
    of the database behind ``conn`` (an autocommit psycopg connection) names, a listing page
    (up to 1,000 keys, one query) at a time, and abort stale multipart uploads."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=grace)
    done = Collected()
    for page in blobs.listing():
        old = [key for key, modified in page if modified < cutoff]
        if not old:
            continue
        done.examined += len(old)
        named = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT blob FROM messages WHERE blob = ANY (%s)", (old,)
            )
        }
        orphans = [key for key in old if key not in named]
        done.orphans += len(orphans)
        if orphans and not dry_run:
            blobs.delete(orphans)
            done.deleted += len(orphans)
    for key, upload_id in blobs.stale_uploads(cutoff):
        if not dry_run:
            blobs.abort(key, upload_id)
            done.aborted += 1
    return done
