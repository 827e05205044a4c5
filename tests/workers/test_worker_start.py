"""A worker process that can't start ends, so that its supervisor sees it and restarts it.

Before, an exception out of ``startService`` left the threads of the pools started so far
running: the process neither served nor ended, and the supervisor, which restarts only a
worker that ends, waited for its "ready" for ever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_a_worker_whose_listener_cant_be_adopted_ends_and_says_why(tmp_path):
    data = str(tmp_path / "data")
    bin_dir = os.path.dirname(sys.executable)
    subprocess.run(
        [os.path.join(bin_dir, "txmailhost"), "--data", data, "init"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    closed = 1000  # a descriptor number nothing in the worker opens, as a vanished socket
    started = time.monotonic()
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "txmailhost.workers.main",
            "--data",
            data,
            "--config",
            os.path.join(data, "txmailhost.toml"),
            "--slot",
            "0",
            "--workers",
            "2",
            "--socket",
            f"smtp:{closed}:2",
        ],  # fmt: skip
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 1, worker.stderr[-2000:]
    assert time.monotonic() - started < 30
    events = [json.loads(line) for line in worker.stdout.splitlines() if line.startswith("{")]
    said = [e.get("log_format", "") for e in events]
    assert any("can't listen for smtp" in e.get("line", "") for e in events), said
    assert "txmailhost worker {slot} could not start" in said, said
