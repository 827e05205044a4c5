"""Each user's Sieve scripts on disk: ``DATA/sieve/DOMAIN/USER/``, one of them active.

A script ``NAME`` is the file ``NAME.sieve`` (the name percent-encoded, so any name RFC 5804
allows is one safe file name and none can leave the directory); ``active`` holds the name of
the active script, or is absent. A name whose encoded form would be too long for a file name
(RFC 5804 allows 128 characters: 128 dots are 384 octets encoded, 128 CJK characters 1,152;
Linux allows 255) is the file ``%h-DIGEST.sieve`` instead, with its name in
``%h-DIGEST.name`` beside it (no percent-encoded name begins ``%h``). Every write goes
through ``_safeio.write_atomic`` (temporary file, fsync, rename, directory fsync): a crash
leaves the old script or the new one, never half of either, and the active script is never
a half-written file.

Quotas (RFC 5804 HAVESPACE, PUTSCRIPT): at most ``max_scripts`` scripts of at most
``max_script_size`` octets each; names of at most ``MAX_NAME`` characters without control
characters (RFC 5804 1.6).

Every method blocks on the disk: the ManageSieve server runs them in the storage pool, the
delivery step in its own thread. The compiled form of each active script is cached by file
identity (inode, size, mtime), so delivery parses a script once, not per message.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote

from txmailhost._safeio import fsync_dir, makedirs_durably, write_atomic
from txmailhost.sieve.language import Script, compile_script

MAX_NAME = 128
SUFFIX = ".sieve"
# an encoded name up to this long is the file name itself (with SUFFIX and write_atomic's
# temporary name around it, well within 255 octets); a longer one becomes a digest
MAX_ENCODED = 150
HASHED = "%h-"
NAME_SUFFIX = ".name"
ACTIVE = "active"
GLOBAL = "global"  # DATA/sieve/global/: the administrator's scripts for include :global
# ASCII atext, or non-ASCII that isn't a control or a space (RFC 6531 local parts, as the
# Maildir store takes them); never "/" or NUL: one path component.
_LOCAL = re.compile(r"(?:[a-z0-9!#$%&'*+=?^_`{|}~.-]|[^\x00-\x7f\s\x80-\x9f\u2028\u2029])+")
_DOMAIN = re.compile(r"[a-z0-9.-]+")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ScriptError(Exception):
    """A request on the scripts that can't be done; ``code`` is the RFC 5804 response code
    (``NONEXISTENT``, ``ALREADYEXISTS``, ``ACTIVE``, ``QUOTA/MAXSCRIPTS``, ``QUOTA/MAXSIZE``)
    or None."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ScriptInfo:
    name: str
    active: bool


def check_name(name: str) -> str:
    """``name`` if RFC 5804 allows it as a script name (1.6), else ScriptError."""
    if not name or len(name) > MAX_NAME:
        raise ScriptError(f"a script name has 1 to {MAX_NAME} characters")
    if _CONTROL.search(name) or unicodedata.normalize("NFC", name) != name:
        raise ScriptError("a script name may not contain control characters")
    return name


def _file_name(name: str) -> str:
    encoded = quote(check_name(name), safe=" -_@+,=").replace(".", "%2E")
    if len(encoded) > MAX_ENCODED:
        return HASHED + hashlib.sha256(name.encode("utf-8")).hexdigest()[:40] + SUFFIX
    return encoded + SUFFIX


def _name_file(file_name: str) -> str | None:
    """The file holding the name of the script in ``file_name`` when it is a digest."""
    return file_name[: -len(SUFFIX)] + NAME_SUFFIX if file_name.startswith(HASHED) else None


