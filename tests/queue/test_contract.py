"""The relay queue's behaviour, the same over the file spool and over PostgreSQL.

Each test runs twice: ``files`` (``scheduler.Queue`` over ``DATA/queue``) and ``postgres``
(``claims.SharedQueue`` over a fresh database of the server the tests start; skipped when
PostgreSQL is not installed). What a user sees must not depend on where the queue is kept:
when an attempt is made, what the DSN says, what the administrator's requests do.
"""

from __future__ import annotations

import pytest

from tests.queue.support import GREYLISTED, MESSAGE, NO_USER, OK, Harness, ScriptedCourier
from tests.support.postgres import shared_server


@pytest.fixture(params=["files", "postgres"])
def make(request, tmp_path):
    """``make(courier, **policy)``: a Harness over this test's backend."""
    dsn = None
    if request.param == "postgres":
        server = shared_server()
        dsn = server.database()
        request.addfinalizer(lambda: server.drop(dsn))
    made: list[Harness] = []

    def build(courier=None, **policy) -> Harness:
        h = Harness(tmp_path, courier, dsn=dsn, **policy)
        made.append(h)
        return h

    yield build
    for h in made:
        h.queue.stop()
        if dsn:
            h.records.close()


def test_delivered_message_leaves_the_queue(make):
    h = make()
    h.submit(["carol@remote.test", "dave@remote.test"])
    [(sender, rcpts, domain, _age, data)] = h.courier.calls
    assert (sender, rcpts, domain) == (
        "alice@example.test",
        ["carol@remote.test", "dave@remote.test"],
        "remote.test",
    )
    assert data == MESSAGE
    assert h.queued_ids() == []


def test_queue_id_is_the_incoming_file_name(make):
    h = make(ScriptedCourier("hold"))
    assert h.submit() == "INCOMING0001"
    assert h.queued_ids() == ["INCOMING0001"]
    [envelope] = h.records.envelopes()
    assert (envelope.queue_id, envelope.recipients[0].attempts) == ("INCOMING0001", 1)


def test_temporary_failure_is_retried_after_retry_min_then_delivered(make):
    h = make(ScriptedCourier(GREYLISTED), retry_min=300)
    queue_id = h.submit()
    recipient = h.records.load(queue_id).recipients[0]
    assert (recipient.state, recipient.attempts) == ("deferred", 1)
    assert recipient.diagnostic == "451 4.7.1 greylisted"
    h.clock.advance(299)
    assert len(h.courier.calls) == 1
    h.clock.advance(1)
    assert len(h.courier.calls) == 2
    assert h.queued_ids() == []
    assert h.dsns == []


def test_permanent_failure_bounces_one_rfc3464_report(make):
    h = make(ScriptedCourier(NO_USER))
    queue_id = h.submit()
    [(to, dsn)] = h.dsns
    assert to == "alice@example.test"
    assert b"Final-Recipient: rfc822; carol@remote.test\r\n" in dsn
    assert b"Action: failed\r\nStatus: 5.1.1\r\n" in dsn
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n" in dsn
    assert b"Subject: outbound" in dsn and f"X-Txmailhost-Queue-ID: {queue_id}".encode() in dsn
    assert h.queued_ids() == []


def test_null_sender_is_never_bounced(make):
    h = make(ScriptedCourier(NO_USER))
    h.submit(sender=None)
    assert h.dsns == [] and h.queued_ids() == []


# Retried every 1000 s, greylisted each time, expired after 5000 s.
EXPIRING = {"retry_min": 1000, "retry_max": 1000, "max_lifetime": 5000, "delay_warning": 0}


def test_message_expires_after_max_lifetime_with_status_547(make):
    h = make(ScriptedCourier(*[GREYLISTED] * 50), **EXPIRING)
    h.submit()
    h.clock.pump([100] * 60)
    [(_, dsn)] = h.dsns
    assert b"Action: failed\r\nStatus: 5.4.7\r\n" in dsn
    assert h.queued_ids() == []
    assert 5 <= len(h.courier.calls) <= 7


def test_recipients_deferred_together_are_retried_in_one_attempt(make):
    """Each recipient drew its own jitter: ten recipients of one 421 became ten attempts
    (ten copies of the body sent) at ten times."""
    h = make(ScriptedCourier(GREYLISTED), retry_min=300, jitter=0.1)
    recipients = [f"u{n}@remote.test" for n in range(1, 11)]
    queue_id = h.submit(recipients)
    times = {r.next_attempt for r in h.records.load(queue_id).recipients}
    assert len(times) == 1
    h.clock.pump([30] * 20)
    assert [call[1] for call in h.courier.calls] == [recipients, recipients]
    assert h.queued_ids() == []


