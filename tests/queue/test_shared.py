"""Several runners on one PostgreSQL queue: leases keep them from delivering one recipient
twice, and a dead runner's recipients go to another once its lease expires (Clock-driven;
skipped without PostgreSQL)."""

from __future__ import annotations

import random

import pytest

from tests.queue.support import GREYLISTED, OK, Harness, ScriptedCourier
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncThreadPool
from txmailhost.queue.claims import SharedQueue
from txmailhost.queue.scheduler import QueuePolicy


@pytest.fixture
def h(tmp_path, postgres_dsn):  # noqa: F811 - the fixture
    harness = Harness(tmp_path, ScriptedCourier("hold"), dsn=postgres_dsn, lease=120, retry_min=10)
    yield harness
    harness.queue.stop()
    harness.records.close()


def second_runner(h: Harness, courier: ScriptedCourier, lease: float = 120) -> SharedQueue:
    """Another node's runner on the same database and clock."""

    async def return_to_sender(address: str, data: bytes) -> None:
        h.dsns.append((address, data))

    runner = SharedQueue(
        h.records,
        courier,
        return_to_sender,
        h.clock,
        SyncThreadPool(),
        hostname="mx2.example.test",
        work_dir=str(h.tmp_path / "node2"),
        policy=QueuePolicy(retry_min=10, jitter=0.0),
        lease=lease,
        rng=random.Random(2),
    )
    runner.start()
    return runner


def test_a_leased_recipient_is_not_claimed_by_another_runner(h):
    other = ScriptedCourier()
    h.submit()
    assert len(h.courier.held) == 1  # the first runner is delivering it
    runner = second_runner(h, other)
    h.clock.pump([1] * 60)  # past its next attempt, within the lease the first one renews
    assert other.calls == []
    h.courier.release(OK)
    assert h.queued_ids() == []
    h.clock.pump([1] * 30)
    assert other.calls == []
    runner.stop()


def test_a_live_runner_renews_its_lease_through_a_long_delivery(h):
    other = ScriptedCourier()
    h.submit()
    runner = second_runner(h, other)
    h.clock.pump([5] * 100)  # 500 s: four leases long
    assert other.calls == []
    h.courier.release(OK)
    assert h.queued_ids() == [] and len(h.courier.calls) == 1
    runner.stop()


def test_a_dead_runners_lease_expires_and_another_runner_delivers(h):
    queue_id = h.submit()
    h.queue.stop()  # the node dies mid-delivery: no more renewals, no result
    other = ScriptedCourier()
    runner = second_runner(h, other)
    h.clock.pump([1] * 110)
    assert other.calls == []  # its lease (120 s) still holds
    h.clock.pump([1] * 15)
    assert [c[1] for c in other.calls] == [["carol@remote.test"]]
    assert h.queued_ids() == []
    assert h.records.ids() == [] and queue_id not in h.queued_ids()
    # The dead node's attempt ends late: its result is not written over the new holder's.
    h.courier.release(GREYLISTED)
    assert h.queued_ids() == [] and h.dsns == []
    runner.stop()


def test_a_recipient_retaken_after_expiry_counts_both_attempts(h):
    queue_id = h.submit()
    h.queue.stop()
    runner = second_runner(h, ScriptedCourier(GREYLISTED))
    h.clock.pump([1] * 125)
    recipient = h.records.load(queue_id).recipients[0]
    assert (recipient.state, recipient.attempts) == ("deferred", 2)
    assert recipient.diagnostic == "451 4.7.1 greylisted"
    runner.stop()


def test_a_crashed_attempts_lease_is_not_renewed_and_expires(tmp_path, postgres_dsn):  # noqa: F811
    h = Harness(tmp_path, ScriptedCourier(OK, "hold"), dsn=postgres_dsn, lease=120, retry_min=10)
    records = h.queue.records

    class Broken:
        def __getattr__(self, name):
            return getattr(records, name)

        def record(self, *args):
            raise OSError("the disk under the database is gone")

    h.queue.records = Broken()  # this node's results can't be written: its attempt crashes
    crashed = h.submit()
    h.queue.records = records
    h.submit(["dave@other.test"])  # a long delivery: the node renews its leases meanwhile
    assert len(h.courier.calls) == 2 and len(h.courier.held) == 1
    other = ScriptedCourier()
    runner = second_runner(h, other)
    h.clock.pump([5] * 22)  # 110 s
    assert other.calls == []
    h.clock.pump([5] * 3)  # the crashed attempt's lease was not renewed: it expired
    assert [c[1] for c in other.calls] == [["carol@remote.test"]]
    assert crashed not in h.queued_ids()
    h.courier.release(OK)
    assert h.queued_ids() == []
    runner.stop()
    h.queue.stop()
    records.close()
