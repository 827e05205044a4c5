"""The queue and the relay together: real TCP to receiving servers, retries driven by a Clock."""

from __future__ import annotations

import random

from tests.queue.support import Harness
from tests.relay.farside import ScriptedFactory, standard_reply, txmailhost_far_side
from tests.relay.test_courier import FAST
from tests.support.fixtures import make_world
from tests.support.syncpool import SyncThreadPool
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.queue.service import ReturnToSender
from txmailhost.relay.courier import RelayCourier, TLSPolicy
from txmailhost.relay.mx import MXResolver


def relay_courier(net, dns_server, port) -> RelayCourier:
    resolver = MXResolver(
        net.reactor, SyncThreadPool(), [dns_server.address], timeout=2, rng=random.Random(0)
    )
    return RelayCourier(
        net.reactor,
        SyncThreadPool(),
        resolver,
        hostname="mx.example.test",
        port=port,
        tls=TLSPolicy("opportunistic"),
        timeouts=FAST,
    )


def submit_and_wait(net, h: Harness, **kwargs) -> str:
    idle = h.queue.idle
    queue_id = h.submit(**kwargs)
    net.run(idle)
    return queue_id


class NotingCourier:
    """The relay courier, noting the recipients of each attempt the queue starts."""

    def __init__(self, courier: RelayCourier) -> None:
        self.courier = courier
        self.attempts: list[list[str]] = []

    def deliver(self, sender, recipients, *args, **kwargs):
        self.attempts.append(list(recipients))
        return self.courier.deliver(sender, recipients, *args, **kwargs)


def refusing_first(verb: bytes, reply: bytes) -> ScriptedFactory:
    """A server that answers ``verb`` with ``reply`` on its first connection only."""

    def script(command, session):
        if command.startswith(verb) and session.factory.connections == 1:
            return reply
        return standard_reply(command)

    return ScriptedFactory(script)


def test_greylisted_message_is_delivered_on_the_retry(net, dns_server, tmp_path):
    far = refusing_first(b"RCPT", b"451 4.7.1 greylisted, try again later")
    port = net.listen(far, "127.0.0.2")
    dns_server.add("remote.test", "MX", "10 mx.remote.test.")
    dns_server.add("mx.remote.test", "A", "127.0.0.2")
    h = Harness(tmp_path, relay_courier(net, dns_server, port), retry_min=300)
    queue_id = submit_and_wait(net, h)
    recipient = h.spool.load(queue_id).recipients[0]
    assert recipient.state == "deferred"
    assert recipient.diagnostic == "451 4.7.1 greylisted, try again later"
    idle = h.queue.idle
    h.clock.advance(300)
    net.run(idle)
    assert far.connections == 2
    delivered = [m for m in far.messages if m]  # the first DATA carried only the dot
    assert len(delivered) == 1 and b"Subject: outbound" in delivered[0]
    assert h.queued_ids() == [] and h.dsns == []


def test_refused_recipient_bounces_into_the_local_senders_inbox(net, dns_server, tmp_path):
    far_world, factory = txmailhost_far_side(tmp_path / "far", net.reactor)
    port = net.listen(factory, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    h = Harness(tmp_path / "here", relay_courier(net, dns_server, port))
    (tmp_path / "here").mkdir(exist_ok=True)
    ours = make_world(tmp_path / "here")
    ours.add_user("alice@example.test")
    spool = IncomingSpool(h.spool.tmp_dir, h.clock, SyncThreadPool())
    submission = Submission(ours.store, spool, queue=h.queue)
    h.queue.return_to_sender = ReturnToSender(ours.router, submission)
    submit_and_wait(net, h, recipients=["nobody@far.test", "bob@far.test"])
    [dsn] = ours.inbox_files("alice@example.test")
    assert b"multipart/report" in dsn
    assert b"Final-Recipient: rfc822; nobody@far.test\r\nAction: failed\r\nStatus: 5.1.1" in dsn
    assert b"bob@far.test" not in dsn.split(b"text/rfc822-headers")[0]
    assert len(far_world.inbox_files("bob@far.test")) == 1
    assert h.queued_ids() == []


def test_recipients_deferred_by_one_421_come_back_in_one_transaction(net, dns_server, tmp_path):
    """Each recipient drew its own retry jitter: ten recipients refused together by one 421
    came back as ten transactions, ten copies of the body."""
    far = refusing_first(b"MAIL", b"421 4.3.2 too busy, come back later")
    port = net.listen(far, "127.0.0.2")
    dns_server.add("far.test", "A", "127.0.0.2")
    courier = NotingCourier(relay_courier(net, dns_server, port))
    started = courier.attempts
    h = Harness(tmp_path, courier, retry_min=300, jitter=0.1)
    recipients = [f"u{n}@far.test" for n in range(1, 11)]
    submit_and_wait(net, h, recipients=recipients)
    for _ in range(400):  # a second at a time, as the server's clock would go
        idle, before = h.queue.idle, len(started)
        h.clock.advance(1)
        if len(started) > before:
            net.run(idle)
    assert started == [recipients, recipients]
    mails = [c for c in far.commands if c.startswith(b"MAIL")]
    assert len(mails) == 2
    assert len([m for m in far.messages if m]) == 1
    assert h.queued_ids() == [] and h.dsns == []


def test_domain_whose_mail_server_has_no_address_bounces_after_the_grace_not_5_days(
    net, dns_server, tmp_path
):
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "TXT", '"no address"')
    courier = relay_courier(net, dns_server, 1)
    h = Harness(tmp_path, courier, retry_min=3700, retry_max=3700)
    queue_id = submit_and_wait(net, h, recipients=["bob@far.test"])
    assert h.spool.load(queue_id).recipients[0].status == "4.4.4"
    idle = h.queue.idle
    h.clock.advance(3700)  # past relay.nxdomain_grace (3600)
    net.run(idle)
    [(_, dsn)] = h.dsns
    assert b"Final-Recipient: rfc822; bob@far.test\r\nAction: failed\r\nStatus: 5.4.4" in dsn
    assert b"no address records (A or AAAA) for mx.far.test" in dsn
    assert h.queued_ids() == []
