"""Putting a mailbox back with the UIDs and UIDVALIDITY it had: import, restore, migration.

An IMAP client caches messages by (UIDVALIDITY, UID) (RFC 3501 §2.3.1.1): a restored mailbox
that kept both is one the client recognises, where new UIDs make every phone download every
message again. ``IMailStore.append`` can't promise that (it hands out the next UID), so a
store that can offers :class:`IMailboxRestore`, found by adaptation
(``IMailboxRestore(store, None)``) rather than by a method on every backend: the Maildir store
has it here (:class:`MaildirRestore`, registered below); any other store gets plain appends
from :func:`restore_mailbox`, which says so in its result.

UIDs are kept only into a mailbox holding no messages, or only above its UIDNEXT in one that
holds the same UIDVALIDITY: giving old UIDs to messages below others would break the promise
that UIDs grow. A mailbox that holds the UIDVALIDITY restored already has what an earlier
run put there: the messages it has under their UIDs are left alone and only the others are
added, so a run cut short finishes when run again, and one run twice changes nothing.

The restore happens in one index transaction with the files linked in durably first, so the
server's sessions and its reconcile (which take the same lock) see either nothing or
everything; a flag's modseq is kept when every one restored is above the mailbox's current
HIGHESTMODSEQ, else all get one new modseq, so a session's in-memory image (``image.py``,
brought up to date by modseq) never misses a row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twisted.python.components import registerAdapter
from zope.interface import Interface, implementer

from txmailhost.store import index as _index
from txmailhost.store import objectids
from txmailhost.store import restore_journal as _journal
from txmailhost.store.interfaces import (
    INBOX,
    MAX_KEYWORD_LENGTH,
    SYSTEM_FLAGS,
    MessageSource,
)
from txmailhost.store.maildir import (
    MaildirStore,
    _message_path,
    _stage,
    flags_to_bits,
    new_message_name,
)

MAX_UID = 2**32 - 1  # UIDs, UIDVALIDITY and UIDNEXT are 32-bit (RFC 3501 §9, nz-number)
MAX_MODSEQ = 2**63 - 1  # RFC 7162 §7, mod-sequence-value
_ATOM_SPECIALS = frozenset('(){ %*"\\]')  # RFC 9051 9, atom-specials without CTL and space
# INTERNALDATE's years 0001-9999 (RFC 9051 9, date-year is 4DIGIT), as seconds since 1970
_FIRST_DATE, _LAST_DATE = -62135596800, 253402300799


@dataclass(frozen=True)
class RestoredMessage:
    """One message to put back: its UID, flags, INTERNALDATE and modseq, and its octets; its
    EMAILID and save date (RFC 8474, RFC 8514) when the export kept them."""

    uid: int
    flags: frozenset[str]
    internaldate: float
    modseq: int
    source: MessageSource
    emailid: str | None = None
    savedate: float | None = None


@dataclass(frozen=True)
class Restored:
    """What a restore did: the UIDVALIDITY now, whether the UIDs were kept, how many messages
    it added and how many were there already (from an earlier run, left as they are)."""

    uidvalidity: int
    kept_uids: bool
    messages: int
    present: int = 0


class IMailboxRestore(Interface):
    """A store that can fill an empty mailbox keeping UIDs and UIDVALIDITY (blocking)."""

    def restore_sync(user, mailbox, uidvalidity, uidnext, messages, mailboxid=None):
        """Create ``mailbox`` if needed and, if it holds no messages (or holds ``uidvalidity``
        and every UID given is at least its UIDNEXT), add ``messages`` (``RestoredMessage``
        in UID order) with their UIDs, ``uidvalidity`` and at least ``uidnext`` (and the
        MAILBOXID ``mailboxid`` when given); returns a ``Restored``, or None when it can't
        keep the UIDs (nothing was changed: the caller appends instead)."""


@implementer(IMailboxRestore)
class MaildirRestore:
    """``IMailboxRestore`` for ``MaildirStore``: files linked in, then index rows with the
    given UIDs, the same file names and flag letters ``_add_file`` writes."""

    def __init__(self, store: MaildirStore) -> None:
        self.store = store

    def restore_sync(
        self,
        user: str,
        mailbox: str,
        uidvalidity: int,
        uidnext: int,
        messages: Sequence[RestoredMessage],
        mailboxid: str | None = None,
    ) -> Restored | None:
        store = self.store
        if mailbox.upper() == INBOX:
            store.provision_sync(user)
        else:
            store._create_sync(user, mailbox, exist_ok=True)
        directory = store._folder(user, mailbox)
        if _journal.undo_interrupted(directory):  # before a reconcile takes its files for mail
            store._changed(directory)
        store._reconcile(directory)  # files another tool left count as messages
        # Written and fsync'd before the lock (the slow part), named so that a reconcile
        # meanwhile skips them (tmp/, dot-names); inside it only links and one fsync a
        # directory: the server's deliveries into this mailbox wait milliseconds, not minutes.
        staged: list[tuple[str, int]] = []
        try:
            for message in messages:
                staged.append(_stage(store.staging_directory(user), message.source))
            return self._commit(directory, uidvalidity, uidnext, messages, staged, mailboxid)
        finally:
            for path, _crlf in staged:  # linked into the mailbox, or not used
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _commit(
        self,
        directory: str,
        uidvalidity: int,
        uidnext: int,
        messages: Sequence[RestoredMessage],
        staged: list[tuple[str, int]],
        mailboxid: str | None = None,
    ) -> Restored | None:
        index = _index.MailboxIndex(directory)
        with index.write() as db:
            meta = index.meta(db)
            held = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            above = meta["uidvalidity"] == uidvalidity and all(
                m.uid >= meta["uidnext"] for m in messages
            )
            if held and not above:
                return None
            current = meta["highestmodseq"]
            keep_modseqs = all(m.modseq > current for m in messages)
            rows, targets = [], []
            for message, (path, crlf) in zip(messages, staged, strict=True):
                name = new_message_name(os.stat(path).st_size, crlf)
                bits, keywords = flags_to_bits(message.flags)
                subdir = "new" if not bits and not keywords else "cur"
                targets.append(_message_path(directory, name, subdir, bits))
                modseq = message.modseq if keep_modseqs else current + 1
                date = message.internaldate or time.time()
                rows.append((message.uid, name, subdir, bits, keywords, date, crlf, modseq))
            sources = [path for path, _crlf in staged]
            with _journal.linking(directory, sources, targets) as (token, headers):
                db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                for row, header in zip(rows, headers, strict=True):
                    if header is not None:
                        index.cache_header(row[0], header, db)
                _origins(db, messages, rows, None if held else mailboxid)
                highest = max([current, *(row[7] for row in rows)])
                next_uid = max([uidnext, meta["uidnext"], *(m.uid + 1 for m in messages)])
                db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (
                        ("uidvalidity", uidvalidity),
                        ("uidnext", next_uid),
                        ("highestmodseq", highest),
                        ("recent_uid", next_uid),  # restored mail is not recent
                        (_journal.COMMITTED, token),
                    ),
                )
        _journal.end(directory)
        self.store._changed(directory)
        return Restored(uidvalidity, True, len(messages))


def _origins(
    db: sqlite3.Connection,
    messages: Sequence[RestoredMessage],
    rows: list[tuple],
    mailboxid: str | None,
) -> None:
    """RFC 8474 / RFC 8514 values the export kept; without them a message reports its
    INTERNALDATE and an EMAILID made from UIDVALIDITY and UID (index.origins). The MAILBOXID
    only into an empty mailbox: one in use keeps its own."""
    db.executemany(
        "INSERT OR REPLACE INTO origins VALUES (?, ?, ?)",
        (
            (m.uid, m.emailid, m.savedate if m.savedate is not None else row[5])
            for m, row in zip(messages, rows, strict=True)
            if objectids.is_objectid(m.emailid)
        ),
    )
    if objectids.is_objectid(mailboxid):
        db.execute("INSERT OR REPLACE INTO meta VALUES ('mailboxid', ?)", (mailboxid,))


registerAdapter(MaildirRestore, MaildirStore, IMailboxRestore)


def _in_range(value: object, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def check_numbers(
    uidvalidity: object, uidnext: object, messages: Iterable[RestoredMessage]
) -> None:
    """Refuse (``ValueError``) what no IMAP client can be served: a UIDVALIDITY or UIDNEXT
    outside 1..2^32-1 (a UIDNEXT of 4294967299 gave the next delivery a UID the index then
    can't read back), a UID outside 1..UIDNEXT-1 or given twice, a modseq outside 1..2^63-1,
    a flag that is none (``is_flag``), an INTERNALDATE or save date outside the years IMAP
    can write. Checked before anything is written, so a refused mailbox is left as it was."""
    for label, value in (("UIDVALIDITY", uidvalidity), ("UIDNEXT", uidnext)):
        if not _in_range(value, MAX_UID):
            raise ValueError(f"{label} {value!r} is not a number from 1 to {MAX_UID}")
    seen: set[int] = set()
    for message in messages:
        if not _in_range(message.uid, uidnext - 1):  # type: ignore[operator]
            raise ValueError(f"UID {message.uid!r} is not a number from 1 to UIDNEXT-1 ({uidnext})")
        if message.uid in seen:
            raise ValueError(f"UID {message.uid} is given twice")
        seen.add(message.uid)
        if not _in_range(message.modseq, MAX_MODSEQ):
            raise ValueError(f"UID {message.uid}: modseq {message.modseq!r} is out of range")
        for flag in message.flags:
            if not is_flag(flag):
                raise ValueError(f"UID {message.uid}: {flag!r} is not an IMAP flag")
        for label, date in (("INTERNALDATE", message.internaldate),
                            ("save date", message.savedate)):  # fmt: skip
            if date is not None and not _is_date(date):
                raise ValueError(f"UID {message.uid}: {label} {date!r} is not a time "
                                 "in the years 1 to 9999")  # fmt: skip


def is_flag(flag: object) -> bool:
    """Whether ``flag`` is one a message may carry: a system flag (RFC 9051 2.3.2; also
    \\Recent, which the stores drop: an export may hold it) or a keyword, an atom (RFC
    9051 9: no space, parenthesis, quote, brace, ``%``, ``*``, ``]``, backslash or control,
    ASCII) of at most ``MAX_KEYWORD_LENGTH``. A restore takes flags from files anyone may have written; one
    holding ``"a\r\n* BYE"`` or ``"(x"`` was written as it was into ``FETCH FLAGS``."""
    if not isinstance(flag, str):
        return False
    if flag.startswith("\\"):
        return flag in SYSTEM_FLAGS or flag == "\\Recent"
    return 0 < len(flag) <= MAX_KEYWORD_LENGTH and all(
        "!" <= c <= "~" and c not in _ATOM_SPECIALS for c in flag
    )


def clamped_date(internaldate: float) -> float:
    """``internaldate`` moved into the years 1 to 9999: one stored before APPEND refused the
    others is exported as IMAP sends it, so that its import is not refused."""
    return min(max(internaldate, _FIRST_DATE), _LAST_DATE)


def _is_date(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and _FIRST_DATE <= value <= _LAST_DATE
    )


def restore_mailbox_sync(
    store: object,
    user: str,
    mailbox: str,
    uidvalidity: int,
    uidnext: int,
    messages: Iterable[RestoredMessage],
    result_of: object,
    mailboxid: str | None = None,
) -> Restored:
    """Restore keeping UIDs (and MAILBOXID, EMAILIDs and save dates when given) where the
    store can and the mailbox is empty, else append each message (new UIDs and ids; flags and
    INTERNALDATE kept). ``result_of`` turns a store Deferred into its value (the CLI's stores
    work inline). The numbers are checked first (``check_numbers``)."""
    messages = list(messages)
    check_numbers(uidvalidity, uidnext, messages)
    messages.sort(key=lambda m: m.uid)
    here = _already_here(store, user, mailbox, uidvalidity, mailboxid, result_of)
    present = 0
    if here is not None:
        missing = [m for m in messages if not _same(here.get(m.uid), m)]
        present, messages = len(messages) - len(missing), missing
        if not messages:
            return Restored(uidvalidity, True, 0, present)
    restorer = IMailboxRestore(store, None)
    if restorer is not None:
        done = restorer.restore_sync(user, mailbox, uidvalidity, uidnext, messages, mailboxid)
        if done is not None:
            return dataclasses.replace(done, present=present)
    names = result_of(store.list_mailboxes(user))  # type: ignore[attr-defined,operator]
    if mailbox not in names and mailbox.upper() != INBOX:
        result_of(store.create_mailbox(user, mailbox))  # type: ignore[attr-defined,operator]
    target = result_of(store.open(user, mailbox))  # type: ignore[attr-defined,operator]
    validity = uidvalidity
    for message in messages:
        validity, _uid = result_of(  # type: ignore[operator]
            target.append(message.source, sorted(message.flags), message.internaldate)
        )
    if not messages:
        validity = result_of(target.status()).uidvalidity  # type: ignore[operator]
    return Restored(validity, False, len(messages), present)


def _already_here(
    store: object,
    user: str,
    mailbox: str,
    uidvalidity: int,
    mailboxid: str | None,
    result_of: object,
) -> dict[int, float] | None:
    """UID -> INTERNALDATE of the messages in ``mailbox`` when it holds ``uidvalidity`` (and
    the MAILBOXID restored, where there is one: two mailboxes made in the same second share a
    UIDVALIDITY): what an earlier restore of the same source put there, else None."""
    names = result_of(store.list_mailboxes(user))  # type: ignore[attr-defined,operator]
    if mailbox not in names and mailbox.upper() != INBOX:
        return None
    target = result_of(store.open(user, mailbox))  # type: ignore[attr-defined,operator]
    status = result_of(target.status())  # type: ignore[operator]
    if status.uidvalidity != uidvalidity:
        return None
    if objectids.is_objectid(mailboxid) and status.mailboxid != mailboxid:
        return None
    held = result_of(target.uid_range(1, MAX_UID))  # type: ignore[operator]
    return {m.uid: m.internaldate for m in held}


def _same(internaldate: float | None, message: RestoredMessage) -> bool:
    """Is the message under ``message.uid`` here the one being restored? In the same
    UIDVALIDITY it is, unless it came here after that run (its UID then went to mail
    delivered here, and the source's later mail has the same UID): the INTERNALDATE tells
    them apart, compared to the second IMAP shows (a store may keep less than a float)."""
    return internaldate is not None and abs(internaldate - message.internaldate) < 1
