"""Sieve state in PostgreSQL (``sieve/shared.py``): the script store behaves as the files do,
and two nodes (two stores on two connections) see one set of scripts, answer a sender once
and tell a user about a failure once."""

from __future__ import annotations

import threading

import pytest

from tests.support.clock import FakeClock
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.scripts import ScriptError, ScriptStore

ALICE = "alice@example.test"


@pytest.fixture
def states(postgres_dsn):  # noqa: F811
    """Two connections to one database: two nodes."""
    from txmailhost.store.pgstate import SharedState

    made = [SharedState(postgres_dsn), SharedState(postgres_dsn)]
    yield made
    for state in made:
        state.close()


@pytest.fixture(params=["files", "postgres"])
def store(request, tmp_path):
    """The file store and the shared one, with the same small quotas: one contract."""
    if request.param == "files":
        return ScriptStore(str(tmp_path / "sieve"), max_scripts=2, max_script_size=100)
    from txmailhost.sieve.shared import SharedScriptStore

    dsn = request.getfixturevalue("postgres_dsn")
    from txmailhost.store.pgstate import SharedState

    state = SharedState(dsn)
    request.addfinalizer(state.close)
    return SharedScriptStore(state, str(tmp_path / "sieve"), max_scripts=2, max_script_size=100)


def test_put_list_activate_read_back(store):
    store.put(ALICE, "main", "keep;\r\n")
    store.put(ALICE, "other", "discard;\r\n")
    assert store.active_script(ALICE) is None
    store.set_active(ALICE, "main")
    assert [(s.name, s.active) for s in store.list(ALICE)] == [("main", True), ("other", False)]
    assert store.get(ALICE, "main") == "keep;\r\n"  # as stored: CRLF stays CRLF
    name, script = store.active_script(ALICE)
    assert name == "main" and script.commands[0].name == "keep"
    store.set_active(ALICE, "other")
    assert store.active_name(ALICE) == "other"
    store.set_active(ALICE, None)
    assert store.active_name(ALICE) is None and store.active_script(ALICE) is None


def test_errors_carry_their_rfc5804_codes(store):
    with pytest.raises(SieveSyntaxError):
        store.put(ALICE, "bad", "fileinto;")
    assert store.list(ALICE) == []
    with pytest.raises(ScriptError) as caught:
        store.put(ALICE, "big", "#" * 101)
    assert caught.value.code == "QUOTA/MAXSIZE"
    store.put(ALICE, "a", "keep;")
    store.put(ALICE, "b", "keep;")
    store.put(ALICE, "a", "discard;")  # replacing one is not one more
    with pytest.raises(ScriptError) as caught:
        store.put(ALICE, "c", "keep;")
    assert caught.value.code == "QUOTA/MAXSCRIPTS"
    with pytest.raises(ScriptError) as caught:
        store.check_space(ALICE, "c", 10)
    assert caught.value.code == "QUOTA/MAXSCRIPTS"
    store.check_space(ALICE, "a", 10)
    with pytest.raises(ScriptError) as caught:
        store.get(ALICE, "zz")
    assert caught.value.code == "NONEXISTENT"
    with pytest.raises(ScriptError) as caught:
        store.set_active(ALICE, "zz")
    assert caught.value.code == "NONEXISTENT"
    store.set_active(ALICE, "a")
    with pytest.raises(ScriptError) as caught:
        store.delete(ALICE, "a")
    assert caught.value.code == "ACTIVE"
    with pytest.raises(ScriptError) as caught:
        store.rename(ALICE, "b", "a")
    assert caught.value.code == "ALREADYEXISTS"
    with pytest.raises(ScriptError) as caught:
        store.rename(ALICE, "zz", "y")
    assert caught.value.code == "NONEXISTENT"
    store.delete(ALICE, "b")
    assert [s.name for s in store.list(ALICE)] == ["a"]


def test_rename_moves_the_active_mark_and_other_users_are_apart(store):
    store.put(ALICE, "a", "keep;")
    store.set_active(ALICE, "a")
    store.rename(ALICE, "a", "b")
    assert [(s.name, s.active) for s in store.list(ALICE)] == [("b", True)]
    assert store.list("bob@example.test") == []
    assert store.active_script("bob@example.test") is None


def test_a_changed_script_is_compiled_again_and_includes_resolve(store, tmp_path):
    store.put(ALICE, "main", 'require "include";\r\ninclude "lib";\r\n')
    store.put(ALICE, "lib", "discard;")
    store.set_active(ALICE, "main")
    first = store.active_script(ALICE)[1]
    assert store.active_script(ALICE)[1] is first  # unchanged: compiled once
    assert store.included(ALICE, "personal", "lib").commands[0].name == "discard"
    assert store.included(ALICE, "personal", "none") is None
    store.put(ALICE, "main", "keep;")
    assert store.active_script(ALICE)[1].commands[0].name == "keep"
    # The administrator's global scripts are files of DATA/sieve/global, on every backend.
    (tmp_path / "sieve" / "global").mkdir(parents=True)
    (tmp_path / "sieve" / "global" / "spam.sieve").write_text("stop;")
    assert store.included(ALICE, "global", "spam").commands[0].name == "stop"


