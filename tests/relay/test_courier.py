"""RelayCourier over real loopback TCP: a DNS server and receiving servers on 127.0.0.x."""

from __future__ import annotations

import random

import pytest

from tests.relay.farside import ScriptedFactory, standard_reply, txmailhost_far_side
from tests.support.syncpool import SyncThreadPool
from txmailhost.queue.interfaces import Outcome
from txmailhost.relay.client import Timeouts
from txmailhost.relay.courier import RelayCourier, TLSPolicy
from txmailhost.relay.mx import MXResolver

MESSAGE = (
    b"Return-Path: <alice@example.test>\r\n"
    b"Received: from client by mx.example.test\r\n"
    b"From: alice@example.test\r\nSubject: outbound\r\n\r\n.hello\r\n"
)
FAST = Timeouts(connect=2, greeting=2, ehlo=2, mail=2, rcpt=2, data_init=2, data_end=1, quit=1)


def courier(net, dns_server, port, tls="opportunistic", **kwargs) -> RelayCourier:
    resolver = MXResolver(
        net.reactor, SyncThreadPool(), [dns_server.address], timeout=2, rng=random.Random(0)
    )
    kwargs.setdefault("timeouts", FAST)
    return RelayCourier(
        net.reactor,
        SyncThreadPool(),
        resolver,
        hostname="mx.example.test",
        port=port,
        tls=TLSPolicy(tls),
        **kwargs,
    )


@pytest.fixture
def message(tmp_path):
    path = tmp_path / "message"
    path.write_bytes(MESSAGE)
    return str(path)


def deliver(net, c, message, recipients=("bob@far.test",), domain="far.test", age=0.0):
    return net.run(c.deliver("alice@example.test", list(recipients), message, domain, age))


def test_message_reaches_the_far_side_inbox_through_its_mx(net, dns_server, tmp_path, message):
    world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.2")
    results = deliver(net, courier(net, dns_server, port), message)
    assert results["bob@far.test"].outcome is Outcome.DELIVERED
    assert results["bob@far.test"].remote_mta == "mx.far.test"
    [stored] = world.inbox_files("bob@far.test")
    assert stored.count(b"Return-Path:") == 1  # the far side's own, not ours relayed
    assert b"Return-Path: <alice@example.test>" in stored
    assert stored.endswith(b"Subject: outbound\r\n\r\n.hello\r\n")
    assert stored.count(b"Received:") == 2


def test_unknown_user_at_the_far_side_fails_permanently_with_its_reply(
    net, dns_server, tmp_path, message
):
    _, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")  # implicit MX
    results = deliver(net, courier(net, dns_server, port), message, ["nobody@far.test"])
    result = results["nobody@far.test"]
    assert (result.outcome, result.status) == (Outcome.PERMANENT, "5.1.1")
    assert result.diagnostic.startswith("550 5.1.1")


def test_next_mx_is_tried_when_the_preferred_one_refuses_connections(
    net, dns_server, tmp_path, message
):
    world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "MX", "10 down.far.test.", "20 up.far.test.")
    dns_server.add("down.far.test", "A", "127.0.0.3")  # nothing listens there
    dns_server.add("up.far.test", "A", "127.0.0.2")
    results = deliver(net, courier(net, dns_server, port), message)
    assert results["bob@far.test"].outcome is Outcome.DELIVERED
    assert results["bob@far.test"].remote_mta == "up.far.test"
    assert len(world.inbox_files("bob@far.test")) == 1


