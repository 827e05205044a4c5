"""Users' Sieve scripts in an export (``archive.py``): written out, checked, restored.

Their filters and their vacation reply are part of what a user would miss after a restore,
so an export keeps each user's scripts as ``DEST/USER/sieve/NNNN.sieve`` (the text as the
store holds it, UTF-8), and ``account.json`` says which file is which script and which one
is active::

    "sieve": {"active": "rules", "scripts": [{"name": "rules", "file": "0001.sieve"}, ...]}

The files are numbered, not named after the scripts: RFC 5804 (1.6) allows a script name
any character but control characters (``a/b``, ``..``, 128 CJK characters), and a number is
a name ``import`` can check to be one export writes, as it checks ``mail/NNNN/UID.eml``.

``import`` checks all of it before anything is imported (``read_scripts``): each name one
ManageSieve allows, no name or file twice, each file ``NNNN.sieve``, a regular file (not a
link) in a ``sieve`` directory that is not a link, and the active name one of the scripts.
An export made before scripts were kept has no ``sieve`` record: the user has none to
restore. Then ``import_scripts`` stores them through the store ManageSieve serves
(``sieve/setup.script_store``: ``DATA/sieve``, or the shared database), as ``migrate
dovecot`` stores Pigeonhole's (``migrate_sieve.py``):

- the active script first, so that the ``[sieve]`` quotas never leave it out; a script over
  them is reported and not imported, its size known before its file is read;
- a script this server's Sieve refuses (an export of another version, an extension this one
  lacks) is kept all the same (``put(check=False)``), inactive, and the report names it
  with the error: mail is never filed by half a rule set;
- a script of that name here already is left as it is: ``unchanged`` when it is the same
  text, else ``kept`` and reported, as ``import`` leaves an existing account or alias;
- the exported active script is made active only if it compiles and the user has no active
  script here (a user's later choice is not undone by an import of an old backup).
"""

from __future__ import annotations

import os
import re
from typing import Any

from txmailhost.ops.mailbox_admin import AdminError
from txmailhost.ops.migrate_sieve import SourceScript, store_scripts
from txmailhost.ops.sourcefiles import SourceFileError, entry_problem, shown
from txmailhost.sieve.scripts import ScriptError, check_name

DIRECTORY = "sieve"
_SCRIPT_FILE = re.compile(r"[0-9]{4,}\.sieve")


# -- export ------------------------------------------------------------------------------------


def export_scripts(scripts: Any, user: str, home: str) -> dict[str, Any]:
    """Write ``user``'s scripts into ``home/sieve``; the ``sieve`` record of ``account.json``.

    A script deleted between the listing and its reading is left out, as a message expunged
    during the export is; the active one can't be deleted, so the record's active name is
    always one of its scripts."""
    try:
        listed = scripts.list(user)
    except ScriptError as e:
        raise AdminError(f"{user}: {e}") from None
    active, record = None, []
    for number, info in enumerate(listed, 1):
        try:
            text = scripts.get(user, info.name)
        except ScriptError:
            continue  # deleted meanwhile (NONEXISTENT)
        directory = os.path.join(home, DIRECTORY)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        file_name = f"{number:04d}.sieve"
        with open(os.path.join(directory, file_name), "wb") as f:
            f.write(text.encode("utf-8"))
        record.append({"name": info.name, "file": file_name})
        if info.active:
            active = info.name
    return {"active": active, "scripts": record}


# -- import ------------------------------------------------------------------------------------


