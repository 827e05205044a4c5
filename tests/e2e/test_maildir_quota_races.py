"""The Maildir store's quotas with sessions racing: in one server process, and in two workers.

docs/admin.rst: an ``APPEND`` past the limit fails with ``NO [OVERQUOTA]``, and mail may take
a user past it by one message. Each APPEND and each SMTP message compares the usage first; what
is added between that look and the add (by another session, thread or worker process) used to
go unseen, and APPENDs and messages sent at once each found room and together went far past
the limit: 40 of 40 APPENDs of 4 KiB stored in a 20 KiB quota, 8 of 8 messages taken. The
check is now made again under the user's quota lock (a file lock, ``store/quotalock.py``), so
these tests mirror tests/e2e/test_postgres_races.py on the default store.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import re
import shutil
import signal
import smtplib
import threading
import time
from functools import partial

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import ServerProcess
from tests.support.together import at_once
from tests.support.workers import children, spread

pytestmark = pytest.mark.slow

ALICE, BOB = "alice@example.test", "bob@example.test"
QUOTA = 20 * 1024


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def quota_server(request, server_template: str, tmp_path):
    """A server on a copy of the template (alice, bob) with ``workers`` from the parameter
    and both users' quota set to 20 KiB."""
    data_dir = str(tmp_path / "data")
    shutil.copytree(server_template, data_dir, symlinks=True)
    extra = '[security]\nplaintext_auth_from = ["loopback"]\n'
    proc = ServerProcess(data_dir, extra, workers=request.param)
    proc.write_config()
    proc.start()
    try:
        for user in (ALICE, BOB):
            proc.cli("user", "quota", user, "20K")
        yield proc
    finally:
        proc.stop()


def _imap(server: ServerProcess, user: str = ALICE) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    client.login(user, PASSWORD)
    return client


def _sessions(server: ServerProcess, connect, count: int) -> list:
    """``count`` sessions; with workers, at least one on each (the kernel picks who accepts),
    or the test would not race two processes."""
    if server.workers == 1:
        return [connect() for _ in range(count)]
    assert server.process is not None
    return spread(children(server.process.pid), connect, count)


def _stored(server: ServerProcess, user: str) -> tuple[int, list[int]]:
    """(the octets the user's INBOX holds, the size of each message) read over IMAP."""
    client = _imap(server, user)
    typ, data = client.select("INBOX", readonly=True)
    count = int(data[0])
    sizes: list[int] = []
    if count:
        typ, fetched = client.fetch("1:*", "(RFC822.SIZE)")
        sizes = [int(re.search(rb"RFC822.SIZE (\d+)", line)[1]) for line in fetched]
    client.logout()
    return sum(sizes), sizes


def _recalc(server: ServerProcess, user: str) -> int:
    """``txmailhost quota recalc``: the usage counted from the mailboxes."""
    (row,) = json.loads(server.cli("quota", "recalc", user, "--json").stdout)
    return row["used"]


def test_appends_from_many_sessions_at_once_never_take_a_mailbox_past_its_quota(quota_server):
    """Eight sessions each APPEND a 4 KiB message five times at once to a 20 KiB quota:
    exactly the five that fit are stored, every other one is ``NO [OVERQUOTA]``."""
    message = b"Subject: filler\r\n\r\n" + b"y" * 4000 + b"\r\n"
    clients = _sessions(quota_server, partial(_imap, quota_server), 8)

    def appender(client: imaplib.IMAP4) -> list[str]:
        answers = []
        for _ in range(5):
            typ, data = client.append("INBOX", None, None, message)
            answers.append(typ)
            if typ != "OK":
                assert b"[OVERQUOTA]" in data[0], data
        return answers

    answers = [a for done in at_once(*(partial(appender, c) for c in clients)) for a in done]
    for client in clients:
        client.logout()
    used, sizes = _stored(quota_server, ALICE)
    fitting = QUOTA // len(message)
    assert (answers.count("OK"), len(sizes)) == (fitting, fitting), f"{used} octets stored"
    assert used <= QUOTA


def _smtp(server: ServerProcess) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=60)
    client.ehlo("sender.example")
    return client


def _send(
    server: ServerProcess, recipients: list[str], body: str, client: smtplib.SMTP | None = None
) -> str:
    """One SMTP message (on ``client``, a session already greeted, or a new one); its final
    answer as "code text"."""
    with client or _smtp(server) as s:
        try:
            refused = s.sendmail("someone@remote.test", recipients, body)
        except smtplib.SMTPDataError as e:
            return f"{e.smtp_code} {e.smtp_error.decode()}"
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            return f"{code} {text.decode()}"
    return "250" if not refused else f"250 refused {refused}"


