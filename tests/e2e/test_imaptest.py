"""Dovecot's imaptest (tools/imaptest) against the real server: every scripted file must pass
or be skipped for a capability the server doesn't offer, and the stress runs (ten sessions on
one INBOX: \\Recent in one session only, flags, expunges, UIDs never reused) must report no
error. The tool is built from the vendored source into a cache directory on first use; the
test is skipped only when its build dependencies (Debian: build-essential autoconf automake
libtool pkg-config dovecot-dev, which .ci/run installs) are missing. A failure prints the
summary, and the raw protocol log of each failing file stays under the test's tmp_path."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.imap.support import listening_port
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.interop, pytest.mark.slow]

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "imaptest")
PASSWORD = "imaptest-Pw-5k8"
STRESS_SECS = 15  # acceptance 10 runs its own, longer stress
# Where build.sh looks for Dovecot's dovecot-config (DOVECOT_DIR overrides).
DOVECOT_DIRS = (
    "/usr/lib/dovecot",
    "/usr/lib64/dovecot",
    "/usr/local/lib/dovecot",
    "/usr/lib/x86_64-linux-gnu/dovecot",
    "/usr/lib/aarch64-linux-gnu/dovecot",
)


def _missing_build_deps() -> str | None:
    for tool in ("autoconf", "automake", "libtoolize", "make", "cc", "xz"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    dirs = (os.environ["DOVECOT_DIR"],) if os.environ.get("DOVECOT_DIR") else DOVECOT_DIRS
    if not any(os.path.isfile(os.path.join(d, "dovecot-config")) for d in dirs):
        return "Dovecot development files (dovecot-dev) not installed"
    return None


def _build_dir() -> str:
    """Where imaptest is built once and reused: ``IMAPTEST_BUILD`` or the user's cache."""
    if os.environ.get("IMAPTEST_BUILD"):
        return os.environ["IMAPTEST_BUILD"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "txmailhost", "imaptest-build")


@pytest.fixture(scope="module")
def imaptest() -> str:
    missing = _missing_build_deps()
    if missing:
        pytest.skip(f"imaptest can't be built: {missing}")
    build = _build_dir()
    result = subprocess.run(
        [os.path.join(TOOL, "build.sh"), build],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"imaptest build failed:\n{result.stdout}\n{result.stderr}"
    return build


def test_imaptest_scripted_files_pass_and_stress_finds_no_error(imaptest, tmp_path):
    proc = ServerProcess(str(tmp_path / "data")).start()
    try:
        for user in ("testuser1@example.test", "testuser2@example.test"):
            proc.add_user(user, PASSWORD)
        port = listening_port(proc, "imap")
        env = dict(
            os.environ,
            IMAPTEST_BUILD=imaptest,
            USER2="testuser2@example.test",
            DIR_TIMEOUT="0",
            TEST_TIMEOUT="30",
            STRESS_SECS=str(STRESS_SECS),
        )
        result = subprocess.run(
            [
                os.path.join(TOOL, "run.sh"),
                "127.0.0.1",
                str(port),
                "testuser1@example.test",
                PASSWORD,
                str(tmp_path / "out"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=4 * STRESS_SECS + 240,
        )
    finally:
        proc.stop()
    # The server's own account of anything that went wrong, for a failure's message.
    problems = [line for line in proc.log().splitlines() if "Traceback" in line or "Error" in line]
    output = result.stdout + result.stderr + "\nserver log:\n" + "\n".join(problems[-40:])
    totals = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.M)
    assert totals, output
    assert result.returncode == 0, output
    assert int(totals[1]) >= 68 and totals[2] == "0", output
    assert "stress total: 0 errors" in result.stdout, output
