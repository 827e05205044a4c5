"""Run a command with a directory on a file system of its own, as an administrator meets it
when a mail folder is a mount point or a symlink to another disk: a rename or a hard link
between it and its neighbours fails with EXDEV.

A tmpfs mounted on the directory in a private mount namespace (``unshare -m``), so nothing
outside the command sees it, holding a copy of what the directory held when the prefix was
made. Needs root; skips where that is impossible (as ``readonly.py`` does).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_MOUNT_TMPFS = (
    'mount -t tmpfs -o mode=0700 tmpfs "$1" && cp -a "$2/." "$1/" && shift 2 && exec "$@"'
)


def on_own_file_system(directory: str, scratch: str) -> list[str]:
    """A prefix for ``argv`` under which ``directory`` is a tmpfs with its present content,
    which is copied to ``scratch`` (a directory of the test's, outside the one mounted on)
    for the command to copy in."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("a file system of its own needs unshare and mount")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not permitted here")
    shutil.copytree(directory, scratch, symlinks=True)
    return ["unshare", "-m", "sh", "-c", _MOUNT_TMPFS, "sh", directory, scratch]