def test_recipients_expiring_together_get_one_dsn(make):
    h = make(ScriptedCourier(*[GREYLISTED] * 50), **EXPIRING, jitter=0.1)
    h.submit(["t1@remote.test", "t2@remote.test"])
    h.clock.pump([10] * 800)
    [(_, dsn)] = h.dsns
    assert b"Final-Recipient: rfc822; t1@remote.test\r\nAction: failed\r\nStatus: 5.4.7" in dsn
    assert b"Final-Recipient: rfc822; t2@remote.test\r\nAction: failed\r\nStatus: 5.4.7" in dsn
    assert all(len(call[1]) == 2 for call in h.courier.calls)
    assert h.queued_ids() == []


def test_one_delay_warning_is_sent(make):
    h = make(ScriptedCourier(*[GREYLISTED] * 10), retry_min=600, retry_max=600, delay_warning=1000)
    h.submit()
    h.clock.pump([100] * 40)
    warnings = [dsn for _, dsn in h.dsns if b"Action: delayed" in dsn]
    assert len(warnings) == 1 and len(h.dsns) == 1


def test_recipients_in_two_domains_are_two_attempts(make):
    h = make()
    h.submit(["carol@remote.test", "erin@other.test"])
    assert sorted((c[1], c[2]) for c in h.courier.calls) == [
        (["carol@remote.test"], "remote.test"),
        (["erin@other.test"], "other.test"),
    ]
    assert h.queued_ids() == []


def test_one_domain_failing_bounces_only_its_recipient(make):
    h = make(ScriptedCourier(NO_USER, OK))
    h.submit(["carol@other.test", "erin@remote.test"])
    [(_, dsn)] = h.dsns
    assert b"Final-Recipient: rfc822; carol@other.test" in dsn
    assert b"erin@remote.test" not in dsn.split(b"text/rfc822-headers")[0]
    assert h.queued_ids() == []


def test_looping_message_bounces_546_without_being_sent(make):
    h = make(max_hops=3)
    h.submit(data=b"Received: x\r\n" * 4 + MESSAGE)
    assert h.courier.calls == []
    [(_, dsn)] = h.dsns
    assert b"Status: 5.4.6" in dsn


def test_admin_bounce_request_sends_a_dsn_within_a_poll(make):
    h = make(ScriptedCourier(GREYLISTED), retry_min=3000)
    queue_id = h.submit()
    h.request("bounce", queue_id)
    [(_, dsn)] = h.dsns
    assert b"Status: 5.0.0" in dsn and b"bounced by the mail administrator" in dsn
    assert h.queued_ids() == []
    assert len(h.courier.calls) == 1


def test_admin_delete_request_removes_without_a_dsn(make):
    h = make(ScriptedCourier(GREYLISTED), retry_min=3000)
    queue_id = h.submit()
    h.request("delete", queue_id)
    assert h.queued_ids() == [] and h.dsns == []
    h.clock.advance(4000)
    assert len(h.courier.calls) == 1


def test_admin_retry_and_flush_try_again_now(make):
    h = make(ScriptedCourier(GREYLISTED, GREYLISTED), retry_min=3000)
    queue_id = h.submit()
    h.request("retry", queue_id)
    assert len(h.courier.calls) == 2
    h.request("flush")
    assert len(h.courier.calls) == 3
    assert h.queued_ids() == []


def test_held_message_is_not_tried_until_released(make):
    h = make(ScriptedCourier(GREYLISTED), retry_min=100)
    queue_id = h.submit()
    h.request("hold", queue_id)
    assert h.records.load(queue_id).held
    h.clock.pump([50] * 10)
    assert len(h.courier.calls) == 1
    h.request("release", queue_id)
    assert len(h.courier.calls) == 2
    assert h.queued_ids() == []


def test_requeue_forgets_the_attempts(make):
    h = make(ScriptedCourier(GREYLISTED, GREYLISTED, "hold"), retry_min=3000)
    queue_id = h.submit()
    h.request("retry", queue_id)
    assert h.records.load(queue_id).recipients[0].attempts == 2
    h.request("hold", queue_id)
    h.request("requeue", queue_id)
    recipient = h.records.load(queue_id).recipients[0]
    assert not h.records.load(queue_id).held
    assert (recipient.attempts, recipient.diagnostic) == (1, "")  # tried again at once


def test_restart_resumes_a_deferred_message_at_its_next_attempt(make):
    h = make(ScriptedCourier(GREYLISTED), retry_min=300)
    h.submit()
    h.restart(retry_min=300, startup_spread=0)
    h.clock.advance(299)
    assert len(h.courier.calls) == 1
    h.clock.advance(1)
    assert len(h.courier.calls) == 2 and h.queued_ids() == []


