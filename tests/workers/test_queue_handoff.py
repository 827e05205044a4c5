"""A worker that only spools hands its mail to the queue runner of worker 0, exactly once."""

from __future__ import annotations

import os
import time

from tests.queue.support import OK, Harness, ScriptedCourier
from txmailhost.queue.spool import Spool


def _spooling_worker(h: Harness) -> tuple:
    """A second queue on the same spool, as a worker other than 0 builds it."""
    queue = h.make_queue(h.queue.policy)
    queue.runner = False
    told: list[str] = []
    queue.spooled_elsewhere = told.append
    queue.start()
    return queue, told


def test_mail_spooled_by_another_worker_is_delivered_by_the_runner_once(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(OK))
    worker, told = _spooling_worker(h)
    results: list = []
    worker.submit("alice@example.test", ["carol@remote.test"], h.incoming()).addBoth(results.append)
    queue_id = results[0]
    assert told == [queue_id]
    assert h.courier.calls == []  # the spooling worker never delivers
    h.queue.adopt(queue_id)  # what the bus message makes the runner do
    h.clock.advance(0)
    assert len(h.courier.calls) == 1
    assert h.queued_ids() == []
    # The durable note the spooling worker left is also read at the next poll: no second try.
    h.clock.advance(h.queue.policy.poll_interval + 1)
    assert len(h.courier.calls) == 1


def test_adoption_note_alone_is_enough_when_the_bus_message_is_lost(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(OK))
    worker, _told = _spooling_worker(h)
    results: list = []
    worker.submit("alice@example.test", ["carol@remote.test"], h.incoming()).addBoth(results.append)
    assert os.path.exists(os.path.join(h.spool.control_dir, f"{results[0]}.adopt"))
    h.clock.advance(h.queue.policy.poll_interval + 1)
    assert len(h.courier.calls) == 1
    assert h.queued_ids() == []


def test_adopting_a_message_already_scheduled_or_gone_does_nothing(tmp_path):
    h = Harness(tmp_path, ScriptedCourier("hold"))
    queue_id = h.submit()
    h.queue.adopt(queue_id)
    h.clock.advance(0)
    assert len(h.courier.calls) == 1  # not scheduled a second time
    h.courier.release(OK)
    h.clock.advance(0)
    h.queue.adopt(queue_id)  # delivered and removed meanwhile
    h.clock.advance(0)
    assert len(h.courier.calls) == 1


def test_runner_start_leaves_young_files_another_worker_may_be_writing(tmp_path):
    spool = Spool(str(tmp_path / "queue"), sweep_grace=600)
    spool.prepare()
    half_done = os.path.join(spool.msg_dir, "HALFDONE0001")  # linked, envelope not yet written
    with open(half_done, "wb") as f:
        f.write(b"Subject: x\r\n\r\nx\r\n")
    old = os.path.join(spool.msg_dir, "LEFTOVER0001")
    with open(old, "wb") as f:
        f.write(b"Subject: y\r\n\r\ny\r\n")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    spool.load_all()
    assert os.path.exists(half_done)
    assert not os.path.exists(old)
