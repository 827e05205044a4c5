"""``bench.spam_rspamd``: rspamd judged on the corpus's splits, run tiny.

Not a measurement: that ``bench.spam_corpus --e2e --rspamd`` starts rspamd offline twice
(stock learning and ``Learn-Type: bulk``), trains each on the split's messages, scans every
test message and prints its rows and curve. The corpus is a few made-up messages in the
layout of ``bench.spam_corpus``'s cache, so nothing is fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import spam_corpus, spam_e2e, spam_rspamd


def _corpus(cache: Path, count: int) -> None:
    texts = {
        "spam": "cheap pills now buy viagra casino winner",
        "ham": "meeting notes attached for the review",
    }
    for group in spam_corpus.GROUPS:
        words = texts["spam" if group.startswith("spam") else "ham"]
        folder = cache / "package" / "data" / group
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{i:05}.txt").write_text(
                f"From nobody Mon Dec  7 00:00:00 2026\n"
                f"Return-Path: <sender{i}@{group}.example.org>\n"
                f"From: sender{i}@{group}.example.org\nTo: u1@bench.test\n"
                f"Subject: {words} {i}\nMessage-ID: <{group}.{i}@example.org>\n\n"
                + f"{words} number {i} in {group}\n"
                * 5
            )


@pytest.mark.slow
def test_rspamd_is_trained_both_ways_and_judges_every_test_message(tmp_path: Path, capsys):
    if why := spam_rspamd.available():
        pytest.skip(why)
    _corpus(tmp_path, 8)
    argv = ["--e2e", "--sizes", "4", "--repeats", "1", "--no-txmailhost", "--no-spamassassin"]
    assert spam_corpus.main([*argv, "--rspamd", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for mode in ("stock learn", "learn all"):
        split = re.search(rf"split 0: rspamd, {mode} spam-2 [\d.]+% .*learned (\d+) of 4 spam", out)
        assert split, out
        assert int(split.group(1)) == 4  # a few distinct messages: both ways learn them all
        assert re.search(rf"^rspamd, {mode} +[\d.]+% \(", out, re.M), out
        assert re.search(rf"^rspamd, {mode}: spam 2 caught at the threshold", out, re.M)
        assert re.search(rf"^rspamd, {mode}, no DATE_IN_PAST +[\d.]+% \(", out, re.M), out
    actions = re.findall(r"actions answered: (.*)", out)
    assert len(actions) == 2
    for line in actions:  # every test message scanned: 4 of each test group
        assert sum(int(n) for n in re.findall(r" (\d+)(?:,|$)", line)) == 12
    assert re.search(r"in Junk at 6 or more, refused at 15", out)
    assert len(re.findall(r"^    without DATE_IN_PAST: spam-2 [\d.]+%", out, re.M)) == 2
    assert "SpamAssassin not run" in out


def test_thresholds_for_a_ceiling_put_no_more_than_it_in_junk():
    hard = [float(s) for s in range(100)]  # 0 .. 99
    t = spam_rspamd.threshold_for(hard, 2.0)
    assert spam_rspamd.in_junk(hard, t) == 2.0  # 98 and 99
    assert spam_rspamd.in_junk(hard, t - 1.0) > 2.0
    tied = [5.0] * 10 + [1.0] * 90
    assert spam_rspamd.in_junk(tied, spam_rspamd.threshold_for(tied, 2.0)) == 0.0
    caught = spam_rspamd.at_ceiling(
        {"spam-2": [50.0, 98.5, 99.5, 10.0], "hard-ham-1": hard, "easy-ham-2": hard}
    )
    assert caught == {"hard-ham-1 <= 2%": 50.0, "easy-ham-2 <= 0.1%": 25.0}


@pytest.mark.slow
def test_spamassassin_beside_it_is_read_at_the_same_ceilings(tmp_path: Path, capsys):
    """SpamAssassin's scores are kept too, so its curve is read as rspamd's is."""
    if why := spam_e2e.spamassassin_available():
        pytest.skip(why)
    _corpus(tmp_path, 8)
    argv = ["--e2e", "--sizes", "4", "--repeats", "1", "--no-txmailhost"]
    assert spam_corpus.main([*argv, "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^SpamAssassin +[\d.]+% \(", out, re.M), out
    line = r"^SpamAssassin: spam 2 caught at the threshold with hard-ham-1 <= 2% in Junk: [\d.]+%"
    assert re.search(line, out, re.M), out


def test_a_score_lands_in_inbox_junk_or_refused_at_rspamds_thresholds():
    found = spam_rspamd.verdicts_at({"spam-2": [5.99, 6.0, 14.9, 15.0]}, 6.0, 15.0)
    assert found == {"spam-2": ["INBOX", "Junk", "Junk", "refused"]}
    assert spam_e2e.rates({"verdicts": found}) == {"spam-2": 75.0}  # refused counts as caught