def test_attempt_cut_short_by_a_crash_is_not_redialled_at_once(make):
    h = make(ScriptedCourier("hold"), retry_min=300)
    queue_id = h.submit()
    h.restart(retry_min=300, startup_spread=0)  # the held attempt never finished
    assert h.records.load(queue_id).recipients[0].attempts == 1
    h.clock.advance(10)
    assert len(h.courier.calls) == 1


def test_header_of_a_queued_message_is_readable(make):
    h = make(ScriptedCourier("hold"))
    queue_id = h.submit()
    header = h.records.header(queue_id)
    assert header.startswith(b"Return-Path: <alice@example.test>") and header.endswith(b"\r\n")
    assert b"hello" not in header
    with pytest.raises(FileNotFoundError):
        h.records.load("NOSUCHID0000")


def test_admin_bounce_of_two_domains_is_one_dsn(make):
    h = make(ScriptedCourier(GREYLISTED, GREYLISTED), retry_min=3000)
    queue_id = h.submit(["carol@remote.test", "erin@other.test"])
    h.request("bounce", queue_id)
    [(_, dsn)] = h.dsns
    assert b"Final-Recipient: rfc822; carol@remote.test" in dsn
    assert b"Final-Recipient: rfc822; erin@other.test" in dsn
    assert h.queued_ids() == []


def test_per_domain_limit_caps_parallel_attempts_to_one_domain(make):
    h = make(ScriptedCourier(*["hold"] * 10), max_per_domain=2)
    for _ in range(5):
        h.submit()
    h.submit(["x@other.test"])
    assert [call[2] for call in h.courier.calls] == ["remote.test", "remote.test", "other.test"]
    h.courier.release()
    assert [call[2] for call in h.courier.calls][-1] == "remote.test"
    assert len(h.courier.calls) == 4


def test_global_limit_caps_parallel_attempts(make):
    h = make(ScriptedCourier(*["hold"] * 10), max_connections=3)
    for n in range(6):
        h.submit([f"user@d{n}.test"])
    assert len(h.courier.calls) == 3
    h.courier.release()
    assert len(h.courier.calls) == 4


def test_courier_crash_defers_instead_of_losing_the_message(make):
    h = make(ScriptedCourier(RuntimeError("boom")))
    queue_id = h.submit()
    recipient = h.records.load(queue_id).recipients[0]
    assert (recipient.state, recipient.diagnostic) == ("deferred", "internal error: boom")


def submit_with(h, recipients, options=None, dsn=None):
    """Submit with the sender's ESMTP wishes (MessageOptions, RecipientOptions by address)."""
    from txmailhost.delivery.interfaces import MessageOptions

    results: list = []
    d = h.queue.submit(
        "alice@example.test",
        list(recipients),
        h.incoming(MESSAGE),
        None,
        options or MessageOptions(),
        dsn or {},
    )
    d.addBoth(results.append)
    assert results and isinstance(results[0], str), results
    h.clock.advance(0)
    return results[0]


def test_the_senders_wishes_are_kept_and_reach_the_courier(make):
    from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions

    h = make(ScriptedCourier("hold"))
    options = MessageOptions(ret="HDRS", envid="E-1", smtputf8=True, requiretls=True)
    dsn = {"carol@remote.test": RecipientOptions(("SUCCESS",), "rfc822;Carol@remote.test")}
    queue_id = submit_with(h, ["carol@remote.test"], options, dsn)
    stored = h.records.load(queue_id)
    assert stored.message_options() == options
    assert stored.recipients[0].dsn_options() == dsn["carol@remote.test"]
    assert h.courier.wishes == [(options, dsn)]


def test_failure_report_honours_notify_orcpt_envid_and_ret_full(make):
    from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions

    h = make(ScriptedCourier(NO_USER))
    dsn = {
        "carol@remote.test": RecipientOptions(("SUCCESS",)),  # not FAILURE
        "dave@remote.test": RecipientOptions(("FAILURE",), "rfc822;D@remote.test"),
    }
    submit_with(
        h,
        ["carol@remote.test", "dave@remote.test"],
        MessageOptions(envid="env+42", ret="FULL"),
        dsn,
    )
    [(_, report)] = h.dsns
    assert b"carol@remote.test" not in report.split(b"message/delivery-status")[1]
    assert b"Original-Envelope-Id: env+42\r\n" in report
    assert b"Original-Recipient: rfc822;D@remote.test\r\nFinal-Recipient: rfc822; dave" in report
    assert b"Subject: outbound\r\n\r\nhello\r\n" in report and b"Return-Path:" not in report