def test_mail_sent_at_once_takes_a_mailbox_past_its_quota_by_one_message_at_most(quota_server):
    """Eight SMTP sessions each send a 4 KiB message at the same moment to a user with
    20 KiB of quota: every RCPT finds the mailbox empty, but room is taken for each message
    under the user's quota lock before its ``250``, only while the user is below the limit:
    five are taken (the fifth past it), the others get ``452 4.2.2`` at the end of DATA."""
    message = "Subject: filler\r\n\r\n" + "y" * 4000 + "\r\n"
    clients = _sessions(quota_server, partial(_smtp, quota_server), 8)
    answers = at_once(*(partial(_send, quota_server, [ALICE], message, c) for c in clients))
    used, sizes = _stored(quota_server, ALICE)
    assert sizes, answers
    assert len(sizes) == answers.count("250"), answers
    assert used - max(sizes) < QUOTA, (used, answers)  # below the limit before the last
    assert len(sizes) == -(-QUOTA // sizes[0]), (used, answers)  # and the others refused
    assert all(a.startswith("452 4.2.2") for a in answers if a != "250"), answers
    assert _recalc(quota_server, ALICE) == used


def test_a_message_for_two_users_racing_mail_for_each_never_deadlocks_or_overshoots(
    quota_server,
):
    """Lock order: a message to alice and bob takes both users' locks while single messages
    to each take one. Twelve sessions at once (four of each kind) all get their answer, and
    each user ends at most one message past the limit."""
    message = "Subject: filler\r\n\r\n" + "y" * 4000 + "\r\n"
    calls = []
    for _ in range(4):
        calls.append(partial(_send, quota_server, [ALICE, BOB], message))
        calls.append(partial(_send, quota_server, [BOB], message))
        calls.append(partial(_send, quota_server, [ALICE], message))
    answers = at_once(*calls)
    assert all(a.startswith(("250", "452 4.2.2")) for a in answers), answers
    for user in (ALICE, BOB):
        used, sizes = _stored(quota_server, user)
        assert used - max(sizes) < QUOTA, (user, used, answers)


def _kill_all(server: ServerProcess) -> None:
    """SIGKILL the server: its workers first (they would outlive a killed supervisor)."""
    assert server.process is not None
    for pid in children(server.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.kill(signal.SIGKILL)


def test_a_server_killed_during_adds_leaves_the_usage_right_and_no_lock_or_room_held(
    quota_server,
):
    """SIGKILL while APPENDs and SMTP messages are being added: after the restart the usage
    ``quota recalc`` counts is what the mailbox holds, no lock is stuck (the next APPEND is
    answered), and room reserved by the killed process no longer counts: a reservation file
    it left (one is planted here, as large as the quota, in case the kill left none) is
    removed by the next check instead of refusing mail for ever."""
    message = b"Subject: filler\r\n\r\n" + b"y" * 1500 + b"\r\n"
    stop = threading.Event()

    def appender() -> None:
        with contextlib.suppress(Exception):
            client = _imap(quota_server)
            while not stop.is_set():
                client.append("INBOX", None, None, message)

    def sender() -> None:
        with contextlib.suppress(Exception):
            while not stop.is_set():
                _send(quota_server, [ALICE], message.decode())

    threads = [threading.Thread(target=f) for f in (appender, appender, sender, sender)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    _kill_all(quota_server)
    stop.set()
    for t in threads:
        t.join(60)
    user_dir = os.path.join(quota_server.data_dir, "mail", "example.test", "alice")
    held = os.path.join(user_dir, "txmailhost-quota")
    with open(os.path.join(held, f"r.{2**22 + 1}.0.{QUOTA}"), "w"):
        pass  # what a killed process leaves: a reservation file nobody holds
    quota_server.start()
    used, sizes = _stored(quota_server, ALICE)
    assert sizes, "nothing was added before the kill"
    assert _recalc(quota_server, ALICE) == used
    client = _imap(quota_server)
    client.select("INBOX")
    client.store("1:*", "+FLAGS", "(\\Deleted)")
    client.expunge()
    typ, data = client.append("INBOX", None, None, message)  # room again, and no stuck lock
    client.logout()
    assert typ == "OK", data
    assert [n for n in os.listdir(held) if n.startswith("r.")] == []
    assert _recalc(quota_server, ALICE) == _stored(quota_server, ALICE)[0] == len(message)
