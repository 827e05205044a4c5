"""``txmailhost user vacation``: the script it writes is what delivery and ManageSieve see."""

from __future__ import annotations

import datetime

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
    until = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    assert main(["user", "vacation", ALICE, "--data", data, "--subject", "Away",
                 "--body-file", str(body), "--until", until]) == 0  # fmt: skip
    assert capsys.readouterr().out == f"{ALICE}: vacation on until {until}\n"
    assert store.active_name(ALICE) == "vacation"
    text = store.get(ALICE, "vacation")
    assert f'"{until}"' in text and ':subject "Away"' in text and "Back on Monday." in text
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


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--subject", "Away", "--until", "2026-13-45"],
         "--subject, --until set an away reply: give its text with --body-file"),
        (["--days", "3"], "--days set an away reply: give its text with --body-file"),
        (["--off", "--subject", "Away"], "--off takes no other option"),
        (["--body-file", "BODY", "--until", "2026-13-45"],
         "--until '2026-13-45': expected a date as YYYY-MM-DD"),
        (["--body-file", "BODY", "--until", "2001-02-03"],
         "--until 2001-02-03 is in the past: the reply would never be sent"),
    ],
    ids=["subject and until alone", "days alone", "off with subject", "no such date", "past"],
)  # fmt: skip
def test_vacation_options_that_would_be_ignored_or_never_apply_are_refused(
    data, tmp_path, capsys, options, error
):
    """``--subject Away --until 2026-13-45`` once answered "vacation off" and exit 0."""
    body = tmp_path / "away.txt"
    body.write_text("Away.\n")
    options = [str(body) if o == "BODY" else o for o in options]
    assert main(["user", "vacation", ALICE, "--data", data, *options]) == 1
    assert capsys.readouterr().err == f"txmailhost: error: {error}\n"
    assert script_store(load_config(data)).active_name(ALICE) is None
