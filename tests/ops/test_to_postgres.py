"""``txmailhost migrate maildir-to-postgres`` in process: what it keeps, that a re-run finds
everything done, and that its verify step notices a difference (skipped without PostgreSQL)."""

from __future__ import annotations

import sqlite3

import psycopg

from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.cli import main
from txmailhost.config import load_config
from txmailhost.ops.mailbox_admin import result_of
from txmailhost.store import backends
from txmailhost.store.interfaces import MessageSource

ALICE = "alice@example.test"


def installation(tmp_path) -> tuple[str, list]:
    """A data directory with one user and an INBOX holding UIDs 1 and 3 (2 expunged)."""
    data = str(tmp_path / "data")
    password = tmp_path / "pw"
    password.write_text("a-long-password-1\n")
    assert main(["--data", data, "init", "--hostname", "mx.example.test"]) == 0
    assert main(["--data", data, "domain", "add", "example.test"]) == 0
    assert main(["--data", data, "user", "add", ALICE, "--password-file", str(password)]) == 0
    config = load_config(data, None)
    store = backends.build("maildir", config.mail_root)
    inbox = result_of(store.open(ALICE, "INBOX"))
    for n, flags in enumerate((["\\Seen", "$Label1"], [], ["\\Flagged"])):
        source = MessageSource.from_bytes(b"Subject: %d\r\n\r\nbody\r\n" % n)
        result_of(inbox.append(source, flags, 1_600_000_000 + n))
    result_of(inbox.expunge([2]))
    snapshot = result_of(inbox.snapshot())
    return data, [snapshot.uidvalidity, [(m.uid, sorted(m.flags)) for m in snapshot.messages]]


def rerun_copies_nothing_and_verify_notices(
    argv: list[str], capsys, progress: str, tamper: list[str], mismatches: list[str]
) -> None:
    """A second run prints no ``progress`` line (nothing copied again); after ``tamper``
    (SQL on the database), ``--verify-only`` fails naming each of ``mismatches``."""
    assert main(argv) == 0
    assert progress not in capsys.readouterr().out
    with psycopg.connect(argv[argv.index("--dsn") + 1]) as conn:
        for statement in tamper:
            conn.execute(statement)
    assert main([*argv, "--verify-only"]) == 1
    out = capsys.readouterr().out
    for mismatch in mismatches:
        assert f"MISMATCH: {mismatch}" in out


