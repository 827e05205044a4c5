"""The PostgreSQL store with message bodies in an object store (``[store] blobs = "s3"``),
beyond the contract (tests/store/test_contract.py runs that on it as "postgres+s3"): where the
bytes go, copies sharing an object, objects deleted after their last row, the durability
invariant across a crash between the upload and the commit, garbage collection, and memory
bounded for a large message. Real PostgreSQL (tests/support/postgres.py) and moto's S3 server
(tests/support/s3.py); skipped where either is missing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.s3 import s3_blobs, s3_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store.interfaces import INBOX, MessageSource, StoreError

USER = "alice@example.test"
MSG = b"Subject: hi\r\nFrom: a@b.test\r\n\r\nbody\r\n"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def store(postgres_dsn, s3_blobs):  # noqa: F811
    from txmailhost.store.postgres import PostgresStore

    s = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool(), blobs=s3_blobs)
    result(s.provision(USER))
    yield s
    s.close()


def _db(dsn):
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _objects(s3_server, blobs) -> list[str]:  # noqa: F811
    return sorted(s3_server.keys(blobs.bucket))


def _append(store, data: bytes, mailbox: str = INBOX) -> int:
    box = result(store.open(USER, mailbox))
    return result(box.append(MessageSource.from_bytes(data), [], None))[1]


def _read(store, uid: int, mailbox: str = INBOX) -> bytes:
    box = result(store.open(USER, mailbox))
    with result(box.open_message(uid)) as f:
        return f.read()


def test_small_and_large_bodies_are_objects_not_chunk_rows(store, s3_server, postgres_dsn):  # noqa: F811
    from txmailhost.store.s3blobs import PART

    small = _append(store, b"Subject: lf\n\nbare line ends\n")
    large_body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (2 * PART // 1000 + 7)
    large = _append(store, large_body)  # more than two parts: a multipart upload
    keys = _objects(s3_server, store.blobs)
    assert len(keys) == 2
    with _db(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM message_chunks").fetchone()[0] == 0
        rows = conn.execute("SELECT uid, blob, chunks, size FROM messages ORDER BY uid").fetchall()
    assert sorted(r[1] for r in rows) == keys and all(r[2] == 0 for r in rows)
    # stored in the CRLF form clients receive, as the bytea path stores it
    assert _read(store, small) == b"Subject: lf\r\n\r\nbare line ends\r\n"
    assert _read(store, large) == large_body
    assert rows[1][3] == len(large_body)
    box = result(store.open(USER, INBOX))
    [one] = result(box.messages([small], header=True, content=True))
    assert one.header == b"Subject: lf\r\n\r\n" and one.content.endswith(b"ends\r\n")


def test_a_copy_shares_the_object_which_goes_only_with_the_last_copy(store, s3_server):  # noqa: F811
    uid = _append(store, MSG)
    inbox = result(store.open(USER, INBOX))
    trash = result(store.open(USER, "Trash"))
    [(_, copied)] = result(inbox.copy([uid], trash))
    assert len(_objects(s3_server, store.blobs)) == 1
    result(inbox.expunge([uid]))
    assert len(_objects(s3_server, store.blobs)) == 1  # Trash still names it
    assert _read(store, copied, "Trash") == MSG
    result(trash.expunge([copied]))
    assert _objects(s3_server, store.blobs) == []


def test_delivery_to_several_mailboxes_uploads_once(store, s3_server):  # noqa: F811
    big = b"Subject: many\r\n\r\n" + b"z" * (2 << 20)
    copies = result(store.deliver([(USER, INBOX), (USER, "Sent")], MessageSource.from_bytes(big)))
    assert len(_objects(s3_server, store.blobs)) == 1
    assert _read(store, copies[(USER, "Sent")], "Sent") == big


def test_deleting_a_mailbox_or_a_user_deletes_their_objects(store, s3_server):  # noqa: F811
    result(store.create_mailbox(USER, "Work"))
    _append(store, MSG, "Work")
    kept = _append(store, MSG)
    assert len(_objects(s3_server, store.blobs)) == 2
    result(store.delete_mailbox(USER, "Work"))
    assert len(_objects(s3_server, store.blobs)) == 1
    assert _read(store, kept) == MSG
    result(store.remove_user(USER))
    assert _objects(s3_server, store.blobs) == []


def test_an_unreachable_object_store_refuses_the_append_and_adds_no_row(
    postgres_dsn,  # noqa: F811
    s3_server,  # noqa: F811
):
    import socket

    from txmailhost.store.postgres import PostgresStore
    from txmailhost.store.s3blobs import S3Blobs, S3Settings

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = S3Settings(
        bucket="nowhere",
        endpoint=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key="k",
        secret_key="s",
    )
    with pytest.raises(StoreError, match="bucket 'nowhere'"):  # a server checks at start
        PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool(), blobs=S3Blobs(settings))
    store = PostgresStore(postgres_dsn, SyncReactor(), None, blobs=S3Blobs(settings))
    try:
        box = result(store.open(USER, INBOX))
        for data in (MSG, MSG + b"y" * (2 << 20)):  # the one-statement and the streamed path
            with pytest.raises(StoreError) as caught:
                result(box.append(MessageSource.from_bytes(data), [], None))
            assert not caught.value.permanent  # SMTP defers, the queue retries
        assert result(box.status()).messages == 0
    finally:
        store.close()


def test_bodies_already_in_postgres_stay_readable_after_switching_to_s3(
    postgres_dsn,  # noqa: F811
    s3_blobs,  # noqa: F811
    s3_server,  # noqa: F811
):
    from txmailhost.store.postgres import PostgresStore

    before = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool())
    old = _append(before, MSG)
    before.close()
    after = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool(), blobs=s3_blobs)
    try:
        new = _append(after, MSG + b"new\r\n")
        assert _read(after, old) == MSG and _read(after, new) == MSG + b"new\r\n"
        inbox = result(after.open(USER, INBOX))
        pairs = dict(result(inbox.copy([old, new], result(after.open(USER, "Trash")))))
        assert _read(after, pairs[old], "Trash") == MSG  # a bytea copy, chunks and all
        assert len(_objects(s3_server, s3_blobs)) == 1
    finally:
        after.close()


# A node that dies (kill -9) after the object store acknowledged the body and before the
# transaction naming it committed: the child exits inside _allocate, mid-transaction.
_CRASHING_WRITER = """
import os, sys
from tests.support.s3 import S3Server
from tests.support.syncpool import SyncReactor, result
from txmailhost.store.interfaces import INBOX, MessageSource
from txmailhost.store.postgres import PostgresStore
from txmailhost.store.s3blobs import S3Blobs, S3Settings

