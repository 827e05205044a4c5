"""ACLs (RFC 4314) in the store: the rights vocabulary (store/acl.py), with property tests of
its parser, and the ``IAclStore`` contract over every backend that declares it: entries kept,
following RENAME, gone with DELETE and the user, the index of what is shared with whom, and,
for Maildir, kept across a restart (a new store on the same directory)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from tests.support.fixtures import build_store
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store import acl, backends
from txmailhost.store.interfaces import IAclStore, NoSuchMailbox, StoreError
from txmailhost.store.maildir import MaildirStore

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


# -- the vocabulary ----------------------------------------------------------------------------


def test_obsolete_c_and_d_expand_and_are_shown_beside_their_members():
    assert acl.normalize("lrcd") == "lrkxte"
    assert acl.display("lrkxte") == "lrkxtecd"
    assert acl.display("lrt") == "lrtd"  # one member of "delete" is enough for "d"
    assert acl.display("lr") == "lr"


def test_modify_adds_removes_and_replaces():
    assert acl.modify("lr", "+sw") == "lrsw"
    assert acl.modify("lrsw", "-rd") == "lsw"
    assert acl.modify("lrsw", "i") == "i"
    assert acl.modify("lrsw", "") == ""


@pytest.mark.parametrize("bad", ["lrQ", "lrq", "l r", "l1", "+X"])
def test_unknown_or_uppercase_rights_are_refused(bad):
    with pytest.raises(acl.RightsError):
        acl.modify("", bad)


def test_effective_rights_are_granted_less_negative():
    entries = {"anyone": "lr", BOB: "lrsw", "-" + BOB: "w", "-anyone": "s"}
    assert acl.effective(entries, BOB) == "lr"  # s taken from anyone, w from bob
    assert acl.effective(entries, CAROL) == "lr"
    assert acl.effective({}, CAROL) == ""


def test_identifiers_are_canonical_addresses_or_anyone():
    assert acl.check_identifier("Bob@Example.TEST") == BOB
    assert acl.check_identifier("-Anyone") == "-anyone"
    for bad in ("bob", "", "@example.test", "bob@", "a b@example.test"):
        with pytest.raises(acl.RightsError):
            acl.check_identifier(bad)


@given(st.text(max_size=20))
def test_rights_parser_raises_only_rights_errors_and_is_canonical(text):
    try:
        rights = acl.normalize(text)
    except acl.RightsError:
        return
    assert set(rights) <= set(acl.RIGHTS)
    assert acl.normalize(rights) == rights  # canonical: parsing again changes nothing
    assert acl.normalize(acl.display(rights)) == rights  # what we show parses back


@given(st.text(alphabet="lrswipkxteacd+-", max_size=12), st.text("lrswipkxtea", max_size=11))
def test_modify_stays_within_the_rights(change, current):
    try:
        rights = acl.modify(acl.normalize(current), change)
    except acl.RightsError:
        return
    assert rights == acl.normalize(rights)


# -- the IAclStore contract --------------------------------------------------------------------


@pytest.fixture(params=list(backends.BACKENDS))
def store(request, tmp_path):
    if request.param in backends.NEEDS_SERVER:  # on the server the tests start, as the
        from tests.support.postgres import available  # store contract suite does

        if (why := available()) is not None:
            pytest.skip(why)
    s = build_store(request.param, str(tmp_path / "mail"), SyncReactor(), SyncThreadPool())
    if not IAclStore.providedBy(s):
        pytest.skip(f"the {request.param} store keeps no ACLs")
    for user in (ALICE, BOB):
        result(s.provision(user))
    result(s.create_mailbox(ALICE, "Projects"))
    return s


def test_store_provides_the_interface(store):
    assert verifyObject(IAclStore, store)


def test_entries_are_kept_and_removed(store):
    result(store.set_acl(ALICE, "Projects", BOB, "lr"))
    result(store.set_acl(ALICE, "inbox", "anyone", "l"))
    assert result(store.get_acl(ALICE, "Projects")) == {BOB: "lr"}
    assert result(store.get_acl(ALICE, "INBOX")) == {"anyone": "l"}
    result(store.set_acl(ALICE, "Projects", BOB, None))
    assert result(store.get_acl(ALICE, "Projects")) == {}


def test_a_mailbox_that_does_not_exist_has_no_acl(store):
    with pytest.raises(NoSuchMailbox):
        result(store.get_acl(ALICE, "Nothing"))
    with pytest.raises(NoSuchMailbox):
        result(store.set_acl(ALICE, "Nothing", BOB, "lr"))
    with pytest.raises(StoreError):
        result(store.get_acl("nobody@example.test", "INBOX"))


def test_shared_with_answers_from_the_index_with_whole_acls(store):
    result(store.set_acl(ALICE, "Projects", BOB, "lr"))
    result(store.set_acl(ALICE, "Projects", "-anyone", "r"))
    result(store.set_acl(BOB, "INBOX", "anyone", "l"))
    found = result(store.shared_with([BOB, "anyone"]))
    assert found == {
        (ALICE, "Projects"): {BOB: "lr", "-anyone": "r"},
        (BOB, "INBOX"): {"anyone": "l"},
    }
    assert result(store.shared_with([CAROL])) == {}


def test_rename_carries_the_acl_of_the_mailbox_and_its_children(store):
    result(store.create_mailbox(ALICE, "Projects/2027"))
    result(store.create_mailbox(ALICE, "ProjectsOld"))
    result(store.set_acl(ALICE, "Projects", BOB, "lr"))
    result(store.set_acl(ALICE, "Projects/2027", BOB, "lrs"))
    result(store.set_acl(ALICE, "ProjectsOld", BOB, "l"))
    result(store.rename_mailbox(ALICE, "Projects", "Work"))
    assert result(store.get_acl(ALICE, "Work")) == {BOB: "lr"}
    assert result(store.get_acl(ALICE, "Work/2027")) == {BOB: "lrs"}
    assert result(store.get_acl(ALICE, "ProjectsOld")) == {BOB: "l"}  # not a child
    assert set(result(store.shared_with([BOB]))) == {
        (ALICE, "Work"),
        (ALICE, "Work/2027"),
        (ALICE, "ProjectsOld"),
    }


def test_delete_and_user_removal_take_the_acls_along(store):
    result(store.set_acl(ALICE, "Projects", BOB, "lr"))
    result(store.set_acl(BOB, "INBOX", ALICE, "lr"))
    result(store.delete_mailbox(ALICE, "Projects"))
    result(store.create_mailbox(ALICE, "Projects"))
    assert result(store.get_acl(ALICE, "Projects")) == {}
    result(store.set_acl(ALICE, "INBOX", BOB, "lr"))
    result(store.remove_user(BOB))
    assert result(store.shared_with([BOB, ALICE])) == {}


def test_maildir_acls_survive_a_new_store_on_the_same_directory(tmp_path):
    root = str(tmp_path / "mail")
    first = MaildirStore(root, SyncReactor(), SyncThreadPool())
    first.provision_sync(ALICE)
    result(first.set_acl(ALICE, "Sent", BOB, "lrs"))
    first.acl.close()
    again = MaildirStore(root, SyncReactor(), SyncThreadPool())
    assert result(again.get_acl(ALICE, "Sent")) == {BOB: "lrs"}
    assert list(result(again.shared_with([BOB]))) == [(ALICE, "Sent")]


def test_shared_with_no_identifier_is_nothing(store):
    result(store.set_acl(ALICE, "Projects", BOB, "lr"))
    assert result(store.shared_with([])) == {}


# -- SETACL's "+" and "-" in one step (change_acl) ---------------------------------------------


def test_change_adds_takes_away_and_replaces_in_the_store(store):
    assert result(store.change_acl(ALICE, "Projects", BOB, "+lr")) == "lr"
    assert result(store.change_acl(ALICE, "Projects", BOB, "+w")) == "lrw"
    assert result(store.change_acl(ALICE, "Projects", BOB, "-r")) == "lw"
    assert result(store.get_acl(ALICE, "Projects")) == {BOB: "lw"}
    assert result(store.change_acl(ALICE, "Projects", BOB, "s")) == "s"
    assert result(store.change_acl(ALICE, "Projects", BOB, "-s")) == ""
    assert result(store.get_acl(ALICE, "Projects")) == {}  # nothing left: no entry
    assert result(store.change_acl(ALICE, "Projects", BOB, "-s")) == ""
    assert result(store.get_acl(ALICE, "Projects")) == {}


def test_change_of_a_mailbox_that_does_not_exist_is_refused(store):
    with pytest.raises(NoSuchMailbox):
        result(store.change_acl(ALICE, "Nothing", BOB, "+lr"))
    assert result(store.shared_with([BOB])) == {}


# each writer adds and takes away its own right again and again, ending with it added: a
# change read apart from its write would sooner or later put back a state from before
# another writer's last "+", and that right would be missing at the end
_LETTERS = "swip"
_ROUNDS = 40


def _toggle(store, letter: str) -> None:
    for _ in range(_ROUNDS):
        result(store.change_acl(ALICE, "Projects", BOB, "+" + letter))
        result(store.change_acl(ALICE, "Projects", BOB, "-" + letter))
    result(store.change_acl(ALICE, "Projects", BOB, "+" + letter))


def _toggle_in_a_process(root: str, letter: str) -> None:
    _toggle(MaildirStore(root, SyncReactor(), SyncThreadPool()), letter)


def test_maildir_changes_from_several_processes_lose_nothing(tmp_path):
    """The server's workers are processes sharing the ACL database: each change is one
    write transaction."""
    import multiprocessing

    root = str(tmp_path / "mail")
    first = MaildirStore(root, SyncReactor(), SyncThreadPool())
    first.provision_sync(ALICE)
    result(first.create_mailbox(ALICE, "Projects"))
    result(first.set_acl(ALICE, "Projects", BOB, "l"))
    with multiprocessing.get_context("fork").Pool(len(_LETTERS)) as pool:
        pool.starmap(_toggle_in_a_process, [(root, letter) for letter in _LETTERS])
    assert result(first.get_acl(ALICE, "Projects")) == {BOB: acl.normalize("l" + _LETTERS)}


def test_postgres_changes_from_several_nodes_lose_nothing(postgres_dsn):  # noqa: F811
    import threading

    from txmailhost.store.postgres import PostgresStore

    nodes = [PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool()) for _ in _LETTERS]
    start = threading.Barrier(len(nodes))
    try:
        for user in (ALICE, BOB):
            result(nodes[0].provision(user))
        result(nodes[0].create_mailbox(ALICE, "Projects"))

        def run(node, letter: str) -> None:
            start.wait()
            _toggle(node, letter)

        threads = [
            threading.Thread(target=run, args=(node, letter))
            for node, letter in zip(nodes, _LETTERS, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert result(nodes[0].get_acl(ALICE, "Projects")) == {BOB: acl.normalize(_LETTERS)}
    finally:
        for node in nodes:
            node.close()
