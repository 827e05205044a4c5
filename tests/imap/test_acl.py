"""ACL (RFC 4314), LIST-MYRIGHTS (RFC 8440) and the Other Users/ and Shared/ namespaces at the
byte level, on every backend that keeps ACLs: each right granted (allowed) and not granted
(``NO [NOPERM]``, or ``NO [NONEXISTENT]`` for a mailbox the user may neither list nor read),
the ACL commands' syntax, ``anyone`` and negative rights, and ACLs that follow their mailbox."""

from __future__ import annotations

import os
import re

import pytest
from twisted.internet.defer import succeed

from tests.imap.support import ALICE, BOB, Session, deliver, make_factory
from tests.support.fixtures import make_world, result
from txmailhost.store.interfaces import IAclStore

CAROL = "carol@example.test"
BOX = '"Other Users/alice@example.test/Projects"'
MESSAGE = b"From: alice@example.test\r\nSubject: plan\r\n\r\nthe plan\r\n"


@pytest.fixture
def world(tmp_path, backend):
    w = make_world(tmp_path, backend)
    if not IAclStore.providedBy(w.store):
        pytest.skip(f"the {backend} store keeps no ACLs")
    for user in (ALICE, BOB, CAROL):
        w.add_user(user)
    result(w.store.create_mailbox(ALICE, "Projects"))
    deliver(w, ALICE, MESSAGE, "Projects")
    return w


def login(world, user: str = ALICE, **factory_options) -> Session:
    s = Session(make_factory(world, **factory_options))
    assert b"OK" in s.login(user)
    return s


def grant(world, rights: str, identifier: str = BOB, mailbox: str = "Projects") -> None:
    alice = login(world)
    assert b"b OK" in alice.cmd(f"b SETACL {mailbox} {identifier} {rights}")
    alice.close()


def bob_with(world, rights: str) -> Session:
    if rights:
        grant(world, rights)
    return login(world, BOB)


def flags_of(world, uid: int = 1) -> frozenset[str]:
    box = result(world.store.open(ALICE, "Projects"))
    return result(box.messages([uid]))[0].flags


# -- capabilities and NAMESPACE ----------------------------------------------------------------


def test_capabilities_name_acl_rights_and_list_myrights(world):
    caps = login(world).cmd("b CAPABILITY")
    assert b" ACL RIGHTS=texk LIST-MYRIGHTS" in caps


def test_namespace_shows_personal_other_users_and_shared(world):
    assert login(world).cmd("b NAMESPACE") == (
        b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))\r\n'
        b"b OK NAMESPACE completed\r\n"
    )


# -- l: lookup ---------------------------------------------------------------------------------


def test_lookup_right_lists_the_mailbox_under_other_users(world):
    bob = bob_with(world, "l")
    assert bob.cmd('c LIST "" "Other Users/*"') == (
        b'* LIST (\\Noselect \\HasChildren) "/" "Other Users/alice@example.test"\r\n'
        b'* LIST (\\HasNoChildren) "/" "Other Users/alice@example.test/Projects"\r\n'
        b"c OK LIST completed\r\n"
    )


def test_without_lookup_the_mailbox_is_not_listed(world):
    bob = bob_with(world, "r")
    assert bob.cmd('c LIST "" "*"').count(b"Other Users") == 0
    assert b"c OK" in bob.cmd(f"c SELECT {BOX}")  # "r" alone still reads it


def test_without_any_right_the_mailbox_does_not_exist(world):
    bob = login(world, BOB)
    for command in (f"SELECT {BOX}", f"STATUS {BOX} (MESSAGES)", f"MYRIGHTS {BOX}"):
        assert bob.cmd(f"c {command}") == b"c NO [NONEXISTENT] no such mailbox\r\n"
    # the same as a mailbox that really isn't there
    missing = '"Other Users/alice@example.test/Nothing"'
    assert bob.cmd(f"d SELECT {missing}") == b"d NO [NONEXISTENT] no such mailbox\r\n"
    assert bob.cmd('e SELECT "Other Users/alice@example.test/Sent"') == (
        b"e NO [NONEXISTENT] no such mailbox\r\n"
    )


# -- r: read -----------------------------------------------------------------------------------


