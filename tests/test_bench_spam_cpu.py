"""``bench.spam_cpu``'s proof of sameness can fail, and its old code is the old revision's.

The bench says a change to the scoring process left every verdict alone when ``compare``
finds no line of two dumps differing; these tests keep that from being a check that
can't fail, and check that the code it times as "old" is the revision's own copy.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench import spam_cpu

_LINE = 'spam-2/{i}\t{digest}\t{{"scores": [[{total}, [], 0.5, null]]}}\n'


def test_compare_finds_a_score_that_differs_in_the_last_digit(tmp_path, capsys):
    before, same, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    lines = [_LINE.format(i=i, digest="d" * 64, total=1.25) for i in range(3)]
    before.write_text("".join(lines))
    same.write_text("".join(lines))
    other.write_text("".join(lines[:2] + [_LINE.format(i=2, digest="d" * 64, total=1.26)]))
    assert spam_cpu.compare(before, same) == 0
    assert spam_cpu.compare(before, other) == 1
    assert "3 messages, 1 differ" in capsys.readouterr().out
    other.write_text("".join(lines[:2]))
    assert spam_cpu.compare(before, other) == 1  # a message missing


def test_the_old_package_is_the_revisions_code_under_its_own_name(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        pytest.skip("not a git clone: no revision to take the old code from")
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    saved = list(sys.path)
    try:
        name = spam_cpu.old_package(head, tmp_path)
        scorer = importlib.import_module(f"{name}.spam.scorer")
        assert Path(scorer.__file__).is_relative_to(tmp_path)
        assert scorer.Sample.__module__ == f"{name}.spam.sample"  # its imports renamed too
    finally:
        sys.path[:] = saved
        for module in [m for m in sys.modules if m.startswith("txmailhost_old")]:
            del sys.modules[module]
