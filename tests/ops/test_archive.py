"""``txmailhost import`` reads only what ``export`` writes: the paths its JSON names must be
export's own names, under the export directory, and regular files; anything else is refused
before anything is imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from txmailhost.cli import main
from txmailhost.ops.mailbox_admin import result_of
from txmailhost.store.interfaces import MessageSource
from txmailhost.store.maildir import MaildirStore

ALICE, IMP = "alice@example.test", "imp@example.test"


class Exported:
    """A data directory whose alice has two messages, exported to ``export``."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = str(tmp_path / "data")
        self.export = tmp_path / "export"
        self.secret = tmp_path / "shadow"
        self.secret.write_bytes(b"root:$6$secret:19000::::::\n")
        password = tmp_path / "password"
        password.write_text("a-password-9\n")
        assert main(["--data", self.data, "init", "--hostname", "mx.example.test"]) == 0
        assert main(["--data", self.data, "domain", "add", "example.test"]) == 0
        assert main(["--data", self.data, "user", "add", ALICE, "--password-file",
                     str(password)]) == 0  # fmt: skip
        inbox = result_of(self.store().open(ALICE, "INBOX"))
        for n in (1, 2):
            result_of(inbox.append(MessageSource.from_bytes(b"Subject: %d\r\n\r\n" % n), [], None))
        assert main(["--data", self.data, "export", ALICE, str(self.export)]) == 0

    def store(self) -> MaildirStore:
        return MaildirStore(os.path.join(self.data, "mail"))

    @property
    def mailboxes_json(self) -> Path:
        return self.export / ALICE / "mailboxes.json"

    def edit_mailboxes(self, change) -> None:
        mailboxes = json.loads(self.mailboxes_json.read_text())
        change(next(box for box in mailboxes if box["name"] == "INBOX"))
        self.mailboxes_json.write_text(json.dumps(mailboxes))

    def run_import(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--data", self.data, "import", IMP, str(self.export)])
        return code, capsys.readouterr().err

    def refused(self, capsys: pytest.CaptureFixture[str]) -> str:
        """``import`` fails (exit 1) with nothing made, not even the account; its stderr."""
        code, err = self.run_import(capsys)
        assert code == 1, err
        assert self.imported() == []
        assert IMP not in self.users(capsys)
        return err

    def users(self, capsys: pytest.CaptureFixture[str]) -> str:
        capsys.readouterr()
        assert main(["--data", self.data, "user", "list"]) == 0
        return capsys.readouterr().out

    def imported(self) -> list[bytes]:
        """imp's INBOX, if imp exists at all."""
        store = self.store()
        if not os.path.isdir(os.path.join(self.data, "mail", "example.test", "imp")):
            return []
        inbox = result_of(store.open(IMP, "INBOX"))
        return [
            result_of(inbox.open_message(m.uid)).read()
            for m in result_of(inbox.snapshot()).messages
        ]


@pytest.fixture
def exported(tmp_path: Path) -> Exported:
    return Exported(tmp_path)


@pytest.mark.parametrize("name", ["../../../../../../../../etc/hostname", "/etc/hostname"])
def test_a_message_file_that_is_a_path_is_refused_and_nothing_imported(
    exported: Exported, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """It was read: ``import`` put /etc/shadow into the importing user's mailbox (rc 0)."""
    exported.edit_mailboxes(lambda box: box["messages"][1].update(file=name))
    err = exported.refused(capsys)
    assert f"{exported.export}/{ALICE}/mail/0001: {name!r} is not a name export writes" in err


def test_a_message_file_that_is_a_link_is_refused(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    message = exported.export / ALICE / "mail" / "0001" / "2.eml"
    message.unlink()
    message.symlink_to(exported.secret)
    code, err = exported.run_import(capsys)
    assert code == 1
    assert f"{message}: leads out of {exported.export}" in err
    (exported.export / "2.eml").write_bytes(b"Subject: in the export, but a link\r\n\r\n")
    message.unlink()
    message.symlink_to(exported.export / "2.eml")
    code, err = exported.run_import(capsys)
    assert code == 1 and f"{message}: a symbolic link (not followed)" in err
    assert exported.imported() == []


def test_a_mailbox_directory_or_user_that_leads_elsewhere_is_refused(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "0001").mkdir(parents=True)
    (elsewhere / "0001" / "1.eml").write_bytes(b"Subject: not from the export\r\n\r\n")
    exported.edit_mailboxes(lambda box: box.update(directory="../../../elsewhere/0001"))
    code, err = exported.run_import(capsys)
    assert code == 1 and "'../../../elsewhere/0001' is not a name export writes" in err
    exported.edit_mailboxes(lambda box: box.update(directory="0009"))
    (exported.export / ALICE / "mail" / "0009").symlink_to(elsewhere / "0001")
    code, err = exported.run_import(capsys)
    assert code == 1 and f"{exported.export}/{ALICE}/mail/0009: leads out of" in err
    manifest = exported.export / "txmailhost-export.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(record, users=["../elsewhere"])))
    code, err = exported.run_import(capsys)
    assert code == 1 and "'../elsewhere' is not a name export writes" in err
    assert exported.imported() == []


def test_numbers_imap_cant_serve_are_refused_before_anything_is_imported(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    exported.edit_mailboxes(lambda box: box.update(uidnext=2**32 + 3))
    err = exported.refused(capsys)
    assert "mailboxes.json: mailbox 'INBOX': UIDNEXT 4294967299 is not a number" in err


def test_an_untouched_export_imports(exported: Exported, capsys) -> None:
    code, err = exported.run_import(capsys)
    assert code == 0, err
    assert exported.imported() == [b"Subject: 1\r\n\r\n", b"Subject: 2\r\n\r\n"]


@pytest.mark.parametrize("where", ["cur", "data", "link"])
def test_an_export_into_the_data_directory_is_refused_and_nothing_written(
    exported: Exported, tmp_path: Path, capsys, where: str
) -> None:
    """Into alice's (empty) ``cur/`` the manifest became a message of hers; anywhere under
    DATA the password hashes lay where the server (and its backups) keep their files."""
    cur = Path(exported.data, "mail", "example.test", "alice", "cur")
    dest = {"cur": cur, "data": Path(exported.data, "exports", "today"),
            "link": tmp_path / "link"}[where]  # fmt: skip
    if where == "link":
        dest.symlink_to(cur)
    before = sorted(os.listdir(exported.data))
    capsys.readouterr()
    assert main(["--data", exported.data, "export", ALICE, str(dest)]) == 1
    assert capsys.readouterr().err == (
        f"txmailhost: error: {dest} is inside {exported.data}: put the export outside the "
        "server's data directory\n"
    )
    assert sorted(os.listdir(exported.data)) == before
    assert os.listdir(cur) == []
    inbox = result_of(exported.store().open(ALICE, "INBOX"))
    assert len(result_of(inbox.snapshot()).messages) == 2


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["c\r\n* BYE"], "UID 1: 'c\\r\\n* BYE' is not an IMAP flag"),
        (["(x"], "UID 1: '(x' is not an IMAP flag"),
        (["a b"], "UID 1: 'a b' is not an IMAP flag"),
        (["\\Bogus"], "UID 1: '\\\\Bogus' is not an IMAP flag"),
        ("abc", "the flags of UID 1 are not a list"),
    ],
)
def test_flags_imap_cant_carry_are_refused_before_anything_is_imported(
    exported: Exported, capsys: pytest.CaptureFixture[str], flags: object, problem: str
) -> None:
    """A flag was written as it was into ``FETCH FLAGS`` and ``* FLAGS``: ``c\\r\\n* BYE``
    put a line of the export's making into the client's session."""
    exported.edit_mailboxes(lambda box: box["messages"][0].update(flags=flags))
    err = exported.refused(capsys)
    assert problem in err and err.count("\n") == 1


@pytest.mark.parametrize("date", ["yesterday", 1e300, -1e12])
def test_an_internaldate_outside_imaps_years_is_refused_before_anything_is_imported(
    exported: Exported, capsys: pytest.CaptureFixture[str], date: object
) -> None:
    exported.edit_mailboxes(lambda box: box["messages"][0].update(internaldate=date))
    err = exported.refused(capsys)
    assert f"UID 1: INTERNALDATE {date!r} is not a time in the years 1 to 9999" in err


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../x", "invalid mailbox name: '../../x'"),
        ("a\x00b", "invalid mailbox name: 'a\\x00b'"),
        (5, "5 is not a mailbox name"),
    ],
)
def test_a_mailbox_name_the_store_refuses_is_refused_before_the_account_is_made(
    exported: Exported, capsys: pytest.CaptureFixture[str], name: object, problem: str
) -> None:
    """The account was made, the mailboxes before it restored, then "unexpected
    InvalidMailboxName"."""
    mailboxes = json.loads(exported.mailboxes_json.read_text())
    mailboxes[-1]["name"] = name
    exported.mailboxes_json.write_text(json.dumps(mailboxes))
    err = exported.refused(capsys)
    assert err == f"txmailhost: error: {exported.mailboxes_json}: {problem}\n"


