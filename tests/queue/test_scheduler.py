"""The queue manager: spooling, retries with backoff, bounces, limits, restarts (Clock-driven)."""

from __future__ import annotations

import contextlib
import json
import os
import resource

from twisted.logger import LogLevel, capturedLogs, formatEvent

from tests.queue.support import GREYLISTED, MESSAGE, NO_USER, OK, Harness, ScriptedCourier
from txmailhost.queue.interfaces import DeliveryResult


def test_submit_spools_the_message_and_a_json_envelope(tmp_path):
    h = Harness(tmp_path, ScriptedCourier("hold"))
    queue_id = h.submit(["carol@remote.test", "dave@remote.test"])
    with open(h.spool.message_path(queue_id), "rb") as f:
        assert f.read() == MESSAGE
    with open(h.spool.envelope_path(queue_id)) as f:
        envelope = json.load(f)
    assert envelope["sender"] == "alice@example.test"
    assert [r["address"] for r in envelope["recipients"]] == [
        "carol@remote.test",
        "dave@remote.test",
    ]
    assert envelope["hops"] == 1


def test_spooled_message_is_a_hard_link_to_the_incoming_file(tmp_path):
    h = Harness(tmp_path, ScriptedCourier("hold"))
    source = h.incoming()
    results: list = []
    h.queue.submit("alice@example.test", ["carol@remote.test"], source).addBoth(results.append)
    assert os.stat(source).st_ino == os.stat(h.spool.message_path(results[0])).st_ino


def test_queue_id_is_the_incoming_file_name(tmp_path):
    h = Harness(tmp_path, ScriptedCourier("hold"))
    assert h.submit() == "INCOMING0001"


def test_delivered_message_leaves_the_spool(tmp_path):
    h = Harness(tmp_path)
    h.submit()
    assert h.courier.calls[0][:3] == ("alice@example.test", ["carol@remote.test"], "remote.test")
    assert h.queued_ids() == []
    assert os.listdir(h.spool.msg_dir) == []


def test_temporary_failure_is_retried_after_retry_min_then_delivered(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED), retry_min=300)
    queue_id = h.submit()
    envelope = h.spool.load(queue_id)
    assert envelope.recipients[0].state == "deferred"
    assert envelope.recipients[0].diagnostic == "451 4.7.1 greylisted"
    h.clock.advance(299)
    assert len(h.courier.calls) == 1
    h.clock.advance(1)
    assert len(h.courier.calls) == 2
    assert h.queued_ids() == []
    assert h.dsns == []


def test_backoff_doubles_up_to_retry_max(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(*[GREYLISTED] * 6), retry_min=100, retry_max=500)
    h.submit()
    times = []
    for _ in range(6):
        times.append(h.clock.seconds())
        h.clock.advance(1)
        while len(h.courier.calls) == len(times):
            h.clock.advance(1)
    gaps = [round(b - a) for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [100, 200, 400, 500, 500]


def test_permanent_failure_bounces_an_rfc3464_report_to_the_sender(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(NO_USER))
    queue_id = h.submit()
    [(to, dsn)] = h.dsns
    assert to == "alice@example.test"
    assert b"Content-Type: multipart/report; report-type=delivery-status;" in dsn
    assert b"Content-Type: message/delivery-status" in dsn
    assert b"Reporting-MTA: dns; mx.example.test\r\n" in dsn
    assert b"Final-Recipient: rfc822; carol@remote.test\r\n" in dsn
    assert b"Action: failed\r\nStatus: 5.1.1\r\n" in dsn
    assert b"Remote-MTA: dns; mx.remote.test\r\n" in dsn
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n" in dsn
    assert b"Arrival-Date: " in dsn
    assert b"Content-Type: text/rfc822-headers\r\n\r\n" in dsn and b"Subject: outbound" in dsn
    assert b"\r\nhello\r\n" not in dsn  # headers only, never the body
    assert f"X-Txmailhost-Queue-ID: {queue_id}".encode() in dsn
    assert h.queued_ids() == []


def test_null_sender_is_never_bounced(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(NO_USER))
    h.submit(sender=None)
    assert h.dsns == []
    assert h.queued_ids() == []


def test_message_expires_after_max_lifetime_with_status_547(tmp_path):
    h = Harness(
        tmp_path,
        ScriptedCourier(*[GREYLISTED] * 50),
        retry_min=1000,
        retry_max=1000,
        max_lifetime=5000,
        delay_warning=0,
    )
    h.submit()
    h.clock.pump([100] * 60)
    [(_, dsn)] = h.dsns
    assert b"Action: failed\r\nStatus: 5.4.7\r\n" in dsn
    assert b"delivery time expired; last error: 451 4.7.1 greylisted" in dsn
    assert h.queued_ids() == []
    assert 5 <= len(h.courier.calls) <= 7


def test_one_delay_warning_is_sent_after_delay_warning(tmp_path):
    h = Harness(
        tmp_path,
        ScriptedCourier(*[GREYLISTED] * 20),
        retry_min=600,
        retry_max=600,
        delay_warning=1800,
    )
    h.submit()
    h.clock.pump([100] * 60)
    warnings = [dsn for _, dsn in h.dsns]
    assert len(warnings) == 1
    assert b"Action: delayed\r\nStatus: 4.7.1\r\n" in warnings[0]
    assert b"Will-Retry-Until: " in warnings[0]
    assert len(h.queued_ids()) == 1


def test_restart_resumes_a_deferred_message_at_its_next_attempt(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED), retry_min=300)
    queue_id = h.submit()
    h.restart(retry_min=300)
    assert h.queued_ids() == [queue_id]
    assert len(h.courier.calls) == 1  # no attempt just because we restarted
    h.clock.advance(301)
    assert len(h.courier.calls) == 2
    assert h.queued_ids() == []


