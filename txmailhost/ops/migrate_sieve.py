"""Users' Sieve scripts from Dovecot Pigeonhole, for ``migrate dovecot``.

Pigeonhole's file storage, as its default location ``file:~/sieve;active=~/.dovecot.sieve``
lays it out: each script ``NAME`` is the file ``~/sieve/NAME.sieve`` and the active one is
the target of the symbolic link ``~/.dovecot.sieve``. A ``~/.dovecot.sieve`` that is a
regular file is a script written before ManageSieve was used, and it is active: Pigeonhole
moves such a file into the directory as ``dovecot.orig``, and so does this (under that name,
active). ``--sieve LOCATION`` reads another layout: the value of Dovecot's ``sieve =``
setting (``file:PATH;active=PATH``, a bare path being ``file:``; Pigeonhole 0.3's
``sieve_dir = D`` and ``sieve = F`` are ``file:D;active=F``; a PATH that is a file, without
``active=``, is one script, active), with ``~`` (the home), ``%u`` (the address), ``%n``
(its local part), ``%d`` (its domain), ``%h`` (the home), their ``%L`` lower-case forms
(``%Ln``) and ``%{user}``, ``%{username}``, ``%{domain}``, ``%{home}``. The home is the
passwd-file's, else the directory holding the Maildir when it is ``.../Maildir``, else the
Maildir itself.

Each script goes into the store ManageSieve serves (``sieve/scripts.py``, or the shared
table of ``sieve/shared.py``) under its name made one RFC 5804 allows (1.6: no control
characters, NFC, at most 128 characters; a name that had to change gets ``-2`` when another
script has it), within the ``[sieve]`` quotas (a script over them is reported, not
imported: the active one is tried first). Which was active is kept, if it compiles here: a
script our Sieve refuses (an extension we don't have, such as ``vnd.dovecot.*`` or
``regex``; a syntax error) is imported all the same but never made active, and the report
names it with the error, so that no mail is filed by half a rule set and the user can mend
it over ManageSieve.

Run again, a migration changes nothing a first one brought: a script whose name is here
already is left as it is (the same text: ``unchanged``; another: ``kept``, reported, as the
user may have edited it here), and a script is made active only while none is.

Nothing is followed through a link but the active one, and that only to a script of the
user's own directory; the files are read as ``sourcefiles.py`` reads mail (regular files
only, never through a link, a FIFO never opened to hang the run), one at a time and only
once their size is known to fit the ``[sieve]`` quotas.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from txmailhost.ops.mailbox_admin import AdminError
from txmailhost.ops.sourcefiles import SourceFileError, kind, read_regular, shown
from txmailhost.sieve.language import compile_script
from txmailhost.sieve.scripts import MAX_NAME, ScriptError, check_name

ACTIVE_LINK = ".dovecot.sieve"
DEFAULT_LOCATION = f"file:~/sieve;active=~/{ACTIVE_LINK}"
SUFFIX = ".sieve"
RESCUED = "dovecot.orig"  # Pigeonhole's name for a plain ~/.dovecot.sieve it moves in
_VARIABLE = re.compile(r"%(?:(L?)([undh%])|\{(user|username|domain|home)\})|%")
_LONG = {"user": "u", "username": "n", "domain": "d", "home": "h"}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class SieveLocation:
    """Where a user's scripts are, as templates: the directory and the active link."""

    directory: str
    active: str | None


@dataclass(frozen=True)
class SourceScript:
    """A script found; read only when it is imported (one at a time, and only if it fits
    the ``[sieve]`` quotas: a user's ten thousand large files are never all in memory)."""

    name: str  # the name it is imported under
    path: str
    size: int
    active: bool


def parse_location(text: str) -> SieveLocation:
    """Dovecot's ``sieve =`` value (``[file:]PATH[;active=PATH][;other options]``); other
    storages (``dict:``, ``ldap:``) hold scripts this can't read: AdminError."""
    body, *options = text.split(";")
    storage, colon, path = body.partition(":")
    if not colon or storage.startswith(("/", "~", ".")):
        storage, path = "file", body
    if storage != "file":
        raise AdminError(f"--sieve {text!r}: only Pigeonhole's file: storage can be read")
    active = None
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() == "active":
            active = value.strip()
    location = SieveLocation(path.strip(), active or None)
    for template in (location.directory, location.active or ""):
        expand(template, "user@example.org", "/home")  # an unknown variable: refused now
    if not location.directory:
        raise AdminError(f"--sieve {text!r}: no path")
    return location