def test_read_right_selects_read_only_and_gives_status(world):
    bob = bob_with(world, "lr")
    reply = bob.cmd(f"c SELECT {BOX}")
    assert b"* 1 EXISTS" in reply and b"* OK [PERMANENTFLAGS ()]" in reply
    assert reply.endswith(b"c OK [READ-ONLY] SELECT completed\r\n")
    assert b"* 1 FETCH (BODY[] {" in bob.cmd("d FETCH 1 BODY.PEEK[]")
    status = bob.cmd(f"e STATUS {BOX} (MESSAGES)")
    assert status.startswith(b'* STATUS "Other Users/alice@example.test/Projects" (MESSAGES 1)')


def test_lookup_without_read_is_noperm(world):
    bob = bob_with(world, "l")
    assert bob.cmd(f"c SELECT {BOX}").startswith(b"c NO [NOPERM]")
    assert bob.cmd(f"d EXAMINE {BOX}").startswith(b"d NO [NOPERM]")
    assert bob.cmd(f"e STATUS {BOX} (MESSAGES)").startswith(b"e NO [NOPERM]")


# -- s: seen -----------------------------------------------------------------------------------


def test_seen_right_lets_fetch_and_store_set_seen(world):
    bob = bob_with(world, "lrs")
    reply = bob.cmd(f"c SELECT {BOX}")
    assert b"[PERMANENTFLAGS (\\Seen)]" in reply and b"[READ-WRITE]" in reply
    assert b"\\Seen))" in bob.cmd("d FETCH 1 BODY[]")
    assert "\\Seen" in flags_of(world)
    assert b"e OK" in bob.cmd("e STORE 1 -FLAGS (\\Seen)")
    assert "\\Seen" not in flags_of(world)


def test_without_seen_right_fetch_leaves_seen_and_store_is_noperm(world):
    bob = bob_with(world, "lrw")
    bob.cmd(f"c SELECT {BOX}")
    assert b"\\Seen" not in bob.cmd("d FETCH 1 BODY[]")
    assert "\\Seen" not in flags_of(world)
    assert bob.cmd("e STORE 1 +FLAGS (\\Seen)").startswith(b"e NO [NOPERM]")


# -- w: write ----------------------------------------------------------------------------------


def test_write_right_sets_other_flags(world):
    bob = bob_with(world, "lrw")
    bob.cmd(f"c SELECT {BOX}")
    assert b"d OK" in bob.cmd("d STORE 1 +FLAGS (\\Flagged $Label1)")
    assert {"\\Flagged", "$Label1"} <= flags_of(world)


def test_without_write_right_other_flags_are_noperm_and_dropped_from_a_mixed_store(world):
    bob = bob_with(world, "lrs")
    bob.cmd(f"c SELECT {BOX}")
    assert bob.cmd("d STORE 1 +FLAGS (\\Flagged)").startswith(b"d NO [NOPERM]")
    # RFC 4314 §4: a STORE with at least one permitted flag succeeds for that flag
    assert b"e OK" in bob.cmd("e STORE 1 +FLAGS (\\Seen \\Flagged)")
    assert flags_of(world) == frozenset({"\\Seen"})


def test_replacing_flags_leaves_the_ones_without_the_right_alone(world):
    result(result(world.store.open(ALICE, "Projects")).store_flags([1], ["\\Flagged"], "+"))
    bob = bob_with(world, "lrs")
    bob.cmd(f"c SELECT {BOX}")
    assert b"d OK" in bob.cmd("d STORE 1 FLAGS (\\Seen)")
    assert flags_of(world) == frozenset({"\\Seen", "\\Flagged"})


# -- i: insert ---------------------------------------------------------------------------------


def test_insert_right_appends_and_copies_keeping_only_permitted_flags(world):
    bob = bob_with(world, "li")
    reply = bob.cmd(f"c APPEND {BOX} (\\Seen \\Flagged) {{3+}}\r\nabc")
    assert b"c OK [APPENDUID" in reply
    assert flags_of(world, 2) == frozenset()  # no "s" nor "w": both dropped (§4)
    deliver(world, BOB, MESSAGE)
    bob.cmd("d SELECT INBOX")
    bob.cmd("e STORE 1 +FLAGS (\\Seen)")
    assert b"f OK [COPYUID" in bob.cmd(f"f COPY 1 {BOX}")
    assert flags_of(world, 3) == frozenset()
    assert len(world.inbox_files(ALICE, "Projects")) == 3


