"""The example filter of docs/filters.rst, as the tests use it (in-process and in the real
server, by path: ``[filters] chain = ["tests.filters.example:ExampleFilter"]``).

Its verdict comes from the message itself, so a test picks one by what it sends:

- Subject ``tempfail-me``: TEMPFAIL; ``reject-me``: REJECT; ``junk-me``: JUNK;
  ``crash-me``: the filter raises; ``slow-me``: it sleeps past any small time budget;
- a recipient whose local part is ``blocked``: refused at RCPT; ``spam-trap``: its copy
  goes to Junk (at RCPT), ``drop-me``: refused at the end of data while the others go on;
- otherwise ACCEPT, adding ``X-Example-Filter: checked N octets`` (N: what it read).
"""

from __future__ import annotations

import time
from email.parser import BytesHeaderParser
from typing import BinaryIO

from twisted.logger import Logger

from txmailhost.filters.base import MessageFilter
from txmailhost.filters.interfaces import Client, Transaction, Verdict

log = Logger()


class ExampleFilter(MessageFilter):
    name = "example"

    def __init__(self, blocking: bool = True, sleep: float = 2.0, header: str = "X-Example-Filter"):
        self.blocking = blocking  # reads the message synchronously: a worker thread
        self.sleep = sleep
        self.header = header

    def rcpt_to(self, client: Client, transaction: Transaction, recipient: str) -> Verdict:
        local = recipient.partition("@")[0]
        if local == "blocked":
            return Verdict.reject("example: that recipient is blocked")
        if local == "spam-trap":
            return Verdict.junk("example: trap address")
        return Verdict.accept()

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Verdict:
        octets = 0
        head = b""
        while chunk := message.read(65536):
            if octets < 65536:
                head += chunk
            octets += len(chunk)
        subject = str(BytesHeaderParser().parsebytes(head).get("Subject", ""))
        if "crash-me" in subject:
            raise RuntimeError("example: crashed on purpose")
        if "slow-me" in subject:
            log.info("example: slow-me, sleeping {seconds} s", seconds=self.sleep)
            time.sleep(self.sleep)
        if "tempfail-me" in subject:
            return Verdict.tempfail("example: try again later")
        if "reject-me" in subject:
            return Verdict.reject("example: no thanks")
        if "junk-me" in subject:
            return Verdict.junk("example: looks like spam")
        dropped = frozenset(r for r in transaction.recipients if r.startswith("drop-me@"))
        if dropped:
            return Verdict.reject("example: not for them", recipients=dropped)
        return Verdict.accept(headers=((self.header, f"checked {octets} octets"),))
