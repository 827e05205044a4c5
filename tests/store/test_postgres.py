"""What the PostgreSQL store does beyond the contract (tests/store/test_contract.py runs that on
it too): several writers on one database, notifications between stores, large messages in
chunks, the versioned schema. Each test gets a fresh database of the server the tests start
(tests/support/postgres.py); all skip where PostgreSQL is not installed."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncReactor, result
from txmailhost.store.interfaces import INBOX, MessageSource, StoreError

USER = "alice@example.test"
MSG = b"Subject: hi\r\n\r\nbody\r\n"


def make_store(dsn: str):
    from txmailhost.store.postgres import PostgresStore

    return PostgresStore(dsn, SyncReactor(), None)  # no pool: each call runs on the caller


@pytest.fixture
def stores(postgres_dsn):  # noqa: F811 - the fixture imported above
    """A factory of stores on the test's database, each with its own connections, as two
    nodes would have; all closed after the test."""
    made = []

    def make():
        made.append(make_store(postgres_dsn))
        return made[-1]

    yield make
    for store in made:
        store.close()


def test_concurrent_appends_from_separate_connections_get_unique_ascending_uids(stores):
    first = stores()
    result(first.provision(USER))
    writers, per_writer = 4, 25
    got: list[list[int]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            store = stores()  # its own connection, as another node
            box = result(store.open(USER, INBOX))
            start.wait()
            for i in range(per_writer):
                data = b"Subject: %d/%d\r\n\r\nx\r\n" % (n, i)
                got[n].append(result(box.append(MessageSource.from_bytes(data), [], None))[1])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [uid for uids in got for uid in uids]
    assert sorted(every) == list(range(1, writers * per_writer + 1))  # unique, no gaps
    for uids in got:
        assert uids == sorted(uids)  # each writer saw its UIDs grow
    status = result(result(first.open(USER, INBOX)).status())
    assert (status.messages, status.uidnext) == (writers * per_writer, writers * per_writer + 1)
    # Every append took a MODSEQ of its own: a client's CONDSTORE view never merges two.
    snapshot = result(result(first.open(USER, INBOX)).snapshot())
    modseqs = [m.modseq for m in snapshot.messages]
    assert len(set(modseqs)) == len(modseqs)
    assert [m.uid for m in sorted(snapshot.messages, key=lambda m: m.modseq)] == sorted(every)


def test_a_change_made_through_one_store_reaches_the_watchers_of_another(stores):
    node_a, node_b = stores(), stores()
    result(node_a.provision(USER))
    heard = threading.Event()
    sent = threading.Event()
    box_b = result(node_b.open(USER, INBOX))
    stop = box_b.watch(heard.set)
    assert node_b._listener is not None and node_b._listener.ready.wait(30)
    box_a = result(node_a.open(USER, INBOX))
    result(box_a.append(MessageSource.from_bytes(MSG), [], None))
    assert heard.wait(30)  # a bound for a stuck test, not a measurement
    # What B learns is read from the database: the message A added.
    (message,) = result(box_b.messages([1], content=True))
    assert message.content == MSG
    # A flag change on A is pushed too; a watcher of another mailbox hears nothing.
    heard.clear()
    other = result(node_b.open(USER, "Sent"))
    other.watch(sent.set)
    result(box_a.store_flags([1], ["\\Seen"], "+"))
    assert heard.wait(30)
    assert not sent.is_set()
    stop()


def test_a_store_does_not_hear_its_own_notifications_twice(stores):
    store = stores()
    result(store.provision(USER))
    heard: list[int] = []
    box = result(store.open(USER, INBOX))
    box.watch(lambda: heard.append(1))
    assert store._listener.ready.wait(30)
    # Once LISTEN is in place every watcher looks once: a change made while it was being set
    # up sent no notice this store could hear.
    assert heard == [1]
    heard.clear()
    result(box.append(MessageSource.from_bytes(MSG), [], None))
    assert heard == [1]  # published after the commit, in this process
    store._heard(f"{store._origin}\t{USER}\t{INBOX}")  # its own NOTIFY, coming back
    assert heard == [1]


def test_a_server_store_listens_before_its_first_session_watches(postgres_dsn):  # noqa: F811
    from tests.support.syncpool import SyncThreadPool
    from txmailhost.store.postgres import PostgresStore

    server = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool())  # as service.py
    other = make_store(postgres_dsn)
    try:
        assert server._listener is not None and server._listener.ready.is_set()
        result(other.provision(USER))
        heard: list[int] = []
        got = threading.Event()
        result(server.open(USER, INBOX)).watch(lambda: (heard.append(1), got.set()))
        box = result(other.open(USER, INBOX))
        result(box.append(MessageSource.from_bytes(MSG), [], None))
        assert got.wait(30)
        assert heard == [1]  # the delivery; no catch-up wake-up was needed
    finally:
        other.close()
        server.close()


def test_a_large_message_is_stored_in_chunks_and_read_back_whole_in_crlf_form(stores):
    from txmailhost.store.postgres import CHUNK

    store = stores()
    result(store.provision(USER))
    line = b"0123456789" * 7 + b"\n"
    body = line * ((2 * CHUNK + CHUNK // 2) // len(line))
    raw = b"Subject: big\n\n" + body  # bare LF: stored in CRLF form
    crlf = raw.replace(b"\n", b"\r\n")
    box = result(store.open(USER, INBOX))
    _validity, uid = result(box.append(MessageSource.from_bytes(raw), [], None))
    conn = store._connection()
    chunks = conn.execute("SELECT chunks FROM messages WHERE uid = %s", (uid,)).fetchone()[0]
    assert chunks == 3
    (message,) = result(box.messages([uid], header=True, content=True))
    assert message.size == len(crlf) and message.content == crlf
    assert message.header == b"Subject: big\r\n\r\n"
    with result(box.open_message(uid)) as f:
        assert f.read() == crlf
    # A copy is made inside the database and reads back the same.
    trash = result(store.open(USER, "Trash"))
    ((_old, new),) = result(box.copy([uid], trash))
    with result(trash.open_message(new)) as f:
        assert f.read() == crlf


def test_a_cr_at_a_chunk_boundary_does_not_get_a_second_one(stores):
    from txmailhost.store.postgres import CHUNK

    store = stores()
    raw = b"Subject: edge\r\n\r\n" + b"a" * (CHUNK - 18) + b"\r\nend\n"
    assert raw[CHUNK - 1 : CHUNK + 1] == b"\r\n"  # the CRLF straddles the chunks
    box = result(store.open(USER, INBOX))
    _validity, uid = result(box.append(MessageSource.from_bytes(raw), [], None))
    (message,) = result(box.messages([uid], content=True))
    assert message.content == raw[:-1] + b"\r\n"


def test_the_schema_is_versioned_and_upgrading_again_changes_nothing(postgres_dsn):  # noqa: F811
    import psycopg

    from txmailhost.store.postgres_schema import LATEST, SchemaTooNew, current_version, upgrade

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert current_version(conn) == 0
        assert upgrade(conn) == (0, LATEST)
        assert upgrade(conn) == (LATEST, LATEST)
        conn.execute("INSERT INTO schema_version VALUES (%s)", (LATEST + 1,))
        with pytest.raises(SchemaTooNew):
            upgrade(conn)


def test_nodes_starting_together_apply_each_migration_once(postgres_dsn):  # noqa: F811
    import psycopg

    from txmailhost.store.postgres_schema import LATEST, upgrade

    outcomes: list[tuple[int, int]] = []
    start = threading.Barrier(3)

    def node() -> None:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            start.wait()
            outcomes.append(upgrade(conn))

    threads = [threading.Thread(target=node) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 3 and all(after == LATEST for _before, after in outcomes)
    assert sorted(before for before, _after in outcomes) == [0, LATEST, LATEST]


def test_an_unreachable_database_is_a_temporary_store_error(postgres_server, tmp_path):  # noqa: F811
    from txmailhost.store.postgres import DatabaseUnavailable

    dsn = f"host={tmp_path} user=postgres dbname=postgres connect_timeout=2"  # no server there
    with pytest.raises(DatabaseUnavailable) as caught:
        make_store(dsn)
    assert isinstance(caught.value, StoreError) and not caught.value.permanent


def test_a_connection_dropped_during_a_call_fails_it_temporarily_and_the_next_reconnects(
    stores,
    postgres_dsn,  # noqa: F811
):
    from txmailhost.store.postgres import DatabaseUnavailable

    store = stores()
    result(store.provision(USER))
    pid = store._connection().info.backend_pid

    def cut(conn):  # the server ends the connection in the middle of the job
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(DatabaseUnavailable) as caught:
        result(store._run(cut))
    assert not caught.value.permanent  # SMTP answers 4xx, IMAP NO: the client tries again
    assert result(store.usage(USER)) == 0
    assert store._connection().info.backend_pid != pid


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_call(
    stores,
    postgres_dsn,  # noqa: F811
):
    """A failover or ``pg_terminate_backend`` while the connection sat idle: the next call
    works, on a new connection (it used to fail, once per storage thread)."""
    import psycopg

    store = stores()
    result(store.provision(USER))
    pid = store._connection().info.backend_pid
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.02)
    assert result(store.usage(USER)) == 0
    assert store._connection().info.backend_pid != pid


def test_the_listener_reconnects_and_its_watchers_look_again(stores, postgres_dsn):  # noqa: F811
    import psycopg

    node_a, node_b = stores(), stores()
    result(node_a.provision(USER))
    woken = threading.Event()
    result(node_b.open(USER, INBOX)).watch(woken.set)
    assert node_b._listener.ready.wait(30)
    woken.clear()
    node_b._listener.ready.clear()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
    # Notices sent while it was away are lost: on reconnecting, every watcher looks.
    assert node_b._listener.ready.wait(30) and woken.wait(30)
    woken.clear()
    box = result(node_a.open(USER, INBOX))
    result(box.append(MessageSource.from_bytes(MSG), [], None))
    assert woken.wait(30)  # and it hears the other node again


_WRITER = """
import sys
from tests.support.syncpool import SyncReactor, result
from txmailhost.store.interfaces import INBOX, MessageSource
from txmailhost.store.postgres import PostgresStore

