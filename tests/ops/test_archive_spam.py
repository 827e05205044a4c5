"""``export`` keeps a user's own spam settings (Junk threshold, allowed and blocked senders);
``import`` restores them where the user has none here and refuses values the ``spam``
commands would refuse before anything is imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ops.test_archive_sieve import ALICE, data_directory
from txmailhost.cli import main
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.scoring import store_path


def settings(data: str) -> tuple[float | None, list[tuple[str, str]]]:
    store = TokenStore(store_path(data))
    try:
        return store.threshold(ALICE), store.senders(ALICE)
    finally:
        store.close()


class Exported:
    """alice with a threshold of 3.5, ``Boss@Example.org`` allowed and ``@spam.example``
    blocked, exported to ``export``; ``fresh`` another server's data directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data = data_directory(tmp_path / "data")
        self.password = tmp_path / "password"
        self.password.write_text("a-password-9\n")
        assert main(["--data", self.data, "user", "add", ALICE, "--password-file",
                     str(self.password)]) == 0  # fmt: skip
        self.spam("threshold", "--user", ALICE, "3.5")
        self.spam("allow", "--user", ALICE, "Boss@Example.org")
        self.spam("block", "--user", ALICE, "@spam.example")
        self.export = tmp_path / "export"
        assert main(["--data", self.data, "export", ALICE, str(self.export)]) == 0
        self.fresh = data_directory(tmp_path / "fresh")

    def spam(self, *args: str, data: str | None = None) -> None:
        assert main(["--data", data or self.data, "spam", *args]) == 0

    @property
    def account_json(self) -> Path:
        return self.export / ALICE / "account.json"

    def run_import(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--data", self.fresh, "import", str(self.export)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def exported(tmp_path: Path) -> Exported:
    return Exported(tmp_path)


def test_the_threshold_and_the_sender_lists_come_back_on_another_server(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were not exported: mail from the boss went to Junk again after a restore."""
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    assert settings(exported.fresh) == (
        3.5,
        [("@spam.example", "block"), ("boss@example.org", "allow")],
    )
    assert "  spam: Junk threshold 3.5, 2 sender(s) allowed or blocked\n" in out


def test_settings_the_user_has_here_are_kept_and_reported(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", exported.fresh, "user", "add", ALICE, "--password-file",
                 str(exported.password)]) == 0  # fmt: skip
    exported.spam("threshold", "--user", ALICE, "5", data=exported.fresh)
    exported.spam("allow", "--user", ALICE, "@spam.example", data=exported.fresh)
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    assert settings(exported.fresh) == (
        5.0,
        [("@spam.example", "allow"), ("boss@example.org", "allow")],
    )
    assert (
        "  spam: Junk threshold 5 kept (the export's differs), 1 sender(s) allowed or "
        "blocked, 1 sender(s) kept as listed here (the export lists them the other way)\n"
    ) in out


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"threshold": float("nan")}, "spam threshold nan is not a score from -100 to 100"),
        ({"threshold": 1e9}, "spam threshold 1000000000.0 is not a score from -100 to 100"),
        ({"threshold": True}, "spam threshold True is not a score"),
        ({"threshold": "3"}, "spam threshold '3' is not a score"),
        ({"senders": [["x\r\ny@spam.example", "allow"]]},
         "spam sender ['x\\r\\ny@spam.example', 'allow'] is not an address or @domain"),
        ({"senders": [["a@b.example", "maybe"]]}, "spam sender ['a@b.example', 'maybe'] is not"),
        ({"senders": ["a@b.example"]}, "spam sender 'a@b.example' is not"),
        ({"senders": "a@b.example"}, "spam is not an object with a list of senders"),
    ],
)  # fmt: skip
def test_values_the_spam_commands_refuse_are_refused_with_nothing_made(
    exported: Exported, capsys: pytest.CaptureFixture[str], change: dict, problem: str
) -> None:
    record = json.loads(exported.account_json.read_text())
    record["spam"].update(change)
    exported.account_json.write_text(json.dumps(record))
    code, _out, err = exported.run_import(capsys)
    assert code == 1 and problem in err and err.count("\n") == 1
    capsys.readouterr()
    assert main(["--data", exported.fresh, "user", "list"]) == 0
    assert ALICE not in capsys.readouterr().out
    assert not os.path.exists(store_path(exported.fresh))


def test_entries_kept_as_typed_by_earlier_versions_are_exported_as_the_filter_matches(
    exported: Exported, tmp_path: Path
) -> None:
    """An IDN domain kept in its Unicode form never matched; one that is no address can't
    be imported, and would have made the server's own backup one import refuses."""
    store = TokenStore(store_path(exported.data))
    store.set_sender(ALICE, "@bücher.example", "allow")
    store.set_sender(ALICE, "@xn--bcher-kva.example", "block")
    store.set_sender(ALICE, "not an address", "block")
    store.close()
    again = tmp_path / "again"
    assert main(["--data", exported.data, "export", ALICE, str(again)]) == 0
    record = json.loads((again / ALICE / "account.json").read_text())["spam"]
    assert record["senders"] == [
        ["@spam.example", "block"],
        ["@xn--bcher-kva.example", "block"],  # the block wins, as in the filter
        ["boss@example.org", "allow"],
    ]


def test_an_export_doesnt_make_the_spam_database_of_a_server_without_one(
    tmp_path: Path,
) -> None:
    data = data_directory(tmp_path / "data")
    password = tmp_path / "password"
    password.write_text("a-password-9\n")
    assert main(["--data", data, "user", "add", ALICE, "--password-file", str(password)]) == 0
    assert main(["--data", data, "export", ALICE, str(tmp_path / "export")]) == 0
    assert not os.path.exists(store_path(data))
    record = json.loads((tmp_path / "export" / ALICE / "account.json").read_text())
    assert record["spam"] == {"threshold": None, "senders": []}