def test_no_reachable_mx_defers_with_the_last_reason(net, dns_server, message):
    dns_server.add("far.test", "A", "127.0.0.3")
    results = deliver(net, courier(net, dns_server, 1), message)
    result = results["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "127.0.0.3" in result.diagnostic and "connection failed" in result.diagnostic


def test_required_tls_without_starttls_defers(net, dns_server, tmp_path, message):
    world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    results = deliver(net, courier(net, dns_server, port, tls="required"), message)
    result = results["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "does not offer STARTTLS" in result.diagnostic
    assert world.inbox_files("bob@far.test") == []


def test_server_hanging_after_data_defers_with_a_timeout(net, dns_server, message):
    def script(command, session):
        return None if command == b"<end-of-data>" else standard_reply(command)

    port = net.listen(ScriptedFactory(script), "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    results = deliver(net, courier(net, dns_server, port), message)
    result = results["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "timeout after 1s waiting for the reply to the end of data" in result.diagnostic


def test_garbage_reply_defers_with_the_line_recorded(net, dns_server, message):
    port = net.listen(ScriptedFactory(lambda c, s: b"hello? " + c), "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    result = deliver(net, courier(net, dns_server, port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "garbage reply" in result.diagnostic


def test_close_in_mid_transaction_defers(net, dns_server, message):
    def script(command, session):
        return b"<close>" if command.startswith(b"RCPT") else standard_reply(command)

    factory = ScriptedFactory(
        lambda c, s: b"<close>" if c.startswith(b"MAIL") else standard_reply(c)
    )
    factory.script = script
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    result = deliver(net, courier(net, dns_server, port), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY
    assert "connection closed" in result.diagnostic


def test_null_mx_fails_permanently_without_connecting(net, dns_server, message):
    dns_server.add("far.test", "MX", "0 .")
    result = deliver(net, courier(net, dns_server, 1), message)["bob@far.test"]
    assert (result.outcome, result.status) == (Outcome.PERMANENT, "5.1.10")


def test_nxdomain_is_temporary_within_the_grace_period_then_permanent(net, dns_server, message):
    c = courier(net, dns_server, 1, nxdomain_grace=3600)
    early = deliver(net, c, message, ["x@gone.test"], "gone.test", age=10)["x@gone.test"]
    late = deliver(net, c, message, ["x@gone.test"], "gone.test", age=4000)["x@gone.test"]
    assert (early.outcome, early.status) == (Outcome.TEMPORARY, "4.1.2")
    assert (late.outcome, late.status) == (Outcome.PERMANENT, "5.1.2")


def test_mx_without_addresses_is_temporary_within_the_grace_period_then_544(
    net, dns_server, message
):
    dns_server.add("far.test", "MX", "10 ghost.far.test.")  # ghost.far.test: NXDOMAIN
    c = courier(net, dns_server, 1, nxdomain_grace=3600)
    early = deliver(net, c, message, age=10)["bob@far.test"]
    late = deliver(net, c, message, age=4000)["bob@far.test"]
    assert (early.outcome, early.status) == (Outcome.TEMPORARY, "4.4.4")
    assert (late.outcome, late.status) == (Outcome.PERMANENT, "5.4.4")
    assert "no address records (A or AAAA) for ghost.far.test" in late.diagnostic


def test_dns_failure_defers(net, dns_server, message):
    dns_server.fail("far.test", "servfail")
    result = deliver(net, courier(net, dns_server, 1), message)["bob@far.test"]
    assert result.outcome is Outcome.TEMPORARY


def test_lone_dot_at_a_chunk_boundary_cannot_end_data_early(net, dns_server, tmp_path):
    from txmailhost.relay.client import CHUNK

    body = b"Subject: smuggle\r\n\r\n" + b"x" * (CHUNK - 22) + b"\r\n.\r\nMAIL FROM:<evil@x>\r\n"
    path = tmp_path / "smuggle"
    path.write_bytes(body)
    factory = ScriptedFactory(lambda c, s: standard_reply(c))
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    result = deliver(net, courier(net, dns_server, port), str(path))["bob@far.test"]
    assert result.outcome is Outcome.DELIVERED
    assert not any(c.startswith(b"MAIL FROM:<evil") for c in factory.commands)
    assert factory.messages[0].endswith(b"\r\n..\r\nMAIL FROM:<evil@x>")


def test_smarthost_takes_all_mail_without_an_mx_lookup(net, dns_server, message):
    from txmailhost.relay.courier import Smarthost

    def script(command, session):
        if command.startswith(b"EHLO"):
            return b"250-relay.test\r\n250 AUTH PLAIN"
        if command.startswith(b"AUTH PLAIN "):
            return b"235 2.7.0 ok"
        return standard_reply(command)

    factory = ScriptedFactory(script)
    port = net.listen(factory, "127.0.0.2")
    c = courier(net, dns_server, 1, smarthost=Smarthost("127.0.0.2", port, "none", "me", "pw"))
    result = deliver(net, c, message, ["x@anywhere.test"], "anywhere.test")["x@anywhere.test"]
    assert result.outcome is Outcome.DELIVERED
    assert factory.commands[1] == b"AUTH PLAIN AG1lAHB3"
    assert dns_server.queries == []


def sleep(net, seconds: float) -> None:
    from twisted.internet.task import deferLater

    net.run(deferLater(net.reactor, seconds, lambda: None))


def test_next_message_to_the_same_host_reuses_the_connection(net, dns_server, message):
    factory = ScriptedFactory(lambda c, s: standard_reply(c))
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    c = courier(net, dns_server, port, reuse_idle=0.3)
    for _ in range(3):
        assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED
    assert factory.connections == 1 and len(factory.messages) == 3
    assert [cmd for cmd in factory.commands if cmd.startswith(b"EHLO")] == [b"EHLO mx.example.test"]
    sleep(net, 0.5)
    assert factory.commands[-1] == b"QUIT"  # the parked session is closed politely when idle


def test_parked_connection_closed_by_the_server_is_replaced(net, dns_server, message):
    factory = ScriptedFactory(lambda c, s: standard_reply(c))
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    c = courier(net, dns_server, port)
    deliver(net, c, message)
    for proto, _caps, _timer in [e for entries in c._idle.values() for e in entries]:
        proto.transport.loseConnection()  # as if the server had timed the session out
    sleep(net, 0.1)
    assert deliver(net, c, message)["bob@far.test"].outcome is Outcome.DELIVERED
    assert factory.connections == 2 and len(factory.messages) == 2


def test_reuse_can_be_disabled(net, dns_server, message):
    factory = ScriptedFactory(lambda c, s: standard_reply(c))
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    c = courier(net, dns_server, port, reuse_idle=0)
    deliver(net, c, message)
    deliver(net, c, message)
    assert factory.connections == 2
