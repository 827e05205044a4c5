"""``build_mailauth``'s filters in front of ``[filters] chain``: what each message costs."""

from __future__ import annotations

import io

from twisted.internet.defer import Deferred

from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.config import load_config
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.filters.registry import FilterHost, build_chain
from txmailhost.mailauth.setup import build_mailauth

MESSAGE = (
    b"From: carol@client.test\r\nTo: a@example.test\r\nSubject: hi\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@client.test>\r\n\r\nhello\r\n"
)


class CountingPool(SyncThreadPool):
    def __init__(self) -> None:
        self.trips = 0

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.trips += 1
        super().callInThreadWithCallback(onResult, f, *args, **kwargs)


def test_inbound_checks_and_the_spam_score_take_one_trip_to_the_filters_pool(tmp_path):
    config = load_config(str(tmp_path))
    mailauth = build_mailauth(config)  # no reactor: signing would be inline
    pool = CountingPool()
    host = FilterHost(config.data_dir, config.hostname, mailauth.resolver)
    chain = build_chain(("greylist", "spam"), {"spam": {"dns_checks": False}}, SyncReactor(),
                        pool, 30.0, "tempfail", host, leading=tuple(mailauth.filters))  # fmt: skip
    client = Client("192.0.2.7", helo="mx.client.test")
    transaction = Transaction("carol@client.test", ("a@example.test",), "Q1")
    decision = result(Deferred.fromCoroutine(
        chain.end_of_data(client, transaction, lambda: io.BytesIO(MESSAGE))))  # fmt: skip
    names = [name for name, _value in decision.fields]
    assert names[0] == "Authentication-Results" and "X-Spam-Status" in names
    assert pool.trips == 1
