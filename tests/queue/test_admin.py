"""``txmailhost queue ...``: what the administrator sees and the requests it leaves the server."""

from __future__ import annotations

import os

import pytest

from tests.queue.support import MESSAGE
from txmailhost.cli import main
from txmailhost.queue.spool import Spool


def spooled(tmp_path, recipients=("carol@remote.invalid", "dave@remote.invalid")):
    data = str(tmp_path / "data")
    assert main(["--data", data, "check-config"]) in (0, 1)
    main(["--data", data, "init"])
    source = tmp_path / "incoming"
    source.write_bytes(MESSAGE)
    spool = Spool(os.path.join(data, "queue"))
    spool.prepare()
    envelope = spool.add("alice@example.test", list(recipients), str(source), 1_700_000_000.0)
    return data, envelope.queue_id


def test_queue_list_shows_one_line_per_message_starting_with_its_id(tmp_path, capsys):
    data, queue_id = spooled(tmp_path)
    capsys.readouterr()
    assert main(["--data", data, "queue", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[0] == queue_id
    assert "<alice@example.test>" in line
    assert "carol@remote.invalid(pending)" in line and "dave@remote.invalid(pending)" in line


def test_queue_list_leaves_out_an_envelope_that_is_not_an_object(tmp_path, capsys):
    data, queue_id = spooled(tmp_path)
    with open(os.path.join(data, "queue", "env", "AAAAAAAAAAAA.json"), "w") as f:
        f.write("null\n")
    capsys.readouterr()
    assert main(["--data", data, "queue", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[0] == queue_id


def test_queue_list_of_an_empty_queue_prints_nothing_on_stdout(tmp_path, capsys):
    data = str(tmp_path / "data")
    main(["--data", data, "init"])
    capsys.readouterr()
    assert main(["--data", data, "queue", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "the queue is empty" in captured.err


def test_queue_show_prints_the_envelope_and_the_headers(tmp_path, capsys):
    data, queue_id = spooled(tmp_path)
    capsys.readouterr()
    assert main(["--data", data, "queue", "show", queue_id]) == 0
    out = capsys.readouterr().out
    assert '"sender": "alice@example.test"' in out
    assert "Subject: outbound" in out and "hello" not in out


def test_queue_bounce_leaves_a_request_for_the_server(tmp_path, capsys):
    data, queue_id = spooled(tmp_path)
    assert main(["--data", data, "queue", "bounce", queue_id]) == 0
    assert Spool(os.path.join(data, "queue")).take_requests() == [("bounce", queue_id)]


def test_queue_delete_retry_and_flush_leave_requests(tmp_path):
    data, queue_id = spooled(tmp_path)
    assert main(["--data", data, "queue", "delete", queue_id]) == 0
    assert main(["--data", data, "queue", "retry", queue_id]) == 0
    assert main(["--data", data, "queue", "flush"]) == 0
    assert sorted(Spool(os.path.join(data, "queue")).take_requests(), key=str) == sorted(
        [("delete", queue_id), ("retry", queue_id), ("flush", None)], key=str
    )


def test_queue_action_on_an_unknown_id_fails_with_one_line(tmp_path, capsys):
    data, _ = spooled(tmp_path)
    capsys.readouterr()
    assert main(["--data", data, "queue", "bounce", "NOSUCHID"]) == 1
    assert capsys.readouterr().err == "txmailhost: error: no message NOSUCHID in the queue\n"


@pytest.mark.parametrize(
    "action", ["show", "retry", "delete", "bounce", "hold", "release", "requeue"]
)
def test_queue_id_that_is_a_path_is_a_usage_error_and_touches_nothing(tmp_path, capsys, action):
    """``queue delete ../../../evil`` read ../../../evil.json and wrote the request beside it,
    outside the queue; ``queue show`` printed files from anywhere."""
    data, queue_id = spooled(tmp_path)
    queue = os.path.join(data, "queue")
    os.link(os.path.join(queue, "env", f"{queue_id}.json"), tmp_path / "evil.json")
    os.link(os.path.join(queue, "msg", queue_id), tmp_path / "evil")
    before = sorted(os.listdir(tmp_path))
    capsys.readouterr()
    assert main(["--data", data, "queue", action, "../../../evil"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'../../../evil' is not a queue id" in captured.err
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(os.path.join(queue, "control")) == []


def test_queue_list_shows_local_mail_acknowledged_but_not_yet_delivered(tmp_path, capsys):
    import zlib

    from txmailhost.delivery.local import XATTR, SpooledLocal, records_supported

    data = str(tmp_path / "data")
    main(["--data", data, "init"])
    spare = os.path.join(data, "queue", "spare")
    if not records_supported(spare):
        return  # no extended attributes here: local mail never waits in the spool
    path = os.path.join(spare, "00aa11bb22cc33dd")
    with open(path, "wb") as f:
        f.write(MESSAGE)
    item = SpooledLocal(path, 1_700_000_000, len(MESSAGE), zlib.crc32(MESSAGE),
                        (("bob@example.test", "INBOX"), ("eve@example.test", "Lists")))  # fmt: skip
    os.setxattr(path, XATTR, item.record())
    with open(os.path.join(spare, "unused-spare"), "wb"):
        pass
    capsys.readouterr()
    assert main(["--data", data, "queue", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[0] == "1700000000.S00aa11bb22cc33dd"
    assert "bob@example.test/INBOX(local)" in line and "eve@example.test/Lists(local)" in line
