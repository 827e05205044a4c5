"""The ESMTP client dialog, byte for byte over StringTransport (RFC 5321, 2920, 3207, 1870)."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from txmailhost.queue.interfaces import Outcome
from txmailhost.relay.client import DotStuffer, HostFailure, SMTPClientProtocol, Timeouts
from txmailhost.relay.session import run_transaction

MESSAGE = b"Return-Path: <a@x.test>\r\nSubject: hi\r\n\r\n.dot first\r\nbody\r\n"
EHLO_PIPELINING = b"250-mx.y.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"


class Dialog:
    def __init__(
        self,
        recipients: list[str] | None = None,
        tls_mode: str = "opportunistic",
        message: bytes = MESSAGE,
        sender: str | None = "a@x.test",
        credentials: tuple[str, str] | None = None,
        **wishes,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.proto = SMTPClientProtocol(self.clock)
        self.transport = StringTransport()
        self.tls_started: list[object] = []
        self.transport.startTLS = self.tls_started.append  # type: ignore[attr-defined]
        self.proto.makeConnection(self.transport)
        pieces = [message, b""]
        if not message.isascii():  # what the courier's spool reader tells the session
            wishes.setdefault("eight_bit", lambda: succeed(True))
        self.result: Deferred = Deferred.fromCoroutine(
            run_transaction(
                self.proto,
                hostname="mx.example.test",
                remote_mta="mx.y.test",
                sender=sender,
                recipients=recipients or ["b@y.test"],
                size=len(message),
                read_chunk=lambda n: succeed(pieces.pop(0)),
                tls_mode=tls_mode,
                tls_creator=lambda: "tls-context",
                timeouts=Timeouts(),
                credentials=credentials,
                **wishes,
            )
        )

    def server(self, data: bytes) -> bytes:
        """The server says ``data``; returns what the client wrote in response."""
        self.transport.clear()
        self.proto.dataReceived(data)
        return self.transport.value()

    def outcome(self) -> dict:
        results: list = []
        self.result.addBoth(results.append)
        assert results, "the transaction has not finished"
        if isinstance(results[0], Exception) or hasattr(results[0], "value"):
            raise getattr(results[0], "value", results[0])
        return results[0]


def test_pipelined_transaction_sends_mail_rcpts_and_data_in_one_write():
    dialog = Dialog(["b@y.test", "c@y.test"])
    assert dialog.server(b"220 mx.y.test ESMTP\r\n") == b"EHLO mx.example.test\r\n"
    assert dialog.server(EHLO_PIPELINING) == (
        b"MAIL FROM:<a@x.test> SIZE=%d BODY=8BITMIME\r\n" % len(MESSAGE)
        + b"RCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
    )
    sent = dialog.server(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n")
    assert sent == b"Subject: hi\r\n\r\n..dot first\r\nbody\r\n.\r\n"
    assert dialog.server(b"250 2.0.0 queued as X\r\n") == b"QUIT\r\n"
    dialog.server(b"221 bye\r\n")
    results = dialog.outcome()
    assert results["b@y.test"].outcome is Outcome.DELIVERED
    assert results["c@y.test"].outcome is Outcome.PERMANENT
    assert results["c@y.test"].status == "5.1.1"
    assert results["c@y.test"].diagnostic == "550 5.1.1 no such user"
    assert results["c@y.test"].remote_mta == "mx.y.test"


def test_without_pipelining_each_command_waits_for_its_reply():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"250 mx.y.test\r\n") == b"MAIL FROM:<a@x.test>\r\n"
    assert dialog.server(b"250 ok\r\n") == b"RCPT TO:<b@y.test>\r\n"
    assert dialog.server(b"250 ok\r\n") == b"DATA\r\n"
    assert dialog.server(b"354 go\r\n").endswith(b"\r\n.\r\n")
    dialog.server(b"250 ok\r\n221 bye\r\n")
    assert dialog.outcome()["b@y.test"].outcome is Outcome.DELIVERED


def test_null_sender_is_sent_as_empty_reverse_path():
    dialog = Dialog(sender=None)
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"250 mx.y.test\r\n") == b"MAIL FROM:<>\r\n"


def test_temporary_rcpt_refusal_is_a_temporary_result():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    dialog.server(EHLO_PIPELINING)
    assert dialog.server(b"250 ok\r\n451 4.7.1 greylisted\r\n554 no valid recipients\r\n") == (
        b"QUIT\r\n"
    )
    dialog.server(b"221 bye\r\n")
    result = dialog.outcome()["b@y.test"]
    assert (result.outcome, result.status) == (Outcome.TEMPORARY, "4.7.1")


def test_mail_from_refused_fails_every_recipient_with_that_reply():
    dialog = Dialog(["b@y.test", "c@y.test"])
    dialog.server(b"220 hi\r\n")
    dialog.server(b"250 mx.y.test\r\n")
    assert dialog.server(b"553 5.7.1 sender rejected\r\n") == b"QUIT\r\n"
    dialog.server(b"221 bye\r\n")
    assert {r.status for r in dialog.outcome().values()} == {"5.7.1"}


def test_refusal_after_end_of_data_applies_to_accepted_recipients():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    dialog.server(EHLO_PIPELINING)
    dialog.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    dialog.server(b"554 5.7.1 spam\r\n221 bye\r\n")
    assert dialog.outcome()["b@y.test"].outcome is Outcome.PERMANENT


def test_every_rcpt_refused_but_data_accepted_sends_only_the_dot():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    dialog.server(EHLO_PIPELINING)
    assert dialog.server(b"250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n") == b".\r\n"
    assert dialog.server(b"554 no recipients\r\n") == b"QUIT\r\n"


def test_message_over_the_advertised_size_is_refused_without_sending():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"250-mx.y.test\r\n250 SIZE 10\r\n") == b"QUIT\r\n"
    dialog.server(b"221 bye\r\n")
    assert dialog.outcome()["b@y.test"].status == "5.3.4"


def test_ehlo_refused_falls_back_to_helo():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"502 what\r\n") == b"HELO mx.example.test\r\n"


def test_starttls_is_used_when_offered_and_ehlo_is_repeated():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"250-mx.y.test\r\n250 STARTTLS\r\n") == b"STARTTLS\r\n"
    assert dialog.server(b"220 go ahead\r\n") == b"EHLO mx.example.test\r\n"
    assert dialog.tls_started == ["tls-context"]


def test_replies_pipelined_before_the_tls_handshake_are_discarded():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    dialog.server(b"250-mx.y.test\r\n250 STARTTLS\r\n")
    dialog.server(b"220 go ahead\r\n250 injected\r\n")
    # The injected 250 must not be taken as the EHLO reply: the client still waits.
    assert dialog.server(b"250 mx.y.test\r\n") == b"MAIL FROM:<a@x.test>\r\n"


def test_required_tls_not_offered_fails_the_host():
    dialog = Dialog(tls_mode="required")
    dialog.server(b"220 hi\r\n")
    dialog.server(b"250 mx.y.test\r\n")
    with pytest.raises(HostFailure, match="does not offer STARTTLS"):
        dialog.outcome()


def test_garbage_reply_fails_the_host_with_the_line_recorded():
    dialog = Dialog()
    dialog.server(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(HostFailure, match="garbage reply.*HTTP/1.1"):
        dialog.outcome()
    assert dialog.transport.disconnecting or dialog.transport.disconnected


def test_silent_server_times_out_waiting_for_the_greeting():
    dialog = Dialog()
    dialog.clock.advance(299)
    assert not dialog.result.called
    dialog.clock.advance(2)
    with pytest.raises(HostFailure, match="timeout after 300s waiting for the greeting"):
        dialog.outcome()


def test_connection_closed_mid_data_fails_the_host():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    dialog.server(EHLO_PIPELINING)
    dialog.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    dialog.proto.connectionLost(Failure(ConnectionDone()))
    with pytest.raises(HostFailure, match="connection closed"):
        dialog.outcome()


def test_greeting_554_fails_the_host():
    dialog = Dialog()
    dialog.server(b"554 go away\r\n")
    with pytest.raises(HostFailure, match="554 go away"):
        dialog.outcome()


@pytest.mark.parametrize(
    "text",
    [
        b"a\r\n.\r\nMAIL FROM:<evil@x>\r\n",
        b".\r\n.\r\n..\r\n",
        b"line\r\n.starts\r\nend",
        b"bare\nlf\n.\nand bare\rcr\r.x\r",
        b"x" * 70000 + b"\r\n.\r\n" + b"y" * 10,
    ],
)
def test_dot_stuffing_is_the_same_whatever_the_chunk_boundaries(text):
    whole = DotStuffer()
    expected = whole.feed(text) + whole.end()
    assert b"\r\n.\r\n" not in expected[:-5]
    for size in (1, 2, 3, 7, 4096):
        stuffer = DotStuffer()
        out = b"".join(stuffer.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert out + stuffer.end() == expected


def test_dot_stuffing_doubles_leading_dots_and_normalises_line_ends():
    stuffer = DotStuffer()
    assert stuffer.feed(b".a\n.b\r.c\r\n") + stuffer.end() == b"..a\r\n..b\r\n..c\r\n.\r\n"


def test_smarthost_login_uses_auth_plain_after_starttls():
    dialog = Dialog(credentials=("me", "pw"))
    dialog.server(b"220 hi\r\n")
    dialog.server(b"250-relay.test\r\n250 STARTTLS\r\n")
    dialog.server(b"220 go ahead\r\n")
    assert dialog.server(b"250-relay.test\r\n250 AUTH LOGIN PLAIN\r\n") == (
        b"AUTH PLAIN AG1lAHB3\r\n"
    )
    assert dialog.server(b"235 2.7.0 ok\r\n") == b"MAIL FROM:<a@x.test>\r\n"


def test_smarthost_password_is_never_sent_in_clear_to_a_remote_host():
    dialog = Dialog(credentials=("me", "pw"), tls_mode="none")
    dialog.server(b"220 hi\r\n")
    assert dialog.server(b"250-relay.test\r\n250 AUTH PLAIN\r\n") == b""
    with pytest.raises(HostFailure, match="without TLS"):
        dialog.outcome()


def test_smarthost_refusing_the_login_fails_the_host():
    dialog = Dialog(credentials=("me", "wrong"))
    dialog.server(b"220 hi\r\n")
    dialog.server(b"250-relay.test\r\n250 STARTTLS\r\n")
    dialog.server(b"220 go ahead\r\n")
    dialog.server(b"250-relay.test\r\n250 AUTH PLAIN\r\n")
    dialog.server(b"535 5.7.8 bad credentials\r\n")
    with pytest.raises(HostFailure, match="authentication failed: 535 5.7.8"):
        dialog.outcome()


def test_a_reply_without_end_is_a_host_failure_not_memory():
    """Each line was bounded but not the reply: endless "250-" lines grew the server by
    1 GiB in 20 s until the EHLO timeout."""
    dialog = Dialog()
    dialog.server(b"220 hi\r\n")
    dialog.server(
        b"250-mx.y.test\r\n" + b"250-X-PADDING\r\n" * (SMTPClientProtocol.MAX_REPLY_LINES + 5)
    )
    assert dialog.transport.disconnecting
    assert len(dialog.proto._lines) <= SMTPClientProtocol.MAX_REPLY_LINES
    with pytest.raises(HostFailure, match="lines"):
        dialog.outcome()


def test_replies_nothing_asked_for_are_a_host_failure():
    dialog = Dialog()
    dialog.server(b"220 hi\r\n" + b"250 ok\r\n" * (SMTPClientProtocol.MAX_UNCLAIMED_REPLIES + 5))
    assert dialog.transport.disconnecting
    assert len(dialog.proto._replies) <= SMTPClientProtocol.MAX_UNCLAIMED_REPLIES
    with pytest.raises(HostFailure):
        dialog.outcome()
