"""The ``IMetadataStore`` contract (RFC 5464 entries) over every backend that declares it:
server and mailbox entries kept, changed all at once, binary values, per user; a mailbox's
entries follow it through RENAME (its children's too), stay on INBOX when INBOX is renamed,
go with DELETE and with the user; a missing mailbox is ``NoSuchMailbox``. PostgreSQL runs on
a fresh database of the server the tests start (skipped where there is none). Then what each
backend keeps on its own: Maildir's files outlast the store object, PostgreSQL's rows are
what a second node (another store on the same database) reads."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from tests.support.fixtures import build_store
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store import backends
from txmailhost.store.interfaces import (
    IMetadataStore,
    MessageSource,
    NoSuchMailbox,
    TooManyEntries,
)
from txmailhost.store.maildir import MaildirStore

ALICE, BOB = "alice@example.test", "bob@example.test"
BINARY = b"\x00\x01\xff\r\n\x80"


@pytest.fixture(params=list(backends.BACKENDS))
def store(request, tmp_path):
    if request.param in backends.NEEDS_SERVER:  # on the server the tests start, as the
        from tests.support.postgres import available  # store contract suite does

        if (why := available()) is not None:
            pytest.skip(why)
    s = build_store(request.param, str(tmp_path / "mail"), SyncReactor(), SyncThreadPool())
    if not IMetadataStore.providedBy(s):
        pytest.skip(f"the {request.param} store keeps no METADATA")
    for user in (ALICE, BOB):
        result(s.provision(user))
    result(s.create_mailbox(ALICE, "Projects"))
    yield s
    if hasattr(s, "close"):
        s.close()


def test_store_provides_the_interface(store):
    assert verifyObject(IMetadataStore, store)


def test_server_and_mailbox_entries_are_kept_apart_and_per_user(store):
    result(store.set_metadata(ALICE, None, {"/private/comment": b"server note"}))
    result(store.set_metadata(ALICE, "INBOX", {"/shared/comment": b"inbox note"}))
    result(store.set_metadata(ALICE, "Projects", {"/private/vendor/x/color": b"red"}))
    assert result(store.get_metadata(ALICE, None)) == {"/private/comment": b"server note"}
    assert result(store.get_metadata(ALICE, "inbox")) == {"/shared/comment": b"inbox note"}
    assert result(store.get_metadata(ALICE, "Projects")) == {"/private/vendor/x/color": b"red"}
    assert result(store.get_metadata(BOB, None)) == {}
    assert result(store.get_metadata(BOB, "INBOX")) == {}


def test_changes_set_replace_and_remove_at_once(store):
    result(store.set_metadata(ALICE, "Projects", {"/private/a": b"1", "/private/b": b"2"}))
    result(
        store.set_metadata(
            ALICE, "Projects", {"/private/a": None, "/private/b": b"two", "/private/c": b"3"}
        )
    )
    assert result(store.get_metadata(ALICE, "Projects")) == {
        "/private/b": b"two",
        "/private/c": b"3",
    }
    result(store.set_metadata(ALICE, "Projects", {"/private/missing": None}))  # nothing to do
    assert len(result(store.get_metadata(ALICE, "Projects"))) == 2


@pytest.mark.parametrize("mailbox", ["Projects", None])
def test_a_limit_is_kept_with_the_write_and_a_refused_change_changes_nothing(store, mailbox):
    result(store.set_metadata(ALICE, mailbox, {f"/private/e{n}": b"v" for n in range(3)}, 4))
    with pytest.raises(TooManyEntries):
        result(store.set_metadata(ALICE, mailbox, {"/private/x": b"1", "/private/y": b"2"}, 4))
    assert sorted(result(store.get_metadata(ALICE, mailbox))) == [
        f"/private/e{n}" for n in range(3)
    ]
    # what the change removes counts too: one out, two in, four left
    result(
        store.set_metadata(
            ALICE, mailbox, {"/private/e0": None, "/private/x": b"1", "/private/y": b"2"}, 4
        )
    )
    assert len(result(store.get_metadata(ALICE, mailbox))) == 4
    result(store.set_metadata(ALICE, mailbox, {"/private/e1": b"changed"}, 4))  # a replacement
    result(store.set_metadata(ALICE, mailbox, {"/private/e2": None}, 0 + 4))
    assert len(result(store.get_metadata(ALICE, mailbox))) == 3


def test_a_mailbox_found_above_the_limit_may_shrink_but_not_grow(store):
    """Entries past the limit (written before it, or by a lower limit) can still be removed
    or replaced: only a change that adds entries past it is refused."""
    result(store.set_metadata(ALICE, "Projects", {f"/private/e{n}": b"v" for n in range(5)}))
    result(store.set_metadata(ALICE, "Projects", {"/private/e0": b"new"}, 3))  # replaced
    result(store.set_metadata(ALICE, "Projects", {"/private/e1": None}, 3))  # removed
    with pytest.raises(TooManyEntries):
        result(store.set_metadata(ALICE, "Projects", {"/private/e1": b"back"}, 3))
    entries = result(store.get_metadata(ALICE, "Projects"))
    assert len(entries) == 4 and entries["/private/e0"] == b"new"


def test_binary_and_empty_values_round_trip(store):
    result(store.set_metadata(ALICE, None, {"/private/blob": BINARY, "/private/empty": b""}))
    assert result(store.get_metadata(ALICE, None)) == {
        "/private/blob": BINARY,
        "/private/empty": b"",
    }


def test_a_mailbox_that_does_not_exist_has_no_entries(store):
    with pytest.raises(NoSuchMailbox):
        result(store.get_metadata(ALICE, "Nothing"))
    with pytest.raises(NoSuchMailbox):
        result(store.set_metadata(ALICE, "Nothing", {"/private/x": b"v"}))


def test_rename_carries_the_entries_of_the_mailbox_and_its_children(store):
    result(store.create_mailbox(ALICE, "Projects/2027"))
    result(store.create_mailbox(ALICE, "ProjectsOld"))
    result(store.set_metadata(ALICE, "Projects", {"/private/comment": b"work"}))
    result(store.set_metadata(ALICE, "Projects/2027", {"/private/comment": b"next year"}))
    result(store.set_metadata(ALICE, "ProjectsOld", {"/private/comment": b"old"}))
    result(store.rename_mailbox(ALICE, "Projects", "Work"))
    assert result(store.get_metadata(ALICE, "Work")) == {"/private/comment": b"work"}
    assert result(store.get_metadata(ALICE, "Work/2027")) == {"/private/comment": b"next year"}
    assert result(store.get_metadata(ALICE, "ProjectsOld")) == {"/private/comment": b"old"}
    with pytest.raises(NoSuchMailbox):
        result(store.get_metadata(ALICE, "Projects"))


def test_renaming_inbox_leaves_its_entries_on_inbox_and_the_new_mailbox_has_none(store):
    """RFC 3501 §6.3.5: INBOX's messages move, INBOX itself stays (and keeps its entries)."""
    box = result(store.open(ALICE, "INBOX"))
    result(box.append(MessageSource.from_bytes(b"Subject: x\r\n\r\nbody\r\n"), (), None))
    result(store.set_metadata(ALICE, "INBOX", {"/private/comment": b"inbox"}))
    result(store.rename_mailbox(ALICE, "INBOX", "Old Inbox"))
    assert result(store.get_metadata(ALICE, "INBOX")) == {"/private/comment": b"inbox"}
    assert result(store.get_metadata(ALICE, "Old Inbox")) == {}


