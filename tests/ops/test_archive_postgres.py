"""Export and import with ``[store] backend = "postgres"``: Sieve scripts go into and come out
of the shared ``sieve_scripts`` table (``sieve/shared.py``), METADATA and ACLs the database's
rows. A user moves from a Maildir server to a PostgreSQL one and back, and keeps them
(skipped without PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from tests.ops.test_archive_sieve import ALICE, data_directory
from tests.support.pigeonhole import DOVECOT_ONLY, FILING
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.cli import main
from txmailhost.config import load_config
from txmailhost.ops.mailbox_admin import open_store, result_of
from txmailhost.sieve.setup import script_store
from txmailhost.sieve.shared import SharedScriptStore


def test_a_user_moves_to_a_postgres_server_and_back_with_scripts_metadata_and_acls(
    tmp_path: Path,
    postgres_dsn: str,  # noqa: F811
) -> None:
    maildir = data_directory(tmp_path / "maildir")
    password = tmp_path / "password"
    password.write_text("a-password-9\n")
    assert main(["--data", maildir, "user", "add", ALICE, "--password-file",
                 str(password)]) == 0  # fmt: skip
    config = load_config(maildir, None)
    scripts, store = script_store(config), open_store(config)
    scripts.put(ALICE, "rules", FILING)
    scripts.put(ALICE, "old", DOVECOT_ONLY, check=False)
    scripts.set_active(ALICE, "rules")
    result_of(store.set_metadata(ALICE, "INBOX", {"/private/comment": b"\x00 mine"}))
    result_of(store.set_acl(ALICE, "INBOX", "anyone", "lr"))
    assert main(["--data", maildir, "export", ALICE, str(tmp_path / "one")]) == 0

    postgres = data_directory(tmp_path / "postgres")
    toml = Path(postgres, "txmailhost.toml")
    toml.write_text(
        toml.read_text().replace(
            '# backend = "maildir"', f'backend = "postgres"\ndsn = "{postgres_dsn}"', 1
        )  # fmt: skip
    )
    assert main(["--data", postgres, "import", str(tmp_path / "one")]) == 0
    pg_config = load_config(postgres, None)
    shared = script_store(pg_config)
    assert isinstance(shared, SharedScriptStore)
    assert [(i.name, i.active) for i in shared.list(ALICE)] == [("old", False), ("rules", True)]
    assert shared.get(ALICE, "old") == DOVECOT_ONLY
    pg_store = open_store(pg_config)
    assert result_of(pg_store.get_metadata(ALICE, "INBOX")) == {"/private/comment": b"\x00 mine"}
    assert result_of(pg_store.get_acl(ALICE, "INBOX")) == {"anyone": "lr"}

    assert main(["--data", postgres, "export", ALICE, str(tmp_path / "two")]) == 0
    back = data_directory(tmp_path / "back")
    assert main(["--data", back, "import", str(tmp_path / "two")]) == 0
    again = script_store(load_config(back, None))
    assert {i.name: again.get(ALICE, i.name) for i in again.list(ALICE)} == {
        "old": DOVECOT_ONLY,
        "rules": FILING,
    }
    assert again.active_name(ALICE) == "rules"
    back_store = open_store(load_config(back, None))
    assert result_of(back_store.get_acl(ALICE, "INBOX")) == {"anyone": "lr"}
