"""``python -m bench --fuzz [pytest options]``: the parsers' property tests with the long
Hypothesis profile (tests/conftest.py), with per-test statistics (examples run, failures).

The same tests run in CI with the short ``ci`` profile; this is the exploration to run before a
release or after touching a parser (about ten minutes on two cores). It is the same as::

    python -m pytest tests -m fuzz --hypothesis-profile long --hypothesis-show-statistics

Extra arguments go to pytest, e.g. ``python -m bench --fuzz -k imap`` or
``--hypothesis-seed=1``. A failure prints the shrunk example to add as a regression test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests",
        "-q",
        "-m",
        "fuzz",
        "--hypothesis-profile",
        "long",
        "--hypothesis-show-statistics",
        "-p",
        "no:cacheprovider",
        *argv,
    ]
    return subprocess.call(command, cwd=ROOT)