def test_delete_takes_the_entries_along_and_a_new_mailbox_starts_without(store):
    result(store.set_metadata(ALICE, "Projects", {"/private/comment": b"work"}))
    result(store.delete_mailbox(ALICE, "Projects"))
    with pytest.raises(NoSuchMailbox):
        result(store.get_metadata(ALICE, "Projects"))
    result(store.create_mailbox(ALICE, "Projects"))
    assert result(store.get_metadata(ALICE, "Projects")) == {}


def test_removing_the_user_removes_their_entries_only(store):
    result(store.set_metadata(ALICE, None, {"/private/comment": b"server"}))
    result(store.set_metadata(ALICE, "INBOX", {"/private/comment": b"inbox"}))
    result(store.set_metadata(BOB, None, {"/private/comment": b"bob's"}))
    result(store.remove_user(ALICE))
    result(store.provision(ALICE))  # the address comes back as a new account
    assert result(store.get_metadata(ALICE, None)) == {}
    assert result(store.get_metadata(ALICE, "INBOX")) == {}
    assert result(store.get_metadata(BOB, None)) == {"/private/comment": b"bob's"}


# -- what each backend keeps on its own -------------------------------------------------------


def test_maildir_entries_survive_a_new_store_on_the_same_directory(tmp_path):
    root = str(tmp_path / "mail")
    first = MaildirStore(root, SyncReactor(), SyncThreadPool())
    first.provision_sync(ALICE)
    result(first.set_metadata(ALICE, "Sent", {"/private/comment": BINARY}))
    again = MaildirStore(root, SyncReactor(), SyncThreadPool())
    assert result(again.get_metadata(ALICE, "Sent")) == {"/private/comment": BINARY}


