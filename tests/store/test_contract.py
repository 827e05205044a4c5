"""The ``IMailStore`` contract, run over every backend ``[store] backend`` can name.

What the protocols rely on, said once for all stores: a new backend passes this file before
IMAP or POP3 run over it (they do too, in tests/imap and tests/pop3). What one backend does on
its own disk (Maildir file names, the index) is tested beside that backend instead. A backend
in a database server ("postgres") runs on a fresh database of the server the tests start
(tests/support/postgres.py), and skips where there is none; "postgres+s3" keeps the bodies
in moto's S3 server (tests/support/s3.py).
"""

from __future__ import annotations

import io
import re
import time

import pytest
from zope.interface.verify import verifyObject

from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.s3 import s3_blobs, s3_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store import backends
from txmailhost.store.interfaces import (
    DEFAULT_MAILBOXES,
    DELETED,
    FLAGGED,
    INBOX,
    SEEN,
    IMailbox,
    IMailStore,
    InvalidMailboxName,
    IQuotaAppend,
    IQuotaDelivery,
    MailboxExists,
    MessageSource,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    StoreError,
    TooManyMailboxes,
)

USER = "alice@example.test"
OTHER = "bob@example.test"
MSG = b"Subject: one\r\nFrom: a@b.test\r\n\r\nfirst body\r\n"
MSG2 = b"Subject: two\r\n\r\nsecond\r\n"
OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # RFC 8474 objectid


# "postgres+s3": the PostgreSQL store with bodies in an object store ([store] blobs = "s3"),
# moto's S3 server started by tests/support/s3.py.
@pytest.fixture(params=(*backends.BACKENDS, "postgres+s3"))
def store(request, tmp_path):
    dsn, backend, blobs = "", request.param, None
    if backend == "postgres+s3":
        backend, blobs = "postgres", request.getfixturevalue("s3_blobs")
    if backend == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
    s = backends.build(
        backend, str(tmp_path / "mail"), SyncReactor(), SyncThreadPool(), dsn=dsn, blobs=blobs
    )
    result(s.provision(USER))
    yield s
    if hasattr(s, "close"):
        s.close()  # the database is dropped next: its connections must go first


def append(store, data: bytes, mailbox: str = INBOX, flags=(), date=None) -> int:
    box = result(store.open(USER, mailbox))
    return result(box.append(MessageSource.from_bytes(data), flags, date))[1]


def inbox(store, mailbox: str = INBOX):
    return result(store.open(USER, mailbox))


def failure_of(d) -> Exception:
    with pytest.raises(StoreError) as caught:
        result(d)
    return caught.value


# -- the interfaces ----------------------------------------------------------------------------


def test_store_and_mailbox_provide_their_interfaces(store):
    assert verifyObject(IMailStore, store)
    assert verifyObject(IMailbox, inbox(store))


# -- provisioning --------------------------------------------------------------------------------


def test_provision_creates_inbox_and_the_default_folders_once(store):
    result(store.provision(USER))  # again: nothing changes, nothing fails
    assert result(store.list_mailboxes(USER)) == [INBOX, *sorted(DEFAULT_MAILBOXES)]
    assert set(result(store.subscriptions(USER))) >= set(DEFAULT_MAILBOXES)


def test_a_user_never_provisioned_gets_an_inbox_on_first_delivery(store):
    copies = result(store.deliver([(OTHER, INBOX)], MessageSource.from_bytes(MSG)))
    box = result(store.open(OTHER, INBOX))
    assert [m.content for m in result(box.messages([copies[(OTHER, INBOX)]], content=True))] == [
        MSG
    ]


def test_remove_user_deletes_every_message_of_the_user_only(store):
    append(store, MSG)
    append(store, MSG2, "Sent")
    result(store.deliver([(OTHER, INBOX)], MessageSource.from_bytes(MSG)))
    result(store.remove_user(USER))
    assert result(store.usage(USER)) == 0
    assert result(store.list_mailboxes(USER))[0] == INBOX
    assert result(inbox(store).status()).messages == 0
    assert result(store.usage(OTHER)) == len(MSG)