def expand(template: str, user: str, home: str | None) -> str:
    """``template`` with Dovecot's variables of ``user`` (module docstring) and ``~``;
    AdminError for a variable this doesn't know, ValueError when the home is needed and
    there is none."""
    local, _, domain = user.rpartition("@")
    values = {"u": user, "n": local, "d": domain, "h": home, "%": "%"}

    def value(found: re.Match[str]) -> str:
        letter = found[2] or _LONG.get(found[3] or "")
        if letter is None:
            raise AdminError(f"--sieve: unknown variable at {found.string[found.start() :]!r}")
        text = values[letter]
        if text is None:
            raise ValueError("no home directory for ~ or %h")
        return text.lower() if found[1] else text

    if template == "~" or template.startswith("~/"):
        if home is None:
            raise ValueError("no home directory for ~ or %h")
        template = home.replace("%", "%%") + template[1:]
    return _VARIABLE.sub(value, template)


def sieve_home(home: str, maildir: str | None) -> str | None:
    """The user's home for ``~``: the passwd-file's, else beside the Maildir."""
    if home:
        return home
    if maildir is None:
        return None
    maildir = maildir.rstrip("/")
    return os.path.dirname(maildir) if os.path.basename(maildir) == "Maildir" else maildir


# -- reading Pigeonhole's files ----------------------------------------------------------------


def find_scripts(
    location: SieveLocation, user: str, home: str | None, skipped: list[str]
) -> list[SourceScript]:
    """The user's scripts, the active one marked; what can't be read is in ``skipped``."""
    try:
        directory = expand(location.directory, user, home)
        active = expand(location.active, user, home) if location.active else None
    except ValueError as e:
        skipped.append(f"sieve scripts not looked for: {e}")
        return []
    # "sieve = file:~/.dovecot.sieve": one script, active (Pigeonhole before sieve_dir)
    single = active is None and stat.S_ISREG(_mode(directory))
    active = directory if single else active
    files = {} if single else _script_files(directory, skipped)
    active_file, rescued = _active_of(active, directory, files, skipped) if active else (None, None)
    stems = [(stem, False) for stem in files] + ([(RESCUED, True)] if rescued is not None else [])
    names = _names([stem for stem, _ in sorted(stems)])
    found = []
    for (stem, is_rescued), name in zip(sorted(stems), names, strict=True):
        path = rescued if is_rescued else os.path.join(directory, files[stem])
        assert path is not None
        is_active = is_rescued or (active_file is not None and files[stem] == active_file)
        found.append(SourceScript(name, path, os.lstat(path).st_size, is_active))
    return found


def read_script(path: str, limit: int) -> tuple[str, str | None]:
    """(text, why it isn't a script as it is) of a script file of at most ``limit`` octets
    (``SourceFileError`` otherwise, or when it is no longer a regular file): octets that
    aren't UTF-8 read as U+FFFD, and that is the reason."""
    data = read_regular(path, limit)
    if data is None:
        raise SourceFileError(f"{shown(path)}: removed while being read")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        problem = f"not UTF-8 (byte {data[e.start]:#04x} at {e.start})"
        return data.decode("utf-8", "replace"), problem


def _mode(path: str) -> int:
    """``path``'s mode, not followed; 0 for nothing there."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def _script_files(directory: str, skipped: list[str]) -> dict[str, str]:
    """{stem: file name} of the ``NAME.sieve`` regular files of ``directory``; a directory
    that is a link, and a script that is not a regular file, are reported."""
    mode = _mode(directory)
    if not mode:
        return {}
    if not stat.S_ISDIR(mode):
        skipped.append(f"{shown(directory)}: {kind(mode) if not stat.S_ISREG(mode) else 'a file'}"
                       ", not a directory of Sieve scripts")  # fmt: skip
        return {}
    files = {}
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(SUFFIX) or entry == SUFFIX:
            continue
        mode = os.lstat(os.path.join(directory, entry)).st_mode
        if stat.S_ISREG(mode):
            files[entry[: -len(SUFFIX)]] = entry
        else:
            skipped.append(f"{shown(os.path.join(directory, entry))}: {kind(mode)}")
    return files


def _active_of(
    active: str, directory: str, files: dict[str, str], skipped: list[str]
) -> tuple[str | None, str | None]:
    """(file name of the active script in ``directory``, path of a plain active file to
    import as ``dovecot.orig``): one of them, or neither. A link is read, never followed:
    its target counts only when it names a script of the user's own directory."""
    mode = _mode(active)
    if not mode:
        return None, None
    if stat.S_ISREG(mode):
        return None, active
    if not stat.S_ISLNK(mode):
        skipped.append(f"{shown(active)}: {kind(mode)}")
        return None, None
    target = os.path.join(os.path.dirname(active), os.readlink(active))
    name = os.path.basename(target)
    try:
        inside = os.path.samefile(os.path.dirname(target) or ".", directory)
    except OSError:
        inside = False
    if inside and name in files.values():
        return name, None
    why = "a script that isn't there" if inside else f"outside {shown(directory)}"
    skipped.append(f"{shown(active)}: a link to {shown(target)}, {why} (not followed): "
                   "no script made active")  # fmt: skip
    return None, None


