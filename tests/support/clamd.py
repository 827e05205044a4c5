"""A real clamd (Debian's clamav-daemon) for tests, with a signature database made here:
clamd can't download one offline. ``running_clamd()`` yields its UNIX socket path, or skips
the test when clamd is not installed or does not start."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)
TEST_STRING = b"TXMAILHOST-VIRUS-TEST-STRING-7f3a"
# Built from pieces so no scanner flags this file: the standard EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@contextlib.contextmanager
def running_clamd() -> Iterator[str]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (Debian: clamav-daemon)")
    home = tempfile.mkdtemp(prefix="txm-clamd-", dir="/tmp")  # a short socket path
    database = os.path.join(home, "db")
    os.mkdir(database)
    with open(os.path.join(database, "txmailhost.ndb"), "w") as f:
        f.write(f"Txmailhost.Test.String:0:*:{TEST_STRING.hex()}\n")
        f.write(f"Txmailhost.Test.EICAR:0:*:{EICAR.hex()}\n")
    path = os.path.join(home, "clamd.sock")
    config = os.path.join(home, "clamd.conf")
    with open(config, "w") as f:
        f.write(
            f"LocalSocket {path}\nForeground yes\nDatabaseDirectory {database}\n"
            f"LogFile {home}/clamd.log\nStreamMaxLength 25M\nMaxThreads 2\n"
        )
    process = subprocess.Popen([CLAMD, "-c", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 60
        while not os.path.exists(path):
            if process.poll() is not None or time.time() > deadline:
                log = pathlib.Path(home, "clamd.log")
                text = log.read_text(errors="replace") if log.exists() else ""
                pytest.skip(f"clamd did not start: {text[-500:]}")
            time.sleep(0.1)
        yield path
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
