"""The on-disk spool: files, JSON envelopes, and cleaning up after a crash."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.queue.support import MESSAGE
from txmailhost.queue.spool import Envelope, Recipient, Spool, count_received

FIELD_NAMES = sorted(
    {f.name for f in dataclasses.fields(Envelope)} | {f.name for f in dataclasses.fields(Recipient)}
)


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


GOOD = {"queue_id": "ABCDEF123456", "sender": None, "arrival": 1.0, "size": 10}


NOT_ENVELOPES = {
    "null": b"null",
    "a list": b"[]",
    "a string": b'"ABCDEF123456"',
    "a number": b"1",
    "no fields": b"{}",
    "recipients not a list": json.dumps({**GOOD, "recipients": 5}).encode(),
    "a recipient null": json.dumps({**GOOD, "recipients": [None]}).encode(),
    "an address a number": json.dumps({**GOOD, "recipients": [{"address": 7}]}).encode(),
    "an unknown state": json.dumps(
        {**GOOD, "recipients": [{"address": "a@b.test", "state": "lost"}]}
    ).encode(),
    "notify a string": json.dumps(
        {**GOOD, "recipients": [{"address": "a@b.test", "notify": "NEVER"}]}
    ).encode(),
    "arrival a string": json.dumps({**GOOD, "arrival": "yesterday"}).encode(),
    "arrival a boolean": json.dumps({**GOOD, "arrival": True}).encode(),
    "arrival not a number": json.dumps({**GOOD, "arrival": float("nan")}).encode(),
    "size a fraction": json.dumps({**GOOD, "size": 1.5}).encode(),
    "held a string": json.dumps({**GOOD, "held": "no"}).encode(),
    "an unknown field": json.dumps({**GOOD, "colour": "red"}).encode(),
    "a path for an id": json.dumps({**GOOD, "queue_id": "../../evil"}).encode(),
    "not UTF-8": b"\xff",
}


@pytest.mark.parametrize("raw", NOT_ENVELOPES.values(), ids=NOT_ENVELOPES.keys())
def test_what_is_not_an_envelope_is_a_value_error(raw):
    with pytest.raises(ValueError):
        Envelope.from_json(raw)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)


@given(JSON)
def test_any_json_is_an_envelope_or_a_value_error(value):
    try:
        raw = json.dumps(value).encode()
    except ValueError:
        return
    try:
        envelope = Envelope.from_json(raw)
    except ValueError:
        return
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_one_envelope_that_is_not_an_object_is_set_aside_and_the_others_load(tmp_path):
    spool, source = make_spool(tmp_path)
    good = spool.add("a@b.test", ["c@d.test"], source, 1.0)
    (tmp_path / "queue" / "env" / "AAAAAAAAAAAA.json").write_bytes(b"null\n")
    (tmp_path / "queue" / "msg" / "AAAAAAAAAAAA").write_bytes(MESSAGE)
    envelopes, problems = spool.load_all()
    assert [e.queue_id for e in envelopes] == [good.queue_id]
    assert problems == [
        "envelope AAAAAAAAAAAA is unusable (the envelope is not a JSON object); renamed to .broken"
    ]
    assert os.path.exists(spool.envelope_path("AAAAAAAAAAAA") + ".broken")
    assert os.path.exists(spool.message_path("AAAAAAAAAAAA"))  # kept for the administrator
    assert [e.queue_id for e in spool.envelopes()] == [good.queue_id]


def test_an_envelope_copied_under_another_id_is_set_aside(tmp_path):
    spool, source = make_spool(tmp_path)
    good = spool.add("a@b.test", ["c@d.test"], source, 1.0)
    os.link(spool.envelope_path(good.queue_id), spool.envelope_path("COPY00000001"))
    os.link(spool.message_path(good.queue_id), spool.message_path("COPY00000001"))
    envelopes, problems = spool.load_all()
    assert [e.queue_id for e in envelopes] == [good.queue_id]
    assert "COPY00000001" in problems[0]


def test_an_unreadable_envelope_is_left_as_it_is_and_the_others_load(tmp_path):
    spool, source = make_spool(tmp_path)
    good = spool.add("a@b.test", ["c@d.test"], source, 1.0)
    (tmp_path / "queue" / "env" / "AAAAAAAAAAAA.json").mkdir()  # open() fails, even for root
    (tmp_path / "queue" / "msg" / "AAAAAAAAAAAA").write_bytes(MESSAGE)
    envelopes, problems = spool.load_all()
    assert [e.queue_id for e in envelopes] == [good.queue_id]
    assert "could not be read" in problems[0]
    assert os.path.exists(spool.envelope_path("AAAAAAAAAAAA"))
    assert os.path.exists(spool.message_path("AAAAAAAAAAAA"))


@pytest.mark.parametrize("queue_id", ["../../evil", "", "AB", "ABCDEF\n", "ABC DEF", "A" * 41])
def test_a_queue_id_from_outside_that_is_no_id_names_no_file(tmp_path, queue_id):
    spool, _ = make_spool(tmp_path)
    for reach in (spool.load, spool.header, lambda q: spool.request("delete", q)):
        with pytest.raises(ValueError, match="is not a queue id"):
            reach(queue_id)
    assert os.listdir(spool.control_dir) == []


def test_requests_whose_names_hold_no_queue_id_are_dropped(tmp_path):
    spool, _ = make_spool(tmp_path)
    for name in ("ABC.DEF.adopt", "AB.delete", "ABC DEF.bounce", "ABCDEF123456.retry"):
        (tmp_path / "queue" / "control" / name).write_bytes(b"")
    assert spool.take_requests() == [("retry", "ABCDEF123456")]
    assert os.listdir(spool.control_dir) == []
