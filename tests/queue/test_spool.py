"""The on-disk spool: files, JSON envelopes, and cleaning up after a crash."""

from __future__ import annotations

import os

from tests.queue.support import MESSAGE
from txmailhost.queue.spool import Spool, count_received


def make_spool(tmp_path) -> tuple[Spool, str]:
    spool = Spool(str(tmp_path / "queue"))
    spool.prepare()
    source = tmp_path / "ABCDEF123456"
    source.write_bytes(MESSAGE)
    return spool, str(source)


def test_envelope_round_trips_through_json(tmp_path):
    spool, source = make_spool(tmp_path)
    envelope = spool.add(None, ["a@b.test"], source, 100.0)
    loaded = spool.load(envelope.queue_id)
    assert loaded == envelope
    assert loaded.sender is None and loaded.recipients[0].state == "pending"


def test_load_all_removes_a_message_without_envelope(tmp_path):
    spool, source = make_spool(tmp_path)
    os.link(source, spool.message_path("ORPHAN0001"))
    envelopes, problems = spool.load_all()
    assert envelopes == [] and problems == ["removed message ORPHAN0001 that had no envelope"]
    assert os.listdir(spool.msg_dir) == []


def test_load_all_sets_aside_an_envelope_whose_message_is_missing(tmp_path):
    spool, source = make_spool(tmp_path)
    envelope = spool.add("a@b.test", ["c@d.test"], source, 1.0)
    os.unlink(spool.message_path(envelope.queue_id))
    envelopes, problems = spool.load_all()
    assert envelopes == [] and "its message file is missing" in problems[0]
    assert os.path.exists(spool.envelope_path(envelope.queue_id) + ".broken")


def test_load_all_sets_aside_an_unparsable_envelope(tmp_path):
    spool, source = make_spool(tmp_path)
    envelope = spool.add("a@b.test", ["c@d.test"], source, 1.0)
    with open(spool.envelope_path(envelope.queue_id), "w") as f:
        f.write("{not json")
    envelopes, problems = spool.load_all()
    assert envelopes == [] and len(problems) == 1


def test_load_all_removes_temp_files_of_interrupted_writes(tmp_path):
    spool, _ = make_spool(tmp_path)
    (tmp_path / "queue" / "env" / ".X.json.tmp123").write_bytes(b"{")
    spool.load_all()
    assert os.listdir(spool.env_dir) == []


def test_remove_deletes_envelope_and_message(tmp_path):
    spool, source = make_spool(tmp_path)
    envelope = spool.add("a@b.test", ["c@d.test"], source, 1.0)
    spool.remove(envelope.queue_id)
    assert spool.ids() == [] and os.listdir(spool.msg_dir) == []


def test_received_fields_are_counted_case_insensitively():
    assert count_received(b"Received: a\r\nRECEIVED : b\r\nX-Received: c\r\n\r\n") == 2