store = PostgresStore(sys.argv[1], SyncReactor(), None)
box = result(store.open(sys.argv[2], INBOX))
for i in range(int(sys.argv[3])):
    data = b"Subject: %d\\r\\n\\r\\nx\\r\\n" % i
    print(result(box.append(MessageSource.from_bytes(data), [], None))[1], flush=True)
"""


def test_concurrent_appends_from_separate_processes_get_unique_ascending_uids(stores, postgres_dsn):  # noqa: F811
    import os
    import subprocess
    import sys

    result(stores().provision(USER))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, postgres_dsn, USER, "20"],
            stdout=subprocess.PIPE,
            cwd=root,
        )
        for _ in range(3)
    ]
    got = []
    for writer in writers:
        out, _err = writer.communicate(timeout=120)
        assert writer.returncode == 0
        got.append([int(line) for line in out.split()])
    assert sorted(uid for uids in got for uid in uids) == list(range(1, 61))
    assert all(uids == sorted(uids) and len(uids) == 20 for uids in got)


def test_usage_kept_on_the_mailbox_rows_matches_the_messages_after_every_kind_of_change(stores):
    from txmailhost.store.postgres import CHUNK

    store = stores()
    big = b"Subject: big\r\n\r\n" + b"y" * (CHUNK + 10)

    def counted() -> int:
        return sum(
            result(result(store.open(USER, name)).status()).size
            for name in result(store.list_mailboxes(USER))
        )

    box = result(store.open(USER, INBOX))
    first = result(box.append(MessageSource.from_bytes(MSG), [], None))[1]
    result(box.append_many([(MessageSource.from_bytes(big), [], None)] * 2))
    result(store.deliver([(USER, INBOX), (USER, "Sent")], MessageSource.from_bytes(MSG)))
    result(box.copy([first, 2], result(store.open(USER, "Trash"))))
    result(box.expunge([2]))
    result(store.rename_mailbox(USER, INBOX, "Old"))
    expected = 2 * len(MSG) + len(big) + len(MSG) + len(MSG) + len(big)
    assert counted() == expected and result(store.usage(USER)) == expected


def test_the_object_id_step_gives_old_rows_ids_and_their_internaldate_as_save_date(
    postgres_dsn,  # noqa: F811
):
    """A database from before object ids (schema 2): its mailboxes and messages get ids on
    the upgrade, distinct ones, and its messages report their INTERNALDATE as save date."""
    import psycopg

    from txmailhost.store import postgres_schema

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY)")
        for version, step in enumerate(postgres_schema.MIGRATIONS[:2], 1):
            conn.execute(step)
            conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        user_id = conn.execute(
            "INSERT INTO mail_users (address) VALUES (%s) RETURNING id", (USER,)
        ).fetchone()[0]
        box_id = conn.execute(
            "INSERT INTO mailboxes (user_id, name, uidnext) VALUES (%s, %s, 3) RETURNING id",
            (user_id, INBOX),
        ).fetchone()[0]
        for uid in (1, 2):
            conn.execute(
                "INSERT INTO messages (mailbox_id, uid, modseq, size, internaldate, chunks,"
                " header) VALUES (%s, %s, 1, 0, %s, 0, '')",
                (box_id, uid, 1_000_000 + uid),
            )
    store = make_store(postgres_dsn)
    try:
        box = result(store.open(USER, INBOX))
        origins = result(box.origins([1, 2]))
        assert [origins[uid].savedate for uid in (1, 2)] == [1_000_001, 1_000_002]
        assert origins[1].emailid != origins[2].emailid
        assert origins[1].emailid.startswith("M") and result(box.status()).mailboxid
    finally:
        store.close()


def test_a_dropped_store_stops_listening_without_close(postgres_dsn):  # noqa: F811
    """An embedding application may drop a store without ``close()``: its LISTEN thread
    holds it only weakly, so the store goes and its LISTEN connection with it."""
    import gc
    import time
    import weakref

    import psycopg

    def listening_backends() -> int:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            return admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
            ).fetchone()[0]

    store = make_store(postgres_dsn)
    result(store.provision(USER))
    result(store.open(USER, INBOX)).watch(lambda: None)
    assert store._listener.ready.wait(30)
    assert listening_backends() == 1
    gone = weakref.ref(store)
    del store
    gc.collect()
    assert gone() is None
    deadline = time.monotonic() + 30  # a bound for a stuck test; it takes half a second
    while listening_backends() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listening_backends() == 0


def test_remembering_a_message_another_node_is_expunging_waits_and_skips_it(
    stores,
    postgres_dsn,  # noqa: F811 - the fixture
):
    """An IMAP FETCH caches a BODYSTRUCTURE (``remember``) while another node's EXPUNGE of
    the same message is between its DELETE and its COMMIT: the cache waits for the EXPUNGE
    and skips the message, where it had read the row, then failed the foreign-key check
    (and could deadlock with the DELETE, failing the EXPUNGE instead)."""
    import psycopg

    store = stores()
    result(store.provision(USER))
    box = result(store.open(USER, INBOX))
    gone = result(box.append(MessageSource.from_bytes(MSG), [], None))[1]
    kept = result(box.append(MessageSource.from_bytes(MSG), [], None))[1]
    expunging = psycopg.connect(postgres_dsn)
    try:
        expunging.execute("SELECT 1 FROM mailboxes WHERE id = %s FOR UPDATE", (box.id,))
        expunging.execute("DELETE FROM messages WHERE mailbox_id = %s AND uid = %s", (box.id, gone))
        outcome: list = []

        def remember() -> None:
            try:
                outcome.append(result(box.remember("bodystructure", {gone: b"A", kept: b"B"})))
            except BaseException as e:  # noqa: BLE001 - reported below
                outcome.append(e)

        rememberer = threading.Thread(target=remember)
        rememberer.start()
        rememberer.join(0.5)
        assert rememberer.is_alive()  # waiting for the expunge
        expunging.commit()
        rememberer.join(10)
    finally:
        expunging.close()
    assert outcome == [None]
    assert result(box.derived([gone, kept], "bodystructure")) == {kept: b"B"}


def test_a_connection_closed_inside_a_transaction_is_not_swapped_midway(postgres_dsn):  # noqa: F811
    """``pgconn.usable``: idle and closed by the server, a connection is replaced; inside a
    transaction (the accounts' SQL asks for its connection at each statement) it is kept, so
    the rest of the transaction can't run, committed piecemeal, on a new connection: its
    next statement fails instead."""
    import psycopg

    from txmailhost.store.pgconn import usable

    def terminated(conn) -> None:
        pid = conn.info.backend_pid
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.02)

    idle = psycopg.connect(postgres_dsn, autocommit=True)
    busy = psycopg.connect(postgres_dsn, autocommit=True)
    try:
        assert usable(idle) and usable(busy)
        busy.execute("BEGIN")
        terminated(idle)
        terminated(busy)
        assert not usable(idle)
        assert usable(busy)
        with pytest.raises(psycopg.OperationalError):
            busy.execute("SELECT 1")
        assert not usable(busy)  # broken now: replaced at its next use
    finally:
        idle.close()
        busy.close()
