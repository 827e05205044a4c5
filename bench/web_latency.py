"""Webmail: message-list page time on a big folder, SSE latency, memory per web session.

Issue 18's measures, server side, against the real server (``twistd txmailhost``) over HTTPS
on loopback:

- the message-list page (``GET /mail``, the htmx fragment the page reloads, and the full
  page) on an INBOX of ``--messages`` messages, sorted by date, by size and by subject, first
  page and a deep page, and in threads (a quarter of the messages answer a recent one): p50/p99 of the whole request on a kept-alive connection. The first
  request (the store indexes 100,000 new files) and the first subject sort (a sort key per
  message, derived once and kept) are reported apart;
- SSE latency: from the SMTP ``250`` of a message to its ``event: mailbox`` on an open
  ``/events`` stream;
- memory per web session: the server's RSS growth over ``--sessions`` logins, divided.

    python -m bench.web_latency [--messages 100000 --requests 200 --sse 30 --sessions 300]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from bench import maildirs
from bench.memory import status_kib
from bench.server import free_port, kill_tree, wait_for_port
from bench.stats import percentile

DOMAIN = "bench.test"
USER = f"alice@{DOMAIN}"
PASSWORD = "bench-password-7"
_TWISTD = "from twisted.scripts.twistd import run; run()"
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


def populate(data: Path, messages: int) -> None:
    from txmailhost.accounts.db import AccountsDB
    from txmailhost.datadir import ensure_data_dir
    from txmailhost.store.maildir import user_directory

    ensure_data_dir(str(data))
    db = AccountsDB(str(data / "accounts.sqlite"))
    db.add_domain(DOMAIN)
    db.add_user(USER, PASSWORD)
    rng = random.Random(18)
    replies = random.Random(5256)  # its own, so the subjects and sizes stay as they were

    def contents():
        for i in range(messages):
            subject = " ".join(rng.choice(WORDS) for _ in range(3))
            sender = f"{rng.choice(WORDS).title()} <{rng.choice(WORDS)}@example.org>"
            body = "x" * rng.randint(100, 3000)
            # a quarter of the messages answer one of the 50 before: threads of a few messages
            answers = ""
            if i and replies.random() < 0.25:
                parent = max(0, i - replies.randint(1, 50))
                answers = f"In-Reply-To: <{parent}@bench.test>\r\n"
            yield (
                f"From: {sender}\r\nTo: {USER}\r\nSubject: {subject} {i}\r\n"
                f"Message-ID: <{i}@bench.test>\r\n{answers}\r\n{body}\r\n"
            ).encode()

    inbox = Path(user_directory(str(data / "mail"), USER))
    maildirs.write_files(inbox, contents())


class Client:
    """One kept-alive HTTPS connection with the session cookie."""

    def __init__(self, port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=600)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str):
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        for line in response.msg.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response.status, data

    def login(self) -> None:
        _, page = self.request("GET", "/login")
        token = page.split(b'name="csrf" value="', 1)[1].split(b'"', 1)[0].decode()
        form = urllib.parse.urlencode({"csrf": token, "username": USER, "password": PASSWORD})
        status, _ = self.request("POST", "/login", form.encode())
        assert status == 303, status

    def timed(self, path: str, **headers: str) -> float:
        start = time.perf_counter()
        status, _ = self.request("GET", path, **headers)
        assert status == 200, (path, status)
        return time.perf_counter() - start


def sse_latency(ports: dict[str, int], client: Client, rounds: int) -> list[float]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", ports["web"], context=ctx, timeout=30)
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    conn.request("GET", "/events", headers={"Cookie": cookie})
    stream = conn.getresponse()
    stream.readline(), stream.readline()  # retry:
    times = []
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as smtp:
        for i in range(rounds):
            smtp.sendmail("x@remote.test", [USER], f"Subject: sse {i}\r\n\r\nhi\r\n")
            acked = time.perf_counter()
            while stream.readline() != b"event: mailbox\n":
                pass
            times.append(time.perf_counter() - acked)
            stream.readline(), stream.readline()  # data:, blank
            time.sleep(0.2)  # apart from the coalescing window
    conn.close()
    return times


def session_bytes(count: int = 1000) -> float:
    """Bytes one session takes in the session table (token digest, CSRF token, avatar,
    bookkeeping), measured with tracemalloc in this process: what RSS is too coarse to show."""
    import tracemalloc

    from twisted.internet.task import Clock

    from txmailhost.accounts.realm import MailAccount
    from txmailhost.web.sessions import SessionStore

    store = SessionStore(Clock(), max_sessions=count + 1)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        address = f"user{i}@{DOMAIN}"
        store.create(address, MailAccount(address, None), lambda: None, "192.0.2.1", "Mozilla/5.0")
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def start(data: Path, ports: dict[str, int], settings: str = "") -> subprocess.Popen:
    """The real server on ``data``, listening on loopback on ``ports`` (by listener name) and
    nowhere else, with ``settings`` (TOML sections) added to its config file; its log is
    ``data/../log``. It asks no nameserver off this machine: no SPF/DKIM checks of inbound
    mail (the bench measures the webmail), and its resolver is a closed port on loopback."""
    listen = "\n".join(
        f'{name} = "{f"tcp:{ports[name]}:interface=127.0.0.1" if name in ports else ""}"'
        for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s",
                     "web", "web_redirect", "managesieve", "metrics")
    )  # fmt: skip
    (data / "txmailhost.toml").write_text(
        f'[server]\nhostname = "mx.bench.test"\n[listen]\n{listen}\n'
        f'[mailauth]\ncheck_inbound = false\n[relay]\nnameservers = ["127.0.0.1:9"]\n{settings}'
    )
    return subprocess.Popen(
        [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", f"--logfile={data.parent}/log",
         "txmailhost", "--data", str(data)],
        start_new_session=True,
    )  # fmt: skip


@contextlib.contextmanager
def serving(data: Path, settings: str = "") -> Iterator[tuple[subprocess.Popen, dict[str, int]]]:
    """The real server (``start``) on free loopback SMTP and web ports until the block ends:
    yields the process and its ports (``{"smtp": ..., "web": ...}``) once the web listener
    accepts; the web benches (this one, ``web_paint``, ``web_compose``) all start it so."""
    ports = {"smtp": free_port(), "web": free_port()}
    while ports["web"] == ports["smtp"]:  # the kernel may hand out a released port again
        ports["web"] = free_port()
    server = start(data, ports, settings)
    try:
        wait_for_port("127.0.0.1", ports["web"], 60, lambda: server.poll() is None)
        yield server, ports
    finally:
        kill_tree(server.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sse", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        populate(data, args.messages)
        print(f"populated {args.messages} messages in {time.perf_counter() - started:.1f}s")
        with serving(data, f"[web]\nmax_sessions = {args.sessions + 10}\n") as (server, ports):
            report(ports, server.pid, args)
    return 0


def report(ports: dict[str, int], pid: int, args: argparse.Namespace) -> None:
    client = Client(ports["web"])
    client.login()
    print(f"first /mail (indexes the new files): {client.timed('/mail'):.2f}s")
    print(f"first sort by subject (derives a key per message): "
          f"{client.timed('/mail?sort=subject&order=asc'):.2f}s")  # fmt: skip
    fragment = {"HX-Request": "true", "HX-Target": "message-list"}
    deep = max(1, args.messages // 50 // 2)
    cases = [
        ("date, page 1, fragment", "/mail?sort=date", fragment),
        ("date, page 1, full page", "/mail?sort=date", {}),
        (f"date, page {deep}, fragment", f"/mail?sort=date&page={deep}", fragment),
        ("size, page 1, fragment", "/mail?sort=size", fragment),
        ("subject, page 1, fragment", "/mail?sort=subject&order=asc", fragment),
        ("threads, page 1, fragment", "/mail?view=threads", fragment),
        (f"threads, page {deep // 2}, fragment", f"/mail?view=threads&page={deep // 2}", fragment),
    ]
    print(f"message list, {args.messages} messages, {args.requests} requests each (ms):")
    for label, path, headers in cases:
        first = client.timed(path, **headers) * 1000  # sorts the folder this way, once
        times = [client.timed(path, **headers) * 1000 for _ in range(args.requests)]
        print(f"  {label:28s} first {first:7.1f}  then p50 {percentile(times, 50):7.1f}"
              f"  p99 {percentile(times, 99):7.1f}")  # fmt: skip
    times = [t * 1000 for t in sse_latency(ports, client, args.sse)]
    print(f"SSE, SMTP 250 -> event (ms, {args.sse}): p50 {percentile(times, 50):.1f}"
          f"  p99 {percentile(times, 99):.1f}  max {max(times):.1f}")  # fmt: skip
    # new mail came with the SSE rounds: the threads are grouped again (keys are kept)
    regroup = client.timed("/mail?view=threads", **fragment) * 1000
    print(f"threads after new mail (grouped again): {regroup:.1f} ms")
    before = status_kib(pid, "VmRSS")
    clients = []
    for _ in range(args.sessions):
        other = Client(ports["web"])
        other.login()
        other.conn.close()
        clients.append(other)
    after = status_kib(pid, "VmRSS")
    print(f"memory: {args.sessions} more sessions, RSS {before} -> {after} KiB: "
          f"{(after - before) / args.sessions:.1f} KiB a session")  # fmt: skip
    print(f"memory: one session in the table (tracemalloc): {session_bytes():.0f} bytes")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