@pytest.mark.parametrize("version", ["2", None, 1.5, True])
def test_a_manifest_version_that_is_no_number_is_one_line_naming_it(
    exported: Exported, capsys: pytest.CaptureFixture[str], version: object
) -> None:
    """It was "unexpected TypeError: '>' not supported between 'str' and 'int'"."""
    manifest = exported.export / "txmailhost-export.json"
    document = json.loads(manifest.read_text())
    document["version"] = version
    manifest.write_text(json.dumps(document))
    code, err = exported.run_import(capsys)
    assert code == 1
    assert err == (
        f"txmailhost: error: {manifest}: export format {version!r} is not a version number\n"
    )
    assert IMP not in exported.users(capsys)


def test_only_aliases_leading_to_the_imported_user_are_restored(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """export writes the aliases that lead to the user; one that leads elsewhere came from
    editing, and importing alice's backup made postmaster@ an outsider's."""
    account = exported.export / ALICE / "account.json"
    record = json.loads(account.read_text())
    record["aliases"] = [
        ["info@example.test", [ALICE, "bob@elsewhere.test"]],
        ["postmaster@example.test", ["thief@elsewhere.test"]],
        ["sales@example.test", "not a list"],
        "junk",
    ]
    account.write_text(json.dumps(record))
    code, err = exported.run_import(capsys)
    assert code == 0, err
    capsys.readouterr()
    assert main(["--data", exported.data, "alias", "list"]) == 0
    assert capsys.readouterr().out == f"info@example.test -> bob@elsewhere.test, {IMP}\n"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"quota": -5}, "quota -5 is not a number of bytes from 1 to 9223372036854775807"),
        ({"quota": 10**30}, f"quota {10**30} is not a number of bytes from 1 to"),
        ({"forward": [1]}, "forward is not an object with a list of targets"),
        (
            {"forward": {"targets": ["x\r\ny@elsewhere.test"]}},
            "forward target 'x\\r\\ny@elsewhere.test' is not an address",
        ),
        ({"password_hash": 5}, "password_hash 5 is not a string"),
    ],
)
def test_account_values_the_accounts_refuse_are_refused_before_the_account_is_made(
    exported: Exported, capsys: pytest.CaptureFixture[str], change: dict, problem: str
) -> None:
    """The account was made, then the quota or the forward failed ("unexpected
    OverflowError" for a quota past 2^63-1): an account with no mail, exit 1."""
    account = exported.export / ALICE / "account.json"
    account.write_text(json.dumps({**json.loads(account.read_text()), **change}))
    err = exported.refused(capsys)
    assert err.startswith(f"txmailhost: error: {account}: {problem}") and err.count("\n") == 1


