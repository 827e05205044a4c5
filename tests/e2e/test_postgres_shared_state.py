"""Two real nodes on one PostgreSQL database share the login throttle: failures against node
A make node B refuse that address too (skipped without PostgreSQL)."""

from __future__ import annotations

import imaplib
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

ALICE = "alice@example.test"


def node(path, dsn: str) -> ServerProcess:
    extra = (
        f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{dsn}"\n'
        "[security]\nlogin_failures_per_ip = 3\n"
    )
    return ServerProcess(str(path), extra_config=extra).start()


def login(server: ServerProcess, password: str) -> str:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        imap.login(ALICE, password)
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        imap.shutdown()
    return "OK"


def test_failed_logins_on_one_node_count_on_the_other(
    tmp_path,
    postgres_dsn,  # noqa: F811 - the fixture
):
    a = node(tmp_path / "a", postgres_dsn)
    b = node(tmp_path / "b", postgres_dsn)
    try:
        a.add_user(ALICE, PASSWORD)
        assert login(b, PASSWORD) == "OK"
        for _ in range(3):
            assert "AUTHENTICATIONFAILED" in login(a, "wrong-password")
        deadline = time.time() + 10
        refused = login(b, PASSWORD)
        while "UNAVAILABLE" not in refused and time.time() < deadline:
            time.sleep(0.5)
            refused = login(b, PASSWORD)
        assert "UNAVAILABLE" in refused  # node B counts node A's failures from this address
    finally:
        a.stop()
        b.stop()
