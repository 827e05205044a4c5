"""The real server with ``[store] backend = "postgres"`` and ``blobs = "s3"``: mail accepted over
SMTP lands as objects in the object store (moto's S3 server, tests/support/s3.py) named by
rows in PostgreSQL, IMAP reads it back from there, an expunge deletes the object, and
``txmailhost db gc`` reaps an orphan. Skipped where PostgreSQL or moto is missing."""

from __future__ import annotations

import imaplib
import smtplib
import time

import pytest

from tests.support.postgres import postgres_server  # noqa: F401 - the session's cluster
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, s3_server  # noqa: F401
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

PASSWORD = "secret-pw"
ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def world(tmp_path_factory, postgres_server, s3_server):  # noqa: F811
    dsn = postgres_server.database()
    bucket = s3_server.bucket()
    root = tmp_path_factory.mktemp("pg-s3")
    secret = root / "s3-secret"
    secret.write_text(SECRET_KEY + "\n")
    config = (
        f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\nblobs = "s3"\n'
        f's3_endpoint = "{s3_server.endpoint}"\ns3_bucket = "{bucket}"\n'
        f's3_region = "{REGION}"\ns3_prefix = "mail/"\ns3_access_key = "{ACCESS_KEY}"\n'
        f's3_secret_key_file = "{secret}"\n'
    )
    proc = ServerProcess(str(root / "data"), extra_config=config).start()
    proc.add_user(ALICE, PASSWORD)
    yield proc, dsn, bucket
    proc.stop()
    postgres_server.drop(dsn)


def _rows(dsn: str) -> list[tuple[int, str | None, int]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT m.uid, m.blob, m.chunks FROM messages m JOIN mailboxes b"
            " ON b.id = m.mailbox_id WHERE b.name = 'INBOX' ORDER BY m.uid"
        ).fetchall()


def _wait_for(count: int, dsn: str) -> list[tuple[int, str | None, int]]:
    """Local delivery follows the 250: wait until the rows are there."""
    deadline = time.time() + 30
    while time.time() < deadline:
        rows = _rows(dsn)
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"only {len(_rows(dsn))} of {count} messages delivered")


def test_mail_accepted_over_smtp_lands_as_objects_and_is_read_back_over_imap(
    world,
    s3_server,  # noqa: F811
):
    server, dsn, bucket = world
    big = "Subject: big\r\n\r\n" + ("w" * 76 + "\r\n") * 40_000  # 3 MiB: the streamed path
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.sendmail("x@remote.test", [ALICE], "Subject: small\r\n\r\nin the bucket\r\n")
        s.sendmail("x@remote.test", [ALICE], big)
    rows = _wait_for(2, dsn)
    keys = set(s3_server.keys(bucket))
    assert all(
        blob in keys and blob.startswith("mail/") and chunks == 0 for _u, blob, chunks in rows
    )
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    typ, data = imap.uid("FETCH", f"{rows[0][0]}:{rows[1][0]}", "(BODY.PEEK[TEXT])")
    texts = [part[1] for part in data if isinstance(part, tuple)]
    assert texts == [b"in the bucket\r\n", big.split("\r\n\r\n", 1)[1].encode()]
    # a partial FETCH of the large body, from the middle
    typ, data = imap.uid("FETCH", str(rows[1][0]), "(BODY.PEEK[TEXT]<780000.10>)")
    assert data[0][1] == b"w" * 10
    imap.logout()
    assert SECRET_KEY not in server.log()


def test_an_expunge_deletes_the_object_and_db_gc_reaps_an_orphan(world, s3_server):  # noqa: F811
    server, dsn, bucket = world
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.sendmail("x@remote.test", [ALICE], "Subject: doomed\r\n\r\nbye\r\n")
    rows = _wait_for(1, dsn)
    uid, blob, _chunks = rows[-1]
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    imap.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    assert blob not in s3_server.keys(bucket)
    orphan = "mail/" + "0" * 32  # what a crash between upload and commit leaves
    s3_server.client().put_object(Bucket=bucket, Key=orphan, Body=b"orphan")
    named = {b for _u, b, _c in _rows(dsn)}
    kept = server.cli("db", "gc").stdout  # a day's grace: the orphan is too young
    assert "0 orphans" in kept and orphan in s3_server.keys(bucket)
    done = server.cli("db", "gc", "--grace", "0").stdout
    assert "1 orphans, deleted 1" in done
    left = set(s3_server.keys(bucket))
    assert orphan not in left and named <= left
