"""``txmailhost spam ...`` run as an administrator would."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest

from txmailhost.accounts.db import AccountsDB
from txmailhost.cli import main

ALICE = "alice@example.test"

BIN = os.path.dirname(sys.executable)


def txm(data: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [os.path.join(BIN, "txmailhost"), "--data", data, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def data(tmp_path) -> str:
    """A data directory where alice@example.test and bob@bücher.example have accounts."""
    path = str(tmp_path / "data")
    txm(path, "init", "--hostname", "mx.example.test")
    accounts = AccountsDB(os.path.join(path, "accounts.sqlite"))
    for domain in ("example.test", "bücher.example"):
        accounts.add_domain(domain)
    accounts.add_user("alice@example.test", "a long enough password 1")
    accounts.add_user("bob@bücher.example", "a long enough password 2")
    accounts.close()
    return path


def write(directory, count: int, template: str) -> str:
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        with open(os.path.join(directory, f"{i}.eml"), "w") as f:
            f.write(template.format(i=i))
    return str(directory)


def test_rules_lists_names_scores_and_meanings(data):
    out = txm(data, "spam", "rules").stdout
    assert "URL_SHORTENER" in out and "1.5" in out and "BAYES_99" in out


def test_train_learns_each_message_once_and_check_uses_it(data, tmp_path):
    spam = write(tmp_path / "spam", 25, "From: s{i}@pills.example\nSubject: cheap pills {i}\n\n"
                 "viagra cialis pharmacy discount pills order {i}\n")  # fmt: skip
    ham = write(tmp_path / "ham", 25, "From: h{i}@work.example\nSubject: project {i}\n\n"
                "the meeting agenda for the project review {i}\n")  # fmt: skip
    out = txm(data, "spam", "train", "--user", "alice@example.test", "--spam", spam, "--ham", ham)
    assert out.stdout.splitlines() == [
        "spam: learned 25 of 25 messages (0 known)",
        "ham: learned 25 of 25 messages (0 known)",
    ]
    again = txm(data, "spam", "train", "--user", "alice@example.test", "--spam", spam).stdout
    assert again.strip() == "spam: learned 0 of 25 messages (25 known)"
    assert "learned: 25 spam, 25 ham" in txm(data, "spam", "stats", "--user",
                                             "alice@example.test").stdout  # fmt: skip
    probe = tmp_path / "probe.eml"
    probe.write_text("From: x@pills.example\nSubject: cheap pills\n\nviagra pharmacy pills\n")
    status = txm(data, "spam", "check", str(probe), "--user", "alice@example.test").stdout
    assert "BAYES_99" in status and re.search(r" bayes=(0\.99|1\.00)\d\d", status)


def test_train_and_check_keep_the_servers_spam_settings(data, tmp_path):
    """``[filters.settings.spam]`` applies here as in the server: a user's training counts
    for the global set up to ``bayes_global_per_user``, and ``check`` uses a set only once
    it holds ``bayes_min_messages``."""
    with open(os.path.join(data, "txmailhost.toml"), "a") as f:
        f.write("\n[filters.settings.spam]\nbayes_global_per_user = 10\nbayes_min_messages = 30\n")
    spam = write(tmp_path / "spam", 25, "From: s{i}@pills.example\nSubject: cheap pills {i}\n\n"
                 "viagra cialis pharmacy discount pills order {i}\n")  # fmt: skip
    ham = write(tmp_path / "ham", 25, "From: h{i}@work.example\nSubject: project {i}\n\n"
                "the meeting agenda for the project review {i}\n")  # fmt: skip
    txm(data, "spam", "train", "--user", ALICE, "--spam", spam, "--ham", ham)
    assert "learned: 25 spam, 25 ham" in txm(data, "spam", "stats", "--user", ALICE).stdout
    assert "learned: 10 spam, 10 ham" in txm(data, "spam", "stats").stdout
    probe = tmp_path / "probe.eml"
    probe.write_text("From: x@pills.example\nSubject: cheap pills\n\nviagra pharmacy pills\n")
    assert "BAYES" not in txm(data, "spam", "check", str(probe), "--user", ALICE).stdout
    # the administrator's training of the same mail: the global set, unbounded (ten of each
    # were in it already, from alice's)
    txm(data, "spam", "train", "--spam", spam, "--ham", ham)
    assert "learned: 25 spam, 25 ham" in txm(data, "spam", "stats").stdout


def test_allow_block_and_bad_addresses(data):
    txm(data, "spam", "allow", "friend@example.org", "--user", "alice@example.test")
    txm(data, "spam", "block", "@spam.example")
    assert "allow friend@example.org" in txm(data, "spam", "stats", "--user",
                                             "alice@example.test").stdout  # fmt: skip
    assert "block @spam.example" in txm(data, "spam", "stats").stdout
    bad = txm(data, "spam", "allow", "not an address", check=False)
    assert bad.returncode == 2 and "not an address" in bad.stderr


def test_train_names_a_missing_directory(data, tmp_path):
    result = txm(data, "spam", "train", "--spam", str(tmp_path / "nope"), check=False)
    assert result.returncode == 1 and "not a directory" in result.stderr


def test_threshold_per_user(data):
    txm(data, "spam", "threshold", "--user", "alice@example.test", "3.5")
    out = txm(data, "spam", "stats", "--user", "alice@example.test").stdout
    assert "junk threshold: 3.5" in out
    txm(data, "spam", "threshold", "--user", "alice@example.test")
    assert "threshold" not in txm(data, "spam", "stats", "--user", "alice@example.test").stdout


def test_stats_says_when_counts_are_from_an_older_tokenizer(data, tmp_path):
    spam = write(tmp_path / "spam", 3, "From: s{i}@pills.example\nSubject: pills {i}\n\npills\n")
    txm(data, "spam", "train", "--spam", spam)
    assert "tokenizer" not in txm(data, "spam", "stats").stdout  # learned with this version
    path = os.path.join(data, "spam", "bayes.sqlite")
    with sqlite3.connect(path) as db:  # as counts learned before the version was recorded
        db.execute("DELETE FROM meta")
    out = txm(data, "spam", "stats").stdout
    assert "counts learned with version 1" in out and "retraining" in out


def run_main(capsys, data: str, *args: str) -> tuple[int, str, str]:
    """``txmailhost`` in this process (no interpreter start): (status, stdout, stderr)."""
    status = main(["--data", data, *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_user_options_name_an_existing_account(data, capsys):
    """Once accepted and stored: settings for nobody, never applied to anyone."""
    for args, error in [
        (["threshold", "--user", "nobody@example.test", "5"], "no such user: nobody@example.test"),
        (["threshold", "--user", "not an address", "5"], "not an address: 'not an address'"),
        (["allow", "friend@example.org", "--user", "nobody@example.test"], "no such user"),
        (["train", "--user", "nobody@example.test", "--spam", "."], "no such user"),
    ]:
        status, _out, err = run_main(capsys, data, "spam", *args)
        assert status == 1 and err.startswith(f"txmailhost: error: {error}"), (args, err)
    stats = run_main(capsys, data, "spam", "stats", "--user", "nobody@example.test")
    assert stats == (0, "learned: 0 spam, 0 ham (nobody@example.test)\n", "")


def test_threshold_is_a_finite_score_in_range(data, capsys):
    """``nan`` once failed as "NOT NULL constraint failed", ``inf`` was stored."""
    for score in ("nan", "inf", "101", "-101", "ten"):
        status, _out, err = run_main(capsys, data, "spam", "threshold", "--user", ALICE, score)
        assert status == 2 and "argument score:" in err and "constraint" not in err, err
    assert "threshold" not in run_main(capsys, data, "spam", "stats", "--user", ALICE)[1]


def test_users_and_senders_are_kept_as_the_server_sees_them(data, capsys):
    """Mail arrives for xn--bcher-kva.example: a threshold or list kept under the Unicode
    spelling (or in capitals) never applied."""
    for args in (
        ["threshold", "--user", "Bob@Bücher.example", "3"],
        ["block", "@Bücher.example"],
        ["allow", "Friend@Bücher.example", "--user", "BOB@bücher.example"],
    ):
        assert run_main(capsys, data, "spam", *args) == (0, "", "")
    stats = run_main(capsys, data, "spam", "stats", "--user", "bob@xn--bcher-kva.example")[1]
    assert "junk threshold: 3.0" in stats and "allow friend@xn--bcher-kva.example" in stats
    assert "block @xn--bcher-kva.example" in run_main(capsys, data, "spam", "stats")[1]
    run_main(capsys, data, "spam", "forget", "@bücher.example")
    assert "block" not in run_main(capsys, data, "spam", "stats")[1]


def test_check_judges_the_client_a_saved_message_came_from_as_the_server_did(data, tmp_path):
    """A message saved from a mailbox carries our Received: with the client as we recorded
    it: ``check`` runs the checks that need no DNS on it, and dates the message by it."""
    received = (
        "Received: from pc17 (unknown [192.0.2.7])\n\tby mx.example.test (txmailhost) with"
        " ESMTP id 1;\n\tTue, 03 Sep 2002 10:00:00 +0000\n"
    )
    rest = (
        "From: a@sender.test\nSubject: hello\nMessage-ID: <m1@sender.test>\n"
        "Date: Tue, 03 Sep 2002 14:00:00 +0000\n\nhi\n"
    )
    saved = tmp_path / "saved.eml"
    saved.write_text(received + rest)
    out = txm(data, "spam", "check", str(saved)).stdout
    for rule in ("RDNS_NONE", "HELO_NO_FQDN", "DATE_IN_FUTURE"):
        assert rule in out
    bare = tmp_path / "bare.eml"
    bare.write_text(rest)  # no trace of where it came from: none of these
    out = txm(data, "spam", "check", str(bare)).stdout
    assert not re.search("RDNS_NONE|HELO_NO_FQDN|DATE_IN_FUTURE", out)