def test_an_envelope_that_is_not_an_object_does_not_stop_the_queue(tmp_path):
    """``null`` in one envelope raised AttributeError out of the start-up load: the queue
    never polled, so deferred mail was never retried and no request was applied."""
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED), retry_min=300)
    queue_id = h.submit()
    (tmp_path / "queue" / "env" / "AAAAAAAAAAAA.json").write_bytes(b"null\n")
    (tmp_path / "queue" / "msg" / "AAAAAAAAAAAA").write_bytes(MESSAGE)
    h.restart(retry_min=300)
    assert h.queued_ids() == [queue_id]
    assert os.path.exists(h.spool.envelope_path("AAAAAAAAAAAA") + ".broken")
    h.request("retry", queue_id)
    assert len(h.courier.calls) == 2 and h.queued_ids() == []


def test_attempt_interrupted_by_a_crash_is_not_redialled_at_once(tmp_path):
    h = Harness(tmp_path, ScriptedCourier("hold"), retry_min=300)
    queue_id = h.submit()
    h.restart(retry_min=300)  # the held attempt never finished: as after a crash
    assert len(h.courier.calls) == 1
    assert h.spool.load(queue_id).recipients[0].attempts == 1
    h.clock.advance(301)
    assert len(h.courier.calls) == 2


def test_overdue_messages_after_a_restart_are_spread_out(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(*[GREYLISTED] * 200), retry_min=10, startup_spread=60)
    for _ in range(200):
        h.submit()
    h.queue.stop()
    h.clock.advance(1000)  # down for a while: every message is overdue
    h.restart(retry_min=10, startup_spread=60)
    assert len(h.courier.calls) < 220
    h.clock.pump([1] * 70)
    assert len(h.courier.calls) == 400


def test_looping_message_bounces_546_without_being_sent(tmp_path):
    h = Harness(tmp_path, max_hops=3)
    looping = b"Received: x\r\n" * 4 + b"Subject: loop\r\n\r\nbody\r\n"
    h.submit(data=looping)
    assert h.courier.calls == []
    [(_, dsn)] = h.dsns
    assert b"Status: 5.4.6\r\n" in dsn


def test_per_domain_limit_caps_parallel_attempts_to_one_domain(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(*["hold"] * 10), max_per_domain=2)
    for _ in range(5):
        h.submit()
    h.submit(["x@other.test"])
    domains = [call[2] for call in h.courier.calls]
    assert domains == ["remote.test", "remote.test", "other.test"]
    h.courier.release()
    assert [call[2] for call in h.courier.calls][-1] == "remote.test"
    assert len(h.courier.calls) == 4


def test_global_limit_caps_parallel_attempts(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(*["hold"] * 10), max_connections=3)
    for n in range(6):
        h.submit([f"user@d{n}.test"])
    assert len(h.courier.calls) == 3
    h.courier.release()
    assert len(h.courier.calls) == 4


def test_courier_crash_defers_instead_of_losing_the_message(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(RuntimeError("boom")))
    queue_id = h.submit()
    recipient = h.spool.load(queue_id).recipients[0]
    assert (recipient.state, recipient.diagnostic) == ("deferred", "internal error: boom")


