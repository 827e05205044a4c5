"""``txmailhost spam ...`` run as an administrator would."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest

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
    path = str(tmp_path / "data")
    txm(path, "init", "--hostname", "mx.example.test")
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
