"""The spam score's child process in the real server: started by mail coming fast, killed
under load without a message refused or lost, and gone when the server is killed."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time

import pytest

from bench import spam_throughput
from tests.e2e.test_spam import PLAIN, login
from tests.support.workers import running

pytestmark = pytest.mark.slow


def scoring_children(data_dir: str) -> list[int]:
    """Pids of the running scoring processes whose token store is under ``data_dir``."""
    return [pid for pid in spam_throughput.scoring_children(data_dir) if running(pid)]


def wait_for(predicate, seconds: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Load:
    """Four clients sending small messages as fast as they are answered; every message is
    recorded as acknowledged or as refused (with the reply)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(4)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self, worker: int) -> None:
        n = 0
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            while not self.stop.is_set():
                n += 1
                tag = f"w{worker}-m{n}"
                message = PLAIN.replace("lunch on friday", f"load {tag}")
                try:
                    s.sendmail("carol@friends.invalid", ["alice@example.test"], message)
                except smtplib.SMTPResponseException as e:
                    self.refused.append(f"{tag}: {e.smtp_code} {e.smtp_error!r}")
                    s.rset()
                    continue
                self.acked.append(tag)


def test_killing_the_scoring_process_under_load_refuses_and_loses_nothing(server):
    with Load(server.ports["smtp"]) as load:
        wait_for(lambda: scoring_children(server.data_dir), what="the scoring process")
        first = scoring_children(server.data_dir)[0]
        wait_for(lambda: len(load.acked) > 50, what="mail scored by the child")
        os.kill(first, signal.SIGKILL)
        killed_at = len(load.acked)
        # Meanwhile the filters' thread scores; then another child takes over.
        wait_for(
            lambda: [p for p in scoring_children(server.data_dir) if p != first],
            what="a new scoring process",
        )
        wait_for(lambda: len(load.acked) > killed_at + 50, what="mail after the kill")
    assert not load.refused, load.refused[:5]
    delivered = unscored = 0
    imap = login(server)
    try:
        for mailbox in ("INBOX", "Junk"):
            imap.select(mailbox)
            _typ, data = imap.search(None, "SUBJECT", '"load w"')
            delivered += len(data[0].split())
            _typ, data = imap.search(None, "NOT", "HEADER", "X-Spam-Status", '""')
            unscored += len(data[0].split())
    finally:
        imap.logout()
    assert delivered == len(load.acked)  # every 250 was delivered, each once
    assert unscored == 0  # and every message was scored, in the child or in the thread


def test_the_scoring_process_ends_with_a_killed_server(server):
    with Load(server.ports["smtp"]):
        wait_for(lambda: scoring_children(server.data_dir), what="the scoring process")
    children = scoring_children(server.data_dir)
    server.kill()
    wait_for(
        lambda: not [p for p in children if p in scoring_children(server.data_dir)],
        seconds=15,
        what="the scoring process to end after its server",
    )
