"""Greylisting: the triplet's life (451, pass after the delay, start over), auto-allowing a
client network, expiry, and who is never greylisted — each over the SQLite file and over the
shared PostgreSQL tables (skipped without PostgreSQL), and shared between two nodes."""

from __future__ import annotations

import sqlite3

import pytest

from tests.support.clock import FakeClock
from tests.support.postgres import shared_server
from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.spam.greylist import GreylistFilter, network_of, sender_key

OUTSIDE = Client("192.0.2.10", listener="smtp")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


_storage: list = []  # this test's request, whose param says where the state is kept


@pytest.fixture(autouse=True, params=["sqlite", "postgres"])
def storage(request):
    _storage[:] = [request]
    yield request.param
    _storage.clear()


def shared_database() -> str:
    request = _storage[0]
    server = shared_server()
    dsn = server.database()
    request.addfinalizer(lambda: server.drop(dsn))
    return dsn


def greylist(tmp_path, clock, dsn: str = "", **settings) -> GreylistFilter:
    if _storage and _storage[0].param == "postgres":
        return GreylistFilter(dsn=dsn or shared_database(), now=clock, **settings)
    return GreylistFilter(path=str(tmp_path / "greylist.sqlite"), now=clock, **settings)


def rcpt(f, client=OUTSIDE, sender="a@sender.example", recipient="alice@example.test"):
    return f.rcpt_to(client, Transaction(sender, ()), recipient)


def test_networks_are_the_24_and_the_64():
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"


def test_first_attempt_is_deferred_and_a_retry_after_the_delay_passes(tmp_path, clock):
    f = greylist(tmp_path, clock)
    first = rcpt(f)
    assert first.action is Action.TEMPFAIL and "300 seconds" in first.reason
    clock.now += 60
    early = rcpt(f)
    assert early.action is Action.TEMPFAIL and "240 seconds" in early.reason
    clock.now += 241
    assert rcpt(f).action is Action.ACCEPT
    clock.now += 86400  # passed triplets stay accepted
    assert rcpt(f).action is Action.ACCEPT
    # another address of the same /24 is the same sender farm
    assert rcpt(f, Client("192.0.2.99", listener="smtp")).action is Action.ACCEPT
    assert rcpt(f, recipient="bob@example.test").action is Action.TEMPFAIL


def test_a_triplet_not_retried_in_time_starts_over(tmp_path, clock):
    f = greylist(tmp_path, clock, delay=10, retry_window=100)
    assert rcpt(f).action is Action.TEMPFAIL
    clock.now += 101
    assert rcpt(f).action is Action.TEMPFAIL
    clock.now += 11
    assert rcpt(f).action is Action.ACCEPT


def test_a_client_network_is_allowed_after_n_passes(tmp_path, clock):
    f = greylist(tmp_path, clock, delay=10, auto_allow_after=2)
    for recipient in ("a@example.test", "b@example.test"):
        assert rcpt(f, recipient=recipient).action is Action.TEMPFAIL
        clock.now += 11
        assert rcpt(f, recipient=recipient).action is Action.ACCEPT
    assert rcpt(f, recipient="new@example.test", sender="other@x.example").action is Action.ACCEPT


def test_state_expires(tmp_path, clock):
    f = greylist(tmp_path, clock, delay=10, allow_days=1)
    rcpt(f)
    clock.now += 11
    assert rcpt(f).action is Action.ACCEPT
    clock.now += 2 * 86400
    f.sweep()
    (count,) = f._db().execute("SELECT count(*) FROM triplets").fetchone()
    assert count == 0
    assert rcpt(f).action is Action.TEMPFAIL


@pytest.mark.parametrize(
    "client",
    [
        Client("127.0.0.1", listener="smtp"),
        Client("::1", listener="smtp"),
        Client("192.0.2.10", listener="smtp", authenticated_as="bob@example.test"),
        Client("192.0.2.10", listener="submission"),
    ],
)
def test_loopback_authenticated_and_submission_are_never_greylisted(tmp_path, clock, client):
    f = greylist(tmp_path, clock)
    assert rcpt(f, client).action is Action.ACCEPT
    assert f.skips(client)  # known on the reactor thread: the chain makes no pool trip