def test_location_names_where_the_mail_is_for_the_administrator(store):
    assert isinstance(store.location(USER), str) and store.location(USER)


# -- append and fetch --------------------------------------------------------------------------


def test_append_gives_growing_uids_and_the_mailbox_uidvalidity(store):
    box = inbox(store)
    validity = result(box.status()).uidvalidity
    first = result(box.append(MessageSource.from_bytes(MSG), [], None))
    second = result(box.append(MessageSource.from_bytes(MSG2), [], None))
    assert first == (validity, 1) and second == (validity, 2)
    status = result(box.status())
    assert (status.messages, status.uidnext, status.uidvalidity) == (2, 3, validity)
    assert status.size == len(MSG) + len(MSG2)


def test_append_many_adds_every_message_in_order_with_its_flags_and_date(store):
    box = inbox(store)
    validity = result(box.status()).uidvalidity
    items = [
        (MessageSource.from_bytes(MSG), [SEEN], 1000000000.0),
        (MessageSource.from_bytes(MSG2), ["$Work"], None),
    ]
    assert result(box.append_many(items)) == (validity, [1, 2])
    first, second = result(box.messages([1, 2], content=True))
    assert (first.content, first.flags, first.internaldate) == (MSG, {SEEN}, 1000000000.0)
    assert (second.content, second.flags) == (MSG2, {"$Work"})


def test_append_many_adds_nothing_when_one_message_fails(store, tmp_path):
    box = inbox(store)
    items = [
        (MessageSource.from_bytes(MSG), [], None),
        (MessageSource.from_path(str(tmp_path / "missing")), [], None),
    ]
    with pytest.raises(OSError):
        result(box.append_many(items))
    status = result(box.status())
    assert (status.messages, status.uidnext) == (0, 1)


def test_claim_recent_gives_each_new_uid_to_the_first_claimer_only(store):
    box = inbox(store)
    selection = result(box.select(True))
    assert selection.first_recent == selection.uidnext == 1
    uid = append(store, MSG)
    assert result(box.claim_recent(uid + 1)) == uid  # the first session told of it
    assert result(box.claim_recent(uid + 1)) > uid  # any other: nothing left
    assert result(box.status()).recent == 0


def test_examine_shows_unclaimed_messages_without_claiming_them(store):
    append(store, MSG)
    box = inbox(store)
    assert result(box.select(False)).first_recent == 1
    assert result(box.status()).recent == 1
    assert result(box.select(True)).first_recent == 1


def test_fetch_by_uid_returns_header_content_flags_and_date(store):
    uid = append(store, MSG, flags=[SEEN, "$Work"], date=1000000000.0)
    (message,) = result(inbox(store).messages([uid], header=True, content=True))
    assert message.content == MSG
    assert message.header == b"Subject: one\r\nFrom: a@b.test\r\n\r\n"
    assert message.flags == frozenset({SEEN, "$Work"})
    assert (message.size, message.internaldate) == (len(MSG), 1000000000.0)
    with result(inbox(store).open_message(uid)) as f:
        assert f.read() == MSG


def test_messages_leaves_out_uids_not_in_the_mailbox(store):
    uid = append(store, MSG)
    assert [m.uid for m in result(inbox(store).messages([uid + 5, uid]))] == [uid]


def test_a_bare_lf_message_is_served_in_crlf_form_with_that_size(store):
    uid = append(store, b"Subject: lf\n\nbody\n")
    (message,) = result(inbox(store).messages([uid], content=True))
    assert message.content == b"Subject: lf\r\n\r\nbody\r\n"
    assert message.size == len(message.content)


def test_append_reads_a_file_source_from_its_start_and_leaves_it_open(store):
    file = io.BytesIO(MSG)
    file.read(7)  # the caller looked at it first
    _uidvalidity, uid = result(inbox(store).append(MessageSource.from_file(file, len(MSG))))
    assert [m.content for m in result(inbox(store).messages([uid], content=True))] == [MSG]
    assert not file.closed