def test_admin_bounce_request_sends_a_dsn_within_a_poll(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED))
    queue_id = h.submit()
    h.spool.request("bounce", queue_id)
    h.clock.advance(1)
    [(to, dsn)] = h.dsns
    assert to == "alice@example.test"
    assert b"Final-Recipient: rfc822; carol@remote.test\r\nAction: failed\r\nStatus: 5.0.0" in dsn
    assert h.queued_ids() == []


def test_admin_delete_request_removes_without_a_dsn(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED))
    queue_id = h.submit()
    h.spool.request("delete", queue_id)
    h.clock.advance(1)
    assert h.queued_ids() == [] and h.dsns == []


def test_admin_retry_and_flush_try_again_now(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED, GREYLISTED), retry_min=3000)
    queue_id = h.submit()
    h.spool.request("retry", queue_id)
    h.clock.advance(1)
    assert len(h.courier.calls) == 2
    h.spool.request("flush")
    h.clock.advance(1)
    assert len(h.courier.calls) == 3
    assert h.queued_ids() == []


def test_recipients_of_one_message_in_two_domains_are_tried_separately(tmp_path):
    failure = DeliveryResult.permanent("5.1.1", "550 no")
    h = Harness(tmp_path, ScriptedCourier(OK, failure))
    h.submit(["a@one.test", "b@two.test"])
    assert sorted(call[2] for call in h.courier.calls) == ["one.test", "two.test"]
    [(_, dsn)] = h.dsns
    assert b"Final-Recipient: rfc822; b@two.test" in dsn
    assert b"a@one.test" not in dsn.split(b"text/rfc822-headers")[0]


class ManualPool:
    """A thread pool whose jobs run only when the test says so."""

    def __init__(self) -> None:
        self.jobs: list = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.jobs.append((on_result, f, args, kwargs))

    def run_next(self) -> None:
        on_result, f, args, kwargs = self.jobs.pop(0)
        try:
            result = f(*args, **kwargs)
        except Exception as e:
            on_result(False, e)
        else:
            on_result(True, result)


def test_submission_during_the_start_up_load_waits_and_is_not_swept(tmp_path):
    from tests.queue.support import ScriptedCourier as Courier
    from tests.support.syncpool import SyncReactor
    from txmailhost.queue.scheduler import Queue
    from txmailhost.queue.spool import Spool

    spool = Spool(str(tmp_path / "queue"))
    spool.prepare()
    pool = ManualPool()
    queue = Queue(spool, Courier("hold"), None, SyncReactor(), pool, hostname="mx.example.test")
    queue.start()  # load_all is now waiting in the pool
    source = tmp_path / "INCOMING0001"
    source.write_bytes(MESSAGE)
    results: list = []
    queue.submit("alice@example.test", ["carol@remote.test"], str(source)).addBoth(results.append)
    assert len(pool.jobs) == 1  # only the load: the submission waits for it
    pool.run_next()
    while pool.jobs:
        pool.run_next()
    assert results == ["INCOMING0001"]
    assert spool.ids() == ["INCOMING0001"]
    assert os.path.exists(spool.message_path("INCOMING0001"))


def test_attempt_that_cannot_save_its_envelope_is_rescheduled(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED), retry_min=300)
    save = h.spool.save
    calls = []

    def failing_save(envelope):
        calls.append(envelope.queue_id)
        if len(calls) == 1:
            raise OSError("disk full")
        save(envelope)

    h.spool.save = failing_save
    h.submit()
    assert h.courier.calls == []  # the attempt stopped before dialing
    h.clock.advance(301)
    assert len(h.courier.calls) == 1


@contextlib.contextmanager
def out_of_open_files():
    """Every descriptor this process may open is open (a real EMFILE), until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    try:
        with contextlib.suppress(OSError):
            for _ in range(10_000):
                held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_polling_out_of_open_files_is_one_warning_a_minute_without_traceback(tmp_path):
    """Each poll of control/ logged a critical traceback ("reading CLI requests failed ...
    [Errno 24]"), every second, for as long as the shortage lasted."""
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED), retry_min=3000)
    queue_id = h.submit()
    with capturedLogs() as events, out_of_open_files():
        h.clock.pump([1] * 150)  # 150 polls
    assert [e for e in events if e["log_level"] > LogLevel.warn] == []
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 3  # at 0, 60 and 120 s
    assert "queue: reading CLI requests failed: [Errno 24]" in warnings[0]
    assert "59 such failures not logged" in warnings[1]
    h.request("retry", queue_id)  # the poll goes on once files can be opened again
    assert len(h.courier.calls) == 2
