"""``export`` keeps the METADATA entries (RFC 5464) of a user's mailboxes and account and the
ACLs (RFC 4314) of their mailboxes; ``import`` restores those the mailbox hasn't here, and
refuses names, values and rights SETMETADATA and SETACL would refuse before anything is
imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ops.test_archive_sieve import ALICE, data_directory
from txmailhost.cli import main
from txmailhost.ops.mailbox_admin import result_of
from txmailhost.store.maildir import MaildirStore

BOB = "bob@example.test"
INBOX_ENTRIES = {"/private/comment": b"my inbox", "/shared/vendor/x": b"\x00\xff binary"}
ACCOUNT_ENTRIES = {"/private/vendor/client/setting": b"on"}


def store_of(data: str) -> MaildirStore:
    return MaildirStore(os.path.join(data, "mail"))


class Exported:
    """alice with METADATA on INBOX and on the account and INBOX shared with bob (``lrs``),
    exported to ``export``; ``fresh`` another server's data directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = data_directory(tmp_path / "data")
        self.password = tmp_path / "password"
        self.password.write_text("a-password-9\n")
        for user in (ALICE, BOB):
            assert main(["--data", self.data, "user", "add", user, "--password-file",
                         str(self.password)]) == 0  # fmt: skip
        store = store_of(self.data)
        result_of(store.set_metadata(ALICE, "INBOX", dict(INBOX_ENTRIES)))
        result_of(store.set_metadata(ALICE, None, dict(ACCOUNT_ENTRIES)))
        result_of(store.set_acl(ALICE, "INBOX", BOB, "lrs"))
        self.export = tmp_path / "export"
        assert main(["--data", self.data, "export", ALICE, str(self.export)]) == 0
        self.fresh = data_directory(tmp_path / "fresh")

    @property
    def mailboxes_json(self) -> Path:
        return self.export / ALICE / "mailboxes.json"

    def edit_inbox(self, change) -> None:
        mailboxes = json.loads(self.mailboxes_json.read_text())
        change(next(box for box in mailboxes if box["name"] == "INBOX"))
        self.mailboxes_json.write_text(json.dumps(mailboxes))

    def run_import(self, capsys, *user: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--data", self.fresh, "import", *user, str(self.export)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def exported(tmp_path: Path) -> Exported:
    return Exported(tmp_path)


def test_metadata_and_acls_come_back_on_another_server(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were not exported: the mailbox's comment, the client's settings and the sharing
    with bob were gone after a restore."""
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    store = store_of(exported.fresh)
    assert result_of(store.get_metadata(ALICE, "INBOX")) == INBOX_ENTRIES
    assert result_of(store.get_metadata(ALICE, None)) == ACCOUNT_ENTRIES
    assert result_of(store.get_acl(ALICE, "INBOX")) == {BOB: "lrs"}
    assert "  INBOX: 2 METADATA entr(ies), ACL entries for 1 identifier(s)\n" in out
    assert "  account: 1 METADATA entr(ies)\n" in out


def test_what_the_mailbox_has_here_is_kept_and_the_owner_gets_no_acl_entry(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """Imported as bob: the entry that shared alice's INBOX with bob is bob's own mailbox's
    now, and the owner's rights are never an ACL entry."""
    assert main(["--data", exported.fresh, "user", "add", BOB, "--password-file",
                 str(exported.password)]) == 0  # fmt: skip
    store = store_of(exported.fresh)
    result_of(store.set_metadata(BOB, "INBOX", {"/private/comment": b"bob's own"}))
    code, out, err = exported.run_import(capsys, BOB)
    assert code == 0, err
    assert result_of(store.get_metadata(BOB, "INBOX")) == {
        "/private/comment": b"bob's own",
        "/shared/vendor/x": b"\x00\xff binary",
    }
    assert result_of(store.get_acl(BOB, "INBOX")) == {}
    assert "  INBOX: 1 METADATA entr(ies), 1 METADATA entr(ies) kept as they are here\n" in out


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"metadata": {"/private/a*": "x"}}, "'/private/a*' is not a METADATA entry name"),
        ({"metadata": {"/other/x": "x"}}, "'/other/x' is not a METADATA entry name"),
        ({"metadata": {"/private": "x"}}, "'/private' is not a METADATA entry name"),
        ({"metadata": {"/private/x": "a" * 16385}},
         "the value of /private/x is not a string or {\"base64\": ...} of at most 16384"),
        ({"metadata": {"/private/x": {"base64": "not base64!"}}}, "the value of /private/x"),
        ({"metadata": {"/private/x": 5}}, "the value of /private/x"),
        ({"metadata": {f"/private/x{n}": "" for n in range(101)}},
         "metadata is not an object of at most 100 entries"),
        ({"metadata": ["/private/x"]}, "metadata is not an object"),
        ({"acl": {"bob": "lrs"}}, "acl entry 'bob': an identifier is anyone or a user's address"),
        ({"acl": {BOB: "lrZ"}}, f"acl entry '{BOB}': uppercase rights are not allowed"),
        ({"acl": {BOB: 5}}, f"acl entry '{BOB}': rights 5 are not a string"),
        ({"acl": [BOB]}, "acl is not an object"),
    ],
)  # fmt: skip
def test_values_setmetadata_and_setacl_refuse_are_refused_with_nothing_made(
    exported: Exported, capsys: pytest.CaptureFixture[str], change: dict, problem: str
) -> None:
    exported.edit_inbox(lambda box: box.update(change))
    code, _out, err = exported.run_import(capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert f"{exported.mailboxes_json}: mailbox 'INBOX': {problem}" in err
    capsys.readouterr()
    assert main(["--data", exported.fresh, "user", "list"]) == 0
    assert ALICE not in capsys.readouterr().out


def test_an_account_metadata_entry_export_doesnt_write_is_refused(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    account = exported.export / ALICE / "account.json"
    record = json.loads(account.read_text())
    record["metadata"] = {"/shared/x\r\n": "y"}
    account.write_text(json.dumps(record))
    code, _out, err = exported.run_import(capsys)
    assert code == 1
    assert f"{account}: '/shared/x\\r\\n' is not a METADATA entry name" in err