def test_deliver_reads_a_path_source_into_every_mailbox(store, tmp_path):
    path = tmp_path / "spooled"
    path.write_bytes(MSG)
    result(store.create_mailbox(USER, "Lists"))
    targets = [(USER, INBOX), (USER, "Lists"), (OTHER, INBOX)]
    copies = result(store.deliver(targets, MessageSource.from_path(str(path))))
    assert set(copies) == set(targets)
    for user, mailbox in targets:
        box = result(store.open(user, mailbox))
        assert [m.content for m in result(box.messages([copies[(user, mailbox)]], content=True))]
    assert path.read_bytes() == MSG  # the caller's file stays the caller's


def test_deliver_stores_each_copy_with_its_own_flags(store, tmp_path):
    """Sieve's imap4flags: one message, a \\Seen copy, a keyword copy, and one left plain."""
    path = tmp_path / "spooled"
    path.write_bytes(MSG)
    result(store.create_mailbox(USER, "Lists"))
    targets = [(USER, INBOX), (USER, "Lists"), (OTHER, INBOX)]
    wanted = {(USER, INBOX): frozenset({SEEN, FLAGGED}), (USER, "Lists"): frozenset({"$Label1"})}
    copies = result(store.deliver(targets, MessageSource.from_path(str(path)), flags=wanted))
    for user, mailbox in targets:
        box = result(store.open(user, mailbox))
        (stored,) = result(box.messages([copies[(user, mailbox)]], content=True))
        assert stored.flags == wanted.get((user, mailbox), frozenset())
        assert stored.content == MSG
    selected = result(result(store.open(USER, INBOX)).select(True))
    assert selected.unseen == 0  # \Seen from the start: nothing to read
    assert result(result(store.open(USER, "Lists")).select(True)).unseen == 1


def test_deliver_without_flags_stores_none(store):
    copies = result(store.deliver([(USER, INBOX)], MessageSource.from_bytes(MSG), flags=None))
    (stored,) = result(inbox(store).messages([copies[(USER, INBOX)]]))
    assert stored.flags == frozenset()


def test_delivered_flags_can_be_changed_like_any_others(store):
    flags = {(USER, INBOX): frozenset({SEEN, "$Label1"})}
    copies = result(store.deliver([(USER, INBOX)], MessageSource.from_bytes(MSG), flags=flags))
    uid = copies[(USER, INBOX)]
    box = inbox(store)
    result(box.store_flags([uid], [SEEN], "-"))
    (stored,) = result(box.messages([uid]))
    assert stored.flags == {"$Label1"}


def test_deliver_to_a_missing_folder_fails_permanently(store):
    error = failure_of(store.deliver([(USER, "Nope")], MessageSource.from_bytes(MSG)))
    assert isinstance(error, NoSuchMailbox) and error.permanent


# -- flags, modseq, expunge --------------------------------------------------------------------


def test_store_flags_adds_removes_and_replaces_reporting_only_changes(store):
    uid = append(store, MSG)
    box = inbox(store)
    assert [i.flags for i in result(box.store_flags([uid], [SEEN], "+"))] == [frozenset({SEEN})]
    assert result(box.store_flags([uid], [SEEN], "+")) == []  # nothing changed
    result(box.store_flags([uid], ["$Work", DELETED], "="))
    (message,) = result(box.messages([uid]))
    assert message.flags == frozenset({"$Work", DELETED})
    result(box.store_flags([uid], ["$Work"], "-"))
    assert result(box.snapshot()).messages[0].flags == frozenset({DELETED})


def test_every_change_raises_highestmodseq_and_the_changed_message_carries_it(store):
    uid = append(store, MSG)
    box = inbox(store)
    before = result(box.status()).highestmodseq
    (info,) = result(box.store_flags([uid], [SEEN], "+"))
    after = result(box.status()).highestmodseq
    assert info.modseq == after > before
    changes = result(box.changes_since(before))
    assert [m.uid for m in changes.changed] == [uid] and changes.highestmodseq == after
    assert result(box.changes_since(after)).changed == ()


def test_a_conditional_store_leaves_messages_changed_since_alone_and_names_them(store):
    first, second = append(store, MSG), append(store, MSG2)
    box = inbox(store)
    known = result(box.status()).highestmodseq
    (info,) = result(box.store_flags([second], ["$Other"], "+"))  # another session's change
    changed, left = result(box.store_flags_if_unchanged([first, second], [SEEN], "+", known))
    assert [(i.uid, i.flags) for i in changed] == [(first, frozenset({SEEN}))]
    assert left == [second]
    assert {m.uid: m.flags for m in result(box.messages([first, second]))} == {
        first: frozenset({SEEN}),
        second: frozenset({"$Other"}),
    }
    # nothing to change and nothing changed since: neither list names the message
    assert result(box.store_flags_if_unchanged([first], [SEEN], "+", changed[0].modseq)) == (
        [],
        [],
    )


def test_an_append_within_quota_counts_every_folder_and_adds_nothing_past_the_limit(store):
    box = inbox(store)
    if not IQuotaAppend.providedBy(box):
        pytest.skip("this backend compares the usage before appending (no IQuotaAppend)")
    assert verifyObject(IQuotaAppend, box)
    result(store.provision(USER))
    append(store, MSG, mailbox=DEFAULT_MAILBOXES[0])  # another folder counts too
    used = result(store.usage(USER))
    limit = used + len(MSG2) * 2
    item = (MessageSource.from_bytes(MSG2), [SEEN], None)
    _validity, (first,) = result(box.append_within_quota([item], limit))
    # two more would pass it by one message: neither is added
    failure = failure_of(box.append_within_quota([item, item], limit))
    assert isinstance(failure, QuotaExceeded) and failure.permanent
    _validity, (second,) = result(box.append_within_quota([item], limit))  # exactly at it
    assert result(store.usage(USER)) == limit
    assert [m.uid for m in result(box.snapshot()).messages] == [first, second]
    assert isinstance(failure_of(box.append_within_quota([item], limit)), QuotaExceeded)


def test_a_delivery_within_quota_is_taken_below_the_limit_and_refused_at_it(store):
    if not IQuotaDelivery.providedBy(store):
        pytest.skip("this backend stores deliveries without checking quotas (no IQuotaDelivery)")
    assert verifyObject(IQuotaDelivery, store)
    result(store.provision(USER))
    used = result(store.usage(USER))
    limit = used + len(MSG2) + 1
    two = [(USER, INBOX), (USER, DEFAULT_MAILBOXES[0])]
    source = MessageSource.from_bytes(MSG2)
    assert set(result(store.deliver_within_quota(two, source, {USER: limit}))) == set(two)
    # below the limit before: both copies taken, one message past it (the soft quota)
    assert result(store.usage(USER)) == used + 2 * len(MSG2) > limit
    # at or past it: refused, and nothing of the delivery stored, the other user's copy too
    both = [(USER, INBOX), (OTHER, INBOX)]
    failure = failure_of(store.deliver_within_quota(both, source, {USER: limit}))
    assert isinstance(failure, QuotaExceeded)
    assert result(store.usage(USER)) == used + 2 * len(MSG2)
    assert result(store.usage(OTHER)) == 0
    # a user not in ``limits`` is not held to one
    result(store.deliver_within_quota([(OTHER, INBOX)], source, {USER: 1}))
    assert result(store.usage(OTHER)) == len(MSG2)


def test_expunge_removes_durably_and_reports_vanished_uids(store):
    first, second = append(store, MSG), append(store, MSG2)
    box = inbox(store)
    modseq = result(box.status()).highestmodseq
    assert result(box.expunge([first, 99])) == [first]
    assert [m.uid for m in result(box.snapshot()).messages] == [second]
    assert result(box.expunged_since(modseq)) == [first]
    assert result(box.changes_since(modseq)).expunged == (first,)
    with pytest.raises(NoSuchMessage):
        result(box.open_message(first))


def test_uids_are_never_reused_after_an_expunge(store):
    uid = append(store, MSG)
    result(inbox(store).expunge([uid]))
    assert append(store, MSG2) == uid + 1
    assert result(inbox(store).status()).uidnext == uid + 2


def test_a_mailbox_created_again_gets_a_greater_uidvalidity(store):
    result(store.create_mailbox(USER, "Again"))
    before = result(inbox(store, "Again").status()).uidvalidity
    result(store.delete_mailbox(USER, "Again"))
    result(store.create_mailbox(USER, "Again"))  # within the same second
    assert result(inbox(store, "Again").status()).uidvalidity > before


def test_uidvalidity_stays_while_the_mailbox_exists(store):
    first = result(inbox(store).status()).uidvalidity
    append(store, MSG)
    assert result(inbox(store).select(False)).uidvalidity == first


# -- select, status, columns -------------------------------------------------------------------


def test_select_reports_unseen_and_recent_once_to_the_claiming_session(store):
    append(store, MSG, flags=[SEEN])
    second = append(store, MSG2)
    box = inbox(store)
    selection = result(box.select(True))
    assert list(selection.uids) == [1, second]
    assert (selection.first_unseen, selection.unseen) == (2, 1)
    assert selection.first_recent == 1
    assert result(box.select(True)).first_recent > second  # already claimed
    assert result(box.status()).recent == 0


def test_open_selected_is_open_and_select_in_one_step(store):
    append(store, MSG, flags=["$Work"])
    box, selection = result(store.open_selected(USER, "inbox", False))
    assert box.name == INBOX and list(selection.uids) == [1]
    assert "$Work" in selection.keywords


def test_columns_and_uid_range_give_index_values_in_uid_order(store):
    uids = [append(store, MSG), append(store, MSG2), append(store, MSG)]
    box = inbox(store)
    columns = result(box.columns(uids[1:]))
    assert list(columns.uids) == uids[1:]
    assert list(columns.sizes) == [len(MSG2), len(MSG)]
    assert [m.uid for m in result(box.uid_range(2, 10))] == uids[1:]


def test_derived_values_are_kept_until_the_message_goes(store):
    uid = append(store, MSG)
    box = inbox(store)
    result(box.remember("bodystructure", {uid: b"(TEXT)"}))
    assert result(box.derived([uid], "bodystructure")) == {uid: b"(TEXT)"}
    result(box.expunge([uid]))
    assert result(box.derived([uid], "bodystructure")) == {}


# -- copy, move, mailboxes ---------------------------------------------------------------------


def test_copy_keeps_flags_and_gives_the_target_uids(store):
    first, second = append(store, MSG, flags=[SEEN]), append(store, MSG2)
    trash = inbox(store, "Trash")
    assert result(inbox(store).copy([second, first], trash)) == [(first, 1), (second, 2)]
    copied = result(trash.messages([1, 2], content=True))
    assert [(m.content, m.flags) for m in copied] == [(MSG, {SEEN}), (MSG2, frozenset())]


def test_move_is_copy_then_expunge_and_usage_follows(store):
    uid = append(store, MSG)
    box = inbox(store)
    result(box.copy([uid], inbox(store, "Junk")))
    assert result(store.usage(USER)) == 2 * len(MSG)
    result(box.expunge([uid]))
    assert result(store.usage(USER)) == len(MSG)
    assert result(inbox(store, "Junk").status()).messages == 1


def test_create_delete_and_rename_mailboxes(store):
    result(store.create_mailbox(USER, "A"))
    result(store.create_mailbox(USER, "A/B"))
    assert isinstance(failure_of(store.create_mailbox(USER, "A")), MailboxExists)
    append(store, MSG, "A/B")
    result(store.rename_mailbox(USER, "A", "Z"))
    names = result(store.list_mailboxes(USER))
    assert "Z" in names and "Z/B" in names and "A" not in names
    assert result(inbox(store, "Z/B").status()).messages == 1
    result(store.delete_mailbox(USER, "Z/B"))
    error = failure_of(store.open(USER, "Z/B"))
    assert isinstance(error, NoSuchMailbox) and error.permanent


