"""Webmail Send: request time of a text message, and what a large attachment costs in memory.

Against the real server (``twistd txmailhost``) over HTTPS on loopback, one user sending to
herself (local delivery, Sent copy): p50/p90 of ``POST /compose`` for ``--sends`` text
messages (the whole submission path: policy, filters, durable hand-off, then the Sent
append); then one message with a ``--mib`` MiB attachment, its time, and the server's RSS and
peak RSS (VmHWM) before and after: the upload, the MIME writing and the spool copy stream
through files, so the peak should not grow by the attachment's size (DESIGN invariant 2).

    python -m bench.web_compose [--sends 20 --mib 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.server import free_port, kill_tree, wait_for_port
from bench.stats import percentile
from bench.web_latency import _TWISTD, USER, Client, populate


def peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def send(client: Client, subject: str, attachment: bytes | None = None) -> float:
    _, page = client.request("GET", "/compose")
    token = page.split(b'name="csrf" value="', 1)[1].split(b'"', 1)[0].decode()
    boundary = uuid.uuid4().hex
    fields = {"csrf": token, "to": USER, "subject": subject, "body": "hello", "action": "send"}
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    if attachment is not None:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="attachment"; '
                 f'filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 ).encode() + attachment + b"\r\n"  # fmt: skip
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if client.cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    start = time.perf_counter()
    client.conn.request("POST", "/compose", body=body, headers=headers)
    response = client.conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    assert response.status == 303, response.status
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=20)
    parser.add_argument("--mib", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        populate(data, 0)
        ports = {name: free_port() for name in ("smtp", "web")}
        listen = "\n".join(
            f'{name} = "{f"tcp:{ports[name]}:interface=127.0.0.1" if name in ports else ""}"'
            for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s",
                         "web", "web_redirect", "managesieve", "metrics")
        )  # fmt: skip
        limit = (args.mib + 10) * 1024 * 1024
        (data / "txmailhost.toml").write_text(
            f'[server]\nhostname = "mx.bench.test"\n[listen]\n{listen}\n'
            f"[smtp]\nmax_message_size = {limit}\n[mailauth]\ncheck_inbound = false\n"
        )
        server = subprocess.Popen(
            [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", f"--logfile={tmp}/log",
             "txmailhost", "--data", str(data)],
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", ports["web"], 60, lambda: server.poll() is None)
            client = Client(ports["web"])
            client.login()
            times = sorted(send(client, f"text {i}") for i in range(args.sends))
            print(f"send, text: p50 {percentile(times, 50) * 1000:.1f} ms, "
                  f"p90 {percentile(times, 90) * 1000:.1f} ms ({args.sends} sends)")  # fmt: skip
            before, peak_before = rss_kib(server.pid), peak_kib(server.pid)
            took = send(client, "big", os.urandom(args.mib * 1024 * 1024))
            print(f"send, {args.mib} MiB attachment: {took:.2f} s; RSS {before} -> "
                  f"{rss_kib(server.pid)} KiB, peak {peak_before} -> {peak_kib(server.pid)} KiB")  # fmt: skip
        finally:
            kill_tree(server.pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
