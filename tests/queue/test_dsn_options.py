"""The sender's DSN wishes (RFC 3461) in the queue: kept per recipient on disk, passed to the
courier, and honoured by the reports (RFC 3464): NOTIFY, RET, ENVID, ORCPT."""

from __future__ import annotations

import dataclasses
import json

from tests.queue.support import GREYLISTED, MESSAGE, NO_USER, OK, Harness, ScriptedCourier
from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions
from txmailhost.queue.spool import Envelope

RELAYED_OK = dataclasses.replace(OK, relayed=True)


def submit(h, recipients, options=None, dsn=None, sender="alice@example.test"):
    options = options or MessageOptions()
    results: list = []
    d = h.queue.submit(sender, list(recipients), h.incoming(MESSAGE), None, options, dsn or {})
    d.addBoth(results.append)
    assert results and isinstance(results[0], str), results
    h.clock.advance(0)
    return results[0]


def test_wishes_are_spooled_per_recipient_and_reach_the_courier(tmp_path):
    h = Harness(tmp_path, ScriptedCourier("hold"))
    options = MessageOptions(ret="HDRS", envid="E-1", smtputf8=True, requiretls=True)
    dsn = {"carol@remote.test": RecipientOptions(("SUCCESS",), "rfc822;Carol@remote.test")}
    queue_id = submit(h, ["carol@remote.test"], options, dsn)
    with open(h.spool.envelope_path(queue_id)) as f:
        stored = json.load(f)
    assert (stored["ret"], stored["envid"], stored["smtputf8"], stored["requiretls"]) == (
        "HDRS",
        "E-1",
        True,
        True,
    )
    assert stored["recipients"][0]["notify"] == ["SUCCESS"]
    assert stored["recipients"][0]["orcpt"] == "rfc822;Carol@remote.test"
    [(given_options, given_dsn)] = h.courier.wishes
    assert given_options == options
    assert given_dsn == dsn


def test_an_envelope_spooled_before_the_wishes_existed_still_loads(tmp_path):
    old = {
        "queue_id": "OLD123456",
        "sender": "alice@example.test",
        "arrival": 1.0,
        "size": 10,
        "recipients": [{"address": "carol@remote.test", "state": "pending", "attempts": 0}],
        "hops": 1,
        "delay_warned": False,
    }
    envelope = Envelope.from_json(json.dumps(old).encode())
    assert envelope.message_options() == MessageOptions()
    assert envelope.recipients[0].dsn_options() == RecipientOptions()


def test_notify_never_suppresses_the_failure_report(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(NO_USER))
    submit(h, ["carol@remote.test"], dsn={"carol@remote.test": RecipientOptions(("NEVER",))})
    assert h.dsns == []
    assert h.queued_ids() == []  # bounced all the same


def test_only_recipients_asking_for_failure_reports_are_in_the_report(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(NO_USER))
    dsn = {
        "carol@remote.test": RecipientOptions(("SUCCESS",)),  # not FAILURE
        "dave@remote.test": RecipientOptions(("FAILURE",), "rfc822;D@remote.test"),
    }
    submit(h, ["carol@remote.test", "dave@remote.test"], MessageOptions(envid="env+42"), dsn)
    [(_, report)] = h.dsns
    assert b"carol@remote.test" not in report.split(b"message/delivery-status")[1]
    assert b"Original-Envelope-Id: env+42\r\n" in report
    assert b"Original-Recipient: rfc822;D@remote.test\r\nFinal-Recipient: rfc822; dave" in report


def test_ret_full_returns_the_whole_message_and_hdrs_the_headers(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(NO_USER, NO_USER))
    submit(h, ["carol@remote.test"], MessageOptions(ret="FULL"))
    submit(h, ["carol@remote.test"], MessageOptions(ret="HDRS"))
    (_, full), (_, headers) = h.dsns
    assert b"Content-Type: message/rfc822\r\n\r\n" in full
    assert b"Subject: outbound\r\n\r\nhello\r\n" in full
    assert b"Return-Path:" not in full
    assert b"Content-Type: text/rfc822-headers\r\n\r\n" in headers
    assert b"\r\nhello\r\n" not in headers


def test_ret_full_of_a_requiretls_message_returns_headers_only(tmp_path):
    """RFC 8689 5: RET=FULL is disregarded for REQUIRETLS mail. The body went back in the
    report, which is sent without REQUIRETLS, so the content it protected could travel in
    clear text after all."""
    h = Harness(tmp_path, ScriptedCourier(NO_USER))
    submit(h, ["carol@remote.test"], MessageOptions(ret="FULL", requiretls=True))
    [(_, report)] = h.dsns
    assert b"Content-Type: text/rfc822-headers" in report
    assert b"\r\nhello\r\n" not in report


def test_ret_full_over_the_size_bound_returns_headers_only(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(NO_USER), return_full_limit=20)
    submit(h, ["carol@remote.test"], MessageOptions(ret="FULL"))
    [(_, report)] = h.dsns
    assert b"Content-Type: text/rfc822-headers" in report
    assert b"\r\nhello\r\n" not in report


def test_success_relayed_to_a_server_without_dsn_is_reported_when_asked(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(RELAYED_OK, RELAYED_OK, OK))
    submit(h, ["carol@remote.test"], dsn={"carol@remote.test": RecipientOptions(("SUCCESS",))})
    submit(h, ["carol@remote.test"])  # no NOTIFY: no success report
    wanted = {"carol@remote.test": RecipientOptions(("SUCCESS", "FAILURE"))}
    submit(h, ["carol@remote.test"], dsn=wanted)  # the server offers DSN: it reports
    [(to, report)] = h.dsns
    assert to == "alice@example.test"
    assert b"Action: relayed\r\nStatus: 2.0.0\r\n" in report
    assert h.queued_ids() == []


def test_delay_warning_only_for_recipients_that_did_not_opt_out(tmp_path):
    h = Harness(tmp_path, ScriptedCourier(*[GREYLISTED] * 4), delay_warning=1.0)
    submit(h, ["carol@remote.test"], dsn={"carol@remote.test": RecipientOptions(("FAILURE",))})
    submit(h, ["dave@remote.test"])  # no NOTIFY: FAILURE and DELAY (RFC 3461 4.1)
    h.clock.advance(400)
    [(_, report)] = h.dsns
    assert b"Action: delayed" in report
    assert b"Final-Recipient: rfc822; dave@remote.test" in report