def test_an_account_whose_forward_fails_is_not_left_half_made(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    account = exported.export / ALICE / "account.json"
    record = json.loads(account.read_text())
    record["forward"] = {"targets": [IMP], "keep_copy": True}  # to itself, once imported
    account.write_text(json.dumps(record))
    code, err = exported.run_import(capsys)
    assert code == 1
    assert "can't forward to their own address" in err
    assert IMP not in exported.users(capsys)


def test_a_date_stored_outside_imaps_years_is_exported_as_imap_sends_it_and_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """APPEND once stored years past 9999; such a message must not make its own server's
    backup one that import refuses."""
    exported = Exported(tmp_path)
    inbox = result_of(exported.store().open(ALICE, "INBOX"))
    result_of(inbox.append(MessageSource.from_bytes(b"Subject: 3\r\n\r\n"), [], 1e13))
    again = tmp_path / "again"
    assert main(["--data", exported.data, "export", ALICE, str(again)]) == 0
    exported.export = again
    code, err = exported.run_import(capsys)
    assert code == 0, err
    dates = sorted(m.internaldate for m in result_of(
        result_of(exported.store().open(IMP, "INBOX")).snapshot()).messages)  # fmt: skip
    assert dates[-1] == 253402300799  # 31-Dec-9999 23:59:59 +0000


def test_a_stored_flag_imap_cant_carry_is_left_out_of_the_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One a restore took before flags were checked: the server's own backup must import."""
    exported = Exported(tmp_path)
    inbox = result_of(exported.store().open(ALICE, "INBOX"))
    flags = ["\\Seen", "$Work", "(x", "c]"]
    result_of(inbox.append(MessageSource.from_bytes(b"Subject: 3\r\n\r\n"), flags, None))
    again = tmp_path / "again"
    assert main(["--data", exported.data, "export", ALICE, str(again)]) == 0
    exported.export = again
    code, err = exported.run_import(capsys)
    assert code == 0, err
    messages = result_of(result_of(exported.store().open(IMP, "INBOX")).snapshot()).messages
    assert sorted(messages[-1].flags) == ["$Work", "\\Seen"]


def test_json_nested_past_the_parsers_depth_is_one_line(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was "unexpected RecursionError"."""
    exported.mailboxes_json.write_text("[" * 100_000 + "]" * 100_000)
    code, err = exported.run_import(capsys)
    assert code == 1
    assert (
        err == f"txmailhost: error: {exported.mailboxes_json}: not valid JSON (nested too deeply)\n"
    )
    assert IMP not in exported.users(capsys)


def test_a_huge_user_name_in_the_manifest_is_named_in_a_short_line(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = exported.export / "txmailhost-export.json"
    document = json.loads(manifest.read_text())
    document["users"] = ["../" * 1_000_000]
    manifest.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["--data", exported.data, "import", str(exported.export)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"txmailhost: error: {exported.export}: '{'../' * 26}.... is not a name export writes\n"
    )
