"""Run a command with a directory it cannot write, as root too.

Root passes every permission-bit check, so for root the directory is made read-only the way an
administrator meets it: a read-only bind mount, in a private mount namespace (``unshare -m``)
so nothing outside the command sees it. Other users get ``chmod -w`` on the directory tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

_MOUNT_READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


@contextlib.contextmanager
def read_only(directory: str) -> Iterator[list[str]]:
    """A prefix for ``argv`` under which ``directory`` is read-only; skips where impossible."""
    if os.geteuid() != 0:
        modes = {}
        for root, dirs, files in os.walk(directory):
            for path in [root, *(os.path.join(root, n) for n in dirs + files)]:
                modes[path] = os.stat(path).st_mode
                os.chmod(path, modes[path] & ~0o222)
        try:
            yield []
        finally:
            for path, mode in modes.items():
                os.chmod(path, mode)
        return
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("read-only as root needs unshare and mount")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not permitted here")
    yield ["unshare", "-m", "sh", "-c", _MOUNT_READ_ONLY, "sh", directory]