def test_inbox_cannot_be_deleted_and_renaming_it_moves_its_messages(store):
    append(store, MSG)
    assert failure_of(store.delete_mailbox(USER, INBOX)).permanent
    result(store.rename_mailbox(USER, INBOX, "Old"))
    assert result(inbox(store).status()).messages == 0
    assert result(inbox(store, "Old").status()).messages == 1


def test_names_that_could_escape_are_refused_permanently(store):
    for name in ("a//b", "../x", "a/../b", "bad\x00"):
        error = failure_of(store.create_mailbox(USER, name))
        assert isinstance(error, InvalidMailboxName) and error.permanent


def test_subscriptions_are_added_and_removed(store):
    result(store.subscribe(USER, "Sent", False))
    result(store.create_mailbox(USER, "News"))
    result(store.subscribe(USER, "News", True))
    subscribed = result(store.subscriptions(USER))
    assert "News" in subscribed and "Sent" not in subscribed


# -- change notifications (IMAP IDLE) ----------------------------------------------------------


def test_watchers_hear_of_deliveries_flag_changes_and_expunges_until_stopped(store):
    box = inbox(store)
    heard: list[int] = []
    stop = box.watch(lambda: heard.append(1))
    result(store.deliver([(USER, INBOX)], MessageSource.from_bytes(MSG)))
    assert len(heard) == 1
    result(box.store_flags([1], [SEEN], "+"))
    result(box.expunge([1]))
    assert len(heard) == 3
    stop()
    append(store, MSG2)
    assert len(heard) == 3


def test_a_watcher_of_one_mailbox_hears_nothing_of_another(store):
    heard: list[int] = []
    inbox(store, "Sent").watch(lambda: heard.append(1))
    append(store, MSG)
    assert heard == []


def test_access_keys_are_made_once_kept_and_reset(store):
    assert result(store.access_key(USER, INBOX, False)) is None
    key = result(store.access_key(USER, INBOX, True))
    assert len(key) >= 16 and result(store.access_key(USER, INBOX, False)) == key
    other = result(store.access_key(USER, "Sent", True))
    result(store.reset_access_keys(USER, INBOX))
    assert result(store.access_key(USER, INBOX, False)) is None
    assert result(store.access_key(USER, "Sent", False)) == other
    result(store.reset_access_keys(USER, None))
    assert result(store.access_key(USER, "Sent", False)) is None
    assert result(store.access_key("nobody@example.test", INBOX, False)) is None


# -- object ids and save dates (RFC 8474, RFC 8514) --------------------------------------------


def test_each_new_message_gets_its_own_emailid_and_a_save_date_of_now(store):
    before = time.time()
    first, second = append(store, MSG, date=1_000_000), append(store, MSG)
    origins = result(inbox(store).origins([first, second, 99]))
    assert set(origins) == {first, second}
    assert origins[first].emailid != origins[second].emailid  # same octets, two messages
    for origin in origins.values():
        assert OBJECTID.fullmatch(origin.emailid)
        assert before - 1 <= origin.savedate <= time.time() + 1  # not the INTERNALDATE


def test_a_copy_keeps_the_emailid_and_internaldate_but_gets_a_new_save_date(store):
    uid = append(store, MSG, date=1_000_000)
    box, trash = inbox(store), inbox(store, "Trash")
    original = result(box.origins([uid]))[uid]
    time.sleep(0.05)
    ((_uid, copied),) = result(box.copy([uid], trash))
    copy = result(trash.origins([copied]))[copied]
    assert copy.emailid == original.emailid
    assert copy.savedate > original.savedate
    assert result(trash.messages([copied]))[0].internaldate == 1_000_000
    result(box.expunge([uid]))  # a MOVE: the copy stays the same message
    assert result(trash.origins([copied]))[copied] == copy


