"""The relay client and the sender's ESMTP wishes: BDAT (RFC 3030), SMTPUTF8 (6531), DSN
parameters (3461) and REQUIRETLS (8689), byte for byte and against our own server."""

from __future__ import annotations

import pytest
from twisted.internet.defer import succeed

from tests.relay.farside import ScriptedFactory, standard_reply, txmailhost_far_side
from tests.relay.test_client import MESSAGE, Dialog
from tests.relay.test_courier import courier
from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions
from txmailhost.queue.interfaces import Outcome

EHLO_CHUNKING = (
    b"250-mx.y.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n"
    b"250-CHUNKING\r\n250-BINARYMIME\r\n250-SMTPUTF8\r\n250 DSN\r\n"
)
BODY = MESSAGE.split(b"\r\n", 1)[1]  # without our Return-Path


def test_to_a_chunking_server_the_message_goes_as_one_bdat_last_unstuffed():
    dialog = Dialog(["b@y.test"])
    dialog.server(b"220 mx.y.test ESMTP\r\n")
    assert dialog.server(EHLO_CHUNKING) == (
        b"MAIL FROM:<a@x.test> SIZE=%d BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\n" % len(MESSAGE)
    )
    sent = dialog.server(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n")
    assert sent == b"BDAT %d LAST\r\n" % len(BODY) + BODY  # ".dot first" stays as it is
    assert dialog.server(b"250 2.0.0 queued\r\n") == b"QUIT\r\n"
    dialog.server(b"221 bye\r\n")
    result = dialog.outcome()["b@y.test"]
    assert result.outcome is Outcome.DELIVERED
    assert not result.relayed  # the server offers DSN: it notifies from here on


def test_a_refused_bdat_chunk_fails_the_recipients_with_its_reply():
    dialog = Dialog(["b@y.test"])
    dialog.server(b"220 hi\r\n")
    dialog.server(EHLO_CHUNKING)
    dialog.server(b"250 ok\r\n250 ok\r\n")
    dialog.server(b"552 5.3.4 too big\r\n221 bye\r\n")
    result = dialog.outcome()["b@y.test"]
    assert (result.outcome, result.status) == (Outcome.PERMANENT, "5.3.4")


def test_dsn_wishes_travel_as_xtext_to_a_server_offering_dsn():
    options = MessageOptions(ret="HDRS", envid="id 1+2=3", smtputf8=True)
    dsn = {"b@y.test": RecipientOptions(("SUCCESS", "FAILURE"), "rfc822;B@y.test")}
    dialog = Dialog(["b@y.test"], options=options, recipient_options=dsn)
    dialog.server(b"220 hi\r\n")
    assert dialog.server(EHLO_CHUNKING) == (
        b"MAIL FROM:<a@x.test> SIZE=%d BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+201+2B2+3D3\r\n"
        b"RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B@y.test\r\n" % len(MESSAGE)
    )


@pytest.mark.parametrize(
    "options, recipient, status",
    [
        (MessageOptions(smtputf8=True), "b@y.test", "5.6.7"),
        (MessageOptions(), "jörg@y.test", "5.6.7"),
        (MessageOptions(body="BINARYMIME"), "b@y.test", "5.6.3"),
        (MessageOptions(requiretls=True), "b@y.test", "5.7.30"),
    ],
)
def test_what_the_server_cannot_carry_fails_at_once_without_a_downgrade(options, recipient, status):
    dialog = Dialog([recipient], options=options)
    dialog.server(b"220 hi\r\n")
    sent = dialog.server(b"250-mx.y.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    assert sent == b"QUIT\r\n"  # no MAIL at all
    dialog.server(b"221 bye\r\n")
    result = dialog.outcome()[recipient]
    assert (result.outcome, result.status) == (Outcome.PERMANENT, status)


EIGHT_BIT = "Subject: café\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnaïve\r\n".encode()
NO_8BITMIME = b"250-mx.y.test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"


@pytest.mark.parametrize("body", ["7BIT", "8BITMIME"])
def test_8bit_content_to_a_server_without_8bitmime_fails_at_once_with_563(body):
    """RFC 6152 3: not sent unchanged (as it was), whatever BODY= the sender declared."""
    dialog = Dialog(["b@y.test"], message=EIGHT_BIT, options=MessageOptions(body=body))
    dialog.server(b"220 hi\r\n")
    assert dialog.server(NO_8BITMIME) == b"QUIT\r\n"  # no MAIL at all
    dialog.server(b"221 bye\r\n")
    result = dialog.outcome()["b@y.test"]
    assert (result.outcome, result.status) == (Outcome.PERMANENT, "5.6.3")
    assert "8-bit content" in result.diagnostic and "8BITMIME" in result.diagnostic


def test_ascii_content_declared_8bitmime_still_goes_to_a_server_without_8bitmime():
    dialog = Dialog(
        ["b@y.test"], options=MessageOptions(body="8BITMIME"), eight_bit=lambda: succeed(False)
    )
    dialog.server(b"220 hi\r\n")
    assert dialog.server(NO_8BITMIME) == (
        b"MAIL FROM:<a@x.test> SIZE=%d\r\nRCPT TO:<b@y.test>\r\nDATA\r\n" % len(MESSAGE)
    )


def test_8bit_content_goes_to_a_server_offering_8bitmime_with_body_8bitmime():
    dialog = Dialog(["b@y.test"], message=EIGHT_BIT, options=MessageOptions(body="8BITMIME"))
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"250-mx.y.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n") == (
        b"MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
    )


def test_8bit_message_to_a_real_server_without_8bitmime_bounces_563_unsent(
    net, dns_server, tmp_path
):
    far = ScriptedFactory(lambda command, session: standard_reply(command))  # no 8BITMIME
    port = net.listen(far, "127.0.0.2")
    dns_server.add("y.test", "A", "127.0.0.2")
    path = tmp_path / "message"
    path.write_bytes(b"Return-Path: <alice@example.test>\r\n" + EIGHT_BIT)
    options = MessageOptions(body="8BITMIME")
    results = net.run(
        courier(net, dns_server, port).deliver(
            "alice@example.test", ["b@y.test"], str(path), "y.test", 0.0, options
        )
    )
    result = results["b@y.test"]
    assert (result.outcome, result.status) == (Outcome.PERMANENT, "5.6.3")
    assert not [c for c in far.commands if c.startswith(b"MAIL")] and far.messages == []
    path.write_bytes(MESSAGE)  # plain ASCII: goes
    results = net.run(
        courier(net, dns_server, port).deliver(
            "alice@example.test", ["b@y.test"], str(path), "y.test", 0.0, options
        )
    )
    assert results["b@y.test"].outcome is Outcome.DELIVERED
    assert len(far.messages) == 1


def test_success_at_a_server_without_dsn_is_marked_relayed():
    dialog = Dialog(["b@y.test"])
    dialog.server(b"220 hi\r\n")
    dialog.server(b"250-mx.y.test\r\n250 PIPELINING\r\n")
    dialog.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    dialog.server(b"250 ok\r\n221 bye\r\n")
    assert dialog.outcome()["b@y.test"].relayed


def test_binarymime_and_utf8_message_reaches_our_own_server_by_bdat(net, dns_server, tmp_path):
    world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.2")
    body = (
        "Subject: bin ü\r\nContent-Transfer-Encoding: binary\r\n\r\n".encode()
        + bytes(range(256)) * 600
    )  # over two 64 KiB read chunks, bare CR/LF and NUL included
    path = tmp_path / "message"
    path.write_bytes(b"Return-Path: <alice@example.test>\r\n" + body)
    c = courier(net, dns_server, port)
    options = MessageOptions(body="BINARYMIME", smtputf8=True)
    results = net.run(
        c.deliver("alice@example.test", ["bob@far.test"], str(path), "far.test", 0.0, options)
    )
    assert results["bob@far.test"].outcome is Outcome.DELIVERED, results
    [stored] = world.inbox_files("bob@far.test")
    assert stored.endswith(body)
    assert b"with UTF8SMTP id" in stored  # RFC 6531 3.7.3 protocol name in Received:
