"""APPEND refused for the quota before its literal is sent (RFC 9208 §4.3, RFC 7888): a ``{n}``
whose n octets alone would take the mailbox owner past the quota gets ``NO [OVERQUOTA]`` in
place of the ``+``, a ``{n+}`` is dropped as it comes and then refused, on every backend. The
look comes after the checks APPEND makes first (TRYCREATE, NOPERM), counts every message of a
MULTIAPPEND and the text of a CATENATE, and waits for the usage without losing what the
client sent meanwhile."""

from __future__ import annotations

import os

import pytest
from twisted.internet.defer import Deferred, succeed

from tests.imap.support import ALICE, BOB, Session, deliver, make_factory
from tests.support.fixtures import PASSWORD, result
from txmailhost.imap import append, quotaroom
from txmailhost.imap.parser import LiteralFile
from txmailhost.store.interfaces import IAclStore
from txmailhost.store.maildir import user_directory

QUOTA = 1000
MESSAGE = b"Subject: q\r\n\r\n" + b"x" * 86 + b"\r\n"  # 102 octets
CONTINUE = b"+ Ready for literal data\r\n"
OVER = b"NO [OVERQUOTA] mailbox quota exceeded\r\n"


def session(world, user: str = ALICE, limits: dict | None = None, **options) -> Session:
    limits = limits if limits is not None else {ALICE: QUOTA, BOB: None}
    s = Session(make_factory(world, quota_of=lambda u: succeed(limits[u]), **options))
    assert b"a OK" in s.login(user)
    return s


def stalled_session(world) -> tuple[Session, list[Deferred]]:
    """alice logged in on a server whose every look at her quota waits: the test answers
    each from the list, in order."""
    asked: list[Deferred] = []

    def quota_of(user):
        asked.append(Deferred())
        return asked[-1]

    s = Session(make_factory(world, quota_of=quota_of))
    s.login()
    return s, asked


def messages_in(s: Session, mailbox: str = "INBOX") -> int:
    reply = s.cmd(f"s STATUS {mailbox} (MESSAGES)")
    return int(reply.split(b"MESSAGES ")[1].split(b")")[0])


def test_a_literal_over_the_quota_is_refused_before_its_octets_are_read(world):
    s = session(world)
    assert s.cmd(b"b APPEND INBOX {%d}" % len(MESSAGE)) == CONTINUE  # room: as before
    assert s.send(MESSAGE + b"\r\n").startswith(b"b OK [APPENDUID")
    # 102 stored: 899 more octets would pass 1000, 898 would not
    assert s.cmd(b"c APPEND INBOX (\\Seen) {899}") == b"c " + OVER
    assert s.cmd("d NOOP") == b"d OK NOOP completed\r\n"  # the session goes on
    assert s.cmd(b"e APPEND INBOX {898}") == CONTINUE
    assert s.send(b"y" * 898 + b"\r\n").startswith(b"e OK [APPENDUID")
    assert s.cmd(b"f APPEND INBOX {1}") == b"f " + OVER
    # a {n+} literal comes anyway: dropped, then the same answer
    reply = s.cmd(b"g APPEND INBOX {1001+}\r\n" + b"z" * 1001 + b"\r\nh NOOP")
    assert reply == b"g " + OVER + b"h OK NOOP completed\r\n"
    assert messages_in(s) == 2