def test_one_delivery_into_two_mailboxes_is_one_message_and_the_next_another(store):
    targets = [(USER, INBOX), (USER, "Junk")]
    copies = result(store.deliver(targets, MessageSource.from_bytes(MSG)))
    a = result(inbox(store).origins([copies[(USER, INBOX)]]))[copies[(USER, INBOX)]]
    b = result(inbox(store, "Junk").origins([copies[(USER, "Junk")]]))[copies[(USER, "Junk")]]
    assert a.emailid == b.emailid and OBJECTID.fullmatch(a.emailid)
    again = result(store.deliver([(USER, INBOX)], MessageSource.from_bytes(MSG)))
    c = result(inbox(store).origins([again[(USER, INBOX)]]))[again[(USER, INBOX)]]
    assert c.emailid != a.emailid  # the same octets delivered again: another message


def test_origins_go_with_the_expunged_message(store):
    uid = append(store, MSG)
    box = inbox(store)
    result(box.expunge([uid]))
    assert result(box.origins([uid])) == {}


def test_mailboxid_is_reported_by_select_and_status_and_kept_through_rename(store):
    result(store.create_mailbox(USER, "A"))
    box = inbox(store, "A")
    mailboxid = result(box.status()).mailboxid
    assert OBJECTID.fullmatch(mailboxid)
    assert result(box.select(False)).mailboxid == mailboxid
    assert mailboxid not in {result(inbox(store, n).status()).mailboxid for n in DEFAULT_MAILBOXES}
    uid = append(store, MSG, "A")
    emailid = result(box.origins([uid]))[uid].emailid
    result(store.rename_mailbox(USER, "A", "B"))
    renamed = inbox(store, "B")
    assert result(renamed.status()).mailboxid == mailboxid
    assert result(renamed.origins([uid]))[uid].emailid == emailid
    result(store.delete_mailbox(USER, "B"))
    result(store.create_mailbox(USER, "B"))
    assert result(inbox(store, "B").status()).mailboxid != mailboxid


def test_renaming_inbox_gives_the_new_mailbox_a_new_id_and_keeps_emailids(store):
    uid = append(store, MSG)
    inbox_id = result(inbox(store).status()).mailboxid
    emailid = result(inbox(store).origins([uid]))[uid].emailid
    result(store.rename_mailbox(USER, INBOX, "Old"))
    old = inbox(store, "Old")
    assert result(inbox(store).status()).mailboxid == inbox_id
    assert result(old.status()).mailboxid != inbox_id
    (moved,) = result(old.uid_range(1, 2**32 - 1))
    assert result(old.origins([moved.uid]))[moved.uid].emailid == emailid


def test_a_user_may_have_at_most_max_mailboxes(store):
    """``[store] max_mailboxes`` (the server sets it; 0, the CLI's, is no limit): INBOX and
    the four default folders count; past the limit nothing is created, except a default
    folder made again (Send's copy to Sent needs it)."""
    store.max_mailboxes = 7  # INBOX, Sent, Drafts, Trash, Junk and two more
    result(store.create_mailbox(USER, "one"))
    result(store.create_mailbox(USER, "two"))
    with pytest.raises(TooManyMailboxes):
        result(store.create_mailbox(USER, "three"))
    assert "three" not in result(store.list_mailboxes(USER))
    with pytest.raises(MailboxExists):  # an existing name is still "exists", not "too many"
        result(store.create_mailbox(USER, "two"))
    result(store.delete_mailbox(USER, "Junk"))
    result(store.create_mailbox(USER, "three"))  # room again
    result(store.create_mailbox(USER, "Junk"))  # a default one: always
    assert len(result(store.list_mailboxes(USER))) == 8
    result(store.create_mailbox(OTHER, "mine"))  # per user
    store.max_mailboxes = 0
    result(store.create_mailbox(USER, "four"))
