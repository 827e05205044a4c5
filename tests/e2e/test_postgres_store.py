"""The real server with ``[store] backend = "postgres"``: the CLI, SMTP in, IMAP and POP3 out,
IMAP IDLE hearing of a change another node made in the same database, and METADATA entries
kept as rows another node reads and ``user del --purge`` removes.

The "other node" is a ``PostgresStore`` in the test process on the same database: what it
writes reaches the server only through PostgreSQL (rows and ``NOTIFY``), as it would from a
second machine. Skipped where PostgreSQL is not installed (tests/support/postgres.py).
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import time

import pytest

from tests.support.postgres import postgres_server  # noqa: F401 - the session's cluster
from tests.support.server import ServerProcess
from tests.support.syncpool import SyncReactor, result
from txmailhost.store.interfaces import INBOX, MessageSource

pytestmark = pytest.mark.slow

PASSWORD = "secret-pw"
ALICE = "alice@example.test"


def _config(dsn: str) -> str:
    return f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\n'


@pytest.fixture(scope="module")
def database(postgres_server):  # noqa: F811
    dsn = postgres_server.database()
    yield dsn
    postgres_server.drop(dsn)


@pytest.fixture(scope="module")
def server(tmp_path_factory, database):
    data = tmp_path_factory.mktemp("postgres") / "data"
    proc = ServerProcess(str(data), extra_config=_config(database)).start()
    proc.add_user(ALICE, PASSWORD)  # the CLI provisions the mailboxes in the database
    yield proc
    proc.stop()


@pytest.fixture
def other_node(database):
    from txmailhost.store.postgres import PostgresStore

    store = PostgresStore(database, SyncReactor(), None)
    yield store
    store.close()


def _imap(server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(ALICE, PASSWORD)
    return imap


def test_the_cli_made_the_schema_and_the_mailboxes(server, other_node):
    assert "up to date" in server.cli("db", "status").stdout
    assert "up to date" in server.cli("db", "upgrade").stdout
    assert "Sent" in result(other_node.list_mailboxes(ALICE))
    added = server.cli(
        "user", "add", "carol@example.test", "--password-file", "-", stdin="pw-carol-1\n"
    )
    assert "mail in PostgreSQL database" in added.stdout
    assert "Sent" in result(other_node.list_mailboxes("carol@example.test"))


def test_mail_sent_over_smtp_is_read_over_imap_and_pop3(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.sendmail("x@remote.test", [ALICE], "Subject: pg-flow\r\n\r\nstored in postgres\r\n")
    imap = _imap(server)
    imap.select("INBOX")
    typ, found = imap.search(None, "SUBJECT", "pg-flow")
    assert typ == "OK" and found[0]
    typ, data = imap.fetch(found[0].split()[-1], "(BODY.PEEK[TEXT])")
    assert data[0][1] == b"stored in postgres\r\n"
    imap.logout()
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    count = pop.stat()[0]
    assert any(b"stored in postgres" in line for line in pop.retr(count)[1])
    pop.quit()


def test_idle_on_this_node_hears_a_delivery_and_a_flag_change_made_by_another(server, other_node):
    imap = _imap(server)
    typ, data = imap.select("INBOX")
    before = int(data[0])
    imap.send(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+")
    # Another node delivers: the server learns of it only through PostgreSQL.
    copies = result(
        other_node.deliver(
            [(ALICE, INBOX)], MessageSource.from_bytes(b"Subject: from B\r\n\r\nhi\r\n")
        )
    )
    assert imap.readline() == b"* %d EXISTS\r\n" % (before + 1)
    box = result(other_node.open(ALICE, INBOX))
    result(box.store_flags([copies[(ALICE, INBOX)]], ["\\Flagged"], "+"))
    line = imap.readline()
    while b"RECENT" in line:
        line = imap.readline()
    assert line.startswith(b"* %d FETCH" % (before + 1)) and b"\\Flagged" in line
    imap.send(b"DONE\r\n")
    assert imap.readline().startswith(b"i1 OK")
    imap.logout()


def test_db_upgrade_creates_the_schema_of_a_new_database(tmp_path, postgres_server):  # noqa: F811
    dsn = postgres_server.database()
    try:
        proc = ServerProcess(str(tmp_path / "data"), extra_config=_config(dsn))
        proc.write_config()
        proc.cli("init")
        status = proc.cli("db", "status").stdout
        assert "schema version 0" in status and "db upgrade" in status
        assert "upgraded from version 0 to" in proc.cli("db", "upgrade").stdout
        assert "up to date" in proc.cli("db", "upgrade").stdout
    finally:
        postgres_server.drop(dsn)


def test_db_commands_refuse_a_store_without_a_database(tmp_path):
    proc = ServerProcess(str(tmp_path / "data"))
    proc.write_config()
    proc.cli("init")
    done = proc.cli("db", "upgrade", check=False)
    assert done.returncode == 1 and "no database to manage" in done.stderr


imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def test_metadata_is_offered_kept_in_the_database_and_purged_with_the_user(
    server,
    database,
    other_node,
):
    """METADATA (RFC 5464) over PostgreSQL: entries set over IMAP are rows another node reads,
    and ``user del --purge`` removes them with the user's mail."""
    import psycopg

    erin = "erin@example.test"
    server.add_user(erin, PASSWORD)
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(erin, PASSWORD)
    assert b"METADATA" in imap.capability()[1][0].split()  # offered once logged in
    assert imap.create("Notes")[0] == "OK"
    for name, entries in (("Notes", '(/private/comment "kept")'), ('""', '(/shared/x "y")')):
        assert imap._simple_command("SETMETADATA", name, entries)[0] == "OK"
    typ, data = imap._simple_command("GETMETADATA", "Notes", "/private/comment")
    assert typ == "OK"
    assert imap.untagged_responses.pop("METADATA") == [b'"Notes" (/private/comment "kept")']
    imap.logout()
    assert result(other_node.get_metadata(erin, "Notes")) == {"/private/comment": b"kept"}
    assert result(other_node.get_metadata(erin, None)) == {"/shared/x": b"y"}

    def rows() -> tuple[int, int]:
        with psycopg.connect(database, autocommit=True) as conn:
            return conn.execute(
                "SELECT (SELECT count(*) FROM mailbox_metadata m JOIN mailboxes b"
                " ON b.id = m.mailbox_id JOIN mail_users u ON u.id = b.user_id"
                " WHERE u.address = %s),"
                " (SELECT count(*) FROM server_metadata s JOIN mail_users u"
                " ON u.id = s.user_id WHERE u.address = %s),"
                " (SELECT count(*) FROM mailbox_metadata WHERE value = 'kept')",
                (erin, erin),
            ).fetchone()

    assert rows() == (1, 1, 1)
    server.cli("user", "del", erin, "--purge")
    assert rows() == (0, 0, 0)


