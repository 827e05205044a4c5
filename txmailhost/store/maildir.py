"""The Maildir++ implementation of ``IMailStore``.

Layout under the store root (``DATA/mail``)::

    DOMAIN/LOCALPART/{cur,new,tmp}            INBOX
    DOMAIN/LOCALPART/.Sent/{cur,new,tmp}      folder "Sent" (Maildir++: '.' + name, '/' -> '.')
    DOMAIN/LOCALPART/**/txmailhost-index.sqlite
    DOMAIN/LOCALPART/**/txmailhost-text.sqlite  the full-text index (textindex.py)

The files we write hold the message exactly as served to clients, with CRLF line ends, so a
POP3 RETR or IMAP FETCH is a plain read and RFC822.SIZE is the file size. Files other tools put
here usually end lines with LF alone; they are adopted as they are and served in their CRLF
form (``lineends.py``): the index keeps the CRLF size (from the name's ``,W=`` field, or counted
once when the file is adopted) and the CRLF form of the header, and a file whose size on disk
differs from it is converted as it is read. File names follow the Maildir convention
``TIME.MuSECPpidQn.HOST,S=SIZE,W=CRLFSIZE:2,FLAGS`` (flags ``DFPRST`` sorted), which is what
Dovecot and mutt read.

Delivery is a hard link of the already-fsync'd spool file into ``new/``, an fsync of ``new/``,
then an index row. A crash between the two leaves a file without a row; ``reconcile`` (run when
a mailbox is opened and its directories changed) gives it a UID, so nothing is lost. A copy
delivered with system flags (Sieve's imap4flags) is linked into ``cur/`` with them in its name
instead, so they survive that crash too; its keywords are in the index row only.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import stat
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 codec folder names use
from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txmailhost import _safeio
from txmailhost.store import index as _index
from txmailhost.store import lineends, objectids, staging, textindex
from txmailhost.store import metadata as _metadata
from txmailhost.store.acl import AclTable
from txmailhost.store.changes import ChangeBus
from txmailhost.store.image import ImageCache, columns_of
from txmailhost.store.interfaces import (
    ANSWERED,
    DEFAULT_MAILBOXES,
    DELETED,
    DRAFT,
    FLAGGED,
    INBOX,
    SEEN,
    IAclStore,
    IFileDelivery,
    IIndexRepair,
    IMailbox,
    IMailboxMove,
    IMailStore,
    IMetadataStore,
    IndexColumns,
    InvalidMailboxName,
    IQuotaAppend,
    IQuotaReservation,
    IStagedAppend,
    ITextIndex,
    MailboxChanges,
    MailboxExists,
    MailboxSelection,
    MailboxSnapshot,
    MailboxStatus,
    MessageInfo,
    MessageOrigin,
    MessageSource,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    StoredMessage,
    TextQuery,
    check_room,
)
from txmailhost.store.messagefiles import (
    NotAMessageFile,
    is_message,
    open_message_file,
    read_message_file,
)
from txmailhost.store.pending import PendingDeliveries
from txmailhost.store.quotalock import QuotaLocks
from txmailhost.store.textindex import TextIndex

T = TypeVar("T")

# Maildir info letters, in the ASCII order the convention requires; bit values for the index.
_LETTERS = (
    ("D", DRAFT, 1),
    ("F", FLAGGED, 2),
    ("R", ANSWERED, 4),
    ("S", SEEN, 8),
    ("T", DELETED, 16),
)
# "P" (passed/forwarded) has no IMAP system flag; Dovecot maps it to the $Forwarded keyword.
_PASSED = 32
_FORWARDED = "$Forwarded"
_BIT_OF_FLAG = {flag: bit for _, flag, bit in _LETTERS}
_BIT_OF_LETTER = {letter: bit for letter, _, bit in _LETTERS} | {"P": _PASSED}

# The local part of an account (accounts/addresses.py): ASCII atext, or any non-ASCII
# character that isn't a control or a space (RFC 6531 addresses); never '/', NUL or a
# leading dot, so it is one harmless directory name.
_ADDRESS_PART = re.compile(
    r"^(?:[a-z0-9!#$%&'*+=?^_`{|}~-]|[^\x00-\x7f\s\x80-\x9f\u2028\u2029])"
    r"(?:[a-z0-9.!#$%&'*+=?^_`{|}~-]|[^\x00-\x7f\s\x80-\x9f\u2028\u2029])*$"
)
_counter = itertools.count()
SWEEP_INTERVAL = 3600.0  # seconds between two sweeps of one tmp/ (staging.py)
# A folder being deleted, renamed out of sight in the user's directory: no leading dot, so no
# Maildir++ reader (ours, RENAME's prefix match, Dovecot, mutt) takes it for a folder.
_TOMBSTONE = "txmailhost-deleted."
_log = Logger()
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


def _now() -> float:
    """INTERNALDATE for mail arriving now, in whole seconds: what IMAP can say (RFC 9051
    date-time), and what the spool's records keep (``delivery/local.py``). A fraction on
    some copies only made an earlier message sort after a later one in the same second
    (SORT ARRIVAL, THREAD, DATE without a Date: field)."""
    return float(int(time.time()))


def flags_to_bits(flags: Iterable[str]) -> tuple[int, str]:
    """Split IMAP flags into the index bitmask and the space-separated keyword string."""
    bits, keywords = 0, []
    for flag in flags:
        if flag in _BIT_OF_FLAG:
            bits |= _BIT_OF_FLAG[flag]
        elif flag.lower() == _FORWARDED.lower():
            bits |= _PASSED
        elif not flag.startswith("\\"):
            keywords.append(flag)
    return bits, " ".join(sorted(set(keywords)))


@functools.lru_cache(maxsize=4096)
def bits_to_flags(bits: int, keywords: str) -> frozenset[str]:
    flags = {flag for _, flag, bit in _LETTERS if bits & bit}
    if bits & _PASSED:
        flags.add(_FORWARDED)
    if keywords:
        flags.update(keywords.split(" "))
    return frozenset(flags)


def _info_letters(bits: int) -> str:
    letters = [letter for letter, _, bit in _LETTERS if bits & bit]
    if bits & _PASSED:
        letters.append("P")
    return "".join(sorted(letters))


def _parse_info(filename: str) -> tuple[str, int]:
    """Split a Maildir file name into its base name and flag bits."""
    base, sep, info = filename.partition(":2,")
    bits = 0
    if sep:
        for letter in info:
            bits |= _BIT_OF_LETTER.get(letter, 0)
    return base, bits


def _message_path(directory: str, name: str, subdir: str, bits: int) -> str:
    if subdir == "new":
        return os.path.join(directory, "new", name)
    return os.path.join(directory, "cur", f"{name}:2,{_info_letters(bits)}")


def _subdir(bits: int, keywords: str, delivered: bool) -> str:
    """Where a message goes: ``new/`` holds only messages without flags (their names carry
    none). A delivered copy with only keywords stays in ``new/`` (they live in the index, not
    the name) so other Maildir readers still show it as new; one with system flags, or any
    message a client APPENDs with flags, goes into ``cur/``."""
    if delivered:
        return "cur" if bits else "new"
    return "new" if not bits and not keywords else "cur"


def user_directory(root: str, user: str) -> str:
    """``root/DOMAIN/LOCALPART`` for a canonical address; refuses anything path-like."""
    local, sep, domain = user.lower().rpartition("@")
    if not sep or not _ADDRESS_PART.match(local) or not re.fullmatch(r"[a-z0-9.-]+", domain):
        raise InvalidMailboxName(f"not a mailbox owner address: {user!r}")
    if domain.startswith(".") or ".." in domain:
        raise InvalidMailboxName(f"not a mailbox owner address: {user!r}")
    return os.path.join(root, domain, local)


ACL_FILE = "txmailhost-acl.sqlite"  # in the store root: every user's ACLs (store/acl.py)
_MAX_FOLDER_NAME = 255  # NAME_MAX: a Maildir++ folder, hierarchy and all, is one file name


def folder_directory(user_dir: str, mailbox: str) -> str:
    """The directory of ``mailbox`` (IMAP name, '/' hierarchy) inside the user's Maildir++.

    Refuses names that could leave the user's directory or that Maildir++ can't represent:
    empty components, '.' or '..', a '.' inside a component (it is the on-disk separator),
    NUL and other control characters, and lone surrogates (no character: what the CLI makes
    of an undecodable octet, ``\udcff``, which no UTF-8 file or table can hold).
    """
    if mailbox.upper() == INBOX:
        return user_dir
    components = mailbox.split("/")
    for part in components:
        if (
            not part
            or part in (".", "..")
            or "." in part
            or any(ord(c) < 32 or c == "\x7f" or 0xD800 <= ord(c) <= 0xDFFF for c in part)
        ):
            raise InvalidMailboxName(f"invalid mailbox name: {mailbox!r}")
    encoded = ".".join(p.encode("imap4-utf-7").decode("ascii") for p in components)
    if len(encoded) >= _MAX_FOLDER_NAME:  # "." + encoded is one directory entry
        raise InvalidMailboxName(f"mailbox name too long: {mailbox[:40]!r}...")
    return os.path.join(user_dir, "." + encoded)


@contextlib.contextmanager
def _removed_afterwards(staged: str) -> Iterator[None]:
    """A staging file is removed once added to a mailbox (by a link) or when adding fails."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staged)


def _header_in(head: bytes, limit: int) -> bytes | None:
    """``read_header``'s answer from the first ``limit`` octets of a message (fewer: all of
    it), or None when its header goes on past them."""
    end = lineends.header_end(head)
    if end >= 0:
        return lineends.crlf_form(head[:end])
    if len(head) < limit:
        return lineends.crlf_form(head)
    return None


def read_header(path: str, limit: int = _index.HEADER_CACHE_LIMIT) -> bytes:
    """The header block of the message file at ``path``, blank line included (RFC 5322 §2.1),
    in its CRLF form (``lineends.py``); the whole file when it has no body."""
    with open_message_file(path) as f:
        head = f.read(limit)
        found = _header_in(head, limit)
        if found is not None:
            return found
        # A header larger than the cache limit: keep reading, line by line.
        f.seek(0)
        lines = []
        for line in f:
            lines.append(line)
            if line in (b"\r\n", b"\n"):
                break
        return lineends.crlf_form(b"".join(lines))


