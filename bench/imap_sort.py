"""SORT and THREAD on a large mailbox: how long a client waits for a sorted or threaded view.

Fills the INBOX of a test account straight into its Maildir (``maildirs.write_files``) with
messages whose sent dates, senders and subjects vary and whose References make threads of a
few messages each (one reply in three answers an earlier message, some through "Re:" and some
through a References chain), then times, on one session: SELECT (which indexes the new files
on first sight), the first SORT (DATE) (which derives and stores the sort keys of every
message: the cost paid once per message), the same SORT again (keys in the session's memory),
SORT (SUBJECT), THREAD=REFERENCES, THREAD=ORDEREDSUBJECT and an ESORT page (the 50 newest),
and then SORT (DATE) and THREAD again on a new session (keys read back from the index).

Run against a server you started on a throwaway data directory:
``python -m bench.imap_sort --maildir DATA/mail/DOMAIN/USER --port 2143 --user USER
--password PW --messages 100000``. The mailbox must be empty before (``--skip-fill`` reuses a
mailbox an earlier run filled). ``--dovecot WORKDIR`` runs the same against a private Dovecot
started by the bench harness (``bench/anchors/dovecot.py``) in an empty ``WORKDIR``, for the
reference figures.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import re
import time
from pathlib import Path

from bench import maildirs
from bench.imap_load import ImapClient, timed
from bench.messages import filler

START = 1_700_000_000  # sent dates spread over a year from here
SPREAD = 365 * 86400


def message(index: int, size: int) -> bytes:
    """Message ``index``: every third one replies to an earlier message."""
    sent = START + (index * 7919) % SPREAD  # not in arrival order
    subject = f"topic {index % 997}"
    links = ""
    if index % 3 == 0 and index:
        parent = index - 1 - (index * 31) % min(index, 50)
        subject = "Re: " + f"topic {parent % 997}"
        grand = parent - 1 if parent else parent
        links = f"In-Reply-To: <sort.{parent}@client.test>\r\n"
        links += f"References: <sort.{grand}@client.test> <sort.{parent}@client.test>\r\n"
    head = (
        f"From: Sender {index % 211} <sender{index % 211}@client.test>\r\n"
        "To: <reader@bench.test>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {email.utils.formatdate(sent)}\r\n"
        f"Message-ID: <sort.{index}@client.test>\r\n{links}"
        "\r\n"
    ).encode("ascii")
    return head + filler(max(0, size - len(head)))


async def measure(host: str, port: int, user: str, password: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    client = await ImapClient.login(host, port, user, password)
    try:
        figures["SELECT INBOX (first: indexes new files)"], reply = await timed(
            client.command("SELECT INBOX", keep=True)
        )
        exists = re.search(rb"\* (\d+) EXISTS", reply.text)
        figures["messages"] = float(exists.group(1)) if exists else 0.0
        commands = [
            ("SORT (DATE), first (derives the keys)", "UID SORT (DATE) UTF-8 ALL"),
            ("SORT (DATE), again", "UID SORT (DATE) UTF-8 ALL"),
            ("SORT (SUBJECT)", "UID SORT (SUBJECT) UTF-8 ALL"),
            ("SORT (REVERSE ARRIVAL)", "UID SORT (REVERSE ARRIVAL) UTF-8 ALL"),
            ("THREAD REFERENCES", "UID THREAD REFERENCES UTF-8 ALL"),
            ("THREAD ORDEREDSUBJECT", "UID THREAD ORDEREDSUBJECT UTF-8 ALL"),
            (
                "ESORT PARTIAL 1:50 (REVERSE DATE)",
                "UID SORT RETURN (PARTIAL 1:50) (REVERSE DATE) UTF-8 ALL",
            ),
        ]
        for label, command in commands:
            figures[label], _ = await timed(client.command(command))
    finally:
        await client.logout()
    client = await ImapClient.login(host, port, user, password)
    try:
        await client.command("SELECT INBOX")
        figures["new session: SORT (DATE) (keys from the index)"], _ = await timed(
            client.command("UID SORT (DATE) UTF-8 ALL")
        )
        figures["new session: THREAD REFERENCES"], _ = await timed(
            client.command("UID THREAD REFERENCES UTF-8 ALL")
        )
    finally:
        await client.logout()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imap_sort", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2143)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--maildir", type=Path, help="the user's INBOX Maildir")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=2048, help="octets per message")
    parser.add_argument("--skip-fill", action="store_true")
    parser.add_argument("--dovecot", type=Path, help="measure a private Dovecot instead")
    args = parser.parse_args(argv)
    if args.dovecot is not None:
        return _dovecot(args.dovecot, args.messages, args.size)
    if not (args.user and args.password and args.maildir):
        parser.error("--user, --password and --maildir are needed (or --dovecot)")
    if not args.skip_fill:
        started = time.perf_counter()
        maildirs.write_files(args.maildir, (message(i, args.size) for i in range(args.messages)))
        print(f"wrote {args.messages} messages in {time.perf_counter() - started:.1f} s")
    figures = asyncio.run(measure(args.host, args.port, args.user, args.password))
    _print(figures, "txmailhost")
    return 0


def _dovecot(workdir: Path, count: int, size: int) -> int:
    from bench.anchors import dovecot
    from bench.server import BENCH_DOMAIN, PASSWORD

    workdir.mkdir(parents=True, exist_ok=True)
    with dovecot.running(workdir) as server:
        address = f"imap-sort@{BENCH_DOMAIN}"
        server.add_user(address)
        assert server.store_files is not None and server.imap_port is not None
        server.store_files(address, (message(i, size) for i in range(count)))
        figures = asyncio.run(measure(server.host, server.imap_port, address, PASSWORD))
    _print(figures, f"Dovecot {dovecot.version()}")
    return 0


def _print(figures: dict[str, float], name: str) -> None:
    print(f"{name}: {int(figures.pop('messages'))} messages")
    for label, seconds in figures.items():
        print(f"{label:55s} {seconds * 1000:10.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
