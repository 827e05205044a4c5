"""README.rst's Quick start, run as a new operator runs it, against the real server.

The commands and Python snippets are taken from the README itself, with its default ports
replaced by the test server's ephemeral ones, so the README can't drift from the code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.server import BIN, ServerProcess

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.rst")

pytestmark = pytest.mark.slow


def quick_start_blocks() -> list[str]:
    """The literal blocks of the Quick start section, unindented."""
    with open(README) as f:
        text = f.read()
    section = text.split("\nQuick start\n===========\n", 1)[1].split("\n====", 1)[0]
    blocks = []
    for match in re.finditer(r"::\n\n((?:    .*\n|\n)+)", section):
        lines = [line[4:] for line in match[1].splitlines()]
        blocks.append("\n".join(lines).strip() + "\n")
    return blocks


@pytest.fixture
def operator(tmp_path):
    """A working directory with the server's data in ``./txmailhost-data`` (the default)."""
    server = ServerProcess(str(tmp_path / "txmailhost-data")).start()
    yield tmp_path, server
    server.stop()


def _local(text: str, server: ServerProcess) -> str:
    ports = {"2525": "smtp", "2110": "pop3", "2143": "imap"}
    for default, label in ports.items():
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{server.ports[label]}")
        text = text.replace(f'"127.0.0.1", {default})', f'"127.0.0.1", {server.ports[label]})')
    return text.replace(".venv/bin/", BIN + "/")


def test_quick_start_commands_and_snippets_work_as_written(operator):
    cwd, server = operator
    blocks = quick_start_blocks()
    outputs = []
    for block in blocks:
        first = block.split()[0]
        if first in ("swaks", "poll"):  # another client sending the same; a config file
            continue
        if first == "curl" and shutil.which("curl") is None:
            continue
        script = _local(block, server)
        if first == "python3":
            body = script.split("<<'PY'\n", 1)[1].rsplit("PY\n", 1)[0]
            command = [sys.executable, "-c", body]
        else:
            command = ["bash", "-euo", "pipefail", "-c", script]
        result = subprocess.run(
            command, cwd=cwd, input="a-password-for-bob-9\n", capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
        outputs.append((first, result.stdout))
    assert [first for first, _ in outputs].count("python3") == 3  # SMTP, POP3 and IMAP
    reads = [out for first, out in outputs if first in ("python3", "curl") and "Hi Alice!" in out]
    # POP3 and IMAP in Python, and with curl when installed
    assert len(reads) == (4 if shutil.which("curl") else 2)
    assert "bob@example.test" in server.cli("user", "list").stdout