def test_postgres_entries_are_committed_and_seen_by_another_node(postgres_dsn):  # noqa: F811
    """Two stores on one database are two nodes: what one wrote (committed before its
    Deferred fired) the other reads, and a DELETE on one removes the rows for both."""
    import psycopg

    from txmailhost.store.postgres import PostgresStore

    node_a = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool())
    node_b = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool())
    try:
        result(node_a.create_mailbox(ALICE, "Projects"))
        result(node_a.set_metadata(ALICE, "Projects", {"/shared/comment": BINARY}))
        result(node_a.set_metadata(ALICE, None, {"/private/comment": b"server"}))
        assert result(node_b.get_metadata(ALICE, "Projects")) == {"/shared/comment": BINARY}
        assert result(node_b.get_metadata(ALICE, None)) == {"/private/comment": b"server"}
        result(node_b.delete_mailbox(ALICE, "Projects"))
        with psycopg.connect(postgres_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM mailbox_metadata").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM server_metadata").fetchone() == (1,)
    finally:
        node_a.close()
        node_b.close()


LIMIT = 100


def _add_entries(root: str, writer: int, count: int) -> list[str]:
    """One process's SETMETADATAs (a server worker's): one new entry at a time, with the
    limit; the names of those accepted."""
    store = MaildirStore(root, SyncReactor(), SyncThreadPool())
    accepted = []
    for n in range(count):
        name = f"/private/w{writer}/e{n}"
        try:
            result(store.set_metadata(ALICE, "Projects", {name: b"v"}, LIMIT))
        except TooManyEntries:
            continue
        accepted.append(name)
    return accepted


def test_maildir_writers_in_several_processes_lose_nothing_and_keep_the_limit(tmp_path):
    """The server's workers are processes: each change holds the directory's ``flock``, so
    none overwrites another's (a read-modify-write each) and together they stop at the
    limit."""
    import multiprocessing

    root = str(tmp_path / "mail")
    first = MaildirStore(root, SyncReactor(), SyncThreadPool())
    first.provision_sync(ALICE)
    result(first.create_mailbox(ALICE, "Projects"))
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        accepted = pool.starmap(_add_entries, [(root, writer, 40) for writer in range(4)])
    stored = result(first.get_metadata(ALICE, "Projects"))
    every = [name for names in accepted for name in names]
    assert sorted(stored) == sorted(every)  # no accepted change lost
    assert len(stored) == LIMIT  # 160 tried, the limit kept


def test_postgres_writers_on_several_nodes_keep_the_limit(postgres_dsn):  # noqa: F811
    import threading

    from txmailhost.store.postgres import PostgresStore

    nodes = [PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool()) for _ in range(4)]
    accepted: list[str] = []
    start = threading.Barrier(len(nodes))
    try:
        result(nodes[0].create_mailbox(ALICE, "Projects"))

        def write(writer: int) -> None:
            start.wait()
            for n in range(40):
                name = f"/private/w{writer}/e{n}"
                try:
                    result(nodes[writer].set_metadata(ALICE, "Projects", {name: b"v"}, LIMIT))
                except TooManyEntries:
                    continue
                accepted.append(name)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(len(nodes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stored = result(nodes[0].get_metadata(ALICE, "Projects"))
        assert sorted(stored) == sorted(accepted)
        assert len(stored) == LIMIT
    finally:
        for node in nodes:
            node.close()