def read_scripts(account_path: str, home: str, record: object) -> list[SourceScript]:
    """The scripts the ``sieve`` record of ``account.json`` (at ``account_path``) names,
    checked (module docstring) without reading them; AdminError naming the file and the
    problem for anything export doesn't write. None (an older export): no scripts."""
    if record is None:
        return []
    if not isinstance(record, dict) or not isinstance(record.get("scripts"), list):
        raise AdminError(f"{shown(account_path)}: sieve is not an object with a list of scripts")
    directory = os.path.join(home, DIRECTORY)
    active = record.get("active")
    names: set[str] = set()
    files: set[str] = set()
    found = []
    for entry in record["scripts"]:
        if not isinstance(entry, dict):
            raise AdminError(
                f"{shown(account_path)}: sieve script {_short(entry)} is not an object"
            )
        name, file_name = entry.get("name"), entry.get("file")
        problem = _name_problem(name) or (f"script {_short(name)} twice" if name in names else None)
        if problem is None and not (
            isinstance(file_name, str) and _SCRIPT_FILE.fullmatch(file_name)
        ):
            problem = f"sieve file {_short(file_name)} is not a name export writes"
        elif problem is None and file_name in files:
            problem = f"sieve file {file_name!r} named twice"
        if problem is not None:
            raise AdminError(f"{shown(account_path)}: {problem}")
        assert isinstance(name, str) and isinstance(file_name, str)
        if not files:  # the directory itself: a link could lead anywhere
            _check_entry(directory, want_directory=True)
        path = os.path.join(directory, file_name)
        _check_entry(path)
        names.add(name)
        files.add(file_name)
        found.append(SourceScript(name, path, os.lstat(path).st_size, name == active))
    if active is not None and active not in names:
        raise AdminError(f"{shown(account_path)}: the active sieve script {_short(active)} "
                         "is not one of its scripts")  # fmt: skip
    return found


def _short(value: object) -> str:
    """``value`` for a line of the report: repr'd (no control character gets through), cut."""
    text = repr(value)
    return text[:80] + ("..." if len(text) > 80 else "")


def _name_problem(name: object) -> str | None:
    """Why ``name`` is no script name ManageSieve allows (RFC 5804 1.6), None if it is."""
    if not isinstance(name, str):
        return f"sieve script name {_short(name)} is not a string"
    try:
        check_name(name)
    except ScriptError as e:
        return f"sieve script name {_short(name)}: {e}"
    return None


def _check_entry(path: str, want_directory: bool = False) -> None:
    """AdminError unless ``path``, not followed, is a regular file (or a directory)."""
    try:
        problem = entry_problem(path, want_directory)
    except FileNotFoundError:
        problem = f"{shown(path)}: missing from the export"
    if problem is not None:
        raise SourceFileError(problem)


def import_scripts(scripts: Any, user: str, found: list[SourceScript]) -> list[dict[str, Any]]:
    """Store ``found`` as ``user``'s scripts (module docstring; ``migrate_sieve.store_scripts``,
    as ``migrate dovecot`` stores them); an entry of the report each."""
    try:
        return store_scripts(
            scripts, user, found, lambda s: {"name": s.name, "active_in_export": s.active}
        )
    except ScriptError as e:  # the user's scripts can't be listed here (an address refused)
        raise AdminError(f"{user}: {e}") from None


def report_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The report's lines for one user's scripts (``import_scripts``)."""
    lines = []
    for entry in entries:
        head = f"sieve {entry['name']!r}"
        result, error, was_active = entry["result"], entry["error"], entry["active_in_export"]
        if result == "not imported":
            was = ", active in the export" if was_active else ""
            lines.append(f"{head}: not imported{was}: {entry['reason']}")
            continue
        text = {"imported": "imported", "unchanged": "there already, unchanged",
                "kept": "kept the script here (it differs from the export's)"}[result]  # fmt: skip
        other = entry.get("active_here")
        if entry["activated"] or (other == entry["name"] and error is None):
            text += ", active"
        elif was_active and error is None:
            text += f", inactive: {other!r} is active here" if other else ", inactive"
        if error is not None:
            refused = "inactive, it was active in the export" if was_active else "inactive"
            text += f" ({refused}): our Sieve refuses it: {error}"
        lines.append(f"{head}: {text}")
    return lines
