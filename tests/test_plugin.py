"""The twistd plugin as an operator meets it: ``twistd --help``."""

from __future__ import annotations

import os
import subprocess
import sys

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def test_twistd_help_describes_every_service_the_server_runs_and_nothing_as_to_come():
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, timeout=60).stdout
    start = out.index("txmailhost")
    # the description, wrapped over the lines up to the next plugin's name
    lines = [out[start:].splitlines()[0]]
    for line in out[start:].splitlines()[1:]:
        if line[:21].strip():
            break
        lines.append(line.strip())
    description = " ".join(lines)
    for service in ("ESMTP", "submission", "IMAP", "POP3", "relay"):
        assert service in description
    assert "to follow" not in description and "later" not in description
