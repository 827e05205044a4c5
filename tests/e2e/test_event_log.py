"""The event log of the real server and ``txmailhost log grep``: a relayed message's whole
story, from the SMTP transaction through the queue to the remote server's 250; JSON lines."""

from __future__ import annotations

import json
import os
import re
import smtplib

import pytest

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_relay import dns_server, inbox, start_sender, submit, wait_for  # noqa: F401
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow
H = "127.0.0.1"


def test_log_grep_tells_a_relayed_messages_story_by_queue_id_and_by_address(
    tmp_path,
    dns_server,  # noqa: F811
):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    sender = start_sender(tmp_path, dns_server, relay_port=far.ports["smtp"])
    try:
        submit(sender, "bob@far.test")
        wait_for(lambda: inbox(far, "bob@far.test"))
        wait_for(lambda: "done, removed" in sender.cli("log", "grep", "bob@far.test",
                                                        check=False).stdout)  # fmt: skip
        by_address = sender.cli("log", "grep", "bob@far.test").stdout
        queue_id = re.search(r"id=([0-9A-F]+) from=<alice@example.test>", by_address)[1]
        story = sender.cli("log", "grep", queue_id).stdout.splitlines()
    finally:
        sender.stop()
        far.stop()
    # queued (durable before the 250), the transaction with the submission's login user,
    # delivered by the remote server, removed from the queue
    assert f"queued {queue_id} from <alice@example.test>" in story[0]
    (transaction,) = [line for line in story if f"id={queue_id} " in line]
    assert "from=<alice@example.test> to=bob@far.test" in transaction
    assert "result=250 2.0.0" in transaction and "user=alice@example.test" in transaction
    assert any(f"delivered {queue_id} to <bob@far.test>: 250" in line for line in story)
    assert story[-1].endswith(f"queue: {queue_id} done, removed")
    assert by_address.splitlines()[: len(story)] == story  # the address finds the same story
    assert "auth ok for alice@example.test" not in "\n".join(story)  # only this message


def test_json_event_log_has_the_fields_and_rotates_within_its_bound(server_template, tmp_path):
    from tests.e2e.conftest import start_from_template

    config = '[log]\nformat = "json"\nmax_size = 4096\nkeep = 2\n'
    server = start_from_template(server_template, str(tmp_path / "data"), config)
    try:
        ids = []
        for n in range(30):
            with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
                s.sendmail("x@remote.test", ["alice@example.test"], f"Subject: {n}\r\n\r\nhi\r\n")
        log_dir = os.path.join(server.data_dir, "log")
        wait_for(lambda: os.path.exists(os.path.join(log_dir, "txmailhost.log.2")))
        grep = json.loads(server.cli("log", "grep", "alice@example.test", "--json").stdout)
        ids = {e["queue_id"] for e in grep if e.get("code") == 250}
        since_future = server.cli("log", "grep", "alice@example.test", "--since", "2099-01-01",
                                  check=False)  # fmt: skip
    finally:
        server.stop()
    names = sorted(os.listdir(log_dir))
    assert names == ["txmailhost.log", "txmailhost.log.1", "txmailhost.log.2"]  # keep = 2
    assert all(os.path.getsize(os.path.join(log_dir, n)) <= 4096 + 2048 for n in names)
    transaction = next(e for e in grep if e.get("code") == 250)
    assert transaction["sender"] == "x@remote.test"
    assert transaction["recipients"] == "alice@example.test"
    assert transaction["level"] == "info" and transaction["namespace"] == "txmailhost.smtp.server"
    assert transaction["text"].startswith("smtp smtp 127.0.0.1 id=")
    assert 0 < len(ids) <= 30  # the oldest were rotated away
    assert since_future.returncode == 1 and since_future.stdout == ""
