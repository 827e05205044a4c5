"""``[server] workers = 2``: a supervisor and two worker processes on one data directory.

Each test that needs sessions on different workers opens connections until the kernel has
given one to each worker (``tests/support/workers.py`` reads from /proc which one holds a
connection), so what is checked is the cross-process path, not a lucky single worker.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import select
import signal
import smtplib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import ServerProcess
from tests.support.workers import children, one_per_worker, running, worker_of

pytestmark = pytest.mark.slow


def _two_workers(server_template: str, tmp_path, security: str):
    """A server with ``workers = 2`` and ``security`` lines in its [security] section."""
    import shutil

    data_dir = str(tmp_path / "data")
    shutil.copytree(server_template, data_dir, symlinks=True)
    proc = ServerProcess(data_dir, f"[security]\n{security}\n", workers=2)
    proc.write_config()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def workers_server(server_template: str, tmp_path):
    yield from _two_workers(server_template, tmp_path, "login_failures_per_ip = 4")


def _workers(server: ServerProcess) -> list[int]:
    assert server.process is not None
    pids = children(server.process.pid)
    assert len(pids) == 2, f"expected 2 workers, found {pids}"
    return pids


def _one_per_worker(server: ServerProcess, connect: Callable[[], Any]) -> dict[int, Any]:
    """Connections until each worker holds one; the extras are closed."""
    return one_per_worker(_workers(server), connect)


def _imap(server: ServerProcess) -> Callable[[], imaplib.IMAP4]:
    return lambda: imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)


def test_two_workers_serve_and_stop_cleanly(workers_server):
    pids = _workers(workers_server)
    sessions = _one_per_worker(workers_server, _imap(workers_server))
    for client in sessions.values():
        assert client.login("alice@example.test", PASSWORD)[0] == "OK"
        client.logout()
    process = workers_server.process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    workers_server.process = None
    for pid in pids:
        assert not running(pid), f"worker {pid} still runs"


def test_idle_on_one_worker_sees_a_delivery_made_by_the_other(workers_server):
    sessions = _one_per_worker(workers_server, _imap(workers_server))
    (idle_pid, watcher), (other_pid, writer) = sessions.items()
    for client in (watcher, writer):
        client.login("alice@example.test", PASSWORD)
    watcher.select("INBOX")
    tag = watcher._new_tag().decode()
    watcher.send(f"{tag} IDLE\r\n".encode())
    assert watcher.readline().startswith(b"+")
    # The other worker's IMAP session appends: the change is made in that process.
    typ, _ = writer.append("INBOX", None, None, b"Subject: cross\r\n\r\nfrom the other worker\r\n")
    assert typ == "OK"
    watcher.sock.settimeout(5)
    line = watcher.readline()
    assert re.match(rb"\* \d+ EXISTS", line), line
    watcher.send(b"DONE\r\n")
    # And mail accepted by SMTP on either worker reaches it too.
    line = b""
    with smtplib.SMTP("127.0.0.1", workers_server.ports["smtp"], timeout=30) as s:
        watcher.send(f"{tag}b IDLE\r\n".encode())
        while not line.startswith(b"+"):
            line = watcher.readline()
        s.sendmail("x@remote.test", ["alice@example.test"], "Subject: smtp\r\n\r\nhi\r\n")
    deadline = time.time() + 5
    seen = b""
    while time.time() < deadline and b"EXISTS" not in seen:
        ready, _, _ = select.select([watcher.sock], [], [], 0.5)
        if ready:
            seen += watcher.readline()
    assert b"EXISTS" in seen, seen
    watcher.send(b"DONE\r\n")
    writer.logout()


def test_notify_on_one_worker_hears_a_mailbox_created_and_subscribed_on_the_other(
    workers_server,
):
    """NOTIFY's MailboxName and SubscriptionChange events (RFC 5465 5.4, 5.5) cross workers."""
    sessions = _one_per_worker(workers_server, _imap(workers_server))
    (_pid, watcher), (_other, writer) = sessions.items()
    for client in (watcher, writer):
        client.login("alice@example.test", PASSWORD)
    watcher.send(b"n1 NOTIFY SET (personal (MailboxName SubscriptionChange))\r\n")
    assert watcher.readline().startswith(b"n1 OK"), "NOTIFY SET refused"
    name = f"Cross{time.monotonic_ns()}"
    assert writer.create(name)[0] == "OK"
    assert writer.subscribe(name)[0] == "OK"
    # Blocking reads (a missing line fails with a timeout): select() on the socket would miss
    # a second line that imaplib's buffered reader already holds.
    watcher.sock.settimeout(5)
    seen = b""
    while seen.count(name.encode()) < 2:
        seen += watcher.readline()
    lines = [line for line in seen.split(b"\r\n") if name.encode() in line]
    assert any(line.startswith(b"* LIST ") for line in lines), seen
    assert any(b"\\Subscribed" in line for line in lines), seen
    writer.logout()
    watcher.logout()


