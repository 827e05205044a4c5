"""Two real nodes on one PostgreSQL database, their sessions racing on one mailbox.

What one node checks and then changes must be checked and changed in one step of the
database, or a session on the other node changes the mailbox in between: a conditional
STORE (RFC 7162 3.1.3) from each node with the same ``UNCHANGEDSINCE`` both succeeding is
a lost update, the very thing the modifier is there to stop; IMAP APPENDs and SMTP
deliveries at once, each finding room under the quota, together went far past it. Each
test here failed, on every run tried, before its check moved into the store's transaction.

Skipped without PostgreSQL (tests/support/postgres.py).
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from functools import partial

import pytest

from tests.support.postgres import postgres_server  # noqa: F401 - the session's cluster
from tests.support.server import ServerProcess
from tests.support.together import at_once

pytestmark = pytest.mark.slow

PASSWORD = "races-Pw-7q2x"
USER = "racer@example.test"
FULL = "nearly-full@example.test"  # its quota set once, before any session
MAILED = "mailed@example.test"  # the same quota, for mail over SMTP
QUOTA = 20 * 1024


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, postgres_server):  # noqa: F811
    """Two nodes sharing a fresh database for the mail and the accounts; USER added once."""
    dsn = postgres_server.database()
    extra = (
        f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{dsn}"\n\n'
        '[security]\nplaintext_auth_from = ["loopback"]\n'
    )
    root = tmp_path_factory.mktemp("races")
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            started.append(ServerProcess(str(root / name), extra_config=extra).start())
        started[0].add_user(USER, PASSWORD)
        started[0].add_user(FULL, PASSWORD)
        started[0].cli("user", "quota", FULL, "20K")
        started[0].add_user(MAILED, PASSWORD)
        started[0].cli("user", "quota", MAILED, "20K")
        yield started
    finally:
        for node in started:
            node.stop()
        postgres_server.drop(dsn)


def _imap(node: ServerProcess, user: str = USER) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    return client


def _conditional_store(client: imaplib.IMAP4, modseq: int, keyword: str) -> bool:
    """``STORE 1 (UNCHANGEDSINCE modseq) +FLAGS (keyword)``: True when it was carried out,
    False when the server answered ``[MODIFIED 1]``."""
    typ, data = client._simple_command(
        "STORE", "1", f"(UNCHANGEDSINCE {modseq})", "+FLAGS", f"({keyword})"
    )
    assert typ == "OK", data
    return b"MODIFIED" not in data[-1]


def test_conditional_stores_from_two_nodes_with_one_modseq_never_both_succeed(nodes):
    """RFC 7162 3.1.3: of two STOREs ``UNCHANGEDSINCE`` the same MODSEQ on one message, the
    one that comes second finds the message changed and fails with ``[MODIFIED]``."""
    a, b = nodes
    seed = _imap(a)
    seed.append("INBOX", None, None, b"Subject: contended\r\n\r\nx\r\n")
    seed.logout()
    on_a, on_b = _imap(a), _imap(b)
    for client in (on_a, on_b):
        client.enable("CONDSTORE")
        client.select("INBOX")
    both, modseqs = [], []
    for n in range(40):
        typ, data = on_a.fetch("1", "(MODSEQ)")  # the last FETCH line is this command's
        modseq = int(re.search(rb"MODSEQ \((\d+)\)", data[-1])[1])
        modseqs.append(modseq)
        done = at_once(
            partial(_conditional_store, on_a, modseq, f"$a{n}"),
            partial(_conditional_store, on_b, modseq, f"$b{n}"),
        )
        assert any(done), f"round {n}: neither STORE was carried out"
        if all(done):
            both.append(n)
    # every round changed the message once at least: its MODSEQ grew each time
    assert modseqs == sorted(set(modseqs))
    typ, data = on_b.fetch("1", "(FLAGS)")
    kept = set(re.findall(rb"\$[ab]\d+", data[-1]))
    on_a.logout()
    on_b.logout()
    assert both == [], f"both nodes' conditional STOREs carried out in rounds {both}"
    assert len(kept) == 40  # one keyword a round: the STORE that lost changed nothing


def _storage(client: imaplib.IMAP4) -> tuple[int, int]:
    """(usage, limit) in KiB from ``GETQUOTAROOT INBOX``."""
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK", data
    found = re.search(rb"STORAGE (\d+) (\d+)", b" ".join(data[1]))
    return int(found[1]), int(found[2])


def test_appends_from_two_nodes_at_once_never_take_a_mailbox_past_its_quota(nodes):
    """docs/admin.rst: an ``APPEND`` past the limit fails with ``NO [OVERQUOTA]``. Eight
    sessions, four a node, each APPEND a 4 KiB message five times at once to a 20 KiB
    mailbox: four fit, the others are refused, however the sessions interleave."""
    message = b"Subject: filler\r\n\r\n" + b"y" * 4000 + b"\r\n"
    clients = [_imap(nodes[k % 2], FULL) for k in range(8)]
    assert _storage(clients[0]) == (0, QUOTA // 1024)

    def appender(client: imaplib.IMAP4) -> list[str]:
        answers = []
        for _ in range(5):
            typ, data = client.append("INBOX", None, None, message)
            answers.append(typ)
            if typ != "OK":
                assert b"[OVERQUOTA]" in data[0], data
        return answers

    answers = [a for done in at_once(*(partial(appender, c) for c in clients)) for a in done]
    used, _limit = _storage(clients[0])
    typ, data = clients[0].select("INBOX", readonly=True)
    for client in clients:
        client.logout()
    fitting = QUOTA // len(message)
    assert answers.count("OK") == int(data[0]) == fitting, answers
    assert used * 1024 <= QUOTA


def test_mail_from_two_nodes_at_once_never_takes_a_mailbox_past_its_quota(nodes):
    """docs/admin.rst: the quota may be passed by one message. Eight SMTP sessions, four a
    node, each send a 4 KiB message at the same moment to a user with 20 KiB of quota:
    each RCPT finds the mailbox empty, but the copies are stored (before the ``250``)
    under the user's quota lock, each only while the user is below the limit: five are
    taken (the fifth past it), the others get ``452 4.2.2`` at the end of DATA and are
    retried by their senders later."""
    message = "Subject: filler\r\n\r\n" + "y" * 4000 + "\r\n"

    def send(node: ServerProcess) -> str:
        with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as s:
            s.ehlo("sender.example")
            try:
                s.sendmail("someone@remote.test", [MAILED], message)
            except smtplib.SMTPDataError as e:
                return f"{e.smtp_code} {e.smtp_error.decode()}"
            except smtplib.SMTPRecipientsRefused as e:
                code, text = e.recipients[MAILED]
                return f"{code} {text.decode()}"
        return "250"

    answers = at_once(*(partial(send, nodes[k % 2]) for k in range(8)))
    client = _imap(nodes[1], MAILED)
    used, limit = _storage(client)
    typ, data = client.select("INBOX", readonly=True)
    typ, sizes = client.fetch("1", "(RFC822.SIZE)")  # the message with our Received field
    client.logout()
    size = int(re.search(rb"RFC822.SIZE (\d+)", sizes[0])[1])
    taken = answers.count("250")
    assert limit == QUOTA // 1024 and used * 1024 < QUOTA + size, answers
    assert taken == int(data[0]) == -(-QUOTA // size), answers  # below the limit, and one
    assert all(a.startswith("452 4.2.2") for a in answers if a != "250"), answers


def test_a_folder_renamed_on_one_node_ends_the_session_that_has_it_selected_on_the_other(nodes):
    """As on Maildir: a session whose selected mailbox was renamed (its name gone) is told
    ``* BYE selected mailbox was deleted or renamed`` at once, IDLE or not; it used to go on
    under the old name on the other node, hearing nothing more of the mailbox's changes."""
    a, b = nodes
    on_a, on_b = _imap(a), _imap(b)
    on_a.create("Projects")
    on_a.append("Projects", None, None, b"Subject: p\r\n\r\nx\r\n")
    on_b.select("Projects")
    on_b.send(b"i1 IDLE\r\n")
    assert on_b.readline().startswith(b"+")
    assert on_a.rename("Projects", "Archive/Projects")[0] == "OK"
    on_b.sock.settimeout(10)
    heard = on_b.readline()
    on_b.shutdown()
    on_a.logout()
    assert heard == b"* BYE selected mailbox was deleted or renamed\r\n"
