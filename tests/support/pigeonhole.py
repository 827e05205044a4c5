"""A Dovecot user's home as Pigeonhole leaves it, for the ``migrate dovecot`` tests.

``home/Maildir`` (with ``.Work``), ``home/sieve/NAME.sieve`` and ``home/.dovecot.sieve``:
a relative link to the active script (what Pigeonhole's ManageSieve writes), or a plain file
(a script written by hand before ManageSieve was used). ``sievec_refusal`` asks Debian's
``sievec`` (dovecot-sieve) whether a script is valid Pigeonhole Sieve, so the fixtures are
what a real Dovecot would have run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SIEVEC = shutil.which("sievec") or "/usr/bin/sievec"

FILING = (
    'require "fileinto";\r\n'
    'if header :contains "subject" "[work]" {\r\n  fileinto "Work";\r\n  stop;\r\n}\r\n'
)
VACATION = 'require "vacation";\r\nvacation :days 1 :subject "Away" "I am away until Monday.";\r\n'
# Pigeonhole runs it (vnd.dovecot.debug is on by default); our Sieve has no such extension.
DOVECOT_ONLY = 'require "vnd.dovecot.debug";\r\ndebug_log "sorting";\r\nkeep;\r\n'


def dovecot_home(
    home: Path,
    scripts: dict[str, str | bytes],
    active: str | None = None,
    plain_active: str | None = None,
) -> Path:
    """``home`` with a Maildir, ``sieve/STEM.sieve`` for each of ``scripts`` (a ``bytes``
    stem is a file name that isn't UTF-8) and ``.dovecot.sieve``: a link to
    ``sieve/ACTIVE.sieve`` or a file holding ``plain_active``."""
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
        (home / "Maildir" / ".Work" / sub).mkdir(parents=True, exist_ok=True)
    (home / "sieve").mkdir(exist_ok=True)
    for stem, text in scripts.items():
        name = os.fsencode(stem) + b".sieve"
        with open(os.path.join(os.fsencode(home / "sieve"), name), "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
    if active is not None:
        (home / ".dovecot.sieve").symlink_to(f"sieve/{active}.sieve")
    if plain_active is not None:
        (home / ".dovecot.sieve").write_text(plain_active)
    return home


def sievec_refusal(script: str) -> str | None:
    """``sievec``'s error for ``script``, None when Pigeonhole compiles it."""
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory, "script.sieve")
        source.write_text(script)
        result = subprocess.run(
            [SIEVEC, str(source), str(Path(directory, "script.svbin"))],
            capture_output=True,
            text=True,
            timeout=60,
        )
    return None if result.returncode == 0 else result.stderr + result.stdout


def sievec_missing() -> bool:
    return not os.access(SIEVEC, os.X_OK)