def test_an_outside_client_is_not_skipped(tmp_path, clock):
    assert not greylist(tmp_path, clock).skips(OUTSIDE)


def test_exempt_networks_can_be_emptied(tmp_path, clock):
    f = greylist(tmp_path, clock, exempt_networks=[])
    assert rcpt(f, Client("127.0.0.1", listener="smtp")).action is Action.TEMPFAIL


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        GreylistFilter(path="x", delay=100, retry_window=50)


def test_a_retry_through_another_node_passes(tmp_path, clock, storage):
    if storage != "postgres":
        pytest.skip("one SQLite file per node: nothing shared")
    dsn = shared_database()
    first, second = greylist(tmp_path, clock, dsn), greylist(tmp_path, clock, dsn)
    assert rcpt(first).action is Action.TEMPFAIL
    clock.now += 120
    early = rcpt(second)
    assert early.action is Action.TEMPFAIL and "180 seconds" in early.reason
    clock.now += 181
    assert rcpt(second).action is Action.ACCEPT
    assert rcpt(first).action is Action.ACCEPT


def test_a_server_with_a_shared_database_keeps_the_state_there(tmp_path, clock, storage):
    from txmailhost.filters.registry import FilterHost

    if storage != "postgres":
        pytest.skip("about the shared database")
    dsn = shared_database()
    host = FilterHost(str(tmp_path), "mx.example.test", shared_dsn=dsn)
    f = GreylistFilter(host=host, now=clock)
    assert rcpt(f).action is Action.TEMPFAIL
    assert not (tmp_path / "spam").exists()  # no file of this node's
    other = GreylistFilter(dsn=dsn, now=clock)
    clock.now += 301
    assert rcpt(other).action is Action.ACCEPT


def test_a_clock_set_back_does_not_hold_a_sender_for_as_long_as_the_jump(tmp_path, clock):
    f = greylist(tmp_path, clock)
    assert rcpt(f).action is Action.TEMPFAIL
    clock.now -= 86400  # the system clock is corrected back by a day
    again = rcpt(f)
    assert again.action is Action.TEMPFAIL and "300 seconds" in again.reason
    clock.now += 301
    assert rcpt(f).action is Action.ACCEPT


def set_aside(directory):
    """The state files set aside (without their -wal and -shm)."""
    return [p for p in directory.glob("greylist.sqlite.corrupt-*") if p.name[-1].isdigit()]


def test_a_corrupt_state_file_is_set_aside_and_greylisting_starts_afresh(tmp_path, clock, storage):
    """A state file SQLite can't read made every RCPT from outside fail (the chain's 451)
    until an administrator came; it is now renamed and a new one started."""
    if storage != "sqlite":
        pytest.skip("about the SQLite file")
    path = tmp_path / "greylist.sqlite"
    path.write_bytes(b"not a database, " * 1000)
    f = greylist(tmp_path, clock)
    first = rcpt(f)
    assert first.action is Action.TEMPFAIL and "300 seconds" in first.reason
    (aside,) = set_aside(tmp_path)
    assert aside.read_bytes().startswith(b"not a database")
    clock.now += 301
    assert rcpt(f).action is Action.ACCEPT


def test_a_worker_with_the_old_file_open_moves_to_the_new_one(tmp_path, clock, storage):
    """Two workers (two filters on one file): when one sets the corrupt file aside, the
    other's open connection goes to the new file instead of writing state nobody reads, and
    its own late discovery of the corruption doesn't set the new file aside too."""
    if storage != "sqlite":
        pytest.skip("about the SQLite file")
    one, two = greylist(tmp_path, clock), greylist(tmp_path, clock)
    assert rcpt(one).action is Action.TEMPFAIL
    assert rcpt(two, recipient="bob@example.test").action is Action.TEMPFAIL
    one._set_aside(sqlite3.DatabaseError("database disk image is malformed"))
    assert rcpt(one, recipient="carol@example.test").action is Action.TEMPFAIL
    two._set_aside(sqlite3.DatabaseError("database disk image is malformed"))  # its old one
    assert len(set_aside(tmp_path)) == 1
    clock.now += 301
    # the triplet one recorded in the new file is the one two reads
    assert rcpt(two, recipient="carol@example.test").action is Action.ACCEPT
    assert len(set_aside(tmp_path)) == 1


