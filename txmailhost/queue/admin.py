"""``txmailhost queue ...``: look at the relay queue and ask the server to act on it.

Like Postfix's ``mailq`` / ``postqueue -f`` / ``postsuper -d``:

- ``queue list`` — one line per message: id, size, arrival, sender, and each recipient with its
  state (the id is the first word, for scripts);
- ``queue show ID`` — the envelope as stored (JSON) and the message's header section;
- ``queue flush`` — try every message now; ``queue retry ID`` — try one message now;
- ``queue delete ID`` — drop a message without telling the sender;
- ``queue bounce ID`` — fail every undelivered recipient now, with a DSN to the sender;
- ``queue hold ID`` / ``queue release ID`` — keep a message without trying it, and undo that;
  ``queue requeue ID`` — start over: released, attempts forgotten, tried now (``postsuper
  -h``/``-H``/``-r``); ``queue list --domain D`` — only messages with a recipient in D.

Reading is done here, from the same records and with the same code as the server
(``IQueueRecords``: ``spool.py``, or ``postgres.py`` with ``[queue] backend = "postgres"``).
With the spool, changes are *requests*: a file in ``DATA/queue/control/`` that the running
server picks up within a second and applies itself (invariant 3 in ``queue/__init__.py``: one
writer, so an attempt in flight and an admin action can't overwrite each other). When the
server is stopped, the request waits and is applied as the server starts. With the database,
a change is made at once in one transaction, and every node's runner sees it at its next
claim; a bounce is sent by the runner that claims the message next.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from txmailhost.delivery.local import spooled_local
from txmailhost.queue.interfaces import IQueueRecords
from txmailhost.queue.service import open_records
from txmailhost.queue.spool import Envelope, check_queue_id


def register(
    commands: Any, with_config: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Add the ``queue`` command group to the CLI's subparsers."""
    queue = commands.add_parser("queue", help="inspect and manage the relay queue (like mailq)")
    actions = queue.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per queued message: id, sender, recipients")
    listing.add_argument("--domain", help="only messages with a recipient in this domain")
    listing.set_defaults(run=with_config(_list))
    show = actions.add_parser("show", help="the envelope and headers of one message")
    show.add_argument("id", type=_queue_id)
    show.set_defaults(run=with_config(_show))
    flush = actions.add_parser("flush", help="try to deliver every queued message now")
    flush.set_defaults(run=with_config(_flush))
    for name, text in (
        ("retry", "try to deliver one message now"),
        ("delete", "remove a message without notifying the sender"),
        ("bounce", "give up on a message: a delivery status notification goes to the sender"),
        ("hold", "keep a message without trying to deliver it, until 'queue release'"),
        ("release", "deliver a held message again when its recipients are due"),
        ("requeue", "start over: release, forget the attempts, try now"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", type=_queue_id)
        action.set_defaults(run=with_config(_request(name)))


def _queue_id(text: str) -> str:
    """An id as ``queue list`` prints them; anything else is a usage error (exit 2) before
    it can name a file outside the queue."""
    try:
        return check_queue_id(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def format_line(envelope: Envelope) -> str:
    recipients = " ".join(f"{r.address}({r.state})" for r in envelope.recipients)
    return (
        f"{envelope.queue_id}  {envelope.size:>9}  {_when(envelope.arrival)}  "
        f"<{envelope.sender or ''}>  -> {recipients}" + ("  (held)" if envelope.held else "")
    )


def _list(args: argparse.Namespace, config: Any) -> int:
    envelopes = open_records(config).envelopes()
    if args.domain:
        domain = args.domain.lower().rstrip(".")
        envelopes = [e for e in envelopes if any(r.domain == domain for r in e.recipients)]
    for envelope in envelopes:
        print(format_line(envelope))
    # Local mail acknowledged and not yet in its mailboxes: milliseconds while the server
    # runs; after a crash, until the next start delivers it (delivery/local.py).
    local = spooled_local(os.path.join(config.queue_dir, "spare"))
    if args.domain:
        local = [i for i in local if any(u.rpartition("@")[2] == domain for u, _m in i.targets)]
    for item in local:
        targets = " ".join(f"{user}/{mailbox}(local)" for user, mailbox in item.targets)
        print(f"{item.stem}  {item.size:>9}  {_when(item.arrival)}  -> {targets}")
    if not envelopes and not local:
        print("the queue is empty", file=sys.stderr)
    return 0


def _existing(records: IQueueRecords, queue_id: str) -> Envelope:
    try:
        return records.load(queue_id)
    except FileNotFoundError:
        raise ValueError(f"no message {queue_id} in the queue") from None


def _show(args: argparse.Namespace, config: Any) -> int:
    records = open_records(config)
    envelope = _existing(records, args.id)
    sys.stdout.write(envelope.to_json().decode())
    for r in envelope.recipients:
        if r.active:
            print(f"# {r.address}: {r.state}, next attempt {_when(r.next_attempt)}")
    print()
    try:
        header = records.header(args.id)
    except FileNotFoundError:
        raise ValueError(f"no message {args.id} in the queue") from None
    sys.stdout.write(header.decode("utf-8", "replace"))
    return 0


def _flush(args: argparse.Namespace, config: Any) -> int:
    open_records(config).request("flush")
    print("flush requested; the server starts the deliveries within a second")
    return 0


def _request(kind: str) -> Callable[[argparse.Namespace, Any], int]:
    def run(args: argparse.Namespace, config: Any) -> int:
        records = open_records(config)
        _existing(records, args.id)
        records.request(kind, args.id)
        print(f"{kind} of {args.id} requested; the server applies it within a second")
        return 0

    return run
