"""The data directory's format version: refuse a newer one, upgrade an older one in place.

``DATA/format`` holds one line, ``txmailhost data format N``. A release that changes what it
keeps on disk (a new index column, a moved directory) raises :data:`FORMAT` and adds the step
that brings format N-1 to N to :data:`UPGRADES`; the server runs the missing steps in order at
start, each followed by writing its number (so a crash in the middle resumes where it stopped),
before anything listens. A data directory written by a *newer* release is refused, by the
server and by the admin commands alike, with one line saying so: an older program must never
write into files whose meaning it doesn't know.

Format 0 is a directory from before this file existed (0.1.0.dev0 and earlier): its layout is
format 1's, so its upgrade only records the version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from txmailhost import _safeio

FORMAT = 1
FILE_NAME = "format"
_LINE = re.compile(r"^txmailhost data format (\d+)\s*$")


class DataFormatError(ValueError):
    """The data directory can't be used by this version; the message says why, in one line."""


def _nothing_to_change(data_dir: str) -> None:
    """0 -> 1: the layout is the same; only the version is recorded."""


UPGRADES: dict[int, Callable[[str], None]] = {1: _nothing_to_change}


def read_format(data_dir: str) -> int:
    """The directory's format number (0 when it has no ``format`` file)."""
    path = os.path.join(data_dir, FILE_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(200)
    except FileNotFoundError:
        return 0
    found = _LINE.match(text)
    if found is None:
        raise DataFormatError(f"{path}: expected 'txmailhost data format N', got {text[:40]!r}")
    return int(found[1])


def check(data_dir: str) -> int:
    """The directory's format, after refusing one newer than this version understands."""
    found = read_format(data_dir)
    if found > FORMAT:
        raise DataFormatError(
            f"data directory {os.path.abspath(data_dir)} is format {found}, newer than this "
            f"txmailhost understands ({FORMAT}): run the version that wrote it, or a newer one"
        )
    return found


def upgrade(data_dir: str) -> list[str]:
    """Bring the directory to :data:`FORMAT`; one line per step done, for the log."""
    done = []
    for target in range(check(data_dir) + 1, FORMAT + 1):
        UPGRADES[target](data_dir)
        path = os.path.join(data_dir, FILE_NAME)
        _safeio.write_atomic(path, f"txmailhost data format {target}\n".encode(), 0o644)
        done.append(f"recorded data format {target} in {path}")
    return done
