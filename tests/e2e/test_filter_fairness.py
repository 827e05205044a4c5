"""One client whose mail keeps the filters' threads busy can't make another client wait
(``[filters] threads_per_client``, filters/fairness.py): a real server, real SMTP clients
from two loopback addresses."""

from __future__ import annotations

import os
import smtplib
import threading
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLOW = 6  # seconds each of the busy client's checks takes
CONFIG = f"""
[filters]
chain = ["tests.filters.example:ExampleFilter"]
timeout = 15
threads_per_client = 2
[filters.settings."tests.filters.example:ExampleFilter"]
sleep = {SLOW}
"""


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT)  # the example filter lives in the tests package
    proc = ServerProcess(str(tmp_path / "data"), CONFIG).start()
    proc.add_user("alice@example.test", PASSWORD)
    yield proc
    proc.stop()


def _send(server, source: str, subject: str) -> tuple[int, float]:
    """The reply code to the message and when it came (monotonic)."""
    with smtplib.SMTP(
        "127.0.0.1", server.ports["smtp"], timeout=60, source_address=(source, 0)
    ) as client:
        client.ehlo("client.test")
        client.mail("x@remote.test")
        client.rcpt("alice@example.test")
        code, _text = client.data(f"Subject: {subject}\r\n\r\nhi\r\n".encode())
        return code, time.monotonic()


def test_a_client_holding_the_threads_does_not_delay_another(server):
    """Ten slow messages at once from 127.0.0.2 (more than the 8 threads) get two threads;
    a message from 127.0.0.3 sent after them is answered before any of them is: without the
    limit it waited for a thread behind all ten."""
    busy: list[tuple[int, float]] = []

    def slow() -> None:
        try:
            busy.append(_send(server, "127.0.0.2", "slow-me"))
        except (OSError, smtplib.SMTPException) as e:
            busy.append((-1, repr(e)))  # type: ignore[arg-type]

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(10)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while server.log().count("slow-me, sleeping") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the client's first two checks have started...
    time.sleep(0.5)  # ...and its other messages have reached the end of DATA
    assert server.log().count("slow-me, sleeping") == 2  # two threads, not eight
    code, answered = _send(server, "127.0.0.3", "plain")
    assert code == 250
    for thread in threads:
        thread.join(60)
    failed = [at for _code, at in busy if not isinstance(at, float)]
    assert len(busy) == 10 and not failed, failed or busy
    assert answered < min(at for _code, at in busy)
    codes = sorted(code for code, _at in busy)
    # two ran at once: two accepted after one check each, the next pair after two (12 s,
    # in the 15 s budget), the rest given up at the budget: 451, the client tries again
    assert codes[:4] == [250] * 4 and set(codes[4:]) <= {250, 451}, codes
    # given up waiting for one of its two threads, or (a slow machine: its check started
    # late in the budget) while its check ran
    log = server.log()
    assert "still running" in log or "no verdict within 15s" in log
