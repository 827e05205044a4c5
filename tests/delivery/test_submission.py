"""``Submission.submit``: the one durable hand-off, for SMTP and for the server's own mail."""

from __future__ import annotations

import os

import pytest
from twisted.internet.defer import Deferred

from tests.support.fixtures import make_world
from tests.support.syncpool import result
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.interfaces import Envelope, SubmissionError
from txmailhost.delivery.submission import Submission
from txmailhost.routing import Route, RouteKind

ALICE = "alice@example.test"
MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"


class RecordingQueue:
    """The relay queue as ``submit`` sees it: what was spooled, with the file's bytes."""

    def __init__(self) -> None:
        self.spooled: list[tuple[str | None, list[str], bytes]] = []

    async def submit(self, sender, recipients, path, queue_id=None, **wishes):
        self.wishes = wishes
        with open(path, "rb") as f:
            self.spooled.append((sender, recipients, f.read()))
        return queue_id


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user(ALICE)
    return w


def submission(world, **kw) -> Submission:
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    return Submission(world.store, spool, **kw)


def local(user: str = ALICE, mailbox: str = "INBOX") -> Route:
    return Route(RouteKind.LOCAL, user, user, mailbox)


def test_submitted_bytes_reach_the_inbox_and_the_spool_file_is_gone(world):
    receipt = result(submission(world).submit_bytes(Envelope(None, (local(),)), MESSAGE))
    assert world.inbox_files(ALICE) == [MESSAGE]
    assert not receipt.queued and receipt.queue_id
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


def test_a_junk_verdict_puts_that_users_copy_in_junk(world):
    envelope = Envelope("x@remote.test", (local(),), junk=frozenset({ALICE}))
    result(submission(world).submit_bytes(envelope, MESSAGE))
    assert world.inbox_files(ALICE) == [] and world.inbox_files(ALICE, "Junk") == [MESSAGE]


def test_remote_recipients_go_to_the_relay_queue_with_the_sender_kept(world):
    queue = RecordingQueue()
    routes = (local(), Route(RouteKind.REMOTE, "carol@remote.test"))
    receipt = result(
        submission(world, queue=queue).submit_bytes(Envelope("bob@x.test", routes), MESSAGE)
    )
    assert queue.spooled == [("bob@x.test", ["carol@remote.test"], MESSAGE)]
    assert world.inbox_files(ALICE) == [MESSAGE] and receipt.queued


def test_remote_recipients_without_a_queue_fail_and_nothing_is_delivered(world):
    routes = (local(), Route(RouteKind.REMOTE, "carol@remote.test"))
    d = submission(world).submit_bytes(Envelope(None, routes), MESSAGE)
    failures: list = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(SubmissionError)
    assert world.inbox_files(ALICE) == []


def test_crossing_90_percent_of_the_quota_submits_one_notice(world):
    envelope = Envelope(None, (local(),), quota_usage={ALICE: (3590, 4000)})
    result(submission(world, hostname="mx.example.test").submit_bytes(envelope, MESSAGE))
    files = world.inbox_files(ALICE)
    notices = [f for f in files if b"Subject: Your mailbox is" in f]
    assert len(files) == 2 and len(notices) == 1 and b"@mx.example.test>" in notices[0]


def test_a_dsn_goes_through_submit_to_a_local_sender_and_queued_with_null_sender_for_remote(
    world,
):
    from txmailhost.queue.service import ReturnToSender

    queue = RecordingQueue()
    return_to_sender = ReturnToSender(world.router, submission(world, queue=queue))
    result(Deferred.fromCoroutine(return_to_sender(ALICE, b"Subject: DSN\r\n\r\nfailed\r\n")))
    assert world.inbox_files(ALICE) == [b"Subject: DSN\r\n\r\nfailed\r\n"]
    result(Deferred.fromCoroutine(return_to_sender("x@remote.test", b"Subject: DSN2\r\n\r\n")))
    assert queue.spooled == [(None, ["x@remote.test"], b"Subject: DSN2\r\n\r\n")]


class ReadingScripts:
    """Stands in for ``SieveStep`` on the reactor path: records the message it reads, as a
    script would, and decides a flagged copy in INBOX (imap4flags)."""

    def __init__(self) -> None:
        self.read: list[bytes] = []
        self.asked: list[dict] = []

    def decide(self, user, path, folders, junk, **asked):
        from twisted.internet.defer import succeed

        from txmailhost.sieve.delivery import Decision

        with open(path, "rb") as f:
            self.read.append(f.read())
        self.asked.append(asked)
        return succeed(Decision(["INBOX"], flags={"INBOX": frozenset({"\\Seen", "$Label1"})}))

    async def send(self, outgoing):
        assert outgoing == []


@pytest.mark.parametrize("backend", ["maildir", "memory"])
def test_scripts_read_the_whole_message_and_their_flags_reach_the_store(tmp_path, backend):
    """Delivered before the 250 (a store that isn't Maildir, or no spool records): the
    message must be in its file before a script reads it, not still in memory."""
    from txmailhost.delivery.agent import DeliveryAgent

    world = make_world(tmp_path, backend)
    world.add_user(ALICE)
    scripts = ReadingScripts()
    agent = DeliveryAgent(world.store, scripts)
    result(submission(world, agent=agent).submit_bytes(Envelope(None, (local(),)), MESSAGE))
    assert scripts.read == [MESSAGE]
    box = result(world.store.open(ALICE, "INBOX"))
    (stored,) = result(box.messages(result(box.select(False)).uids, content=True))
    assert stored.content == MESSAGE and stored.flags == {"\\Seen", "$Label1"}


def test_scripts_delivered_before_the_250_are_told_the_senders_options(tmp_path):
    """What a script redirects keeps the MAIL and RCPT parameters (REQUIRETLS, SMTPUTF8,
    DSN): the direct path (no spool record) handed the script none of them."""
    from txmailhost.delivery.agent import DeliveryAgent
    from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions

    world = make_world(tmp_path, "memory")
    world.add_user(ALICE)
    scripts = ReadingScripts()
    options = MessageOptions("8BITMIME", smtputf8=True, ret="HDRS", envid="e1", requiretls=True)
    dsn = RecipientOptions(("FAILURE",), f"rfc822;{ALICE}")
    envelope = Envelope("x@remote.test", (local(),), options=options,
                        recipient_options={ALICE: dsn})  # fmt: skip
    sub = submission(world, agent=DeliveryAgent(world.store, scripts))
    result(sub.submit_bytes(envelope, MESSAGE))
    assert scripts.asked == [{"options": options, "dsn": dsn}]
