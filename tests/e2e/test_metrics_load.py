"""A scrape of a server under load (many SMTP clients and IMAP sessions at once, bounded in
count and time, loopback only): every family is there and the values add up."""

from __future__ import annotations

import imaplib
import smtplib
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.slow
H = "127.0.0.1"
SENDERS, MESSAGES_EACH, READERS = 8, 10, 4

FAMILIES = {
    "txmailhost_connections_accepted", "txmailhost_connections_refused",
    "txmailhost_connections_open", "txmailhost_smtp_transactions", "txmailhost_messages",
    "txmailhost_message_bytes", "txmailhost_queue_messages", "txmailhost_queue_recipients",
    "txmailhost_queue_oldest_age_seconds", "txmailhost_delivery_attempts",
    "txmailhost_logins", "txmailhost_imap_commands", "txmailhost_imap_command_seconds",
    "txmailhost_imap_replies", "txmailhost_fsync_seconds", "txmailhost_threadpool_queue_depth",
    "txmailhost_threadpool_busy_threads", "txmailhost_filter_verdicts",
    "txmailhost_filter_seconds", "txmailhost_reactor_lag_seconds", "txmailhost_build_info",
}  # fmt: skip


def scrape(server) -> tuple[set[str], dict]:
    url = f"http://{H}:{server.ports['metrics']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    families, values = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            values[(s.name, frozenset(s.labels.items()))] = s.value
    return families, values


def total(values: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= ls)


def test_a_scrape_under_load_has_every_family_with_values_that_add_up(server):
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
                for i in range(MESSAGES_EACH):
                    s.sendmail("load@remote.test", ["alice@example.test"],
                               f"Subject: load {n}.{i}\r\n\r\n{'x' * 500}\r\n")  # fmt: skip
        except BaseException as e:  # reported below
            errors.append(e)

    def read(n: int) -> None:
        try:
            client = imaplib.IMAP4(H, server.ports["imap"])
            client.login("bob@example.test", PASSWORD)
            deadline = time.time() + 5
            while time.time() < deadline:
                client.select("INBOX")
                client.uid("SEARCH", "ALL")
                client.noop()
            client.logout()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(SENDERS)]
    threads += [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
    for t in threads:
        t.start()
    _families, during = scrape(server)  # while the load runs: the page answers
    for t in threads:
        t.join(60)
    assert not errors, errors
    sent = SENDERS * MESSAGES_EACH
    deadline = time.time() + 20
    while True:
        families, values = scrape(server)
        if total(values, "txmailhost_messages_total", event="delivered") >= sent:
            break
        assert time.time() < deadline, "local deliveries not all counted"
        time.sleep(0.2)

    assert families >= FAMILIES, FAMILIES - families
    assert total(values, "txmailhost_smtp_transactions_total", reply_class="2xx") == sent
    assert total(values, "txmailhost_messages_total", event="accepted") == sent
    assert total(values, "txmailhost_messages_total", event="delivered") == sent
    accepted_bytes = total(values, "txmailhost_message_bytes_total", event="accepted")
    assert sent * 500 < accepted_bytes < sent * 2000  # 500 octets of body plus the headers
    assert total(values, "txmailhost_connections_accepted_total", listener="smtp") == SENDERS
    assert total(values, "txmailhost_connections_open", listener="smtp") == 0
    assert total(values, "txmailhost_logins_total", protocol="imap", result="success") == READERS
    selects = total(values, "txmailhost_imap_commands_total", command="SELECT")
    assert selects >= READERS
    assert total(values, "txmailhost_imap_command_seconds_count", command="SELECT") == selects
    assert total(values, "txmailhost_imap_replies_total", status="OK") >= 3 * selects
    # Every accepted message was made durable: at least one file fsync each.
    assert total(values, "txmailhost_fsync_seconds_count", kind="file") >= sent
    assert total(values, "txmailhost_queue_messages") == 0
    assert total(values, "txmailhost_reactor_lag_seconds_count") >= 1
    lag = total(values, "txmailhost_reactor_lag_seconds_sum") / total(
        values, "txmailhost_reactor_lag_seconds_count"
    )
    assert lag < 1.0  # seconds: the reactor kept turning under load
    assert total(during, "txmailhost_threadpool_max_threads", pool="storage") >= 1