def test_without_insert_right_append_and_copy_are_noperm(world):
    bob = bob_with(world, "lr")
    assert bob.cmd(f"c APPEND {BOX} {{3+}}\r\nabc").startswith(b"c NO [NOPERM]")
    deliver(world, BOB, MESSAGE)
    bob.cmd("d SELECT INBOX")
    assert bob.cmd(f"e COPY 1 {BOX}").startswith(b"e NO [NOPERM]")
    assert bob.cmd(f"f MOVE 1 {BOX}").startswith(b"f NO [NOPERM]")
    assert len(world.inbox_files(ALICE, "Projects")) == 1
    assert len(world.inbox_files(BOB)) == 1


def test_append_counts_against_the_owners_quota(world):
    limits = {ALICE: len(MESSAGE) + 10, BOB: None}
    grant(world, "li")
    bob = login(world, BOB, quota_of=lambda user: succeed(limits[user]))
    assert bob.cmd(f"c APPEND {BOX} {{40+}}\r\n" + "x" * 40).startswith(b"c NO [OVERQUOTA]")
    assert b"d OK" in bob.cmd("d APPEND INBOX {40+}\r\n" + "x" * 40)


# -- p: post -----------------------------------------------------------------------------------


def test_post_right_is_kept_but_alone_grants_nothing_in_imap(world):
    bob = bob_with(world, "p")
    assert b"bob@example.test p" in login(world).cmd("c GETACL Projects")
    assert bob.cmd(f"d SELECT {BOX}") == b"d NO [NONEXISTENT] no such mailbox\r\n"
    assert bob.cmd(f"e MYRIGHTS {BOX}") == b"e NO [NONEXISTENT] no such mailbox\r\n"


# -- k: create ---------------------------------------------------------------------------------


def test_create_right_creates_children_that_inherit_the_acl(world):
    bob = bob_with(world, "lrk")
    sub = '"Other Users/alice@example.test/Projects/2027"'
    # RFC 8474: the OK names the MAILBOXID of Alice's new folder (the store's, not a name
    # looked up in Bob's own folders)
    created = bob.cmd(f"c CREATE {sub}")
    assert re.fullmatch(rb"c OK (\[MAILBOXID \(F[\w-]+\)\] )?CREATE completed\r\n", created)
    assert "Projects/2027" in result(world.store.list_mailboxes(ALICE))
    box = result(world.store.open(ALICE, "Projects/2027"))
    mailboxid = result(box.status()).mailboxid
    if mailboxid:
        assert f"[MAILBOXID ({mailboxid})]".encode() in created
    assert bob.cmd(f"d MYRIGHTS {sub}") == (
        b'* MYRIGHTS "Other Users/alice@example.test/Projects/2027" lrkc\r\n'
        b"d OK MYRIGHTS completed\r\n"
    )


def test_without_create_right_create_is_noperm(world):
    bob = bob_with(world, "lr")
    reply = bob.cmd('c CREATE "Other Users/alice@example.test/Projects/2027"')
    assert reply.startswith(b"c NO [NOPERM]")
    assert bob.cmd('d CREATE "Other Users/alice@example.test/Top"').startswith(b"d NO [NOPERM]")
    assert "Projects/2027" not in result(world.store.list_mailboxes(ALICE))


# -- x: delete mailbox -------------------------------------------------------------------------


def test_delete_right_deletes_and_renames(world):
    result(world.store.create_mailbox(ALICE, "Projects/Old"))
    grant(world, "lrxk")
    grant(world, "lrx", mailbox="Projects/Old")
    bob = login(world, BOB)
    old = '"Other Users/alice@example.test/Projects/Old"'
    new = '"Other Users/alice@example.test/Projects/Older"'
    assert b"c OK" in bob.cmd(f"c RENAME {old} {new}")
    assert b"d OK" in bob.cmd(f"d DELETE {new}")
    assert result(world.store.list_mailboxes(ALICE)).count("Projects/Older") == 0