def test_concurrent_appends_on_both_workers_get_unique_ascending_uids(workers_server):
    sessions = _one_per_worker(workers_server, _imap(workers_server))
    uids: dict[int, list[int]] = {pid: [] for pid in sessions}

    def append(pid: int, client: imaplib.IMAP4) -> None:
        client.login("alice@example.test", PASSWORD)
        for n in range(40):
            typ, data = client.append(
                "INBOX", None, None, f"Subject: {pid}-{n}\r\n\r\nx\r\n".encode()
            )
            assert typ == "OK"
            uids[pid].append(int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1]))

    threads = [threading.Thread(target=append, args=item) for item in sessions.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    everything = [uid for got in uids.values() for uid in got]
    assert len(everything) == 80
    assert len(set(everything)) == 80, "a UID was given twice"
    for got in uids.values():
        assert got == sorted(got), "UIDs of one session went backwards"
    client = _imap(workers_server)()
    client.login("alice@example.test", PASSWORD)
    client.select("INBOX", readonly=True)
    typ, data = client.uid("SEARCH", "ALL")
    assert sorted(int(x) for x in data[0].split()) == sorted(everything)
    client.logout()


def test_login_failures_count_across_workers(workers_server):
    """login_failures_per_ip = 4: four failures spread over both workers block the address on
    both, even for the right password."""
    sessions = _one_per_worker(workers_server, _imap(workers_server))
    clients = list(sessions.values())
    for n in range(4):
        with pytest.raises(imaplib.IMAP4.error):
            clients[n % 2].login("alice@example.test", "wrong")
    time.sleep(0.5)  # the last failure's message to the other worker
    for client in clients:
        with pytest.raises(imaplib.IMAP4.error, match="(?i)too many|later"):
            client.login("alice@example.test", PASSWORD)


def test_kill_9_of_a_worker_under_smtp_load_loses_no_acknowledged_message(workers_server):
    """A worker killed mid-transaction: the supervisor starts another in its slot, whose
    recovery delivers what the dead one acknowledged; the other worker never stops serving."""
    server = workers_server
    pids = _workers(server)
    acked: list[str] = []
    stop = threading.Event()

    def sender(worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
                    while not stop.is_set():
                        n += 1
                        msg_id = f"k{worker}-m{n}"
                        body = f"Subject: {msg_id}\r\n\r\n" + "filler line of text\r\n" * 2000
                        s.sendmail("load@remote.test", ["alice@example.test"], body)
                        acked.append(msg_id)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)  # connected to the killed worker: connect again

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim = pids[1]
    os.kill(victim, signal.SIGKILL)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) > 10, "the load didn't get going"
    deadline = time.time() + 30
    while time.time() < deadline:
        now = children(server.process.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the killed worker was not replaced: {children(server.process.pid)}")
    assert "ended (signal 9)" in server.log()
    client = _imap(server)()
    client.login("alice@example.test", PASSWORD)
    found: dict[str, int] = {}
    for _ in range(50):  # the new worker recovers before it listens; give it a moment
        client.select("INBOX", readonly=True)
        typ, data = client.search(None, "ALL")
        typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        found = {}
        for item in data:
            if isinstance(item, tuple):
                subject = re.search(rb"Subject: (\S+)", item[1])[1].decode()
                found[subject] = found.get(subject, 0) + 1
        if all(m in found for m in acked):
            break
        time.sleep(0.2)
    client.logout()
    missing = [m for m in acked if m not in found]
    doubled = [m for m, n in found.items() if n > 1]
    assert not missing, f"acknowledged but lost: {missing}"
    assert not doubled, f"delivered twice: {doubled}"


def test_who_lists_the_sessions_of_every_worker(workers_server):
    sessions = _one_per_worker(workers_server, _imap(workers_server))
    for client in sessions.values():
        client.login("alice@example.test", PASSWORD)
    import json

    listed = json.loads(workers_server.cli("who", "--json").stdout)
    imap = [s for s in listed if s["protocol"] == "imap" and s["user"] == "alice@example.test"]
    assert len(imap) == 2, listed
    kicked = json.loads(workers_server.cli("kick", "alice@example.test", "--json").stdout)
    assert kicked["kicked"] == 2


@pytest.fixture
def limited_server(server_template: str, tmp_path):
    yield from _two_workers(server_template, tmp_path, "max_connections_per_ip = 3")


def test_the_per_address_connection_limit_is_the_servers_not_each_workers(limited_server):
    """max_connections_per_ip = 3 with two workers: three connections wherever they landed,
    then every further one is refused by whichever worker takes it; closing one frees a place
    on both workers."""
    server = limited_server
    pids = _workers(server)
    held = [_imap(server)() for _ in range(3)]
    assert {worker_of(c.sock, pids) for c in held} <= set(pids)
    time.sleep(0.3)  # the counts reach the other worker
    for _ in range(12):
        with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
            client = _imap(server)()
            client.noop()  # a refused connection got "* BYE" and was closed
    held.pop().logout()
    time.sleep(0.3)
    again = _imap(server)()
    assert again.noop()[0] == "OK"
    again.logout()
    for client in held:
        client.logout()


@pytest.fixture
def roomy_server(server_template: str, tmp_path):
    yield from _two_workers(server_template, tmp_path, "max_connections_per_ip = 500")


def test_new_connections_go_to_the_worker_holding_fewer(roomy_server):
    """30 clients connect while one worker is stopped (SIGSTOP), so the other takes them all;
    once both run, the next 30 go to the one holding none (workers/accepting.py: a worker
    clearly over its share leaves the socket to the others for a moment). Without that the
    kernel's wake-ups split them about evenly, and the first worker kept twice the load."""
    import socket

    server = roomy_server
    pids = _workers(server)
    for client in _one_per_worker(server, _imap(server)).values():
        client.logout()  # both workers are up and accepting
    busy, idle = pids

    def connect(count: int) -> list[socket.socket]:
        opened = []
        for _ in range(count):
            client = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30)
            opened.append(client)
        for client in opened:
            assert client.recv(100).startswith(b"* OK")  # accepted and greeted
        return opened

    os.kill(idle, signal.SIGSTOP)
    try:
        first = connect(30)
    finally:
        os.kill(idle, signal.SIGCONT)
    clients = list(first)
    try:
        assert [worker_of(c, pids) for c in first].count(busy) == 30
        time.sleep(0.5)  # the counts cross the bus
        second = connect(30)
        clients += second
        went_idle = [worker_of(c, pids) for c in second].count(idle)
        assert went_idle >= 24, f"{went_idle} of 30 new connections went to the idle worker"
    finally:
        for client in clients:
            client.close()