@pytest.mark.backends("maildir")
def test_a_refused_non_synchronizing_literal_is_not_written_to_disk(world):
    """Read and dropped as it comes: not staged in the user's ``tmp/`` (as a literal of over
    256 KiB is for a store of files) only to be removed once the command is refused."""
    s = session(world, limits={ALICE: 100 * 1024, BOB: None})
    size = 600 * 1024
    staging = os.path.join(user_directory(world.store.root, ALICE), "tmp")
    before = set(os.listdir(staging))
    assert s.send(b"b APPEND INBOX {%d+}\r\n" % size + b"z" * (size // 2)) == b""
    assert set(os.listdir(staging)) == before
    reply = s.send(b"z" * (size - size // 2) + b"\r\nc NOOP\r\n")
    assert reply == b"b " + OVER + b"c OK NOOP completed\r\n"


def test_multiappend_counts_every_message_and_refuses_a_later_literal(world):
    s = session(world)
    assert s.cmd(b"b APPEND INBOX {500}") == CONTINUE
    # 500 + 500 fit exactly; one more octet in the second message does not
    assert s.send(b"a" * 500 + b" (\\Seen) {501}\r\n") == b"b " + OVER
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"
    assert s.cmd(b"d APPEND INBOX {500}") == CONTINUE
    assert s.send(b"a" * 500 + b" {500}\r\n") == CONTINUE
    assert s.send(b"b" * 500 + b"\r\n").startswith(b"d OK [APPENDUID")
    assert messages_in(s) == 2
    # of {n+} literals, the refused one and the rest of the command are dropped
    command = b"e APPEND INBOX {1+}\r\na {1+}\r\nb {5+}\r\nf NOO\r\n"  # "f NOO": text
    assert s.cmd(command + b"g NOOP") == b"e " + OVER + b"g OK NOOP completed\r\n"
    assert messages_in(s) == 2


def test_catenate_counts_its_text_parts(world):
    s = session(world)
    assert s.cmd(b"b APPEND Drafts CATENATE (TEXT {600}") == CONTINUE
    assert s.send(b"t" * 600 + b" TEXT {401}\r\n") == b"b " + OVER
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"
    assert messages_in(s, "Drafts") == 0


def test_a_missing_mailbox_is_trycreate_whatever_the_size(world):
    """RFC 9051 §6.3.12: TRYCREATE tells the client what to do first; the quota comes after."""
    s = session(world)
    assert s.cmd(b"a APPEND INBOX {5000}") == b"a " + OVER
    assert s.cmd(b"b APPEND Nope {5000}") == CONTINUE
    assert s.send(b"n" * 5000 + b"\r\n").startswith(b"b NO [TRYCREATE]")
    assert s.cmd(b"c APPEND Nope {5000+}\r\n" + b"n" * 5000).startswith(b"c NO [TRYCREATE]")


def test_refusals_for_the_quota_are_not_bad_commands(world):
    """Twenty BAD (or TOOBIG) answers close a session; a client saving drafts into a full
    mailbox is not misbehaving."""
    s = session(world)
    for n in range(25):
        assert s.cmd(b"b%d APPEND Drafts {5000}" % n) == b"b%d " % n + OVER
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"


def test_reading_waits_for_the_look_and_loses_nothing_sent_meanwhile(world):
    """The limit (and usage) come later, as from the accounts' and store's threads: nothing
    is answered, no "+" sent, and what the client pipelined is read once they have come."""
    s, asked = stalled_session(world)
    assert s.cmd(b"b APPEND INBOX {%d}" % len(MESSAGE)) == b""  # no "+" yet
    asked.pop(0).callback(QUOTA)
    assert s.take() == CONTINUE
    assert s.send(MESSAGE + b"\r\nc NOOP\r\n") == b""  # APPEND's own look at the quota
    asked.pop(0).callback(QUOTA)
    out = s.take()
    assert out.startswith(b"b OK [APPENDUID") and out.endswith(b"c OK NOOP completed\r\n")
    world.reactor.advance(quotaroom.KEEP)  # the room seen is no longer believed: a look
    # a {n+} literal and a command pipelined behind it, while the look waits
    s.send(b"d APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\ne NOOP\r\n")
    assert len(asked) == 1 and s.take() == b""
    asked.pop(0).callback(QUOTA)
    asked.pop(0).callback(QUOTA)  # APPEND's own
    out = s.take()
    assert out.startswith(b"d OK [APPENDUID") and out.endswith(b"e OK NOOP completed\r\n")
    s.send(b"f APPEND INBOX {2000+}\r\n" + b"z" * 2000 + b"\r\ng NOOP\r\n")
    assert len(asked) == 1 and s.take() == b""
    asked.pop(0).callback(QUOTA)
    assert s.take() == b"f " + OVER + b"g OK NOOP completed\r\n"
    box = result(world.store.open(ALICE, "INBOX"))
    assert [m.content for m in result(box.messages([1, 2], True, True))] == [MESSAGE] * 2


def test_a_compressed_session_loses_nothing_sent_while_the_look_waits(world):
    """Under COMPRESS=DEFLATE (RFC 4978) what follows the marker line comes in the same
    compressed chunk: it waits, inflated or not, until the answer is out."""
    import zlib

    s, asked = stalled_session(world)
    assert s.cmd("z COMPRESS DEFLATE") == b"z OK DEFLATE active\r\n"
    deflater, inflater = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)

    def send(data: bytes) -> bytes:
        packed = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return inflater.decompress(s.send(packed))

    command = b"b APPEND INBOX {2000+}\r\n" + b"z" * 2000 + b"\r\nc APPEND INBOX {1500}\r\n"
    assert send(command) == b""
    asked.pop(0).callback(QUOTA)  # b's look: over
    asked.pop(0).callback(QUOTA)  # c's: over too, and no "+"
    assert inflater.decompress(s.take()) == b"b " + OVER + b"c " + OVER
    command = b"d APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\ne NOOP\r\n"
    assert send(command) == b""  # no look (the room just seen), d's own check
    asked.pop(0).callback(QUOTA)
    out = inflater.decompress(s.take())
    assert out.startswith(b"d OK [APPENDUID") and out.endswith(b"e OK NOOP completed\r\n")
    box = result(world.store.open(ALICE, "INBOX"))
    assert [m.content for m in result(box.messages([1], True, True))] == [MESSAGE]


def test_the_room_seen_moments_ago_spares_the_look_and_never_refuses(world):
    """quotaroom.py: within ``KEEP`` seconds of reading the usage, a literal that fitted then
    gets its "+" without a look (the check once it is read still refuses it when mail came
    meanwhile); later, or for a literal that didn't fit, the usage is read again."""
    s = session(world)
    assert s.cmd(b"b APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE).startswith(b"b OK")
    deliver(world, ALICE, b"Subject: big\r\n\r\n" + b"d" * 784 + b"\r\n")  # 800: 902 used
    assert s.cmd(b"c APPEND INBOX {500}") == CONTINUE  # 898 were left when last seen
    assert s.send(b"c" * 500 + b"\r\n") == b"c " + OVER  # the check after the literal
    assert s.cmd(b"d APPEND INBOX {500}") == b"d " + OVER  # the room it saw: 98
    other = session(world)
    other.cmd("x SELECT INBOX")
    assert b"y OK" in other.cmd("y STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b"z OK" in other.cmd("z EXPUNGE")
    assert s.cmd(b"e APPEND INBOX {500}") == CONTINUE  # 98 < 500: read again, 898 left
    assert s.send(b"e" * 500 + b"\r\n").startswith(b"e OK [APPENDUID")
    deliver(world, ALICE, b"Subject: big\r\n\r\n" + b"d" * 384 + b"\r\n")  # 400: 1002
    world.reactor.advance(quotaroom.KEEP)
    assert s.cmd(b"f APPEND INBOX {1}") == b"f " + OVER  # 398 seen, but too long ago


def test_another_users_folder_is_held_to_its_owners_quota(world):
    if not IAclStore.providedBy(world.store):
        pytest.skip("this store keeps no ACLs")
    result(world.store.create_mailbox(ALICE, "Projects"))
    alice = session(world)
    assert b"b OK" in alice.cmd("b SETACL Projects bob@example.test li")
    bob = session(world, BOB)
    box = b'"Other Users/alice@example.test/Projects"'
    assert bob.cmd(b"c APPEND " + box + b" {1001}") == b"c " + OVER
    assert bob.cmd(b"d APPEND INBOX {1001}") == CONTINUE  # his own: unlimited
    assert bob.send(b"m" * 1001 + b"\r\n").startswith(b"d OK")
    # without the right to insert, NOPERM as before, once the literal is read
    assert b"e OK" in alice.cmd("e SETACL Projects bob@example.test lr")
    assert bob.cmd(b"f APPEND " + box + b" {1001}") == CONTINUE
    assert bob.send(b"m" * 1001 + b"\r\n").startswith(b"f NO [NOPERM]")


def test_the_room_seen_moments_ago_answers_at_once_without_asking_for_rights(world):
    """A literal that fits the room seen for the mailbox's owner gets its "+" with nothing
    asked of the store: the owner follows from the name (``_append_fits``). The look went
    through the rights of another user's folder first (a store call, answered here only
    when the test says so), and the session stopped reading meanwhile."""
    if not IAclStore.providedBy(world.store):
        pytest.skip("this store keeps no ACLs")
    result(world.store.create_mailbox(ALICE, "Projects"))
    alice = session(world)
    assert b"b OK" in alice.cmd("b SETACL Projects bob@example.test li")
    bob = session(world, BOB)
    box = b'"Other Users/alice@example.test/Projects"'
    assert bob.cmd(b"c APPEND " + box + b" {%d}" % len(MESSAGE)) == CONTINUE
    assert bob.send(MESSAGE + b"\r\n").startswith(b"c OK [APPENDUID")
    store, asked = world.store, []

    def stalled(owner: str, mailbox: str) -> Deferred:
        asked.append((owner, mailbox))
        return Deferred()  # the ACL table is slow to answer

    real, store.get_acl = store.get_acl, stalled
    try:
        assert bob.cmd(b"d APPEND " + box + b" {%d}" % len(MESSAGE)) == CONTINUE
        assert asked == []
    finally:
        store.get_acl = real
    assert bob.send(MESSAGE + b"\r\n").startswith(b"d OK [APPENDUID")
    assert messages_in(alice, "Projects") == 2


def test_before_login_an_append_is_answered_as_before(world):
    s = Session(make_factory(world, quota_of=lambda u: succeed(0)))
    assert s.cmd(b"b APPEND INBOX {5}") == CONTINUE
    assert s.send(b"hello\r\n") == b"b BAD log in first\r\n"
    assert b"c OK" in s.cmd(b"c LOGIN alice@example.test " + PASSWORD.encode())
    assert s.cmd(b"d APPEND INBOX {5}") == b"d " + OVER


# -- append.announced --------------------------------------------------------------------------


def _announced(text: bytes, size: int, literals: dict | None = None):
    return append.announced(text, literals or {}, size)


def test_announced_sums_the_message_text_before_the_literal():
    first = b"t APPEND INBOX {3}"
    second = first + b' (\\Seen $Work) "05-Mar-2024 10:00:00 +0100" {7}'
    found = _announced(second, 7, {len(first): b"abc"})
    assert found == append.Announced(b"INBOX", ["\\Seen", "$Work"], 10)
    catenate = b"t APPEND Drafts CATENATE (TEXT {3}"
    after_url = catenate + b' URL "/INBOX/;UID=1" TEXT {5}'
    staged = LiteralFile("/nonexistent", 3)
    assert _announced(after_url, 5, {len(catenate): staged}).octets == 8


def test_announced_is_none_for_a_name_or_a_url_or_a_command_refused_already():
    assert _announced(b"t APPEND {5}", 5) is None  # the mailbox name
    assert _announced(b"t APPEND INBOX CATENATE (URL {20}", 20) is None
    assert _announced(b"t APPEND INBOX (\\Bogus) {5}", 5) is None  # BAD whatever follows
    assert _announced(b"t APPEND INBOX UTF8 (~{5}", 5) is None  # UTF8 not enabled
    assert _announced(b"t APPEND INBOX UTF8 (~{5}", 5, {}) is None
    assert append.announced(b"t APPEND INBOX UTF8 (~{5}", {}, 5, utf8=True).octets == 5
    name = b"t APPEND {3}"
    assert _announced(name + b" {9}", 9, {len(name): b"Foo"}).mailbox == b"Foo"