def _headers_of(
    paths: Iterable[str], known: Mapping[str, bytes] | None = None
) -> list[bytes | None]:
    """``read_header`` of each file, None for one that can't be read (read before the index
    lock is taken: the index is then written without the file's header cached). ``known``:
    the headers of files just written from memory (``_stage``), not read back."""
    headers: list[bytes | None] = []
    for path in paths:
        if known is not None and path in known:
            headers.append(known[path])
            continue
        try:
            headers.append(read_header(path))
        except OSError:
            headers.append(None)
    return headers


def _adopt(path: str, filename: str) -> tuple[int, bytes | None]:
    """The CRLF size and header of a file another tool put into a mailbox: the size from the
    name's ``,W=`` field when it has one (nothing read), else counted from the file, once, here
    in the store's pool; the header when it was read anyway (a missing one is read on use)."""
    declared = lineends.declared_size(filename)
    if declared is not None:
        return declared, None
    with open_message_file(path) as f:
        head = f.read(_index.HEADER_CACHE_LIMIT)
        counter = lineends.SizeCounter()
        counter.feed(head)
        while chunk := f.read(1 << 20):
            counter.feed(chunk)
    end = lineends.header_end(head)
    if end >= 0:
        return counter.size, lineends.crlf_form(head[:end])
    if len(head) < _index.HEADER_CACHE_LIMIT:
        return counter.size, lineends.crlf_form(head)
    return counter.size, None


# URLAUTH mailbox access keys (RFC 4467), in the user's directory: {"mailbox": "hex", ...}.
_ACCESS_KEYS = "txmailhost-urlauth-keys.json"
_access_keys_lock = threading.Lock()


