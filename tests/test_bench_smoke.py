"""``python -m bench --smoke --no-anchors``: the benchmark harness still runs end to end.

Not a measurement (a tiny workload, no Postfix or Dovecot): every suite starts its server,
drives its load and reports, and the run exits 0 only when no suite crashed and the server
was measured (``bench.runner``). A test rather than a step of ``.ci/run`` after the suite,
so that its half-minute overlaps the other pytest process instead of adding to the run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_bench_suite_runs_tiny_and_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-anchors"],
        cwd=ROOT,
        env=dict(os.environ, TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for figure in ("SMTP msgs/s", "IMAP logins/s", "Attack figure"):
        assert figure in result.stdout, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