def _names(stems: list[str]) -> list[str]:
    """The script names for the file stems (sorted, so a second run names them alike): as
    RFC 5804 allows them, each once. A stem that is such a name already keeps it; one that
    had to change gets ``-2``, ``-3``... when its new name is taken."""
    names = [script_name(stem) for stem in stems]
    used = {name for stem, name in zip(stems, names, strict=True) if name == stem}
    out = []
    for stem, base in zip(stems, names, strict=True):
        if base == stem:
            out.append(base)
            continue
        name, number = base, 1
        while name in used:
            number += 1
            suffix = f"-{number}"
            name = base[: MAX_NAME - len(suffix)] + suffix
        used.add(name)
        out.append(name)
    return out


def script_name(stem: str) -> str:
    """A file's stem as a ManageSieve name (RFC 5804 1.6): bytes that aren't UTF-8 as
    U+FFFD, in NFC, control characters as ``_``, at most ``MAX_NAME`` characters."""
    text = os.fsencode(stem).decode("utf-8", "replace")
    text = _CONTROL.sub("_", unicodedata.normalize("NFC", text))[:MAX_NAME]
    try:
        return check_name(unicodedata.normalize("NFC", text))
    except ScriptError:
        return "script"


# -- into the store ----------------------------------------------------------------------------


def migrate_scripts(scripts: Any, user: str, found: list[SourceScript]) -> list[dict[str, Any]]:
    """Store the user's scripts (the active one first, so the script quota keeps it), and
    make the active one active here if it compiles and none is; a line of the report each."""

    def described(source: SourceScript) -> dict[str, Any]:
        return {
            "name": source.name,
            "file": shown(source.path),
            "renamed": os.path.basename(source.path) != source.name + SUFFIX,
            "active_in_dovecot": source.active,
        }

    return store_scripts(scripts, user, found, described)


def store_scripts(
    scripts: Any,
    user: str,
    found: list[SourceScript],
    described: Callable[[SourceScript], dict[str, Any]],
) -> list[dict[str, Any]]:
    """``found`` stored as ``user``'s scripts, the active one first (so the script quota
    keeps it): a script there already under the name is kept as it is ("unchanged" or
    "kept"); one our Sieve refuses is stored all the same and never made active; the active
    one is made active only where none is. A report entry each, begun by ``described``.
    What ``migrate dovecot`` and ``import`` (``archive_sieve.py``) do alike."""
    here = {info.name for info in scripts.list(user)}
    active_here = scripts.active_name(user)
    report = []
    for source in sorted(found, key=lambda s: (not s.active, s.name)):
        entry: dict[str, Any] = {**described(source), "error": None, "activated": False}
        try:
            if source.name not in here:  # a quota it is over: said before the file is read
                scripts.check_space(user, source.name, source.size)
            text, problem = read_script(source.path, scripts.max_script_size)
            entry["error"] = problem or refusal(text)
            if source.name in here:
                same = scripts.get(user, source.name) == text
                entry["result"] = "unchanged" if same else "kept"
            else:
                scripts.put(user, source.name, text, check=entry["error"] is None)
                entry["result"] = "imported"
                here.add(source.name)
        except (ScriptError, SourceFileError) as e:  # over a [sieve] quota; changed since
            entry["result"], entry["reason"] = "not imported", str(e)
        if (
            source.active
            and entry["error"] is None
            and entry["result"] in ("imported", "unchanged")
            and active_here is None
        ):
            scripts.set_active(user, source.name)
            active_here, entry["activated"] = source.name, True
        elif source.active:
            entry["active_here"] = active_here
        report.append(entry)
    return report


def refusal(text: str) -> str | None:
    """Why our Sieve refuses ``text`` (the check PUTSCRIPT makes), None if it doesn't."""
    try:
        compile_script(text)
    except ValueError as e:  # SieveSyntaxError, and nothing else the check may say
        return str(e)
    except RecursionError:
        return "nested too deeply"
    return None


def report_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The report's lines for one user's scripts (``migrate_scripts``)."""
    lines = []
    for entry in entries:
        head = f"sieve {entry['name']!r}" + (f" (from {entry['file']})" if entry["renamed"] else "")
        result, error = entry["result"], entry["error"]
        if result == "not imported":
            was = ", active in Dovecot" if entry["active_in_dovecot"] else ""
            lines.append(f"{head}: not imported{was}: {entry['reason']}")
            continue
        text = {"imported": "imported", "unchanged": "there already, unchanged",
                "kept": f"kept the script here (it differs from {entry['file']})"}[result]  # fmt: skip
        other = entry.get("active_here")
        if entry["activated"] or (other == entry["name"] and error is None):
            text += ", active"
        elif entry["active_in_dovecot"] and error is None:
            text += f", inactive: {other!r} is active here" if other else ", inactive"
        if error is not None:
            refused = (
                "inactive, it was active in Dovecot" if entry["active_in_dovecot"] else ("inactive")
            )
            text += f" ({refused}): our Sieve refuses it: {error}"
        lines.append(f"{head}: {text}")
    return lines