def _read_keys(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            keys = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {}
    except ValueError:  # a damaged file: its URLs stop working, as after RESETKEY
        return {}
    return {k: v for k, v in keys.items() if isinstance(k, str) and isinstance(v, str)}


def _folder_name(entry: str) -> str:
    """The IMAP name of the Maildir++ folder directory ``entry`` (``.Lists.tx``)."""
    return "/".join(p.encode("ascii").decode("imap4-utf-7") for p in entry[1:].split("."))


def _subdirectories(directory: str) -> list[str]:
    """The directories in ``directory`` (none if it is gone), symbolic links not followed."""
    try:
        with os.scandir(directory) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _remove_tombstones(user_dir: str) -> int:
    """Remove the folders DELETE renamed out of sight in ``user_dir`` and had not finished
    removing (a process killed meanwhile); how many went."""
    try:
        with os.scandir(user_dir) as entries:
            found = [e.path for e in entries if e.name.startswith(_TOMBSTONE)]
    except FileNotFoundError:
        return 0
    return sum(_remove_tombstone(path) for path in found)


def _remove_tombstone(path: str) -> bool:
    """Remove a deleted folder's tombstone; a sweep may be removing it at the same time."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        _log.warn("could not remove {path}, a deleted folder: remove it by hand", path=path)
        return False
    return True


def _make_maildir(directory: str) -> None:
    # cur/ last: its presence is what says a mailbox exists (``_folder``, ``_create_sync``),
    # so another thread or worker provisioning the same account at the same moment (a crowd
    # logging in on a new account) never finds cur/ without new/ and tmp/ beside it.
    for sub in ("tmp", "new", "cur"):
        _safeio.makedirs_durably(os.path.join(directory, sub))


def _holds(directory: str, name: str) -> bool:
    """Is the message file ``name`` in ``directory``, in new/ or (with any flags) in cur/?
    A name without its ``,W=`` field (as written before it was added) counts too."""
    names = (name, name.rpartition(",W=")[0]) if ",W=" in name else (name,)
    if any(os.path.exists(os.path.join(directory, "new", n)) for n in names):
        return True
    prefixes = tuple(n + ":" for n in names)
    with os.scandir(os.path.join(directory, "cur")) as entries:
        return any(e.name in names or e.name.startswith(prefixes) for e in entries)


def new_message_name(size: int, crlf_size: int | None = None) -> str:
    """A fresh Maildir name; ``,S=`` is the file's size and ``,W=`` its CRLF size (the same
    for the files we write; Dovecot reads both, and so do we when adopting a file)."""
    now = time.time()
    crlf = size if crlf_size is None else crlf_size
    return (
        f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST},S={size},W={crlf}"
    )


def _stage(
    directory: str, source: MessageSource, headers: dict[str, bytes] | None = None
) -> tuple[str, int]:
    """Write ``source`` into a new file in ``directory`` (the user's ``tmp/``) and fsync it,
    ready to be linked into mailboxes; (its path, its CRLF size: a sender may use bare LFs).
    The header of a message held in memory goes into ``headers`` under the path, for the
    index (``_add_files``): the file need not be opened and read again for it."""
    fd, path = tempfile.mkstemp(prefix=staging.prefix("append"), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            data = source.data
            if data is not None:
                f.write(data)
                crlf = len(data) + lineends.bare_newlines(data)
                if headers is not None:
                    limit = _index.HEADER_CACHE_LIMIT
                    header = _header_in(data[:limit], limit)
                    if header is not None:
                        headers[path] = header
            else:
                counter = lineends.SizeCounter()
                with source.open() as message:
                    while chunk := message.read(1 << 20):
                        counter.feed(chunk)
                        f.write(chunk)
                crlf = counter.size
            f.flush()
            _safeio.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path, crlf


@implementer(IMailbox, IMailboxMove, IStagedAppend, ITextIndex, IIndexRepair, IQuotaAppend)
class MaildirMailbox:
    """One opened mailbox; every public method hands its work to the store's thread pool."""

    def __init__(self, store: MaildirStore, user: str, name: str, directory: str) -> None:
        self._store = store
        self.user = user
        self.name = name
        self.directory = directory
        self._index = store.index_of(directory)
        self._text = TextIndex(directory)
        self._uidvalidity: int | None = None  # of the UIDs a session holds (``_check_view``)

    # -- the blocking halves, run in the pool --------------------------------------------------

    def _check_view(self, uidvalidity: int | None = None) -> None:
        """The UIDs a session holds (from ``select`` or ``snapshot``) name this mailbox's
        messages only under the UIDVALIDITY they came with (RFC 3501 §2.3.1.1). Once the
        index is made anew (a damaged one set aside, by this worker or another; the mailbox
        deleted and created again) they may name other messages, and a STORE or EXPUNGE by
        them would touch the wrong mail: the session is told its mailbox is gone (IMAP and
        POP3 close it) and sees the new one when it selects again."""
        if self._uidvalidity is None:
            return
        if uidvalidity is None:
            uidvalidity = self._index.meta()["uidvalidity"]
        if uidvalidity != self._uidvalidity:
            raise NoSuchMailbox(f"{self.name} was made anew (UIDVALIDITY {uidvalidity})")

    def _in_view(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_view()
        return fn(*args)

    def _snapshot(self) -> MailboxSnapshot:
        self._store._reconcile(self.directory)
        meta, rows = self._index.rows()
        self._uidvalidity = meta["uidvalidity"]
        return MailboxSnapshot(
            name=self.name,
            uidvalidity=meta["uidvalidity"],
            uidnext=meta["uidnext"],
            highestmodseq=meta["highestmodseq"],
            messages=tuple(
                MessageInfo(uid, bits_to_flags(bits, keywords), size, internaldate, modseq)
                for uid, _name, _subdir, bits, keywords, internaldate, size, modseq in rows
            ),
        )

    def _locate(self, uid: int) -> str:
        return self._locate_row(uid)[0]

    def _locate_row(self, uid: int) -> tuple[str, tuple]:
        """The file of ``uid`` and its index row."""
        row = self._index.row(uid)
        if row is None:
            raise NoSuchMessage(f"UID {uid} is not in {self.name}")
        _uid, name, subdir, bits, *_ = row
        path = _message_path(self.directory, name, subdir, bits)
        if os.path.exists(path):
            return path, row
        # Another Maildir tool renamed it (changed flags, moved new/ -> cur/): find it by name.
        found = self._find_file(name)
        if found is None:
            raise NoSuchMessage(f"UID {uid} is no longer in {self.name}")
        sub = os.path.basename(os.path.dirname(found))
        with self._index.write() as db:
            self._index.relocate(uid, sub, _parse_info(os.path.basename(found))[1], db)
        return found, row

    def _find_file(self, name: str) -> str | None:
        """The file whose base name is ``name``, in cur/ or new/ under any flags (None if
        gone): a look at the directories only, the index left as it is."""
        for sub in ("cur", "new"):
            for filename in self._listdir(sub):
                if _parse_info(filename)[0] == name:
                    return os.path.join(self.directory, sub, filename)
        return None

    def _listdir(self, sub: str) -> list[str]:
        try:
            return os.listdir(os.path.join(self.directory, sub))
        except FileNotFoundError:
            if not os.path.isdir(self.directory):  # removed since the index was read
                raise NoSuchMailbox(f"{self.directory} no longer exists") from None
            raise

    def _read_message(self, uid: int, path: str, size: int) -> bytes:
        """The message in its CRLF form (``size`` octets, the index says), from the file at
        ``path`` (where the index row says it is), or wherever ``_locate`` finds it if another
        Maildir tool renamed it: one open and one read (``read_message_file``) in the usual
        case. Only a file of another size (bare LF line ends) is converted."""
        try:
            data = read_message_file(path)
        except FileNotFoundError:
            data = read_message_file(self._locate(uid))
        return data if len(data) == size else lineends.crlf_form(data)

    def _open_message(self, uid: int) -> BinaryIO:
        self._check_view()
        path, row = self._locate_row(uid)
        try:
            file = open_message_file(path)
        except NotAMessageFile:  # indexed before such entries were skipped (``_scan``)
            raise NoSuchMessage(f"UID {uid} of {self.name} is not a message file") from None
        st = os.fstat(file.fileno())
        if st.st_size == row[6]:
            return file  # already CRLF: served as it is on disk
        return lineends.open_crlf(file, st)  # type: ignore[return-value]

    def _store_flags(
        self,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        unchangedsince: int | None = None,
        modified: list[int] | None = None,
    ) -> list[MessageInfo]:
        """``unchangedsince``: messages of a higher MODSEQ are left alone, their UIDs added
        to ``modified`` (the comparison is made under the index's write lock)."""
        want_bits, want_keywords = flags_to_bits(flags)
        want_kw = set(want_keywords.split()) if want_keywords else set()
        changes, results = [], []
        uids = sorted(set(uids))
        with self._index.write() as db:
            self._check_view(self._index.meta(db)["uidvalidity"])
            rows = self._index.full_rows(uids, db) if uids else {}
            for uid in uids:
                row = rows.get(uid)
                if row is None:
                    continue
                _uid, name, subdir, bits, keywords, internaldate, size, old_modseq = row
                if unchangedsince is not None and old_modseq > unchangedsince:
                    if modified is not None:
                        modified.append(uid)
                    continue
                kw = set(keywords.split()) if keywords else set()
                if mode == "+":
                    new_bits, new_kw = bits | want_bits, kw | want_kw
                elif mode == "-":
                    new_bits, new_kw = bits & ~want_bits, kw - want_kw
                else:
                    new_bits, new_kw = want_bits, want_kw
                if new_bits == bits and new_kw == kw:
                    continue
                old_path = _message_path(self.directory, name, subdir, bits)
                new_path = _message_path(self.directory, name, "cur", new_bits)
                if old_path != new_path:
                    with self._store._own_write(self.directory):
                        try:
                            os.rename(old_path, new_path)
                        except FileNotFoundError:
                            os.rename(self._locate(uid), new_path)
                changes.append((uid, "cur", new_bits, " ".join(sorted(new_kw)), internaldate, size))
            modseq = self._index.update_flags([c[:4] for c in changes], db) if changes else 0
        if changes:
            self._store._changed(self.directory)
        for uid, _sub, new_bits, keywords, internaldate, size in changes:
            results.append(
                MessageInfo(uid, bits_to_flags(new_bits, keywords), size, internaldate, modseq)
            )
        return results

    def _select(self, claim_recent: bool) -> MailboxSelection:
        self._store._reconcile(self.directory)
        image = self._store.images.get(self.directory)
        with image.lock:
            image.refresh(self._index)
            first_unseen, unseen = image.unseen()
            uidvalidity, uidnext, highestmodseq = (
                image.uidvalidity,
                image.uidnext,
                image.highestmodseq,
            )
            uids = image.uids[:]
            keywords = frozenset(image.keyword_names())
        self._uidvalidity = uidvalidity
        # Claimed only up to what this selection holds: a message added since is left for
        # whichever session is told of it first (``claim_recent``).
        first_recent = self._index.claim_recent(uidnext, claim_recent)
        mailboxid = self._index.mailboxid()
        return MailboxSelection(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            highestmodseq=highestmodseq,
            uids=uids,
            first_unseen=first_unseen,
            unseen=unseen,
            first_recent=first_recent,
            keywords=keywords,
            mailboxid=mailboxid,
        )

    def _columns(self, wanted: array) -> IndexColumns:
        # sorted here unless they aren't one run of the mailbox
        image = self._store.images.get(self.directory)
        with image.lock:
            image.refresh(self._index)
            self._check_view(image.uidvalidity)
            found, flags, sizes, dates, modseqs = columns_of(image, wanted, bits_to_flags)
        return IndexColumns(found, flags, sizes, dates, modseqs)

    def _status(self) -> MailboxStatus:
        self._store._reconcile(self.directory)
        counts = self._index.counts()
        return MailboxStatus(
            messages=counts["messages"],
            recent=counts["recent"],
            unseen=counts["unseen"],
            uidvalidity=counts["uidvalidity"],
            uidnext=counts["uidnext"],
            highestmodseq=counts["highestmodseq"],
            size=counts["size"],
            mailboxid=str(counts.get("mailboxid") or self._index.mailboxid()),
        )

    def _changes_since(self, modseq: int) -> MailboxChanges:
        self._store._reconcile(self.directory)
        self._check_view()
        highest, rows, gone = self._index.changes_since(modseq)
        return MailboxChanges(highest, tuple(_stored(row) for row in rows), tuple(gone))

    def _uid_range(self, low: int, high: int) -> list[StoredMessage]:
        self._check_view()
        return [_stored(row) for row in self._index.range_rows(low, high)]

    def _messages(self, uids: list[int], header: bool, content: bool) -> list[StoredMessage]:
        uids = sorted(set(uids))
        if not uids:
            return []
        if not header and not content:
            columns = self._columns(array("I", uids))
            return [
                _new_stored(StoredMessage, (uid, flagset, size, date, modseq, None, None))
                for uid, flagset, size, date, modseq in zip(
                    columns.uids,
                    columns.flags,
                    columns.sizes,
                    columns.internaldates,
                    columns.modseqs,
                    strict=True,
                )
            ]
        self._check_view()
        rows = self._index.full_rows(uids)
        headers = self._index.cached_headers(list(rows)) if header else {}
        found, to_cache = [], []
        for uid, row in rows.items():
            _uid, name, subdir, bits, keywords, internaldate, size, modseq = row
            head = body = None
            if content:
                try:
                    body = self._read_message(
                        uid, _message_path(self.directory, name, subdir, bits), size
                    )
                except (NoSuchMessage, FileNotFoundError, NotAMessageFile):
                    continue
            if header:
                head = headers.get(uid)
                if head is None:
                    if body is not None:
                        end = lineends.header_end(body)
                        head = body[:end] if end >= 0 else body
                    else:
                        try:
                            head = read_header(self._locate(uid))
                        except (NoSuchMessage, FileNotFoundError, NotAMessageFile):
                            continue
                    to_cache.append((uid, head))
            flags = bits_to_flags(bits, keywords)
            found.append(StoredMessage(uid, flags, size, internaldate, modseq, head, body))
        if to_cache:
            with self._index.write() as db:
                for uid, head in to_cache:
                    self._index.cache_header(uid, head, db)
        return found

    def _copy(self, uids: list[int], target: MaildirMailbox) -> list[tuple[int, int]]:
        """Link each file into ``target`` (no copy of the bytes), fsync, then index them,
        all under the target's index lock (``MaildirStore._reconcile`` says why)."""
        return self._place_into(target, uids, move=False)

    def _move(self, uids: list[int], target: MaildirMailbox) -> list[tuple[int, int]]:
        """``IMailboxMove``: rename each file into ``target`` (atomic: the file is in one
        directory or the other, never both), fsync both directories and index it there, under
        the target's lock as ``_copy`` does; then drop the rows here. A crash in between
        leaves rows here without files and files there without rows, and ``_reconcile``
        expunges the ones and adopts the others: each message ends up in one mailbox. Where
        no rename reaches ``target`` (another file system) a message is copied, and its
        original removed once the copy is durable (``_settle_move``)."""
        pairs = self._place_into(target, uids, move=True)
        if not pairs:
            return []
        gone = [uid for uid, _new_uid in pairs]
        with self._index.write() as db:
            # A reconcile meanwhile may have expunged them already (their files had gone).
            present = list(self._index.full_rows(gone, db))
            if present:
                self._index.remove(present, db)
        self._forget_text(gone)
        self._store._changed(self.directory)
        return pairs

    def _place_into(
        self, target: MaildirMailbox, uids: list[int], move: bool
    ) -> list[tuple[int, int]]:
        """COPY's and MOVE's common part: each message's file linked (or, ``move``, renamed)
        into ``target``, the directories fsync'd and the new rows written with the flags,
        INTERNALDATE, EMAILID and cached header of the originals, under the target's index
        lock. (source UID, new UID) of each message placed."""
        self._check_view()
        found = []
        for uid in sorted(set(uids)):
            try:
                found.append(self._locate_row(uid))
            except NoSuchMessage:
                continue
        if not found:
            return []
        headers = self._index.cached_headers([row[0] for _path, row in found])
        origins = self._index.origins([row[0] for _path, row in found])
        # Not ``_locate_row`` from here on: it may take this mailbox's lock, and a COPY the
        # other way holds that one and waits for the target's.
        with target._index.write() as db:
            placed, copied = self._transfer_all(target, found, move)
            if not placed:
                return []
            if move:
                self._settle_move(target, copied)
            else:
                _safeio.fsync_dirs(os.path.join(target.directory, e[2]) for e in placed)
            # RFC 8474: a copy is the same message (its EMAILID), saved anew (RFC 8514).
            emailids = [origins[entry[0]][0] if entry[0] in origins else None for entry in placed]
            try:
                new_uids = target._index.add([entry[1:] for entry in placed], db, emailids)
                for (uid, *_), new_uid in zip(placed, new_uids, strict=True):
                    if uid in headers:
                        target._index.cache_header(new_uid, headers[uid], db)
            except BaseException:
                if not move:  # copies of a COPY that failed: not for a reconcile to adopt
                    with self._store._own_write(target.directory):
                        for _uid, name, subdir, bits, *_rest in placed:
                            with contextlib.suppress(OSError):
                                os.unlink(_message_path(target.directory, name, subdir, bits))
                raise
        self._store._changed(target.directory)
        return [(entry[0], new_uid) for entry, new_uid in zip(placed, new_uids, strict=True)]

    def _transfer_all(
        self, target: MaildirMailbox, found: list[tuple[str, tuple]], move: bool
    ) -> tuple[list[tuple], list[tuple[str, str, str]]]:
        """Each file of ``found`` (path, index row) linked or renamed into ``target``: the
        rows to add there, and (original's path, its base name, copy's path) of each message
        a move had to copy (another file system). A failure part way (a full disk under a copy) removes the copies made
        so far, whose originals are still in place and indexed: nothing is left twice."""
        placed: list[tuple] = []
        copied: list[tuple[str, str, str]] = []
        try:
            for path, row in found:
                uid, name, _subdir, bits, keywords, internaldate, size, _modseq = row
                # The file goes as it is (LF line ends stay LF): the name says both sizes.
                subdir = "new" if not bits and not keywords else "cur"
                moved = self._transfer_into(target, path, name, size, subdir, bits, move)
                if moved is None:
                    continue
                new_name, left = moved
                placed.append((uid, new_name, subdir, bits, keywords, internaldate, size))
                if left is not None:
                    copy = _message_path(target.directory, new_name, subdir, bits)
                    copied.append((left, name, copy))
        except BaseException:
            with self._store._own_write(target.directory):
                for _original, _name, copy in copied:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(copy)
            raise
        return placed, copied

    def _settle_move(self, target: MaildirMailbox, copied: list[tuple[str, str, str]]) -> None:
        """A move's files on disk: the target's directories fsync'd first, so the new names
        are durable, then the originals of the messages that had to be copied removed (found
        by name if a STORE renamed one meanwhile), then this mailbox's directories fsync'd
        (the renames' and removals' old names gone). A crash between the first fsync and the
        last can leave a copied message in both mailboxes, never in neither; a renamed one
        is in one at every moment."""
        _safeio.fsync_dirs(os.path.join(target.directory, sub) for sub in ("cur", "new"))
        if copied:
            with self._store._own_write(self.directory):
                for original, name, _copy in copied:
                    try:
                        os.unlink(original)
                    except FileNotFoundError:
                        renamed = self._find_file(name)
                        if renamed is not None:
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(renamed)
        _safeio.fsync_dirs(os.path.join(self.directory, sub) for sub in ("cur", "new"))

    def _transfer_into(
        self,
        target: MaildirMailbox,
        path: str,
        name: str,
        size: int,
        subdir: str,
        bits: int,
        move: bool,
    ) -> tuple[str, str | None] | None:
        """Link the message file ``path`` (base name ``name``) into ``target`` under a new
        name, or with ``move`` rename it there (one rename(2): the file leaves this mailbox);
        the new name, and the original's path if a move had to copy it (``rename_or_copy``);
        None when it has been expunged. A file renamed meanwhile (another session's STORE,
        another Maildir tool) is looked for again by name."""
        for _attempt in range(3):
            try:
                new_name = new_message_name(os.stat(path).st_size, size)
                dest = _message_path(target.directory, new_name, subdir, bits)
                with self._store._own_write(target.directory):
                    if not move:
                        _safeio.link_durably(path, dest)
                        return new_name, None
                    with self._store._own_write(self.directory):
                        renamed = _safeio.rename_or_copy(path, dest)
                return new_name, None if renamed else path
            except FileNotFoundError:
                found = self._find_file(name)
                if found is None:
                    return None
                path = found
        raise NoSuchMessage(f"{name} in {self.name} keeps being renamed")

    def _append_staged(
        self, source_path: str, flags: Iterable[str], internaldate: float | None
    ) -> tuple[int, int]:
        with _removed_afterwards(source_path):
            with open(source_path, "rb") as f:
                _safeio.fsync(f.fileno())
                crlf = lineends.crlf_size(f)  # a client may APPEND bare LFs: serve CRLF
            return self._append(source_path, flags, internaldate, crlf)

    def _append_source(
        self, source: MessageSource, flags: Iterable[str], internaldate: float | None
    ) -> tuple[int, int]:
        headers: dict[str, bytes] = {}
        path, crlf = _stage(self._store.staging_directory(self.user), source, headers)
        with _removed_afterwards(path):
            return self._append(path, flags, internaldate, crlf, headers.get(path))

    def _append_many(
        self, items: list[tuple[MessageSource, list[str], float | None]], limit: int | None = None
    ) -> tuple[int, list[int]]:
        """Stage, fsync and add ``items`` in one index write. With a quota ``limit``
        (``append_within_quota``) the owner's usage is compared under their quota lock
        (``quotalock.py``), in one step with the add; the messages are written and fsync'd
        before the lock is taken, and a file already in the owner's staging directory (a
        large literal) is fsync'd and linked as it is, not copied."""
        staging = self._store.staging_directory(self.user)
        staged: list[str] = []
        headers: dict[str, bytes] = {}
        meta: dict[str, int] = {}
        try:
            files = []
            for source, flags, internaldate in items:
                in_place = source.path is not None and os.path.dirname(source.path) == staging
                if limit is not None and in_place:
                    path = source.path
                    with open(path, "rb") as f:
                        _safeio.fsync(f.fileno())
                        crlf = lineends.crlf_size(f)
                else:
                    path, crlf = _stage(staging, source, headers)
                    staged.append(path)
                bits, keywords = flags_to_bits(flags)
                files.append((path, bits, keywords, internaldate, crlf))
            if limit is None:
                uids = self._store._add_files(self.directory, files, headers=headers, meta=meta)
            else:
                octets = sum(crlf for *_rest, crlf in files)
                with self._store.quota.locked([self.user]):
                    used = self._store._counted_sync(self.user)
                    if used + octets > limit:
                        raise QuotaExceeded(f"{self.user} holds {used} octets; {octets} more")
                    uids = self._store._add_files(self.directory, files, headers=headers, meta=meta)
        finally:
            for path in staged:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return meta["uidvalidity"], uids

    def _expunge(self, uids: Iterable[int]) -> list[int]:
        removed = []
        with self._index.write() as db:
            self._check_view(self._index.meta(db)["uidvalidity"])
            for uid in uids:
                try:
                    path = self._locate(uid)
                except NoSuchMessage:
                    if self._index.row(uid) is not None:
                        removed.append(uid)
                    continue
                with self._store._own_write(self.directory):
                    os.unlink(path)
                removed.append(uid)
            if removed:
                self._index.remove(removed, db)
        if removed:
            self._forget_text(removed)
            _safeio.fsync_dirs(os.path.join(self.directory, sub) for sub in ("cur", "new"))
            self._store._changed(self.directory)
        return removed

    def _text_candidates(
        self, query: TextQuery, uids: list[int], extractor: Any
    ) -> set[int] | None:
        """Index what the text index lacks among ``uids`` (mail delivered or appended since
        the last search: delivery itself never waits for the index) for a bounded time, then
        ask it; what is left is a candidate (the caller tests it) and indexed in the
        background."""
        try:
            uidvalidity = self._index.meta()["uidvalidity"]
            indexed, left = textindex.catch_up(
                self._text, uidvalidity, uids, extractor, self._read_for_index,
                textindex.SEARCH_BUDGET,
            )  # fmt: skip
            if left:
                self._store._backfill_text(self, left, extractor)
            return textindex.candidates_among(self._text, query, uids, indexed)
        except sqlite3.DatabaseError as e:  # a damaged cache: scan now, rebuild next time
            self._drop_text(e)
            return None

    def _forget_text(self, uids: list[int]) -> None:
        """Expunged: out of the text index's answers. The messages are gone already, so a
        damaged index file can't fail the expunge: it is dropped and rebuilt later."""
        try:
            self._text.forget(uids)
        except sqlite3.DatabaseError as e:
            self._drop_text(e)

    def _read_for_index(self, uids: list[int]) -> list[StoredMessage]:
        return self._messages(uids, True, True)

    def _drop_text(self, error: Exception) -> None:
        _log.warn("text index {path} dropped: {error}", path=self._text.path, error=str(error))
        self._text.drop()

    def _index_all_text(self, uids: list[int], extractor: Any) -> int:
        """Index every one of ``uids`` the text index lacks, then compact it; how many it
        holds."""
        uidvalidity = self._index.meta()["uidvalidity"]
        indexed, _left = textindex.catch_up(
            self._text, uidvalidity, uids, extractor, self._read_for_index
        )
        self._text.compact()
        return len(indexed)

    def _rebuild_text_index(self, extractor: Any) -> int:
        """Drop this folder's text index and index every message again (``txmailhost index
        rebuild``); the number of messages indexed."""
        self._store._reconcile(self.directory)
        self._text.drop()
        _meta, uids, *_ = self._index.uids()
        return self._index_all_text(uids, extractor)

    def _repair_index(self, force: bool) -> str | None:
        aside = self._index.set_aside(force)
        self._store._reconcile(self.directory)
        return aside

    def _append(
        self,
        source_path: str,
        flags: Iterable[str],
        internaldate: float | None,
        crlf_size: int | None = None,
        header: bytes | None = None,
    ) -> tuple[int, int]:
        """(UIDVALIDITY, UID) of the file ``source_path`` added: the UIDVALIDITY as the add
        read it, in its own transaction."""
        bits, keywords = flags_to_bits(flags)
        meta: dict[str, int] = {}
        (uid,) = self._store._add_files(
            self.directory,
            [(source_path, bits, keywords, internaldate, crlf_size)],
            headers=None if header is None else {source_path: header},
            meta=meta,
        )
        return meta["uidvalidity"], uid

    # -- IMailbox ----------------------------------------------------------------------------

    def snapshot(self) -> Deferred[MailboxSnapshot]:
        return self._store._run(self._snapshot)

    def open_message(self, uid: int) -> Deferred[BinaryIO]:
        return self._store._run(self._open_message, uid)

    def store_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: str
    ) -> Deferred[list[MessageInfo]]:
        return self._store._run(self._store_flags, list(uids), list(flags), mode)

    def store_flags_if_unchanged(
        self, uids: Iterable[int], flags: Iterable[str], mode: str, unchangedsince: int | None
    ) -> Deferred[tuple[list[MessageInfo], list[int]]]:
        def job(wanted: list[int], given: list[str]) -> tuple[list[MessageInfo], list[int]]:
            modified: list[int] = []
            changed = self._store_flags(wanted, given, mode, unchangedsince, modified)
            return changed, modified

        return self._store._run(job, list(uids), list(flags))

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:
        return self._store._run(self._expunge, list(uids))

    def append(
        self, source: MessageSource, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> Deferred[tuple[int, int]]:
        return self._store._run(self._append_source, source, list(flags), internaldate)

    def append_many(
        self, items: Iterable[tuple[MessageSource, Iterable[str], float | None]]
    ) -> Deferred[tuple[int, list[int]]]:
        batch = [(source, list(flags), date) for source, flags, date in items]
        return self._store._run(self._append_many, batch)

    def append_staged(
        self, path: str, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> Deferred[tuple[int, int]]:
        return self._store._run(self._append_staged, path, list(flags), internaldate)

    def append_within_quota(
        self, items: Iterable[tuple[MessageSource, Iterable[str], float | None]], limit: int
    ) -> Deferred[tuple[int, list[int]]]:
        batch = [(source, list(flags), date) for source, flags, date in items]
        return self._store._run(self._append_many, batch, limit)

    def select(self, claim_recent: bool) -> Deferred[MailboxSelection]:
        return self._store._run(self._select, claim_recent)

    def claim_recent(self, upto: int) -> Deferred[int]:
        return self._store._run(self._index.claim_recent, upto)

    def status(self) -> Deferred[MailboxStatus]:
        return self._store._run(self._status)

    def changes_since(self, modseq: int) -> Deferred[MailboxChanges]:
        return self._store._run(self._changes_since, modseq)

    def messages(
        self, uids: Iterable[int], header: bool = False, content: bool = False
    ) -> Deferred[list[StoredMessage]]:
        return self._store._run(self._messages, list(uids), header, content)

    def columns(self, uids: Iterable[int]) -> Deferred[IndexColumns]:
        # An array (IMAP's resync hands over a slice of its map) is copied whole, not as
        # one int object per message.
        return self._store._run(self._columns, array("I", uids))

    def uid_range(self, low: int, high: int) -> Deferred[list[StoredMessage]]:
        return self._store._run(self._uid_range, low, high)

    def expunged_since(self, modseq: int) -> Deferred[list[int]]:
        return self._store._run(self._in_view, self._index.expunged_since, modseq)

    def copy(self, uids: Iterable[int], target: MaildirMailbox) -> Deferred[list[tuple[int, int]]]:
        return self._store._run(self._copy, list(uids), target)

    def move(self, uids: Iterable[int], target: MaildirMailbox) -> Deferred[list[tuple[int, int]]]:
        return self._store._run(self._move, list(uids), target)

    def _origins(self, uids: list[int]) -> dict[int, MessageOrigin]:
        self._check_view()
        return {
            uid: MessageOrigin(emailid, savedate)
            for uid, (emailid, savedate) in self._index.origins(sorted(set(uids))).items()
        }

    def origins(self, uids: Iterable[int]) -> Deferred[dict[int, MessageOrigin]]:
        return self._store._run(self._origins, list(uids))

    def derived(self, uids: Iterable[int], name: str) -> Deferred[dict[int, bytes]]:
        return self._store._run(self._in_view, self._index.derived, list(uids), name)

    def remember(self, name: str, values: dict[int, bytes]) -> Deferred[None]:
        if not values:
            return succeed(None)
        return self._store._run(self._in_view, self._index.remember, name, dict(values))

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._store.changes.watch(self.directory, callback)

    def text_candidates(
        self, query: TextQuery, uids: Iterable[int], extractor: Any
    ) -> Deferred[set[int] | None]:
        if not self._store.text_index:
            return succeed(None)
        return self._store._run(self._text_candidates, query, list(uids), extractor)

    def rebuild_text_index(self, extractor: Any) -> Deferred[int | None]:
        if not self._store.text_index:
            return succeed(None)
        return self._store._run(self._rebuild_text_index, extractor)

    def repair_index(self, force: bool = False) -> Deferred[str | None]:
        return self._store._run(self._repair_index, force)


_new_stored = tuple.__new__


def _stored(row: tuple) -> StoredMessage:
    uid, bits, keywords, internaldate, size, modseq = row
    # tuple.__new__ skips NamedTuple's Python-level __new__: this runs 100,000 times a resync.
    return _new_stored(
        StoredMessage, (uid, bits_to_flags(bits, keywords), size, internaldate, modseq, None, None)
    )


@implementer(IMailStore, IFileDelivery, IMetadataStore, IAclStore, IQuotaReservation)
class MaildirStore:
    """All users' Maildir++ trees under ``root``.

    ``reactor`` and ``pool`` are where blocking work is sent. Without a pool (the CLI, which
    has no reactor running) every method does its work before it returns, and its Deferred
    has already fired.
    """

    def __init__(
        self,
        root: str,
        reactor: Any = None,
        pool: ThreadPool | None = None,
        text_index: bool = True,
    ) -> None:
        self.root = os.path.abspath(root)
        self.text_index = text_index  # ``[store] text_index``: SEARCH narrowed by textindex.py
        self._backfilling: set[str] = set()  # folders whose text index a pool thread fills
        self._backfill_lock = threading.Lock()
        self._subscribing = threading.Lock()  # this process's threads, before the flock
        self._reactor = reactor
        self._pool = pool
        # st_mtime_ns of (new/, cur/) and the index file's inode at the last reconcile, per
        # mailbox directory: an index replaced (set aside when damaged, by this process or
        # another) is filled again from the files at the next reconcile.
        self._seen_mtimes: dict[str, tuple[int, int, int]] = {}
        self._line_ends_checked: set[str] = set()  # see _check_line_ends
        self._swept: dict[str, float] = {}  # tmp/ directory: when last swept (monotonic)
        self._skipped: set[str] = set()  # entries of cur/ and new/ said not to be messages
        self.changes = ChangeBus()
        self.images = ImageCache()
        self.pending = PendingDeliveries()
        # Each user's quota lock and the room held for mail on its way in (quotalock.py)
        self.quota = QuotaLocks(functools.partial(user_directory, self.root))
        # RFC 4314 ACLs of every user's mailboxes, and who they are shared with (store/acl.py)
        self.acl = AclTable(os.path.join(self.root, ACL_FILE))
        self.max_mailboxes = 0  # mailboxes a user may have, INBOX too (0: no limit)

    def _mtimes(self, directory: str) -> tuple[int, int, int] | None:
        try:
            new, cur = (os.stat(os.path.join(directory, s)).st_mtime_ns for s in ("new", "cur"))
        except FileNotFoundError:
            return None
        try:
            inode = os.stat(os.path.join(directory, _index.INDEX_NAME)).st_ino
        except FileNotFoundError:
            inode = 0
        return new, cur, inode

    @contextlib.contextmanager
    def _own_write(self, directory: str) -> Iterator[None]:
        """Around our own link/rename/unlink in a mailbox: if the index was in step with the
        directory before, it still is after (we index what we write), so the next open needn't
        rescan 100,000 file names just because *we* delivered one. A change by another tool in
        the same instant can be missed until the directory changes again; the index is a cache
        and a restart (or any later foreign change) finds it."""
        before = self._mtimes(directory)
        clean = before is not None and self._seen_mtimes.get(directory) == before
        try:
            yield
        finally:
            if clean:
                after = self._mtimes(directory)
                if after is not None and after[2] == before[2]:  # not a new index meanwhile
                    self._seen_mtimes[directory] = after

    def _backfill_text(self, mailbox: MaildirMailbox, uids: list[int], extractor: Any) -> None:
        """Index ``uids`` of ``mailbox`` in a pool thread of their own (one such job per
        folder at a time), so the searches after a large import soon read the index only."""
        if self._pool is None:
            return  # the CLI: its searches catch up as they go, `index rebuild` does it all
        with self._backfill_lock:
            if mailbox.directory in self._backfilling:
                return
            self._backfilling.add(mailbox.directory)

        def job() -> None:
            try:
                mailbox._index_all_text(uids, extractor)
            except sqlite3.DatabaseError as e:
                mailbox._drop_text(e)
            finally:
                with self._backfill_lock:
                    self._backfilling.discard(mailbox.directory)

        self._pool.callInThreadWithCallback(lambda _ok, _result: None, job)

    def _changed(self, directory: str) -> None:
        """Called from a pool thread after a write to a mailbox: wake its watchers."""
        if self._reactor is not None and self.changes.wanted():
            self._reactor.callFromThread(self.changes.publish, directory)

    def _run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            try:
                return succeed(fn(*args))
            except Exception:
                return fail()
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args)

    # -- blocking helpers --------------------------------------------------------------------

    def _folder(self, user: str, mailbox: str, must_exist: bool = True) -> str:
        directory = folder_directory(user_directory(self.root, user), mailbox)
        if must_exist and not os.path.isdir(os.path.join(directory, "cur")):
            if mailbox.upper() == INBOX:
                # The account exists (it passed authentication or routing) but was never
                # provisioned, e.g. its directory was restored without mail: create it.
                self.provision_sync(user)
            else:
                raise NoSuchMailbox(f"no mailbox {mailbox!r}")
        return directory

    def _add_file(
        self,
        directory: str,
        source_path: str,
        bits: int,
        keywords: str,
        internaldate: float | None,
        crlf_size: int | None = None,
        delivered: bool = False,
        emailid: str | None = None,
    ) -> int:
        """Link one file into ``directory`` durably and index it; returns its UID.
        ``crlf_size`` is the size as served when it may differ from the file's (bare LFs);
        ``emailid`` the EMAILID of the message (new when None)."""
        (uid,) = self._add_files(
            directory,
            [(source_path, bits, keywords, internaldate, crlf_size)],
            delivered,
            None if emailid is None else [emailid],
        )
        return uid

    def _add_files(
        self,
        directory: str,
        files: list[tuple[str, int, str, float | None, int | None]],
        delivered: bool = False,
        emailids: list[str] | None = None,
        headers: Mapping[str, bytes] | None = None,
        meta: dict[str, int] | None = None,
    ) -> list[int]:
        """Link each ``(source_path, bits, keywords, internaldate, crlf_size)`` into
        ``directory``, fsync, and index them all in one transaction: all or none (MULTIAPPEND,
        RFC 3502 §6.3.11: a link that fails removes the ones made before it, and the index
        never holds some without the others). The UIDs, in order. ``delivered``: new mail
        (``_subdir``), not a client's APPEND. ``headers``: the header blocks the caller has
        of some of the files, by path (the others are read from the files). ``meta`` gets
        the index's meta values as the add read them (``MailboxIndex.add``)."""
        found = _headers_of((source_path for source_path, *_rest in files), headers)
        index = self.index_of(directory)
        # Linked under the index's write lock (``_reconcile``'s docstring says why).
        with index.write() as db:
            linked: list[tuple[str, str, int, str, float, int, str]] = []
            try:
                for source_path, bits, keywords, internaldate, crlf_size in files:
                    size = os.stat(source_path).st_size
                    name = new_message_name(size, crlf_size)
                    subdir = _subdir(bits, keywords, delivered)
                    target = _message_path(directory, name, subdir, bits)
                    with self._own_write(directory):
                        _safeio.link_durably(source_path, target)
                    date = internaldate if internaldate is not None else _now()
                    served = crlf_size if crlf_size is not None else size
                    linked.append((name, subdir, bits, keywords, date, served, target))
                _safeio.fsync_dirs(os.path.dirname(entry[-1]) for entry in linked)
                # In the try too: files left after a failed index write (a full disk, a
                # damaged index) would be adopted by the next reconcile, and the retry of
                # the delivery or APPEND would add them again.
                uids = index.add([entry[:6] for entry in linked], db, emailids, meta)
                for uid, header in zip(uids, found, strict=True):
                    if header is not None:
                        index.cache_header(uid, header, db)
            except BaseException:
                for *_entry, target in linked:
                    with contextlib.suppress(OSError), self._own_write(directory):
                        os.unlink(target)
                raise
        self._changed(directory)
        return uids

    def _reconcile(self, directory: str, wait: bool = True) -> None:
        """Bring the index in line with files other tools added or removed.

        Cheap when nothing changed: three stat calls (new/, cur/ and the index file, which a
        worker may have replaced). Lists the directories under the index's write lock, and
        everything that adds a file of ours (``_add_files``, ``_copy``,
        ``deliver_named_sync``) links it under that same lock and indexes it before letting
        go: so a reconcile never finds our file between its link and its row, where it would
        take it for another tool's and index it without the keywords, INTERNALDATE and EMAILID
        it came with. The lock is SQLite's (``BEGIN IMMEDIATE``) as well as this process's,
        so this holds between workers too. Acknowledged mail still being linked in by the
        delivery thread is waited for first (``pending.py``), unless ``wait`` is False (the
        quota check, which counts that mail by its reservation instead).
        """
        if wait:
            self.pending.wait(directory)
        mtimes = self._mtimes(directory)
        if mtimes is None:
            raise NoSuchMailbox(f"mailbox directory vanished: {directory}")
        if directory not in self._line_ends_checked:
            self._check_line_ends(directory)
            self._line_ends_checked.add(directory)
        if self._seen_mtimes.get(directory) != mtimes:
            self._scan(directory, mtimes)

    def _scan(self, directory: str, mtimes: tuple[int, int, int]) -> int:
        """``_reconcile``'s work once the directories changed (``mtimes``, taken before they
        are listed); how many files it indexed."""
        index = self.index_of(directory)
        with index.write() as db:
            on_disk: dict[str, tuple[str, int, str]] = {}
            for sub in ("new", "cur"):
                with os.scandir(os.path.join(directory, sub)) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        if not is_message(entry):  # a link, a directory: out of the index
                            self._not_a_message(directory, entry.path)
                            continue
                        base, bits = _parse_info(entry.name)
                        on_disk[base] = (sub, bits, entry.name)
            indexed = {
                name: (uid, subdir, bits)
                for uid, name, subdir, bits in db.execute(
                    "SELECT uid, name, subdir, flags FROM messages"
                )
            }
            gone = [uid for name, (uid, _s, _b) in indexed.items() if name not in on_disk]
            if gone:
                index.remove(gone, db)
            fresh, headers = [], []
            for base, (sub, bits, filename) in sorted(on_disk.items()):
                if base in indexed:
                    uid, subdir, old_bits = indexed[base]
                    if (subdir, old_bits) != (sub, bits):
                        index.relocate(uid, sub, bits, db)
                    continue
                path = os.path.join(directory, sub, filename)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue  # moved or removed meanwhile: the next reconcile sees where
                if not stat.S_ISREG(st.st_mode):
                    continue  # swapped for a link since it was listed: so is the directory
                try:
                    size, header = _adopt(path, filename)
                except NotAMessageFile:
                    continue
                except OSError:  # unreadable (permissions): it can't be served either
                    size, header = st.st_size, None
                fresh.append((base, sub, bits, "", st.st_mtime, size))
                headers.append(header)
            if fresh:
                for uid, header in zip(index.add(fresh, db), headers, strict=True):
                    if header is not None:
                        index.cache_header(uid, header, db)
        # The index scanned into, which this scan may have made (none before: inode 0).
        self._seen_mtimes[directory] = (mtimes[0], mtimes[1], index.inode() or 0)
        return len(fresh)

    def _not_a_message(self, directory: str, path: str) -> None:
        """Say once (per process, not per scan) that the entry at ``path`` is skipped."""
        if path in self._skipped or not os.path.lexists(path):
            return
        if len(self._skipped) > 10_000:
            self._skipped.clear()  # bounded; an entry logged once more is harmless
        self._skipped.add(path)
        _log.warn("mailbox {mailbox}: {path} is not a regular file (a symbolic link, a"
                  " directory...): not taken as a message", mailbox=self._mailbox_of(directory),
                  path=path)  # fmt: skip

    def index_of(self, directory: str) -> _index.MailboxIndex:
        """The index of the mailbox ``directory``, filled from its files if it is found
        damaged and made anew."""
        return _index.MailboxIndex(directory, self._rebuild_index)

    def _rebuild_index(self, index: _index.MailboxIndex, aside: str, reason: str) -> None:
        """Fill the index made for a damaged one (set aside as ``aside``) from the message
        files: flags from their names, new UIDs in name (arrival) order. It may run in the
        delivery thread: nothing waits for pending deliveries here."""
        mtimes = self._mtimes(index.directory)
        count = self._scan(index.directory, mtimes) if mtimes is not None else 0
        _log.warn(
            "mailbox {mailbox}: index {path} set aside as {aside} ({error}); rebuilt from"
            " {messages} message files (new UIDVALIDITY: clients resync)",
            mailbox=self._mailbox_of(index.directory), path=index.path, error=reason,
            aside=aside, messages=count,
        )  # fmt: skip

    def _mailbox_of(self, directory: str) -> str:
        """``alice@example.test Lists/tx``: the user and mailbox of a mailbox directory."""
        domain, local, *folder = os.path.relpath(directory, self.root).split(os.sep)
        try:
            name = _folder_name(folder[0]) if folder else INBOX
        except UnicodeError:  # a folder another tool named
            name = folder[0]
        return f"{local}@{domain} {name}"

    def _check_line_ends(self, directory: str) -> None:
        """Once per index written before bare-LF files were served in their CRLF form: such a
        file was indexed with its size on disk and its whole text as its header. Measure again
        the messages whose cached header is not a clean CRLF header block (ours are)."""
        index = self.index_of(directory)
        if index.meta().get("line_ends", 0) >= _index.LINE_ENDS:
            return
        with index.write() as db:
            rows = db.execute(
                "SELECT m.uid, m.name, m.subdir, m.flags, m.size, h.header"
                " FROM messages m LEFT JOIN headers h ON h.uid = m.uid"
            ).fetchall()
            modseq = index.meta(db)["highestmodseq"] + 1
            changed = 0
            for uid, name, subdir, bits, size, header in rows:
                clean = header is not None and lineends.header_end(header) == len(header)
                if clean and not lineends.bare_newlines(header):
                    continue
                path = _message_path(directory, name, subdir, bits)
                try:
                    crlf, fresh_header = _adopt(path, name)
                    if fresh_header is None:
                        fresh_header = read_header(path)
                except OSError:
                    continue  # renamed meanwhile: served from the file as indexed
                index.cache_header(uid, fresh_header, db)
                if crlf != size:
                    db.execute(
                        "UPDATE messages SET size = ?, modseq = ? WHERE uid = ?",
                        (crlf, modseq, uid),
                    )
                    db.execute("DELETE FROM derived WHERE uid = ?", (uid,))
                    changed += 1
            if changed:
                db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (modseq,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('line_ends', ?)", (_index.LINE_ENDS,))

    # -- synchronous API for the CLI ---------------------------------------------------------

    def provision_sync(self, user: str) -> None:
        """Create INBOX and the default folders (Maildir++ ``maildirfolder`` marker included)."""
        user_dir = user_directory(self.root, user)
        _make_maildir(user_dir)
        self._sweep_now_and_then(os.path.join(user_dir, "tmp"))
        for name in DEFAULT_MAILBOXES:
            self._create_sync(user, name, exist_ok=True)
        subscriptions = os.path.join(user_dir, "subscriptions")
        if not os.path.exists(subscriptions):
            _safeio.write_atomic(
                subscriptions, "".join(f"{n}\n" for n in DEFAULT_MAILBOXES).encode()
            )

    def _create_sync(self, user: str, mailbox: str, exist_ok: bool = False) -> None:
        if mailbox.upper() == INBOX:
            raise MailboxExists("INBOX always exists")
        user_dir = user_directory(self.root, user)
        directory = folder_directory(user_dir, mailbox)
        if os.path.isdir(os.path.join(directory, "cur")):
            if exist_ok:
                return
            raise MailboxExists(f"mailbox {mailbox!r} exists")
        if self.max_mailboxes:
            check_room(len(self._list_sync(user)), self.max_mailboxes, mailbox)
        # An owner never provisioned (a domain's shared-folder pseudo-user, store/acl.py)
        # needs its own tmp/ too: APPENDs are staged there.
        _make_maildir(user_dir)
        _make_maildir(directory)
        marker = os.path.join(directory, "maildirfolder")
        if not os.path.exists(marker):
            _safeio.write_atomic(marker, b"")
        self.index_of(directory).meta()

    def _delete_sync(self, user: str, mailbox: str) -> None:
        if mailbox.upper() == INBOX:
            raise InvalidMailboxName("INBOX can't be deleted")
        directory = self._folder(user, mailbox)
        _index.forget(directory)
        self.images.forget(directory)
        # Out of sight at once (one rename, durable with the parent's fsync), removed after
        # the answer: a kill while 1,500 files go leaves a tombstone that the next start or
        # the user's next login removes, never the folder listed with part of its mail.
        user_dir = os.path.dirname(directory)
        tombstone = os.path.join(user_dir, _TOMBSTONE + secrets.token_hex(8))
        os.rename(directory, tombstone)
        self._seen_mtimes.pop(directory, None)
        _safeio.fsync_dir(user_dir)
        self.acl.deleted(user, mailbox)
        self._afterwards(_remove_tombstone, tombstone)

    def _afterwards(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` in the pool once the running job has answered (at once without one:
        the CLI)."""
        if self._pool is None:
            fn(*args)
        else:
            self._pool.callInThreadWithCallback(lambda _ok, _result: None, fn, *args)

    def list_mailboxes_sync(self, user: str) -> list[str]:
        """``IFileDelivery``: the user's mailbox names, from a worker thread."""
        return self._list_sync(user)

    def _list_sync(self, user: str) -> list[str]:
        user_dir = user_directory(self.root, user)
        names = []
        if os.path.isdir(user_dir):
            for entry in sorted(os.listdir(user_dir)):
                full = os.path.join(user_dir, entry)
                if (
                    entry.startswith(".")
                    and entry not in (".", "..")
                    and os.path.isdir(os.path.join(full, "cur"))
                ):
                    names.append(_folder_name(entry))
        return [INBOX, *names]

    def _rename_sync(self, user: str, old: str, new: str) -> None:
        user_dir = user_directory(self.root, user)
        if new.upper() == INBOX:
            raise MailboxExists("INBOX always exists")
        target = folder_directory(user_dir, new)
        if os.path.isdir(os.path.join(target, "cur")):
            raise MailboxExists(f"mailbox {new!r} exists")
        if old.upper() == INBOX:
            # RFC 3501 §6.3.5: move INBOX's messages into the new mailbox; INBOX stays, empty.
            self._create_sync(user, new)
            inbox = MaildirMailbox(self, user, INBOX, user_dir)
            target_box = MaildirMailbox(self, user, new, target)
            uids = [row[0] for row in self.index_of(user_dir).rows()[1]]
            inbox._copy(uids, target_box)
            inbox._expunge(uids)
            return
        source = self._folder(user, old)
        if new.lower().startswith(old.lower() + "/"):
            raise InvalidMailboxName("can't rename a mailbox into its own child")
        prefix = os.path.basename(source)
        new_prefix = os.path.basename(target)
        moves = []
        for entry in os.listdir(user_dir):
            if entry == prefix or entry.startswith(prefix + "."):
                moves.append((entry, new_prefix + entry[len(prefix) :]))
        # Maildir++ keeps the hierarchy in directory names: renaming a mailbox renames it and
        # every directory whose name starts with it.
        for _entry, renamed in moves:
            if os.path.exists(os.path.join(user_dir, renamed)):
                raise MailboxExists(f"mailbox {new!r} has a child that exists")
        for entry, renamed in moves:
            _index.forget(os.path.join(user_dir, entry))
            self.images.forget(os.path.join(user_dir, entry))
            self._seen_mtimes.pop(os.path.join(user_dir, entry), None)
            os.rename(os.path.join(user_dir, entry), os.path.join(user_dir, renamed))
        _safeio.fsync_dir(user_dir)
        self.acl.renamed(user, old, new)
        subscribed = self._subscriptions_sync(user)
        changed = False
        for i, name in enumerate(subscribed):
            if name == old or name.startswith(old + "/"):
                subscribed[i] = new + name[len(old) :]
                changed = True
        if changed:
            self._write_subscriptions(user, subscribed)

    def _subscriptions_path(self, user: str) -> str:
        return os.path.join(user_directory(self.root, user), "subscriptions")

    def _subscriptions_sync(self, user: str) -> list[str]:
        try:
            with open(self._subscriptions_path(user), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [line for line in text.split("\n") if line and "\t" not in line]

    def _write_subscriptions(self, user: str, names: list[str]) -> None:
        data = "".join(f"{name}\n" for name in dict.fromkeys(names)).encode("utf-8")
        _safeio.write_atomic(self._subscriptions_path(user), data)

    def _subscribe_sync(self, user: str, mailbox: str, subscribed: bool) -> None:
        if mailbox.upper() == INBOX:
            mailbox = INBOX
        elif any(ord(c) < 32 or c == "\x7f" for c in mailbox) or any(
            part in ("", ".", "..") for part in mailbox.split("/")
        ):
            # Not folder_directory's check: a subscription may name another user's mailbox
            # ("Other Users/bob@example.org/Lists", RFC 4314), whose components hold dots.
            raise InvalidMailboxName(f"invalid mailbox name: {mailbox!r}")
        # The file's read and write under the user directory's flock: two workers (processes)
        # subscribing at once would otherwise each write back the list without the other's.
        with self._subscribing, _safeio.directory_locked(user_directory(self.root, user)):
            names = self._subscriptions_sync(user)
            if subscribed and mailbox not in names:
                self._write_subscriptions(user, [*names, mailbox])
            elif not subscribed and mailbox in names:
                self._write_subscriptions(user, [n for n in names if n != mailbox])

    def _access_keys_path(self, user: str) -> str:
        return os.path.join(user_directory(self.root, user), _ACCESS_KEYS)

    def _access_key_sync(self, user: str, mailbox: str, create: bool) -> bytes | None:
        path = self._access_keys_path(user)
        with _access_keys_lock:
            keys = _read_keys(path)
            key = keys.get(mailbox)
            if key is not None or not create:
                return bytes.fromhex(key) if key else None
            if not os.path.isdir(os.path.dirname(path)):
                return None
        # A new key: read again under the user directory's flock, as another worker (a
        # process) may be making one for the same mailbox; the first one made is kept.
        with _access_keys_lock, _safeio.directory_locked(os.path.dirname(path)):
            keys = _read_keys(path)
            key = keys.get(mailbox)
            if key is not None:
                return bytes.fromhex(key)
            fresh = secrets.token_bytes(32)
            keys[mailbox] = fresh.hex()
            _safeio.write_atomic(path, json.dumps(keys, indent=1).encode())
            return fresh

    def _reset_access_keys_sync(self, user: str, mailbox: str | None) -> None:
        path = self._access_keys_path(user)
        if not os.path.isdir(os.path.dirname(path)):
            return
        with _access_keys_lock, _safeio.directory_locked(os.path.dirname(path)):
            keys = _read_keys(path)
            if mailbox is None:
                keys.clear()
            else:
                keys.pop(mailbox, None)
            if os.path.exists(path):
                _safeio.write_atomic(path, json.dumps(keys, indent=1).encode())

    def _usage_sync(self, user: str, wait: bool = True) -> int:
        user_dir = user_directory(self.root, user)
        total = 0
        for name in self._list_sync(user):
            directory = folder_directory(user_dir, name)
            if os.path.isdir(os.path.join(directory, "cur")):
                self._reconcile(directory, wait)
                total += self.index_of(directory).counts()["size"]
        return total

    def _counted_sync(self, user: str) -> int:
        """What a quota check counts against ``user``'s limit, under their quota lock: the
        octets stored in all their folders and those reserved for mail accepted and not yet
        stored (``quotalock.py``). The delivery thread indexes a message for this user and
        gives its room back in one step under this same lock, so a message is counted once,
        by its reservation or in the index, never by both or neither."""
        reserved = self.quota.reserved(user)
        return reserved + self._usage_sync(user, wait=False)

    def _reserve_sync(self, path: str, limits: dict[str, int], octets: int) -> None:
        with self.quota.locked(limits):
            for user, limit in sorted(limits.items()):
                used = self._counted_sync(user)
                if used >= limit:
                    raise QuotaExceeded(f"{user} holds {used} octets of {limit}")
            try:
                for user in sorted(limits):
                    self.quota.reserve(path, user, octets)
            except BaseException:
                self.quota.release(path)  # each user's or none
                raise

    def remove_user_sync(self, user: str) -> None:
        user_dir = user_directory(self.root, user)
        if os.path.isdir(user_dir) and not stat.S_ISLNK(os.lstat(user_dir).st_mode):
            shutil.rmtree(user_dir)
            _safeio.fsync_dir(os.path.dirname(user_dir))
        self.acl.deleted(user, None)

    def _deliver_sync(
        self,
        recipients: Iterable[tuple[str, str]],
        source_path: str,
        internaldate: float | None,
        crlf_size: int | None = None,
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
    ) -> dict[tuple[str, str], int]:
        date = internaldate if internaldate is not None else _now()
        emailid = objectids.new_emailid()  # one message, however many mailboxes (RFC 8474)
        results = {}
        for user, mailbox in recipients:
            if (user, mailbox) in results:
                continue
            directory = self._folder(user, mailbox)
            bits, keywords = flags_to_bits(flags.get((user, mailbox), ()) if flags else ())
            results[(user, mailbox)] = self._add_file(
                directory, source_path, bits, keywords, date, crlf_size, True, emailid
            )
        return results

    def _deliver_source_sync(
        self,
        recipients: list[tuple[str, str]],
        source: MessageSource,
        internaldate: float | None,
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
    ) -> dict[tuple[str, str], int]:
        """Write ``source`` once into the first recipient's ``tmp/``, then link it everywhere."""
        if not recipients:
            return {}
        user = recipients[0][0]
        self._folder(user, INBOX)  # provisions an account that has no Maildir yet
        path, crlf = _stage(self.staging_directory(user), source)
        with _removed_afterwards(path):
            return self._deliver_sync(recipients, path, internaldate, crlf, flags)

    def mailbox_directory(self, user: str, mailbox: str) -> str:
        """Where ``mailbox`` of ``user`` lives (whether or not it exists yet)."""
        return self._folder(user, mailbox, must_exist=False)

    def deliver_named_sync(
        self,
        batch: Iterable[tuple[Any, ...]],
        recovering: bool = False,
    ) -> None:
        """Deliver each ``(source_path, stem, internaldate, targets[, flags])`` under names
        made from ``stem``, so that doing it again after a crash finds the copies instead of
        adding more; ``flags`` maps a target to the flags of its copy (``IMailStore.deliver``).

        For the spool's delivery thread (``queue/local.py``), a mailbox at a time: under its
        index lock (``_reconcile`` says why), every link, one fsync of each directory, one
        index transaction, for the whole batch. A folder
        that has gone since the message was accepted gets it in INBOX. ``recovering`` also looks
        in ``cur/`` (a client may have read the message before the crash). A copy with system
        flags is linked into ``cur/`` with them in its name (``:2,S``), as a Maildir reader
        expects of a message already seen or flagged; keywords live in the index.
        """
        batch = list(batch)
        # user -> their directories -> the copies to link there
        wanted: dict[str, dict[str, list[tuple[str, str, str, int, str, int, float, str]]]] = {}
        for source_path, stem, date, targets, *rest in batch:
            flags: Mapping[tuple[str, str], Iterable[str]] = rest[0] if rest and rest[0] else {}
            size = os.stat(source_path).st_size
            # One message in every mailbox it reaches (RFC 8474 EMAILID), the same again
            # when a recovery adds the copies a crash left out.
            emailid = objectids.stable_emailid(stem)
            for number, (user, mailbox) in enumerate(targets):
                try:
                    directory = self._folder(user, mailbox)
                except NoSuchMailbox:
                    directory = self._folder(user, INBOX)
                name = f"{stem}R{number}.{_HOST},S={size},W={size}"  # SMTP mail is CRLF
                if recovering and _holds(directory, name):
                    continue
                bits, keywords = flags_to_bits(flags.get((user, mailbox), ()))
                wanted.setdefault(user, {}).setdefault(directory, []).append(
                    (source_path, name, _subdir(bits, keywords, True), bits, keywords, size,
                     date, emailid)
                )  # fmt: skip
        sources = [source_path for source_path, *_rest in batch]
        reserved = self.quota.holders(sources)
        for user in sorted(wanted.keys() | reserved):
            # A user with room reserved has their copies indexed and the room given back in
            # one step under their quota lock: a check between the two would count the
            # message twice (quotalock.py).
            held = user in reserved
            with self.quota.locked([user]) if held else contextlib.nullcontext():
                for directory, files in wanted.get(user, {}).items():
                    self._link_named(directory, files)
                    self._changed(directory)
                for source_path in sources if held else ():
                    self.quota.release(source_path, user)
        for source_path in sources:
            self.quota.release(source_path)  # its copies count as stored now

    def _link_named(
        self, directory: str, files: list[tuple[str, str, str, int, str, int, float, str]]
    ) -> None:
        """``deliver_named_sync`` into one mailbox: link, fsync, index, under its lock."""
        headers = _headers_of(source_path for source_path, *_rest in files)
        index = self.index_of(directory)
        with index.write() as db:
            for source_path, name, subdir, bits, *_rest in files:
                target = _message_path(directory, name, subdir, bits)
                with contextlib.suppress(FileExistsError), self._own_write(directory):
                    # Already there: an earlier try got this far, so index it (idempotent).
                    os.link(source_path, target)
            _safeio.fsync_dirs(os.path.join(directory, f[2]) for f in files)
            entries = [
                (name, subdir, bits, keywords, date, size)
                for _path, name, subdir, bits, keywords, size, date, _emailid in files
            ]
            added = index.add(entries, db, [f[7] for f in files])
            for uid, header in zip(added, headers, strict=True):
                if header is not None:
                    index.cache_header(uid, header, db)

    # -- IMailStore --------------------------------------------------------------------------

    def provision(self, user: str) -> Deferred[None]:
        return self._run(self.provision_sync, user)

    def deliver(
        self,
        recipients: Iterable[tuple[str, str]],
        source: MessageSource,
        internaldate: float | None = None,
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
    ) -> Deferred[dict[tuple[str, str], int]]:
        return self._run(self._deliver_source_sync, list(recipients), source, internaldate, flags)

    def deliver_file(
        self,
        recipients: Iterable[tuple[str, str]],
        source_path: str,
        internaldate: float | None = None,
        prepare: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
    ) -> Deferred[dict[tuple[str, str], int]]:
        targets = list(recipients)

        def job() -> dict[tuple[str, str], int]:
            try:
                if prepare is not None:
                    prepare()  # the caller's fsync of source_path, in the same worker trip
                reserved = self.quota.holders([source_path])
                if not reserved:
                    return self._deliver_sync(targets, source_path, internaldate, None, flags)
                # Stored and its room given back under the users' quota locks (quotalock.py).
                with self.quota.locked(reserved):
                    stored = self._deliver_sync(targets, source_path, internaldate, None, flags)
                    self.quota.release(source_path)
                return stored
            finally:
                # Stored (or failed before its 250): the room it held is no longer owed.
                self.quota.release(source_path)
                if finish is not None:
                    finish()  # the caller's removal of source_path, in the same trip too

        return self._run(job)

    def _open_sync(self, user: str, mailbox: str) -> MaildirMailbox:
        name = INBOX if mailbox.upper() == INBOX else mailbox
        opened = MaildirMailbox(self, user, name, self._folder(user, name))
        if self._sweep_now_and_then(self.staging_directory(user)):
            _remove_tombstones(user_directory(self.root, user))
        self._sweep_now_and_then(os.path.join(opened.directory, "tmp"))  # another tool's
        return opened

    def _sweep_now_and_then(self, directory: str) -> bool:
        """``staging.sweep`` of the ``tmp/`` directory ``directory``, at most once an hour
        (per process): what a crash left there goes when its owner next opens a mailbox.
        Whether it was time."""
        now = time.monotonic()
        if now - self._swept.get(directory, -SWEEP_INTERVAL) < SWEEP_INTERVAL:
            return False
        if len(self._swept) > 10_000:
            self._swept.clear()  # bounded; a directory swept once more is harmless
        self._swept[directory] = now
        removed, freed = staging.sweep(directory)
        if removed:
            _log.info("removed {files} files ({octets} octets) a crash left in {directory}",
                      files=removed, octets=freed, directory=directory)  # fmt: skip
        return True

    def sweep_staging_sync(self) -> tuple[int, int]:
        """Sweep every user's ``tmp/`` (``staging.sweep``); (files removed, octets freed).
        At start, in the store's pool: what the process before this one left when it was
        killed is removed without waiting for its owner to log in, and so are the folders
        it was deleting (``_delete_sync``)."""
        removed = freed = folders = 0
        for domain in _subdirectories(self.root):
            for user_dir in _subdirectories(domain):
                files, octets = staging.sweep(os.path.join(user_dir, "tmp"))
                removed, freed = removed + files, freed + octets
                folders += _remove_tombstones(user_dir)
        if removed:
            _log.info("removed {files} files ({octets} octets) a crash left in tmp/ of the"
                      " Maildirs", files=removed, octets=freed)  # fmt: skip
        if folders:
            _log.info(
                "removed {folders} deleted folders a crash left half removed", folders=folders
            )
        return removed, freed

    def sweep_staging(self) -> Deferred[tuple[int, int]]:
        return self._run(self.sweep_staging_sync)

    def open(self, user: str, mailbox: str) -> Deferred[MaildirMailbox]:
        return self._run(self._open_sync, user, mailbox)

    def open_selected(
        self, user: str, mailbox: str, claim_recent: bool
    ) -> Deferred[tuple[MaildirMailbox, MailboxSelection]]:
        def job() -> tuple[MaildirMailbox, MailboxSelection]:
            opened = self._open_sync(user, mailbox)
            return opened, opened._select(claim_recent)

        return self._run(job)

    def list_mailboxes(self, user: str) -> Deferred[list[str]]:
        return self._run(self._list_sync, user)

    def create_mailbox(self, user: str, mailbox: str) -> Deferred[None]:
        return self._run(self._create_sync, user, mailbox)

    def delete_mailbox(self, user: str, mailbox: str) -> Deferred[None]:
        return self._run(self._delete_sync, user, mailbox)

    def remove_user(self, user: str) -> Deferred[None]:
        return self._run(self.remove_user_sync, user)

    def rename_mailbox(self, user: str, old: str, new: str) -> Deferred[None]:
        return self._run(self._rename_sync, user, old, new)

    def subscriptions(self, user: str) -> Deferred[list[str]]:
        return self._run(self._subscriptions_sync, user)

    def subscribe(self, user: str, mailbox: str, subscribed: bool) -> Deferred[None]:
        return self._run(self._subscribe_sync, user, mailbox, subscribed)

    def access_key(self, user: str, mailbox: str, create: bool = True) -> Deferred[bytes | None]:
        return self._run(self._access_key_sync, user, mailbox, create)

    def get_metadata(self, user: str, mailbox: str | None) -> Deferred[dict[str, bytes]]:
        return self._run(lambda: _metadata.read(self._metadata_path(user, mailbox)))

    def set_metadata(
        self,
        user: str,
        mailbox: str | None,
        changes: dict[str, bytes | None],
        limit: int | None = None,
    ) -> Deferred[None]:
        return self._run(
            lambda: _metadata.update(self._metadata_path(user, mailbox), changes, limit)
        )

    def _metadata_path(self, user: str, mailbox: str | None) -> str:
        """store/metadata.py: in the mailbox's directory, or the user's for the account's."""
        if mailbox is None:
            self._folder(user, INBOX)  # provisions the account if needed
            return os.path.join(user_directory(self.root, user), _metadata.SERVER_FILE)
        return os.path.join(self._folder(user, mailbox), _metadata.MAILBOX_FILE)

    def _acl_mailbox(self, user: str, mailbox: str) -> str:
        """The canonical name of an existing mailbox. Unlike ``_folder``, never provisions:
        another user asking about ``Other Users/x@example.org/INBOX`` creates nothing."""
        name = INBOX if mailbox.upper() == INBOX else mailbox
        directory = folder_directory(user_directory(self.root, user), name)
        if not os.path.isdir(os.path.join(directory, "cur")):
            raise NoSuchMailbox(f"no mailbox {mailbox!r}")
        return name

    def get_acl(self, user: str, mailbox: str) -> Deferred[dict[str, str]]:
        return self._run(lambda: self.acl.get(user, self._acl_mailbox(user, mailbox)))

    def set_acl(
        self, user: str, mailbox: str, identifier: str, rights: str | None
    ) -> Deferred[None]:
        def job() -> None:
            self.acl.set(user, self._acl_mailbox(user, mailbox), identifier, rights)

        return self._run(job)

    def change_acl(self, user: str, mailbox: str, identifier: str, change: str) -> Deferred[str]:
        return self._run(
            lambda: self.acl.change(user, self._acl_mailbox(user, mailbox), identifier, change)
        )

    def shared_with(self, identifiers: list[str]) -> Deferred[dict]:
        return self._run(self.acl.granted, list(identifiers))

    def reset_access_keys(self, user: str, mailbox: str | None = None) -> Deferred[None]:
        return self._run(self._reset_access_keys_sync, user, mailbox)

    def usage(self, user: str) -> Deferred[int]:
        return self._run(self._usage_sync, user)

    def reserve(self, path: str, limits: Mapping[str, int], octets: int) -> Deferred[None]:
        return self._run(self._reserve_sync, path, dict(limits), octets)

    def release(self, path: str) -> None:
        self.quota.release(path)

    def staging_directory(self, user: str) -> str:
        return os.path.join(user_directory(self.root, user), "tmp")

    def location(self, user: str) -> str:
        return user_directory(self.root, user)