class ScriptStore:
    """The scripts of every user under ``root`` (``DATA/sieve``)."""

    def __init__(self, root: str, max_scripts: int = 20, max_script_size: int = 64 * 1024) -> None:
        self.root = root
        self.max_scripts = max_scripts
        self.max_script_size = max_script_size
        self._lock = threading.Lock()
        self._compiled: dict[str, tuple[tuple[int, int, int], Script]] = {}

    def user_directory(self, user: str) -> str:
        """``root/DOMAIN/LOCALPART`` for a canonical address; refuses anything path-like."""
        local, at, domain = user.lower().rpartition("@")
        if domain == GLOBAL:
            raise ScriptError(f"not a user address: {user!r}")
        if not at or not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
            raise ScriptError(f"not a user address: {user!r}")
        if local.startswith(".") or ".." in local or domain.startswith(".") or ".." in domain:
            raise ScriptError(f"not a user address: {user!r}")
        return os.path.join(self.root, domain, local)

    def state_key(self, user: str) -> str:
        """Where the user's vacation and failure memories are kept: their directory (the
        shared store of ``shared.py`` keeps them under the address)."""
        return self.user_directory(user)

    def _path(self, user: str, name: str) -> str:
        return os.path.join(self.user_directory(user), _file_name(name))

    # -- reading -------------------------------------------------------------------------------

    def active_name(self, user: str) -> str | None:
        try:
            with open(os.path.join(self.user_directory(user), ACTIVE), encoding="utf-8") as f:
                # only line ends: a name may begin or end with spaces ("x " isn't "x")
                name = f.read().strip("\r\n")
        except FileNotFoundError:
            return None
        return name or None

    def list(self, user: str) -> list[ScriptInfo]:
        directory = self.user_directory(user)
        try:
            files = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        active = self.active_name(user)
        names = []
        for file_name in files:
            if not file_name.endswith(SUFFIX):
                continue
            name_file = _name_file(file_name)
            if name_file is None:
                names.append(unquote(file_name[: -len(SUFFIX)]))
                continue
            try:
                with open(os.path.join(directory, name_file), encoding="utf-8") as f:
                    names.append(f.read())
            except FileNotFoundError:  # never written (a crash between the two): not listed
                continue
        return [ScriptInfo(name, name == active) for name in sorted(names)]

    def get(self, user: str, name: str) -> str:
        try:
            with open(self._path(user, name), "rb") as f:
                return f.read().decode("utf-8", "replace")  # as stored: CRLF stays CRLF
        except FileNotFoundError:
            raise ScriptError(f"no script named {name!r}", "NONEXISTENT") from None

    def active_script(self, user: str) -> tuple[str, Script] | None:
        """(name, compiled script) of the user's active script; None when there is none.

        Raises ``SieveSyntaxError`` for an active script that no longer compiles (written by
        hand, or checked by an older version): the caller keeps the message in INBOX."""
        name = self.active_name(user)
        if name is None:
            return None
        script = self._compile(self._path(user, name))
        return None if script is None else (name, script)

    def included(self, user: str, location: str, name: str) -> Script | None:
        """The script ``include`` names (RFC 6609): one of the user's (``personal``) or one of
        the administrator's in ``DATA/sieve/global/`` (``global``); None if there is none.
        Raises ``SieveSyntaxError`` for one that doesn't compile."""
        try:
            if location == "global":
                path = os.path.join(self.root, GLOBAL, _file_name(name))
            else:
                path = self._path(user, name)
        except ScriptError:
            return None
        return self._compile(path)

    def _compile(self, path: str) -> Script | None:
        """The compiled script at ``path``, from the cache while the file is unchanged."""
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                cached = self._compiled.get(path)
                if cached is not None and cached[0] == identity:
                    return cached[1]
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        script = compile_script(text)
        with self._lock:
            if len(self._compiled) > 10_000:
                self._compiled.clear()
            self._compiled[path] = (identity, script)
        return script

    # -- quotas ----------------------------------------------------------------------------------

    def check_space(self, user: str, name: str, size: int) -> None:
        """RFC 5804 HAVESPACE: raise ScriptError(QUOTA/...) if the script wouldn't fit."""
        check_name(name)
        if size > self.max_script_size:
            raise ScriptError(
                f"scripts may be at most {self.max_script_size} octets", "QUOTA/MAXSIZE"
            )
        existing = {info.name for info in self.list(user)}
        if name not in existing and len(existing) >= self.max_scripts:
            raise ScriptError(f"at most {self.max_scripts} scripts per user", "QUOTA/MAXSCRIPTS")

    # -- writing ---------------------------------------------------------------------------------

    def put(self, user: str, name: str, text: str, check: bool = True) -> Script | None:
        """Check ``text`` (SieveSyntaxError) and store it as ``name``, replacing any old one.

        ``check=False`` stores a script that doesn't compile (None is returned): ``migrate
        dovecot`` keeps a user's script our Sieve refuses, inactive, for them to mend,
        rather than lose it. The quotas hold either way."""
        data = text.encode("utf-8")
        with self._lock:
            self.check_space(user, name, len(data))
            script = compile_script(text, max_size=self.max_script_size) if check else None
            directory = self.user_directory(user)
            makedirs_durably(directory)
            self._write_name(user, name)
            write_atomic(self._path(user, name), data)
        return script

    def _write_name(self, user: str, name: str) -> None:
        """A long name's ``.name`` file, written before its script (so a script is listed
        only with its name)."""
        name_file = _name_file(_file_name(name))
        if name_file is not None:
            write_atomic(os.path.join(self.user_directory(user), name_file), name.encode())

    def _drop_name(self, user: str, name: str) -> None:
        name_file = _name_file(_file_name(name))
        if name_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.user_directory(user), name_file))

    def set_active(self, user: str, name: str | None) -> None:
        """Make ``name`` the active script; None (SETACTIVE "") deactivates every script."""
        directory = self.user_directory(user)
        marker = os.path.join(directory, ACTIVE)
        with self._lock:
            if name is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(marker)
                    fsync_dir(directory)
                return
            if not os.path.exists(self._path(user, name)):
                raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
            write_atomic(marker, name.encode("utf-8"))

    def delete(self, user: str, name: str) -> None:
        with self._lock:
            if self.active_name(user) == name:
                raise ScriptError("the active script can't be deleted", "ACTIVE")
            try:
                os.unlink(self._path(user, name))
            except FileNotFoundError:
                raise ScriptError(f"no script named {name!r}", "NONEXISTENT") from None
            self._drop_name(user, name)
            fsync_dir(self.user_directory(user))

    def remove_user(self, user: str) -> None:
        """Everything kept for ``user`` (``user del --purge``): their scripts, which one is
        active, and the vacation and failure memories kept beside them (``state_key``). An
        account made later under the address must not run the old one's rules: an active
        redirect would send the new user's mail to someone else."""
        directory = self.user_directory(user)
        with self._lock:
            if not os.path.lexists(directory):
                return
            if os.path.islink(directory) or not os.path.isdir(directory):
                os.unlink(directory)
            else:
                shutil.rmtree(directory)
            fsync_dir(os.path.dirname(directory))

    def rename(self, user: str, old: str, new: str) -> None:
        with self._lock:
            source, target = self._path(user, old), self._path(user, new)
            if not os.path.exists(source):
                raise ScriptError(f"no script named {old!r}", "NONEXISTENT")
            if os.path.exists(target):
                raise ScriptError(f"a script named {new!r} exists", "ALREADYEXISTS")
            self._write_name(user, new)
            os.link(source, target)  # never replaces: a concurrent PUTSCRIPT can't be lost
            if self.active_name(user) == old:
                write_atomic(os.path.join(self.user_directory(user), ACTIVE), new.encode())
            os.unlink(source)
            self._drop_name(user, old)
            fsync_dir(self.user_directory(user))