def test_the_metrics_page_adds_up_every_workers_counts(workers_server):
    """Worker 0 serves /metrics; what worker 1 counted is in it too."""
    import urllib.request

    sessions = _one_per_worker(
        workers_server, lambda: smtplib.SMTP("127.0.0.1", workers_server.ports["smtp"], timeout=30)
    )
    for n, client in enumerate(sessions.values()):
        for m in range(3):
            client.sendmail(
                "x@remote.test", ["alice@example.test"], f"Subject: m{n}{m}\r\n\r\nx\r\n"
            )
        client.quit()
    url = f"http://127.0.0.1:{workers_server.ports['metrics']}/metrics"
    page = urllib.request.urlopen(url, timeout=30).read().decode()
    accepted = [
        line
        for line in page.splitlines()
        if line.startswith("txmailhost_smtp_transactions_total{") and 'reply_class="2xx"' in line
    ]
    assert accepted, page[:2000]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in accepted) == 6, accepted


def test_a_deep_data_directory_starts_both_workers_and_their_sockets_work(
    server_template: str, tmp_path
):
    """A data directory whose socket paths pass the 107 octets of a UNIX socket's address:
    worker 1 once failed to open its bus and hung, never ready, and ``who`` found no
    control socket (``txmailhost/socketpaths.py``)."""
    import shutil

    data_dir = str(tmp_path / ("deep-" + "d" * 60) / "data")
    assert len(os.path.join(data_dir, "run", "workers", "1.sock")) > 107
    shutil.copytree(server_template, data_dir, symlinks=True)
    server = ServerProcess(data_dir, workers=2)
    server.write_config()
    server.start()  # waits for "worker 1 of 2 ready"
    try:
        sessions = _one_per_worker(server, _imap(server))
        (_pid, watcher), (_other, writer) = sessions.items()
        for client in (watcher, writer):
            client.login("alice@example.test", PASSWORD)
        # Both workers' control sockets answer.
        listed = json.loads(server.cli("who", "--json").stdout)
        assert len([s for s in listed if s.get("user") == "alice@example.test"]) == 2, listed
        # The bus carries one worker's change to the other's IDLE.
        watcher.select("INBOX")
        watcher.send(b"i1 IDLE\r\n")
        assert watcher.readline().startswith(b"+")
        assert writer.append("INBOX", None, None, b"Subject: deep\r\n\r\nacross\r\n")[0] == "OK"
        watcher.sock.settimeout(5)
        line = watcher.readline()
        assert re.match(rb"\* \d+ EXISTS", line), line
        watcher.send(b"DONE\r\n")
        writer.logout()
    finally:
        server.stop()