def test_without_delete_right_delete_and_rename_are_noperm(world):
    bob = bob_with(world, "lrk")
    assert bob.cmd(f"c DELETE {BOX}").startswith(b"c NO [NOPERM]")
    renamed = '"Other Users/alice@example.test/Elsewhere"'
    assert bob.cmd(f"d RENAME {BOX} {renamed}").startswith(b"d NO [NOPERM]")
    assert "Projects" in result(world.store.list_mailboxes(ALICE))


def test_rename_into_another_users_tree_is_refused(world):
    bob = bob_with(world, "lrxk")
    assert bob.cmd(f"c RENAME {BOX} Mine").startswith(b"c NO [CANNOT]")


# -- t: delete message -------------------------------------------------------------------------


def test_delete_message_right_sets_deleted(world):
    bob = bob_with(world, "lrt")
    reply = bob.cmd(f"c SELECT {BOX}")
    assert b"[PERMANENTFLAGS (\\Deleted)]" in reply
    assert b"d OK" in bob.cmd("d STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert "\\Deleted" in flags_of(world)


def test_without_delete_message_right_deleted_is_noperm(world):
    bob = bob_with(world, "lrwe")
    bob.cmd(f"c SELECT {BOX}")
    assert bob.cmd("d STORE 1 +FLAGS (\\Deleted)").startswith(b"d NO [NOPERM]")
    assert "\\Deleted" not in flags_of(world)


# -- e: expunge --------------------------------------------------------------------------------


def test_expunge_right_expunges(world):
    bob = bob_with(world, "lrte")
    bob.cmd(f"c SELECT {BOX}")
    bob.cmd("d STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert bob.cmd("e EXPUNGE") == b"* 1 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    assert world.inbox_files(ALICE, "Projects") == []


def test_without_expunge_right_expunge_is_noperm_and_close_keeps_the_message(world):
    bob = bob_with(world, "lrt")
    bob.cmd(f"c SELECT {BOX}")
    bob.cmd("d STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert bob.cmd("e EXPUNGE").startswith(b"e NO [NOPERM]")
    assert bob.cmd("f CLOSE") == b"f OK CLOSE completed\r\n"  # §4: OK, expunges nothing
    assert len(world.inbox_files(ALICE, "Projects")) == 1


# -- a: administer -----------------------------------------------------------------------------


def test_admin_right_reads_and_changes_the_acl(world):
    bob = bob_with(world, "lra")
    assert bob.cmd(f"c GETACL {BOX}") == (
        b'* ACL "Other Users/alice@example.test/Projects" alice@example.test lrswipkxteacd'
        b" bob@example.test lra\r\nc OK GETACL completed\r\n"
    )
    assert b"d OK" in bob.cmd(f"d SETACL {BOX} carol@example.test lr")
    assert b"* LISTRIGHTS" in bob.cmd(f"e LISTRIGHTS {BOX} carol@example.test")
    carol = login(world, CAROL)
    assert b"f OK [READ-ONLY]" in carol.cmd(f"f SELECT {BOX}")


def test_without_admin_right_acl_commands_are_noperm(world):
    bob = bob_with(world, "lr")
    for command in (
        f"GETACL {BOX}",
        f"SETACL {BOX} carol@example.test lr",
        f"DELETEACL {BOX} bob@example.test",
        f"LISTRIGHTS {BOX} anyone",
    ):
        assert bob.cmd(f"c {command}").startswith(b"c NO [NOPERM]"), command
    assert b"* MYRIGHTS" in bob.cmd(f"d MYRIGHTS {BOX}")  # any of lrikxa is enough


# -- identifiers: anyone and negative rights ---------------------------------------------------


def test_anyone_grants_every_user_and_a_negative_right_takes_it_back(world):
    grant(world, "lr", identifier="anyone")
    grant(world, "r", identifier="-carol@example.test")
    bob, carol = login(world, BOB), login(world, CAROL)
    assert b"OK [READ-ONLY]" in bob.cmd(f"c SELECT {BOX}")
    assert carol.cmd(f"c SELECT {BOX}").startswith(b"c NO [NOPERM]")  # still has "l"
    assert b"Projects" in carol.cmd('d LIST "" "Other Users/*"')
    assert carol.cmd(f"e MYRIGHTS {BOX}") == (
        b'* MYRIGHTS "Other Users/alice@example.test/Projects" l\r\ne OK MYRIGHTS completed\r\n'
    )


# -- the ACL commands' syntax ------------------------------------------------------------------


def test_setacl_adds_removes_and_replaces_with_obsolete_c_and_d_expanded(world):
    alice = login(world)
    assert alice.cmd("b SETACL Projects bob@example.test lrswida") == b"b OK SETACL completed\r\n"
    assert alice.cmd("c GETACL Projects") == (
        b'* ACL "Projects" alice@example.test lrswipkxteacd bob@example.test lrswixtead\r\n'
        b"c OK GETACL completed\r\n"
    )
    alice.cmd("d SETACL Projects bob@example.test +c")
    alice.cmd("e SETACL Projects bob@example.test -d")
    assert b"bob@example.test lrswikac\r\n" in alice.cmd("f GETACL Projects")
    assert alice.cmd("g DELETEACL Projects bob@example.test") == (b"g OK DELETEACL completed\r\n")
    assert alice.cmd("h GETACL Projects") == (
        b'* ACL "Projects" alice@example.test lrswipkxteacd\r\nh OK GETACL completed\r\n'
    )


def test_setacl_refuses_unknown_and_uppercase_rights_and_bad_identifiers(world):
    alice = login(world)
    assert alice.cmd("b SETACL Projects bob@example.test lrQ").startswith(b"b BAD")
    assert alice.cmd("c SETACL Projects bob@example.test lrq").startswith(b"c BAD")
    assert alice.cmd("d SETACL Projects nobody lr").startswith(b"d BAD")
    assert alice.cmd("e SETACL Projects alice@example.test lr").startswith(b"e NO [CANNOT]")
    assert alice.cmd("f SETACL Nothing bob@example.test lr") == (
        b"f NO [NONEXISTENT] no such mailbox\r\n"
    )
    assert alice.cmd("g GETACL Projects").count(b"bob") == 0


def test_myrights_and_listrights_for_the_owner(world):
    alice = login(world)
    assert alice.cmd("b MYRIGHTS INBOX") == (
        b'* MYRIGHTS "INBOX" lrswipkxteacd\r\nb OK MYRIGHTS completed\r\n'
    )
    assert alice.cmd("c LISTRIGHTS Projects alice@example.test") == (
        b'* LISTRIGHTS "Projects" alice@example.test lrswipkxteacd\r\nc OK LISTRIGHTS completed\r\n'
    )
    assert alice.cmd("d LISTRIGHTS Projects Anyone") == (
        b'* LISTRIGHTS "Projects" Anyone "" l r s w i p k x t e a c d\r\n'
        b"d OK LISTRIGHTS completed\r\n"
    )
    assert alice.cmd("e MYRIGHTS Nothing") == b"e NO [NONEXISTENT] no such mailbox\r\n"


def test_list_return_myrights_gives_rights_after_each_mailbox(world):
    bob = bob_with(world, "lrs")
    assert bob.cmd('c LIST "" "Other Users/*" RETURN (MYRIGHTS)') == (
        b'* LIST (\\Noselect \\HasChildren) "/" "Other Users/alice@example.test"\r\n'
        b'* LIST (\\HasNoChildren) "/" "Other Users/alice@example.test/Projects"\r\n'
        b'* MYRIGHTS "Other Users/alice@example.test/Projects" lrs\r\n'
        b"c OK LIST completed\r\n"
    )
    reply = bob.cmd('d LIST "" INBOX RETURN (MYRIGHTS STATUS (MESSAGES))')
    assert b'* MYRIGHTS "INBOX" lrswipkxteacd\r\n* STATUS "INBOX" (MESSAGES 0)' in reply


def test_list_status_of_shared_mailboxes_follows_the_read_right(world):
    bob = bob_with(world, "lr")
    reply = bob.cmd('c LIST "" "Other Users/*" RETURN (STATUS (MESSAGES))')
    assert b'* STATUS "Other Users/alice@example.test/Projects" (MESSAGES 1)' in reply
    grant(world, "l")
    reply = bob.cmd('d LIST "" "Other Users/*" RETURN (STATUS (MESSAGES))')
    assert b"Projects" in reply and b"* STATUS" not in reply


# -- what happens around a shared mailbox ------------------------------------------------------


def test_a_session_on_another_users_mailbox_sees_the_owners_new_mail(world):
    bob = bob_with(world, "lr")
    bob.cmd(f"c SELECT {BOX}")
    deliver(world, ALICE, MESSAGE, "Projects")
    assert b"* 2 EXISTS" in bob.cmd("d NOOP")


def test_rename_keeps_the_acl_and_delete_drops_it(world):
    grant(world, "lr")
    alice = login(world)
    alice.cmd("b RENAME Projects Work")
    bob = login(world, BOB)
    assert b'"Other Users/alice@example.test/Work"' in bob.cmd('c LIST "" "*"')
    alice.cmd("d DELETE Work")
    alice.cmd("e CREATE Work")
    assert b"Work" not in bob.cmd('f LIST "" "*"')
    assert alice.cmd("g GETACL Work") == (
        b'* ACL "Work" alice@example.test lrswipkxteacd\r\ng OK GETACL completed\r\n'
    )


def test_own_mailbox_may_not_take_a_namespace_name(world):
    alice = login(world)
    assert alice.cmd('b CREATE "Other Users"').startswith(b"b NO [CANNOT]")
    # in the Shared/ namespace: only the administrator makes its top level
    assert alice.cmd("c CREATE Shared/Mine").startswith(b"c NO [NOPERM]")
    assert alice.cmd('d RENAME Projects "Other Users/x"').startswith(b"d NO")


def test_subscribe_to_another_users_mailbox_and_lsub_it(world):
    bob = bob_with(world, "lr")
    assert b"c OK" in bob.cmd(f"c SUBSCRIBE {BOX}")
    assert bob.cmd('d LSUB "" "Other Users/*"') == (
        b'* LSUB () "/" "Other Users/alice@example.test/Projects"\r\nd OK LSUB completed\r\n'
    )


def test_shared_namespace_holds_the_domains_shared_folders(world):
    result(world.store.create_mailbox("#shared@example.test", "Support"))
    result(world.store.set_acl("#shared@example.test", "Support", "anyone", "lrsi"))
    bob = login(world, BOB)
    assert bob.cmd('c LIST "" "Shared/*"') == (
        b'* LIST (\\HasNoChildren) "/" "Shared/Support"\r\nc OK LIST completed\r\n'
    )
    assert b"OK [APPENDUID" in bob.cmd("d APPEND Shared/Support {3+}\r\nabc")
    assert b"[READ-WRITE]" in bob.cmd("d SELECT Shared/Support")
    assert bob.cmd("e GETACL Shared/Support").startswith(b"e NO [NOPERM]")
    # only through Shared/: not as an "other user"
    other = '"Other Users/#shared@example.test/Support"'
    assert bob.cmd(f"f SELECT {other}") == b"f NO [NONEXISTENT] no such mailbox\r\n"
    # and only the user's own domain's
    world.add_user("dave@other.test")
    dave = login(world, "dave@other.test")
    assert b"Support" not in dave.cmd('g LIST "" "*"')
    assert dave.cmd("h SELECT Shared/Support") == b"h NO [NONEXISTENT] no such mailbox\r\n"


def test_asking_about_an_unknown_users_inbox_creates_nothing(world):
    bob = login(world, BOB)
    reply = bob.cmd('c SELECT "Other Users/nobody@example.test/INBOX"')
    assert reply == b"c NO [NONEXISTENT] no such mailbox\r\n"
    assert not os.path.exists(os.path.join(world.root, "mail", "example.test", "nobody"))


def test_a_new_child_of_a_shared_mailbox_inherits_its_acl(world):
    grant(world, "lr")
    alice = login(world)
    assert b"b OK" in alice.cmd("b CREATE Projects/Drafts")
    assert alice.cmd("c GETACL Projects/Drafts") == (
        b'* ACL "Projects/Drafts" alice@example.test lrswipkxteacd bob@example.test lr\r\n'
        b"c OK GETACL completed\r\n"
    )
    bob = login(world, BOB)
    assert b'"Other Users/alice@example.test/Projects/Drafts"' in bob.cmd('d LIST "" "*"')


def test_read_right_copies_out_and_move_out_needs_t_and_e(world):
    bob = bob_with(world, "lr")
    bob.cmd(f"c SELECT {BOX}")
    assert b"d OK [COPYUID" in bob.cmd("d COPY 1 INBOX")
    assert world.inbox_files(BOB) == [MESSAGE]
    assert bob.cmd("e MOVE 1 INBOX").startswith(b"e NO [NOPERM]")
    assert len(world.inbox_files(ALICE, "Projects")) == 1


class _StoreWithoutAcl:
    """The world's store, seen through an object that declares no optional interface."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        if name.startswith("__"):  # zope.interface's __provides__ among them
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_over_a_store_without_acls_nothing_is_offered_and_names_are_personal(world):
    from twisted.cred.portal import Portal

    from tests.imap.support import IMAPFactory
    from txmailhost.accounts.checker import AccountsChecker
    from txmailhost.accounts.realm import MailRealm

    checker = AccountsChecker(world.accounts, world.reactor, world.pool)
    portal = Portal(MailRealm(_StoreWithoutAcl(world.store)), [checker])
    s = Session(IMAPFactory(portal, reactor=world.reactor))
    caps = s.login(BOB)
    assert b" ACL" not in caps and b"LIST-MYRIGHTS" not in caps
    assert s.cmd("b NAMESPACE") == b'* NAMESPACE (("" "/")) NIL NIL\r\nb OK NAMESPACE completed\r\n'
    grant(world, "lr")
    assert b"Other Users" not in s.cmd('c LIST "" "*"')
    assert s.cmd(f"d SELECT {BOX}").startswith(b"d NO")
    assert s.cmd("e MYRIGHTS INBOX").startswith(b"e BAD")
    assert s.cmd('f LIST "" "*" RETURN (MYRIGHTS)').startswith(b"f BAD")


def test_notify_pushes_status_of_another_users_mailbox_but_personal_does_not_cover_it(world):
    bob = bob_with(world, "lr")
    assert b"c OK" in bob.cmd("c NOTIFY SET (personal (MessageNew))")
    deliver(world, ALICE, MESSAGE, "Projects")
    assert bob.take() == b""
    reply = bob.cmd('d NOTIFY SET (subtree "Other Users" (MessageNew))')
    assert reply == b"d OK NOTIFY completed\r\n"
    deliver(world, ALICE, MESSAGE, "Projects")
    assert re.fullmatch(
        rb'\* STATUS "Other Users/alice@example.test/Projects" \(MESSAGES 3 UIDNEXT 4'
        rb" UIDVALIDITY \d+\)\r\n",
        bob.take(),
    )


@pytest.mark.parametrize(
    "taken", ["SETACL Projects bob@example.test l", "DELETEACL Projects bob@example.test"]
)
def test_notify_tells_nothing_of_another_users_mailbox_once_its_read_right_is_taken(world, taken):
    bob = bob_with(world, "lr")
    assert b"c OK" in bob.cmd('c NOTIFY SET (subtree ("Other Users" INBOX) (MessageNew))')
    alice = login(world)
    assert b"t OK" in alice.cmd(f"t {taken}")
    deliver(world, ALICE, MESSAGE, "Projects")
    deliver(world, ALICE, MESSAGE, "Projects")
    assert bob.take() == b""
    # bob's own mailboxes are still told
    deliver(world, BOB, MESSAGE)
    assert bob.take().startswith(b'* STATUS "INBOX" (MESSAGES 1 UIDNEXT 2')
    # given back, the mailbox is told again from the next NOTIFY SET on
    assert b"g OK" in alice.cmd("g SETACL Projects bob@example.test lr")
    assert b"d OK" in bob.cmd('d NOTIFY SET (subtree ("Other Users" INBOX) (MessageNew))')
    deliver(world, ALICE, MESSAGE, "Projects")
    assert bob.take().startswith(b'* STATUS "Other Users/alice@example.test/Projects" (MESSAGES 4')


def test_getquotaroot_of_another_users_mailbox_names_no_root(world):
    bob = bob_with(world, "lr")
    assert bob.cmd(f"c GETQUOTAROOT {BOX}") == (
        b'* QUOTAROOT "Other Users/alice@example.test/Projects"\r\nc OK GETQUOTAROOT completed\r\n'
    )
