"""The Prometheus page of the real server: what one delivery, one login and a few IMAP
commands leave in it, read the way Prometheus reads it (prometheus_client's own parser)."""

from __future__ import annotations

import imaplib
import smtplib
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.slow
H = "127.0.0.1"


def scrape(server, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(f"http://{H}:{server.ports['metrics']}/metrics")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_one_delivery_and_an_imap_session_show_in_the_scrape(server):
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], "Subject: m\r\n\r\nhello\r\n")
    imap = imaplib.IMAP4(H, server.ports["imap"])
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@example.test", "wrong")
    imap.login("alice@example.test", PASSWORD)
    imap.select("INBOX")
    imap.uid("FETCH", "1:*", "(FLAGS)")
    imap.logout()

    # The local copy lands just after the 250 (delivery thread): wait for it to be counted.
    deadline = time.time() + 10
    while True:
        content_type, text = scrape(server)
        found = samples(text)
        if value(found, "txmailhost_messages_total", event="delivered") >= 1:
            break
        assert time.time() < deadline, text
        time.sleep(0.1)

    assert content_type.startswith("text/plain")
    assert value(found, "txmailhost_smtp_transactions_total",
                 listener="smtp", reply_class="2xx", enhanced="2.0.0") == 1  # fmt: skip
    assert value(found, "txmailhost_messages_total", event="accepted") == 1
    assert value(found, "txmailhost_message_bytes_total", event="accepted") > len("hello")
    assert value(found, "txmailhost_logins_total", protocol="imap", result="success") == 1
    assert value(found, "txmailhost_logins_total", protocol="imap", result="failure") == 1
    assert value(found, "txmailhost_imap_commands_total", command="UID FETCH") == 1
    assert value(found, "txmailhost_imap_command_seconds_count", command="SELECT") == 1
    assert value(found, "txmailhost_imap_replies_total", status="NO") == 1
    assert value(found, "txmailhost_connections_accepted_total", listener="smtp") == 1
    assert value(found, "txmailhost_connections_accepted_total", listener="imap") == 1
    assert value(found, "txmailhost_connections_open", listener="smtp") == 0
    assert value(found, "txmailhost_fsync_seconds_count", kind="file") >= 1
    assert value(found, "txmailhost_queue_messages") == 0
    assert value(found, "txmailhost_threadpool_max_threads", pool="storage") >= 1
    assert ("txmailhost_threadpool_queue_depth", frozenset({("pool", "accounts")})) in found
    assert any(name == "txmailhost_build_info" for name, _ in found)


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(server):
    content_type, text = scrape(server, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


def test_other_paths_are_not_found(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://{H}:{server.ports['metrics']}/", timeout=10)
    assert caught.value.code == 404


def test_the_reactor_lag_probe_reports_within_seconds(server):
    deadline = time.time() + 10
    while value(samples(scrape(server)[1]), "txmailhost_reactor_lag_seconds_count") < 1:
        assert time.time() < deadline
        time.sleep(0.2)
