"""The real server with ``[queue] backend = "postgres"``: two nodes share one queue.

Node A accepts a message for a server that refuses connections; node B sees it in
``txmailhost queue list``; A is stopped (its deliveries go nowhere); an administrator bounces
the message on B, and B's runner sends the DSN, which the sender reads over POP3 on B. Then
mail submitted on A reaches a remote server's inbox. Skipped without PostgreSQL.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_postgres_cluster import Sink
from tests.e2e.test_relay import inbox, submit, wait_for
from tests.support.dns import DNSServer
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()


def node(path, dsn: str, dns_server, relay_port: int, workers: int = 1) -> ServerProcess:
    extra = (
        f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{dsn}"\n'
        f'[queue]\nbackend = "postgres"\n'
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\nport = {relay_port}\n'
    )
    return ServerProcess(str(path), extra_config=extra, workers=workers).start()


def test_a_message_queued_on_one_node_is_bounced_by_another(
    tmp_path,
    dns_server,
    postgres_dsn,  # noqa: F811 - the fixture
):
    dns_server.add("remote.test", "A", "127.0.0.1")  # port 9: nobody listens, so it defers
    a = node(tmp_path / "a", postgres_dsn, dns_server, 9)
    b = node(tmp_path / "b", postgres_dsn, dns_server, 9)
    try:
        a.add_user("alice@example.test", PASSWORD)
        submit(a, "carol@remote.test")
        listing = wait_for(lambda: "(deferred)" in (out := b.cli("queue", "list").stdout) and out)
        [line] = listing.splitlines()
        queue_id = line.split()[0]
        assert "carol@remote.test" in line
        shown = b.cli("queue", "show", queue_id).stdout
        assert '"attempts": 1' in shown and "Subject: outbound" in shown
        a.stop()
        b.cli("queue", "bounce", queue_id)
        [dsn] = wait_for(lambda: inbox(b, "alice@example.test"))
        assert b"multipart/report" in dsn and b"Status: 5.0.0" in dsn
        assert b"Final-Recipient: rfc822; carol@remote.test" in dsn
        assert b.cli("queue", "list").stdout == ""
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_mail_submitted_on_a_node_reaches_the_remote_inbox(
    tmp_path,
    dns_server,
    workers,
    postgres_dsn,  # noqa: F811 - the fixture
):
    """With two worker processes, mail accepted by either is queued in the database and
    delivered by the runner in worker 0."""
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    a = node(tmp_path / "a", postgres_dsn, dns_server, far.ports["smtp"], workers)
    try:
        a.add_user("alice@example.test", PASSWORD)
        for _ in range(6):  # new connections: each worker accepts some
            submit(a, "bob@far.test")
        messages = wait_for(lambda: len(found := inbox(far, "bob@far.test")) >= 6 and found)
        assert len(messages) == 6 and all(b"Subject: outbound" in m for m in messages)
        wait_for(lambda: a.cli("queue", "list").stdout == "")
    finally:
        a.stop()
        far.stop()


class _CuttingSink(Sink):
    """The remote MX, cutting every connection to the node's database (``cut``) while it
    holds a message, just before it answers ``250``: the node learns of the remote server's
    acceptance with no working database connection left."""

    def __init__(self, cut) -> None:
        super().__init__()
        self.cut = cut

    def before_250(self) -> None:
        self.cut()


def test_a_database_connection_cut_during_a_relay_does_not_deliver_twice(
    tmp_path,
    dns_server,
    postgres_server,  # noqa: F811 - the fixture
    postgres_dsn,  # noqa: F811 - the fixture
):
    """The node delivered (the remote ``250``) while every connection it had to the
    database was being terminated (``pg_terminate_backend``, as a failover or a pooler
    does). Writing the result down once the database answers again is its job: the lease
    left to expire, the recipient was delivered a second time by the next claim."""
    import psycopg

    name = postgres_dsn.rsplit("dbname=", 1)[1]

    def cut() -> None:
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    sink = _CuttingSink(cut)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    extra = (
        f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{postgres_dsn}"\n'
        f'[queue]\nbackend = "postgres"\nlease_time = 2\nretry_min = 1\nretry_max = 1\n'
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\nport = {sink.port}\n'
    )
    a = ServerProcess(str(tmp_path / "a"), extra_config=extra).start()
    try:
        a.add_user("alice@example.test", PASSWORD)
        submit(a, "bob@far.test")
        wait_for(lambda: sink.deliveries)
        sink.cut = lambda: None
        wait_for(lambda: a.cli("queue", "list").stdout == "", timeout=30)
        time.sleep(4)  # past the lease and the retry: a second claim would have delivered
        with sink.lock:
            delivered = [rcpts for _ehlo, rcpts, _m, _at in sink.deliveries]
        assert delivered == [("bob@far.test",)]
    finally:
        a.stop()
        sink.shutdown()
        sink.server_close()