def test_two_servers_on_one_database_share_the_mail_and_push_each_others_changes(
    tmp_path, database, server
):
    """Node B, a second server process on the same database: SMTP into node A (the module's
    server) is pushed to IDLE on node B, and an APPEND on node B takes the next UID."""
    node_b = ServerProcess(str(tmp_path / "node-b"), extra_config=_config(database)).start()
    try:
        node_b.add_user(ALICE, PASSWORD)  # accounts are per node; the mail is shared
        imap = _imap(node_b)
        typ, data = imap.select("INBOX")
        before = int(data[0])
        imap.send(b"i1 IDLE\r\n")
        assert imap.readline().startswith(b"+")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
            s.sendmail("x@remote.test", [ALICE], "Subject: via A\r\n\r\nto node A\r\n")
        assert imap.readline() == b"* %d EXISTS\r\n" % (before + 1)
        imap.send(b"DONE\r\n")
        while not imap.readline().startswith(b"i1 OK"):
            pass
        typ, data = imap.fetch(str(before + 1), "(BODY.PEEK[TEXT])")
        assert data[0][1] == b"to node A\r\n"
        typ, data = imap.append("INBOX", None, None, b"Subject: via B\r\n\r\nappended\r\n")
        uids = imap.uid("SEARCH", None, "ALL")[1][0].split()
        assert typ == "OK" and int(uids[-1]) == int(uids[-2]) + 1
        imap.logout()
        # node A's view has it too
        imap_a = _imap(server)
        imap_a.select("INBOX")
        assert imap_a.search(None, "SUBJECT", '"via B"')[1][0]
        imap_a.logout()
    finally:
        node_b.stop()


def test_accounts_in_postgres_a_user_added_on_one_node_logs_in_on_another(
    tmp_path,
    postgres_server,  # noqa: F811
):
    dsn = postgres_server.database()
    config = _config(dsn) + 'accounts = "postgres"\n'
    node_a = ServerProcess(str(tmp_path / "a"), extra_config=config)
    node_b = ServerProcess(str(tmp_path / "b"), extra_config=config)
    try:
        node_a.start()
        node_b.start()
        node_a.add_user("dave@example.test", PASSWORD)  # only on A, with A's CLI
        assert "dave@example.test" in node_b.cli("user", "list").stdout
        with smtplib.SMTP("127.0.0.1", node_b.ports["smtp"], timeout=30) as s:
            s.sendmail("x@remote.test", ["dave@example.test"], "Subject: to B\r\n\r\nhi\r\n")
        imap = imaplib.IMAP4("127.0.0.1", node_b.ports["imap"], timeout=30)
        imap.login("dave@example.test", PASSWORD)
        typ, data = imap.select("INBOX")
        assert typ == "OK" and int(data[0]) == 1
        imap.logout()
    finally:
        node_a.stop()
        node_b.stop()
        postgres_server.drop(dsn)


def test_after_its_database_connections_are_terminated_the_next_commands_work(
    server,
    database,
    postgres_server,  # noqa: F811
):
    """``pg_terminate_backend`` of every connection to the database (a failover, a pooler, an
    administrator) while they sit idle: the database is there, so the commands that follow
    work, and IDLE hears the next delivery; a connection the server closed is replaced
    before a command is sent on it, not found dead by the first command of each thread."""
    import psycopg

    sessions = [_imap(server) for _ in range(3)]  # connections on several storage threads
    for imap in sessions:
        for _ in range(4):
            assert imap.status("INBOX", "(MESSAGES)")[0] == "OK"
    watcher = _imap(server)
    typ, data = watcher.select("INBOX")
    exists = int(data[0])
    name = database.rsplit("dbname=", 1)[1]
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        others = "datname = %s AND pid <> pg_backend_pid()"
        pids = [
            r[0] for r in conn.execute(f"SELECT pid FROM pg_stat_activity WHERE {others}", (name,))
        ]
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
        deadline = time.time() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY (%s)", (pids,)
        ).fetchone()[0]:
            assert time.time() < deadline, "the backends did not end"
            time.sleep(0.05)
    assert len(pids) >= 3
    answers = [imap.status("INBOX", "(MESSAGES)")[0] for imap in sessions for _ in range(4)]
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.sendmail("x@remote.test", [ALICE], "Subject: after the cut\r\n\r\nstill here\r\n")
    watcher.sock.settimeout(10)
    heard = watcher.readline()
    watcher.send(b"DONE\r\n")
    while not watcher.readline().startswith(b"i1 "):
        pass
    for imap in (*sessions, watcher):
        imap.logout()
    assert answers == ["OK"] * len(answers)
    assert heard == b"* %d EXISTS\r\n" % (exists + 1)