def test_a_script_put_on_one_node_is_active_on_the_other(states, tmp_path):
    from txmailhost.sieve.shared import SharedScriptStore

    a, b = (SharedScriptStore(s, str(tmp_path / f"n{i}")) for i, s in enumerate(states))
    a.put(ALICE, "main", 'require "fileinto";\r\nfileinto "Lists";\r\n')
    a.set_active(ALICE, "main")
    name, script = b.active_script(ALICE)
    assert name == "main" and script.commands[-1].name == "fileinto"
    b.put(ALICE, "main", "keep;")  # changed on B: A runs the new text at once
    assert a.active_script(ALICE)[1].commands[0].name == "keep"


def test_quota_holds_when_two_nodes_upload_at_once(states, tmp_path):
    from txmailhost.sieve.shared import SharedScriptStore

    stores = [SharedScriptStore(s, str(tmp_path), max_scripts=1) for s in states]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def upload(store: SharedScriptStore, name: str) -> None:
        start.wait()
        try:
            store.put(ALICE, name, "keep;")
            outcomes.append("ok")
        except ScriptError as e:
            outcomes.append(str(e.code))

    threads = [
        threading.Thread(target=upload, args=(s, n)) for s, n in zip(stores, "xy", strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["QUOTA/MAXSCRIPTS", "ok"]
    assert len(stores[0].list(ALICE)) == 1


def test_vacation_answers_a_sender_once_across_nodes(states):
    from txmailhost.sieve.shared import SharedResponseLog

    clock = FakeClock(1_764_000_000.0)
    a, b = (SharedResponseLog(s, clock) for s in states)
    assert a.claim(ALICE, "bob@example.net", "h", 86400)
    assert not b.claim(ALICE, "BOB@example.net", "h", 86400)  # the other node: not again
    assert b.claim(ALICE, "carol@example.net", "h", 86400)
    assert b.claim(ALICE, "bob@example.net", "other handle", 86400)
    assert b.claim("dave@example.test", "bob@example.net", "h", 86400)  # another user
    clock.now += 86401
    assert b.claim(ALICE, "bob@example.net", "h", 86400)  # the period is over
    assert not a.claim(ALICE, "bob@example.net", "h", 86400)
    assert a.claim(ALICE, "erin@example.net", "h", 0)  # :seconds 0: every message
    assert b.claim(ALICE, "erin@example.net", "h", 0)


def test_two_nodes_claiming_at_the_same_instant_send_one_reply(postgres_dsn):  # noqa: F811
    from txmailhost.sieve.shared import SharedResponseLog
    from txmailhost.store.pgstate import SharedState

    states = [SharedState(postgres_dsn) for _ in range(4)]
    for state in states:
        state.rows("SELECT 1")
    start = threading.Barrier(len(states))
    won: list[bool] = []

    def node(state: SharedState) -> None:
        log = SharedResponseLog(state)
        start.wait()
        won.append(log.claim(ALICE, "bob@example.net", "h", 86400))

    threads = [threading.Thread(target=node, args=(s,)) for s in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, False, False, True]
    for state in states:
        state.close()


def test_a_script_failure_is_told_once_across_nodes(states):
    from txmailhost.sieve.shared import SharedNotified

    a, b = (SharedNotified(s) for s in states)
    assert a.first(ALICE, "main\0error one")
    assert not b.first(ALICE, "main\0error one")
    assert b.first(ALICE, "main\0error two")
    assert a.first("bob@example.test", "main\0error one")


def test_put_unchecked_keeps_a_script_that_does_not_compile_within_the_quotas(store):
    """What ``migrate dovecot`` does with a user's script our Sieve refuses: kept, for them
    to mend, never lost; the quotas hold all the same."""
    broken = 'require "vnd.dovecot.debug";\r\ndebug_log "x";\r\n'
    with pytest.raises(SieveSyntaxError):
        store.put(ALICE, "debug", broken)
    assert store.put(ALICE, "debug", broken, check=False) is None
    assert store.get(ALICE, "debug") == broken
    assert [s.name for s in store.list(ALICE)] == ["debug"]
    with pytest.raises(ScriptError) as too_big:
        store.put(ALICE, "big", "#" * 200, check=False)
    assert too_big.value.code == "QUOTA/MAXSIZE"
    store.put(ALICE, "main", "keep;\r\n")
    with pytest.raises(ScriptError) as too_many:
        store.put(ALICE, "third", "}", check=False)
    assert too_many.value.code == "QUOTA/MAXSCRIPTS"


def test_remove_user_leaves_nothing_of_theirs_and_nothing_else_goes(store):
    """``user del --purge``: an account made later under the address must not find the old
    one's active script (a redirect would send its mail away)."""
    other = "carol@example.test"
    store.put(ALICE, "away", 'redirect "x@example.net";\r\n')
    store.set_active(ALICE, "away")
    store.put(other, "keep", "keep;\r\n")
    store.remove_user(ALICE)
    store.remove_user(ALICE)  # nothing left: nothing to do
    assert store.list(ALICE) == [] and store.active_name(ALICE) is None
    assert store.active_script(ALICE) is None
    assert [s.name for s in store.list(other)] == ["keep"]