def test_mail_keeps_its_uids_and_a_rerun_copies_nothing(tmp_path, postgres_dsn, capsys):  # noqa: F811
    data, (uidvalidity, messages) = installation(tmp_path)
    assert messages == [(1, ["$Label1", "\\Seen"]), (3, ["\\Flagged"])]
    assert main(["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]) == 0
    out = capsys.readouterr().out
    assert f"mail: {ALICE}/INBOX: 2 message(s), UIDVALIDITY {uidvalidity}" in out
    assert "verified:" in out
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT m.uid, m.flags, b.uidvalidity, b.uidnext FROM messages m"
            " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = 'INBOX' ORDER BY uid"
        ).fetchall()
        assert [(r[0], sorted(r[1])) for r in rows] == messages
        assert {(r[2], r[3]) for r in rows} == {(uidvalidity, 4)}
        (copied,) = conn.execute("SELECT password_hash FROM users").fetchone()
    with sqlite3.connect(f"{data}/accounts.sqlite") as db:
        assert db.execute("SELECT password_hash FROM users").fetchone() == (copied,)
    with psycopg.connect(postgres_dsn) as conn:
        # a mailbox made later still gets a greater UIDVALIDITY (RFC 3501 2.3.1.1)
        (later,) = conn.execute("SELECT nextval('uidvalidity_seq')").fetchone()
        assert later > uidvalidity
    assert main(["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]) == 0
    again = capsys.readouterr().out
    assert "in the database already, skipped" in again and "message(s)" not in again


def test_verify_reports_a_difference_and_fails(tmp_path, postgres_dsn, capsys):  # noqa: F811
    data, _ = installation(tmp_path)
    assert main(["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]) == 0
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("UPDATE messages SET flags = '{}' WHERE uid = 3")
    capsys.readouterr()
    verify = ["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]
    assert main([*verify, "--verify-only"]) == 1
    assert f"MISMATCH: {ALICE}/INBOX: messages differ" in capsys.readouterr().out


def test_verify_only_before_copying_finds_everything_missing(tmp_path, postgres_dsn, capsys):  # noqa: F811
    data, _ = installation(tmp_path)
    argv = ["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]
    assert main([*argv, "--verify-only"]) == 1
    assert f"MISMATCH: account {ALICE} is not in the database" in capsys.readouterr().out


def test_srs_dkim_keys_sieve_scripts_and_running_vacations_move_into_the_database(
    tmp_path,
    postgres_dsn,  # noqa: F811
    capsys,
):
    """What a PostgreSQL store keeps in the database and one node kept in DATA: the SRS keys
    (the file's first one still signs), the DKIM keys (the same key signs), the scripts with
    the active mark, and the vacation replies still running, so no sender is answered again
    after the move."""
    from txmailhost.sieve.scripts import ScriptStore
    from txmailhost.sieve.shared import SharedResponseLog, SharedScriptStore
    from txmailhost.sieve.vacation import ResponseLog
    from txmailhost.srs import SRS, Keys, SharedKeys
    from txmailhost.store.pgstate import SharedState

    data, _ = installation(tmp_path)
    keys = Keys(f"{data}/srs/keys")
    keys.load()
    keys.rotate()  # two keys; the first line signs
    before = SRS("fwd.example.test", keys).forward("carol@far.test").rpartition("@")[0]
    files = ScriptStore(f"{data}/sieve")
    files.put(ALICE, "main", 'require "vacation";\r\nvacation "Away.";\r\n')
    files.put(ALICE, "spare", "keep;\r\n")
    files.set_active(ALICE, "main")
    assert ResponseLog().claim(files.user_directory(ALICE), "bob@far.test", "h", 86400)

    assert main(["--data", data, "dkim", "init", "example.test"]) == 0
    capsys.readouterr()

    argv = ["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]
    assert main(argv) == 0
    assert (
        "SRS keys and Sieve: {'srs_keys': 2, 'dkim_selectors': 1, 'scripts': 2, 'vacation': 1}"
        in capsys.readouterr().out
    )
    state = SharedState(postgres_dsn)
    try:
        shared = SRS("fwd.example.test", SharedKeys(state))
        assert shared.reverse(before) == "carol@far.test"
        assert shared.forward("carol@far.test").rpartition("@")[0] == before  # same signer
        scripts = SharedScriptStore(state, f"{data}/sieve")
        assert [(s.name, s.active) for s in scripts.list(ALICE)] == [
            ("main", True),
            ("spare", False),
        ]
        assert not SharedResponseLog(state).claim(ALICE, "bob@far.test", "h", 86400)
        from txmailhost.mailauth.keys import KeyStore
        from txmailhost.mailauth.sharedkeys import SharedKeyStore

        assert SharedKeyStore(state).keys("example.test") == KeyStore(f"{data}/dkim").keys(
            "example.test"
        )
        assert main(argv) == 0
        again = capsys.readouterr().out
        assert "'srs_keys': 0, 'dkim_selectors': 0, 'scripts': 0, 'vacation': 0" in again
        state.rows("UPDATE sieve_scripts SET script = 'stop;' WHERE name = 'spare'")
        assert main([*argv, "--verify-only"]) == 1
        assert f"MISMATCH: {ALICE}: Sieve script 'spare'" in capsys.readouterr().out
    finally:
        state.close()


def test_metadata_entries_move_into_the_database_once_and_are_verified(
    tmp_path,
    postgres_dsn,  # noqa: F811
    capsys,
):
    """The Maildir's METADATA files (the account's, INBOX's, a folder's; a binary value)
    become rows the PostgreSQL store serves; a re-run writes none again; a value changed in
    the database is a mismatch."""
    from txmailhost.store.postgres import PostgresStore

    data, _ = installation(tmp_path)
    maildir = backends.build("maildir", load_config(data, None).mail_root)
    result_of(maildir.create_mailbox(ALICE, "Projects"))
    result_of(maildir.set_metadata(ALICE, None, {"/private/comment": b"\x00\xffserver"}))
    result_of(maildir.set_metadata(ALICE, "INBOX", {"/shared/comment": b"inbox"}))
    result_of(maildir.set_metadata(ALICE, "Projects", {"/private/vendor/x/color": b"red"}))
    argv = ["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"metadata: {ALICE}: 3 METADATA entries" in out and "verified:" in out
    store = PostgresStore(postgres_dsn, None, None, migrate=False)
    try:
        assert result_of(store.get_metadata(ALICE, None)) == {"/private/comment": b"\x00\xffserver"}
        assert result_of(store.get_metadata(ALICE, "INBOX")) == {"/shared/comment": b"inbox"}
        assert result_of(store.get_metadata(ALICE, "Projects")) == {
            "/private/vendor/x/color": b"red"
        }
    finally:
        store.close()
    rerun_copies_nothing_and_verify_notices(
        argv,
        capsys,
        "metadata:",
        [
            "UPDATE mailbox_metadata SET value = 'blue' WHERE entry LIKE '%color'",
            "DELETE FROM server_metadata",
        ],
        [
            f"{ALICE}/Projects: METADATA entries differ: /private/vendor/x/color",
            f"{ALICE} (server entries): METADATA entries differ: /private/comment",
        ],
    )


def test_access_rights_move_into_the_database_once_and_are_verified(
    tmp_path,
    postgres_dsn,  # noqa: F811
    capsys,
):
    """What a user's mailboxes grant others (a user, ``anyone``) is granted by the database
    after the move, so shared folders stay shared; a re-run grants nothing again; a grant
    changed or lost in the database is a mismatch."""
    from txmailhost.store.postgres import PostgresStore

    data, _ = installation(tmp_path)
    maildir = backends.build("maildir", load_config(data, None).mail_root)
    result_of(maildir.create_mailbox(ALICE, "Team"))
    result_of(maildir.set_acl(ALICE, "Team", "bob@example.test", "lrswi"))
    result_of(maildir.set_acl(ALICE, "Team", "anyone", "lr"))
    result_of(maildir.set_acl(ALICE, "INBOX", "carol@example.test", "lrs"))
    argv = ["--data", data, "migrate", "maildir-to-postgres", "--dsn", postgres_dsn]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"acl: {ALICE}: 3 access rights" in out and "verified:" in out
    store = PostgresStore(postgres_dsn, None, None, migrate=False)
    try:
        assert result_of(store.get_acl(ALICE, "Team")) == {
            "bob@example.test": "lrswi",
            "anyone": "lr",
        }
        assert result_of(store.get_acl(ALICE, "INBOX")) == {"carol@example.test": "lrs"}
        shared = result_of(store.shared_with(["bob@example.test"]))
        assert shared, "the database's index of shared mailboxes doesn't name Team for bob"
    finally:
        store.close()
    rerun_copies_nothing_and_verify_notices(
        argv,
        capsys,
        "acl:",
        [
            "UPDATE mailbox_acl SET rights = 'l' WHERE identifier = 'anyone'",
            "DELETE FROM mailbox_acl WHERE identifier = 'carol@example.test'",
        ],
        [
            f"{ALICE}/Team: access rights differ: anyone",
            f"{ALICE}/INBOX: access rights differ: carol@example.test",
        ],
    )