def test_a_worker_notices_the_file_replaced_under_its_connection(tmp_path, clock, storage):
    if storage != "sqlite":
        pytest.skip("about the SQLite file")
    one, two = greylist(tmp_path, clock), greylist(tmp_path, clock)
    assert rcpt(two).action is Action.TEMPFAIL  # two's connection is open on the first file
    one._set_aside(sqlite3.DatabaseError("file is not a database"))
    assert rcpt(one, recipient="carol@example.test").action is Action.TEMPFAIL
    clock.now += 301
    assert rcpt(two, recipient="carol@example.test").action is Action.ACCEPT


def pending(f) -> int:
    return f._db().execute("SELECT count(*) FROM triplets WHERE passed IS NULL").fetchone()[0]


def test_a_flood_of_new_triplets_keeps_only_the_newest_max_pending(tmp_path, clock):
    """Distinct triplets that are never retried were all kept for retry_window (two days):
    a flood grew the state without bound. Beyond max_pending the oldest pending ones go."""
    f = greylist(tmp_path, clock, max_pending=10)
    for n in range(30):
        clock.now += 1
        assert rcpt(f, recipient=f"user{n}@example.test").action is Action.TEMPFAIL
    f.sweep()
    assert pending(f) == 10
    clock.now += 300
    assert rcpt(f, recipient="user29@example.test").action is Action.ACCEPT  # newest kept
    assert rcpt(f, recipient="user0@example.test").action is Action.TEMPFAIL  # starts over


def test_the_bound_is_kept_by_the_checks_themselves(tmp_path, clock):
    f = greylist(tmp_path, clock, max_pending=50)
    for n in range(1001):  # the checks sweep every 1000
        clock.now += 0.01
        rcpt(f, sender=f"s{n}@botnet.example")
    assert pending(f) <= 51


def test_max_pending_must_be_positive(tmp_path, clock):
    with pytest.raises(ValueError):
        greylist(tmp_path, clock, max_pending=0)


def test_the_sender_is_remembered_without_what_changes_per_message():
    assert sender_key("prvs=0123abcdef=News@Shop.example") == "news@shop.example"
    assert sender_key("list-bounces+4711-alice=example.org@lists.example") == (
        "list-bounces@lists.example"
    )
    assert sender_key("bounce-4711-67@lists.example") == "bounce-#-#@lists.example"
    assert sender_key("carol@example.org") == "carol@example.org"
    assert sender_key(None) == sender_key("") == ""


def test_a_verp_or_batv_sender_is_greylisted_once_not_per_message(tmp_path, clock):
    """Each message of a mailing list (VERP) or a BATV-signing server has its own sender:
    every one of them was a new triplet and was held ``delay`` again."""
    f = greylist(tmp_path, clock)
    assert rcpt(f, sender="prvs=0001aaaaaa=news@shop.example").action is Action.TEMPFAIL
    clock.now += 301
    assert rcpt(f, sender="prvs=0001aaaaaa=news@shop.example").action is Action.ACCEPT
    assert rcpt(f, sender="prvs=0002bbbbbb=news@shop.example").action is Action.ACCEPT
    assert rcpt(f, sender="bounce-1-2@lists.example").action is Action.TEMPFAIL
    clock.now += 301
    assert rcpt(f, sender="bounce-1-2@lists.example").action is Action.ACCEPT
    assert rcpt(f, sender="bounce-3-4@lists.example").action is Action.ACCEPT


def test_a_failure_other_than_corruption_leaves_the_state_file_alone(tmp_path, clock, storage):
    """A statement's own error (here a constraint: ``IntegrityError``, a ``DatabaseError``
    as corruption is) is the chain's ``on_error``, never a reason to set a readable state
    file aside."""
    if storage != "sqlite":
        pytest.skip("about the SQLite file")
    f = greylist(tmp_path, clock)
    assert rcpt(f).action is Action.TEMPFAIL
    f._db().execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON triplets BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        rcpt(f, recipient="bob@example.test")
    assert set_aside(tmp_path) == []
    assert rcpt(f).action is Action.TEMPFAIL  # the state is still there: seen 0 s ago