settings = S3Settings(bucket=sys.argv[3], endpoint=sys.argv[2], region="us-east-1",
                      access_key="a", secret_key="b")
store = PostgresStore(sys.argv[1], SyncReactor(), None, blobs=S3Blobs(settings))
box = result(store.open(sys.argv[4], INBOX))
PostgresStore._allocate = lambda *args: os._exit(9)
box.append(MessageSource.from_bytes(b"Subject: lost\\r\\n\\r\\n" + b"q" * (2 << 20)), [], None)
"""


def test_a_crash_between_upload_and_commit_leaves_an_invisible_orphan_that_gc_reaps(
    store,
    postgres_dsn,  # noqa: F811
    s3_server,  # noqa: F811
):
    from txmailhost.store.blobgc import collect_garbage

    kept = _append(store, MSG)
    bucket = store.blobs.bucket
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, postgres_dsn, s3_server.endpoint, bucket, USER],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    box = result(store.open(USER, INBOX))
    assert [m.uid for m in result(box.snapshot()).messages] == [kept]  # never visible
    assert len(_objects(s3_server, store.blobs)) == 2  # the orphan is there
    with _db(postgres_dsn) as conn:
        young = collect_garbage(conn, store.blobs)  # within the grace period: left alone
        assert young.orphans == 0 and len(_objects(s3_server, store.blobs)) == 2
        done = collect_garbage(conn, store.blobs, grace=0, now=datetime.now(UTC) + timedelta(1))
    assert (done.examined, done.orphans, done.deleted) == (2, 1, 1)
    [left] = _objects(s3_server, store.blobs)
    assert _read(store, kept) == MSG  # the named object survived


def test_gc_touches_only_its_own_keys_and_aborts_stale_uploads(
    postgres_dsn,  # noqa: F811
    s3_server,  # noqa: F811
):
    from txmailhost.store.blobgc import collect_garbage
    from txmailhost.store.postgres import PostgresStore
    from txmailhost.store.s3blobs import S3Blobs

    bucket = s3_server.bucket()
    blobs = S3Blobs(s3_server.settings(bucket, prefix="mail/"))
    store = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool(), blobs=blobs)
    try:
        kept = _append(store, MSG)
        client = s3_server.client()
        client.put_object(Bucket=bucket, Key="backups/db.dump", Body=b"not mail")
        client.put_object(Bucket=bucket, Key="mail/README", Body=b"not ours either")
        orphan = blobs.new_key()
        client.put_object(Bucket=bucket, Key=orphan, Body=b"orphan")
        stale = client.create_multipart_upload(Bucket=bucket, Key=blobs.new_key())["UploadId"]
        later = datetime.now(UTC) + timedelta(days=2)
        with _db(postgres_dsn) as conn:
            dry = collect_garbage(conn, blobs, dry_run=True, now=later)
            assert (dry.orphans, dry.deleted) == (1, 0) and orphan in s3_server.keys(bucket)
            done = collect_garbage(conn, blobs, now=later)
        assert (done.examined, done.orphans, done.deleted, done.aborted) == (2, 1, 1, 1)
        assert orphan not in s3_server.keys(bucket)
        assert {"backups/db.dump", "mail/README"} <= set(s3_server.keys(bucket))
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert stale not in [u["UploadId"] for u in uploads]
        assert _read(store, kept) == MSG
    finally:
        store.close()


def test_a_large_message_goes_up_and_comes_down_in_bounded_memory(store, tmp_path):
    """50 MiB through the store (append from a file, read back) allocates a small part of
    that in this process: the body is streamed in parts, never held whole."""
    size = 50 << 20
    path = tmp_path / "big.eml"
    line = b"y" * 78 + b"\r\n"
    with open(path, "wb") as f:
        f.write(b"Subject: big\r\n\r\n")
        for _ in range(size // len(line)):
            f.write(line)
    total = os.path.getsize(path)
    box = result(store.open(USER, INBOX))
    tracemalloc.start()
    try:
        uid = result(box.append(MessageSource.from_path(str(path)), [], None))[1]
        _current, up = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with result(box.open_message(uid)) as f:
            assert not isinstance(f, io.BytesIO)
            read = 0
            while piece := f.read(1 << 20):
                read += len(piece)
        _current, down = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == total
    assert up < 20 << 20, f"upload peaked at {up >> 20} MiB"
    assert down < 8 << 20, f"download peaked at {down >> 20} MiB"


def test_a_range_of_a_body_in_the_object_store_is_read_alone(store, postgres_dsn):  # noqa: F811
    from txmailhost.store.interfaces import IMessageRanges
    from txmailhost.store.postgres import PostgresStore

    body = b"Subject: r\r\n\r\n" + (bytes(range(32, 127)) + b"\r\n") * 100_000  # 9.3 MiB
    uid = _append(store, body)
    box = result(store.open(USER, INBOX))
    assert IMessageRanges.providedBy(box)
    f, base = result(box.open_range(uid, 7_000_000, 100))
    with f:
        assert base == 7_000_000 and f.read() == body[7_000_000:7_000_100]  # only the range
    f, base = result(box.open_range(uid, len(body) - 10, 100))  # past the end: what's there
    with f:
        assert f.read() == body[-10:]
    f, base = result(box.open_range(uid, len(body) + 5, 10))
    with f:
        assert f.read() == b""
    # a body in message_chunks (stored before the switch) comes whole, from offset 0
    plain = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool())
    try:
        old = _append(plain, MSG)
    finally:
        plain.close()
    f, base = result(box.open_range(old, 3, 4))
    with f:
        assert base == 0 and f.read() == MSG


def test_a_batch_of_bodies_is_fetched_whole_and_in_order(store):
    uids = [_append(store, b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)) for i in range(12)]
    box = result(store.open(USER, INBOX))
    got = result(box.messages(uids, header=False, content=True))
    assert [m.content for m in got] == [
        b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(12)
    ]


def test_a_database_that_ran_step_7_before_step_6_existed_gets_step_6(postgres_dsn):  # noqa: F811
    """Releases before this one reserved step 6 and ran step 7: upgrading fills the gap."""
    from txmailhost.store.postgres_schema import LATEST, current_version, upgrade

    with _db(postgres_dsn) as conn:
        upgrade(conn)
        conn.execute("DROP INDEX messages_blob")
        conn.execute("ALTER TABLE messages DROP COLUMN blob")
        conn.execute("DELETE FROM schema_version WHERE version = 6")
        assert current_version(conn) == 5
        assert upgrade(conn) == (5, LATEST)
        assert conn.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'messages' AND column_name = 'blob'"
        ).fetchone()
