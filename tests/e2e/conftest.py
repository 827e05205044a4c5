"""The ``server`` fixture: the real server with users alice and bob, fresh or shared.

Starting a server costs little once its data directory exists; creating alice and bob with the
admin CLI costs most (three CLI processes and two scrypt hashes, ~0.95 s of the ~1.8 s setup).
So the data directory of a server that has started once and has both users is made once per
session, through the real server and the real CLI, and copied for every server after that.

A test gets a fresh server of its own (started from that copy) unless it is marked
``@pytest.mark.shared_server``: then it gets the one server its module shares, which saves the
start too. Mark only tests that need nothing fresh: they may not rely on what alice's and
bob's mailboxes hold, change the server (users, aliases, certificates, restarts), count log
lines, or fail a login (the failures would slow or refuse the next tests' logins from
127.0.0.1: accounts/throttle.py). The fixture checks the last two after each shared test.
"""

from __future__ import annotations

import imaplib
import re
import shutil
import ssl

import pytest

from tests.support.server import ServerProcess

PASSWORD = "secret-pw"
USERS = ("alice@example.test", "bob@example.test")


def client_context() -> ssl.SSLContext:
    """A TLS client context that accepts the server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def imap_login(server: ServerProcess, user: str, password: str) -> bool:
    """Whether IMAP (after STARTTLS) takes ``password`` for ``user`` now: what a change
    made in the webmail or by the CLI means for a mail client."""
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    try:
        imap.login(user, password)
    except imaplib.IMAP4.error:
        return False
    imap.logout()
    return True


# What the log says when a login fails or is throttled (smtp/server.py, accounts/throttle.py).
_FAILED_LOGIN = re.compile(r"(?:login|auth) (?:failed|throttled)|login refused \(throttled")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "shared_server: the test may use the server its module shares (tests/e2e/conftest.py)",
    )


@pytest.fixture(scope="session")
def server_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data directory the real server has started in once, with alice and bob added by the
    CLI; the server is stopped, so the directory can be copied."""
    proc = ServerProcess(str(tmp_path_factory.mktemp("template") / "data")).start()
    try:
        for address in USERS:
            proc.add_user(address, PASSWORD)
    finally:
        proc.stop()
    return proc.data_dir


def start_from_template(template: str, data_dir: str, extra_config: str = "") -> ServerProcess:
    """A server started on a copy of ``template`` (its log starts empty), its config file
    written afresh with ``extra_config`` when one is given."""
    shutil.copytree(template, data_dir, symlinks=True)
    proc = ServerProcess(data_dir, extra_config)
    if extra_config:
        proc.write_config()
    return proc.start()


def start_signing(template: str, data_dir: str, domain: str = "example.test") -> ServerProcess:
    """``start_from_template``, then DKIM keys for ``domain`` made with the CLI and the
    server started again, so that it signs its users' mail with them."""
    proc = start_from_template(template, data_dir)
    try:
        proc.cli("dkim", "init", domain)
    finally:
        proc.stop()
    return proc.start()


@pytest.fixture(scope="module")
def shared_server(server_template: str, tmp_path_factory: pytest.TempPathFactory):
    """One server for the ``shared_server`` tests of a module."""
    proc = start_from_template(server_template, str(tmp_path_factory.mktemp("shared") / "data"))
    yield proc
    proc.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest, server_template: str, tmp_path):
    """The server a test talks to: its module's shared one if the test is marked
    ``shared_server``, else a fresh one of its own."""
    if request.node.get_closest_marker("shared_server") is None:
        proc = start_from_template(server_template, str(tmp_path / "data"))
        yield proc
        proc.stop()
        return
    proc = request.getfixturevalue("shared_server")
    if proc.process is None or proc.process.poll() is not None:
        raise AssertionError(f"the shared server is not running:\n{proc.log()[-3000:]}")
    offset = len(proc.log())
    yield proc
    # A test that failed a login would make the next ones' logins slow or refused.
    failed = _FAILED_LOGIN.search(proc.log()[offset:])
    assert failed is None, (
        f"{request.node.nodeid} failed a login on the shared server ({failed.group(0)!r}): "
        "give it a fresh server (remove its shared_server mark)"
    )
    assert proc.process is not None and proc.process.poll() is None, (
        f"{request.node.nodeid} stopped the shared server: give it a fresh one"
    )
