"""``txmailhost user vacation``: the script it writes is what delivery and ManageSieve see."""

from __future__ import annotations

import pytest

from txmailhost.accounts.db import AccountsDB
from txmailhost.cli import main
from txmailhost.config import load_config
from txmailhost.sieve.setup import script_store

ALICE = "alice@example.test"


@pytest.fixture
def data(tmp_path):
    data = str(tmp_path / "data")
    assert main(["init", "--data", data, "--hostname", "mx.example.test"]) == 0
    accounts = AccountsDB(f"{data}/accounts.sqlite")
    accounts.add_domain("example.test")
    accounts.add_user(ALICE, "a long enough password 1")
    accounts.close()
    return data


def test_vacation_on_show_and_off_restores_the_previous_script(data, tmp_path, capsys):
    store = script_store(load_config(data))
    store.put(ALICE, "main", "keep;\r\n")
    store.set_active(ALICE, "main")
    body = tmp_path / "away.txt"
    body.write_text("Back on Monday.\n")
    assert main(["user", "vacation", ALICE, "--data", data, "--subject", "Away",
                 "--body-file", str(body), "--until", "2030-01-02"]) == 0  # fmt: skip
    assert capsys.readouterr().out == f"{ALICE}: vacation on until 2030-01-02\n"
    assert store.active_name(ALICE) == "vacation"
    text = store.get(ALICE, "vacation")
    assert '"2030-01-02"' in text and ':subject "Away"' in text and "Back on Monday." in text
    assert main(["user", "vacation", ALICE, "--data", data]) == 0
    assert capsys.readouterr().out == f"{ALICE}: vacation on\n"
    assert main(["user", "vacation", ALICE, "--data", data, "--off"]) == 0
    assert capsys.readouterr().out == f"{ALICE}: vacation off; main active again\n"
    assert store.active_name(ALICE) == "main"


def test_vacation_errors_are_one_line(data, tmp_path, capsys):
    assert main(["user", "vacation", "nobody@example.test", "--data", data, "--off"]) == 1
    assert "no such user" in capsys.readouterr().err
    body = tmp_path / "b.txt"
    body.write_text("x")
    assert main(["user", "vacation", ALICE, "--data", data, "--body-file", str(body),
                 "--until", "someday"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("txmailhost: error: ") and err.count("\n") == 1
