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
import tempfile
import time
import uuid
from pathlib import Path

from bench.memory import status_kib
from bench.stats import percentile
from bench.web_latency import USER, Client, populate, serving


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
        limit = (args.mib + 10) * 1024 * 1024
        with serving(data, f"[smtp]\nmax_message_size = {limit}\n") as (server, ports):
            client = Client(ports["web"])
            client.login()
            times = sorted(send(client, f"text {i}") for i in range(args.sends))
            print(f"send, text: p50 {percentile(times, 50) * 1000:.1f} ms, "
                  f"p90 {percentile(times, 90) * 1000:.1f} ms ({args.sends} sends)")  # fmt: skip
            before, peak_before = status_kib(server.pid, "VmRSS"), status_kib(server.pid, "VmHWM")
            took = send(client, "big", os.urandom(args.mib * 1024 * 1024))
            after, peak_after = status_kib(server.pid, "VmRSS"), status_kib(server.pid, "VmHWM")
            print(f"send, {args.mib} MiB attachment: {took:.2f} s; RSS {before} -> {after} KiB, "
                  f"peak {peak_before} -> {peak_after} KiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
