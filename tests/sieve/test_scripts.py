"""Users' scripts on disk: safe names, atomic writes, one active script, quotas."""

from __future__ import annotations

import os

import pytest

from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.scripts import ScriptError, ScriptStore, check_name

ALICE = "alice@example.test"


@pytest.fixture
def store(tmp_path) -> ScriptStore:
    return ScriptStore(str(tmp_path / "sieve"), max_scripts=2, max_script_size=100)


def test_put_list_activate_and_read_back(store):
    store.put(ALICE, "main", "keep;\r\n")
    store.put(ALICE, "other", "discard;\r\n")
    store.set_active(ALICE, "main")
    assert [(s.name, s.active) for s in store.list(ALICE)] == [("main", True), ("other", False)]
    assert store.get(ALICE, "main") == "keep;\r\n"
    name, script = store.active_script(ALICE)
    assert name == "main" and script.commands[0].name == "keep"


def test_names_are_files_inside_the_users_directory(store, tmp_path):
    for name in ("../../escape", "a/b", ".hidden", "x.sieve"):
        store.put(ALICE, name, "keep;")
        store.delete(ALICE, name)
    store.put(ALICE, "../../escape", "keep;")
    files = os.listdir(tmp_path / "sieve" / "example.test" / "alice")
    assert files == ["%2E%2E%2F%2E%2E%2Fescape.sieve"]
    assert store.list(ALICE)[0].name == "../../escape"


@pytest.mark.parametrize("name", ["", "a\x00b", "line\nbreak", "x" * 129, "e\u0301"])
def test_bad_names_are_refused(name):
    with pytest.raises(ScriptError):
        check_name(name)


@pytest.mark.parametrize("user", ["../x@example.test", "alice@../etc", "a/b@example.test", "x"])
def test_user_addresses_that_could_leave_the_root_are_refused(store, user):
    with pytest.raises(ScriptError):
        store.user_directory(user)


def test_utf8_local_parts_have_a_directory(store, tmp_path):
    """SMTPUTF8 accounts (RFC 6531) get scripts like any other, under their A-label domain."""
    assert store.user_directory("jörg@xn--bcher-kva.test") == os.path.join(
        str(tmp_path / "sieve"), "xn--bcher-kva.test", "jörg"
    )
    store.put("jörg@xn--bcher-kva.test", "main", "keep;")
    assert store.get("jörg@xn--bcher-kva.test", "main") == "keep;"


def test_invalid_script_is_not_stored(store):
    with pytest.raises(SieveSyntaxError):
        store.put(ALICE, "bad", "fileinto;")
    assert store.list(ALICE) == []


def test_quotas(store):
    with pytest.raises(ScriptError) as caught:
        store.put(ALICE, "big", "#" * 101)
    assert caught.value.code == "QUOTA/MAXSIZE"
    store.put(ALICE, "a", "keep;")
    store.put(ALICE, "b", "keep;")
    with pytest.raises(ScriptError) as caught:
        store.put(ALICE, "c", "keep;")
    assert caught.value.code == "QUOTA/MAXSCRIPTS"


def test_active_script_is_recompiled_only_when_it_changes(store):
    store.put(ALICE, "main", "keep;")
    store.set_active(ALICE, "main")
    first = store.active_script(ALICE)[1]
    assert store.active_script(ALICE)[1] is first
    store.put(ALICE, "main", "discard;")
    assert store.active_script(ALICE)[1].commands[0].name == "discard"


def test_no_active_script_and_deactivation(store):
    assert store.active_script(ALICE) is None
    store.put(ALICE, "main", "keep;")
    store.set_active(ALICE, "main")
    store.set_active(ALICE, None)
    assert store.active_script(ALICE) is None
    store.delete(ALICE, "main")
    with pytest.raises(ScriptError):
        store.set_active(ALICE, "main")


def test_rename_moves_the_active_mark(store):
    store.put(ALICE, "a", "keep;")
    store.set_active(ALICE, "a")
    store.rename(ALICE, "a", "b")
    assert [(s.name, s.active) for s in store.list(ALICE)] == [("b", True)]


def test_vacation_script_generated_by_the_cli_compiles_and_answers_until_the_date():
    import datetime

    from txmailhost.sieve.admin import vacation_script
    from txmailhost.sieve.interpreter import Interpreter
    from txmailhost.sieve.language import compile_script
    from txmailhost.sieve.message import MessageView

    text = vacation_script('Away "till" Monday.\n', "Out", datetime.date(2026, 12, 24), 3, "main")
    script = compile_script(text)
    message = MessageView.from_bytes(b"Return-Path: <b@x.y>\r\nTo: a@x.y\r\n\r\n", "a@x.y")

    def run(day: int):
        now = datetime.datetime(2026, 12, day, 12, tzinfo=datetime.UTC).astimezone()
        return Interpreter(script, message, now=now).run().vacation

    assert run(24).reason == 'Away "till" Monday.\n'
    assert (run(24).subject, run(24).seconds) == ("Out", 3 * 86400)
    assert run(25) is None


@pytest.mark.parametrize(
    "name",
    [
        "." * 128,  # 384 octets percent-encoded
        "\u00e9" * 128,
        "\u0436" * 128,
        "\u6f22" * 128,  # 1,152 octets encoded
        "\U0001f4e7" * 128,
        "x" * 128,
    ],
)
def test_every_name_of_up_to_128_characters_is_kept(tmp_path, name):
    """RFC 5804 1.6: servers MUST allow names of up to 128 characters. Encoded, these
    passed Linux's 255-octet file names (the PUTSCRIPT failed with an internal error)."""
    store = ScriptStore(str(tmp_path / "sieve"), max_scripts=5, max_script_size=100)
    store.put(ALICE, name, "keep;\r\n")
    store.put(ALICE, "short", "discard;\r\n")
    store.set_active(ALICE, name)
    assert all(len(f.encode()) <= 200 for f in os.listdir(store.user_directory(ALICE)))
    assert [(s.name, s.active) for s in store.list(ALICE)] == sorted(
        [(name, True), ("short", False)]
    )
    assert store.get(ALICE, name) == "keep;\r\n"
    assert store.active_script(ALICE)[0] == name
    store.set_active(ALICE, "short")
    store.rename(ALICE, name, name[:-1] + "z")
    assert {s.name for s in store.list(ALICE)} == {name[:-1] + "z", "short"}
    store.rename(ALICE, "short", name)
    assert store.active_name(ALICE) == name
    store.set_active(ALICE, None)
    store.delete(ALICE, name)
    store.delete(ALICE, name[:-1] + "z")
    assert store.list(ALICE) == []
    assert os.listdir(store.user_directory(ALICE)) == []  # no name file left behind


def test_a_name_with_a_trailing_space_is_another_script(store):
    """The active marker is read as written: "x " activated "x" (and "x " could then be
    deleted while "x" was the one running)."""
    store.put(ALICE, "x", "discard;\r\n")
    store.put(ALICE, "x ", "keep;\r\n")
    store.set_active(ALICE, "x ")
    assert store.active_name(ALICE) == "x "
    assert store.active_script(ALICE)[1].commands[0].name == "keep"
    assert [(s.name, s.active) for s in store.list(ALICE)] == [("x", False), ("x ", True)]
    with pytest.raises(ScriptError):
        store.delete(ALICE, "x ")
    store.delete(ALICE, "x")
