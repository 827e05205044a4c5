"""A Dovecot user's mail in mbox files: where they are, and the numbers and flags they carry.

``mail_location = mbox:~/mail:INBOX=/var/mail/%u`` (Debian's Dovecot default, with Postfix's
local(8) delivering to ``/var/mail/USER``): the INBOX is one file, the other folders are
the files under ``~/mail`` (``Work``; ``Lists/twisted`` is the file ``twisted`` in the
directory ``Lists``, a level that holds folders and is no mailbox itself). Dovecot's own
files there are not folders: names starting with a dot (``.imap/`` with its indexes,
``.subscriptions``, which ``migrate`` reads as the subscription list) and ``dovecot.*`` /
``dovecot-*`` files. A link is never followed (``sourcefiles.py``): the tree is its user's.

Each file is read with ``mbox.py``; its numbers come from the metadata headers Dovecot and
UW-IMAP keep in it: ``X-IMAPbase: UIDVALIDITY LASTUID keywords`` in the first message (or
``X-IMAP`` in UW-IMAP's pseudo message "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA",
which is left out), and per message ``X-UID``, ``Status`` (``R``: \\Seen; ``O``: seen by a
client, not \\Recent: nothing migrated is recent), ``X-Status`` (``A`` \\Answered, ``F``
\\Flagged, ``T`` \\Draft, ``D`` \\Deleted) and ``X-Keywords``. A message's X-UID is kept
when it is above the previous one kept and at most LASTUID; one that isn't (none yet:
mail Postfix delivered after Dovecot last wrote the file) gets the next UID above, as
Dovecot would give it. An X-IMAPbase IMAP can't serve gives the folder new UIDs under a
new UIDVALIDITY, said in the report; a file without one gets UIDs in its order, under the
first message's date as UIDVALIDITY (the same on a second run, while that message stays).
"""

from __future__ import annotations

import itertools
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from txmailhost.ops.mailbox_admin import AdminError
from txmailhost.ops.mbox import (
    UW_PSEUDO_SUBJECT,
    Block,
    MboxMessageSource,
    messages,
    scan,
)
from txmailhost.ops.sourcefiles import kind, open_regular, shown
from txmailhost.store.restore import MAX_UID, RestoredMessage, clamped_date, is_flag

_STATUS = {"R": "\\Seen"}
_X_STATUS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
_FIRST_MODSEQ = 2  # above a fresh mailbox's HIGHESTMODSEQ of 1: restore keeps it
_DOVECOT_FILE = re.compile(r"dovecot[.-]")
MAX_NOTED = 20  # report lines of one kind a folder gets before the rest are counted
MAX_DEPTH = 32  # hierarchy levels followed down (a name can't be longer than that anyway)
_DIGITS = re.compile(rb"[0-9]+")


@dataclass(frozen=True)
class MailLocation:
    """Dovecot's ``mail_location``: ``mbox:ROOT[:INBOX=PATH][:KEY=...]``, or
    ``maildir:PATH[:KEY=...]`` (``maildir:~/Maildir``, ``maildir:/var/vmail/%d/%n/Maildir``:
    the user's Maildir++ itself, ``maildir`` true). ``~`` and ``%h`` are the user's home,
    ``%u`` the user as the passwd-file names them, ``%n`` its local part, ``%d`` its domain,
    ``%%`` a percent sign (Dovecot's variables)."""

    root: str
    inbox: str | None
    maildir: bool = False

    @classmethod
    def parse(cls, text: str) -> MailLocation:
        kind_, colon, rest = text.partition(":")
        if kind_ not in ("mbox", "maildir") or not colon or not rest:
            raise AdminError(f"--mail-location {text!r}: only mbox:ROOT[:INBOX=PATH] or "
                             "maildir:PATH is read here")  # fmt: skip
        root, *options = rest.split(":")
        inbox = None
        for option in options:
            key, _, value = option.partition("=")
            if key.upper() == "INBOX":
                inbox = value
            # Dovecot's other layouts name folders otherwise (fs: Lists/twisted): read as
            # Maildir++ their folders would be missed or misnamed without a word.
            if kind_ == "maildir" and key.upper() == "LAYOUT" and value.lower() != "maildir++":
                raise AdminError(f"--mail-location {text!r}: only the Maildir++ layout is "
                                 "read here")  # fmt: skip
        if kind_ == "maildir" and inbox is not None:
            raise AdminError(f"--mail-location {text!r}: a Maildir's INBOX=PATH is not read "
                             "here (the INBOX is the Maildir itself)")  # fmt: skip
        return cls(root, inbox, kind_ == "maildir")

    def paths(self, user: str, address: str, home: str) -> tuple[str, str | None]:
        """(folder root, INBOX file) of one user."""
        return self._expand(self.root, user, address, home), (
            None if self.inbox is None else self._expand(self.inbox, user, address, home)
        )

    @staticmethod
    def _expand(template: str, user: str, address: str, home: str) -> str:
        local, _, domain = address.partition("@")
        values = {"u": user, "n": user.partition("@")[0] or local, "d": domain, "h": home, "%": "%"}
        if ("~" in template[:1] or "%h" in template) and not home:
            raise AdminError(f"{address}: --mail-location names the home, and the passwd-file "
                             "gives none")  # fmt: skip
        if template.startswith("~"):
            template = home + template[1:]

        def value(found: re.Match[str]) -> str:
            key = found.group(1)
            text = values.get(key)
            if text is None:
                raise AdminError(f"--mail-location: %{key} is not read here")
            if key in "und" and ("/" in text or text in ("", ".", "..")):
                raise AdminError(f"{address}: %{key} would be {text!r} in a path")
            return text

        return re.sub(r"%(.)", value, template)


@dataclass
class MboxFolder:
    """What ``read_folder`` found: the numbers to restore with, why the file's own weren't
    kept (``problem``, None when they were or there were none), and lines for the report."""

    uidvalidity: int
    uidnext: int
    messages: list[RestoredMessage]
    numbering: str  # how the UIDs were had, for the report
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def folders(root: str, skipped: list[str]) -> Iterator[tuple[list[str], str]]:
    """(hierarchy levels, path) of each mbox file under ``root``, in name order; links,
    FIFOs, devices and levels deeper than ``MAX_DEPTH`` are reported in ``skipped``."""

    def walk(directory: str, levels: list[str]) -> Iterator[tuple[list[str], str]]:
        for entry in sorted(os.listdir(directory)):
            if entry.startswith(".") or _DOVECOT_FILE.match(entry):
                continue
            full = os.path.join(directory, entry)
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode) and len(levels) + 1 < MAX_DEPTH:
                yield from walk(full, [*levels, entry])
            elif stat.S_ISREG(mode):
                yield [*levels, entry], full
            elif stat.S_ISDIR(mode):
                skipped.append(f"{shown(full)}: more than {MAX_DEPTH} levels deep")
            else:
                skipped.append(f"{shown(full)}: {kind(mode)}")

    mode = os.lstat(root).st_mode
    if not stat.S_ISDIR(mode):
        skipped.append(f"{shown(root)}: {kind(mode) if not stat.S_ISREG(mode) else 'a file'}, "
                       "not a directory of mbox files")  # fmt: skip
        return
    yield from walk(root, [])


def read_folder(path: str, unquote: str | None = None) -> MboxFolder:
    """The messages of the mbox file at ``path`` (read whole before anything is written:
    one that is no mbox is ``MboxError`` with nothing of it used) and their numbers."""
    with open_regular(path) as f:
        listed = os.fstat(f.fileno())
        found = scan(f, path)
        first = next(found, None)
        base = None if first is None else (
            first.fields.get(b"x-imapbase") or first.fields.get(b"x-imap"))  # fmt: skip
        numbers = _base(path, base) if base is not None else None
        uidnext = numbers[1] if isinstance(numbers, tuple) else 0

        def numbered(block: Block) -> bool:
            """Did Dovecot write this message (does it have an X-UID Dovecot gave)?"""
            text = block.fields.get(b"x-uid", b"")
            return bool(_DIGITS.fullmatch(text)) and 0 < int(text) < uidnext

        blocks = messages(itertools.chain([first] if first else [], found), numbered)
    if base is not None and blocks[0].subject == UW_PSEUDO_SUBJECT:
        blocks.pop(0)  # UW-IMAP's folder data, no message
    notes: list[str] = []
    spanning = [block for block in blocks if block.spans]
    notes += [f"{shown(path)}: the Content-Length of the message at octet {block.start} would "
              f"take in {block.spans} message(s) after it: read as separate messages"
              for block in spanning[:MAX_NOTED]]  # fmt: skip
    joined = [block for block in blocks[:-1] if not block.complete]
    notes += [f"{shown(path)}: the message at octet {block.start} is followed by a From line "
              "without an empty line between" for block in joined[:MAX_NOTED]]  # fmt: skip
    if len(spanning) > MAX_NOTED or len(joined) > MAX_NOTED:
        notes.append(f"{shown(path)}: and {max(len(spanning) - MAX_NOTED, 0)} more such "
                     f"Content-Length(s), {max(len(joined) - MAX_NOTED, 0)} more such From "
                     "line(s)")  # fmt: skip
    if blocks and not blocks[-1].complete:
        notes.append(f"{shown(path)}: the last message (at octet {blocks[-1].start}) does not "
                     "end with an empty line: it may have been cut short")  # fmt: skip
    # Only the first From line may lack a date (later ones are From lines by theirs): it
    # takes the next message's, the same on every run, where the file's mtime is not.
    fallback = next((b.date for b in blocks if b.date is not None), listed.st_mtime)
    first_date = min(max(int(fallback), 1), MAX_UID - 1)
    problem, avoid = None, None
    if isinstance(numbers, str):
        problem, numbers = numbers, None
    how = "UIDs kept"
    if numbers is not None:
        validity, uidnext = numbers
        uids, renumbered = _uids(blocks, uidnext)
        if renumbered:
            notes.append(f"{shown(path)}: {renumbered} message(s) without a usable X-UID "
                         "got new UIDs")  # fmt: skip
        if uids and max(uids) >= MAX_UID:
            problem = f"{shown(path)}: no UIDs left below {MAX_UID} (LASTUID {uidnext - 1})"
            numbers, avoid = None, validity
    else:
        avoid = _leading_number(base)
    if numbers is None:  # new UIDs in the file's order, under a UIDVALIDITY of its own
        validity, uidnext = first_date + (first_date == avoid), len(blocks) + 1
        uids = list(range(1, uidnext))
        how = "new UIDs, as the X-IMAPbase's can't be kept:" if problem else (
            "new UIDs in the file's order (no X-IMAPbase)")  # fmt: skip
    restored = _restored(path, listed, blocks, uids, notes, unquote, fallback)
    uidnext = max([uidnext, *(uid + 1 for uid in uids)])
    return MboxFolder(validity, uidnext, restored, how, problem, notes)


def _leading_number(base: bytes | None) -> int | None:
    words = (base or b"").split()
    return int(words[0]) if words and _DIGITS.fullmatch(words[0]) else None


def _base(path: str, base: bytes) -> tuple[int, int] | str:
    """(UIDVALIDITY, UIDNEXT) of an ``X-IMAPbase`` value, or why it can't be kept."""
    words = base.split()
    shown_value = repr(base[:60].decode("latin-1"))
    if (
        len(words) >= 2
        and _DIGITS.fullmatch(words[0])
        and _DIGITS.fullmatch(words[1])
        and 1 <= int(words[0]) <= MAX_UID
        and int(words[1]) < MAX_UID
    ):
        return int(words[0]), int(words[1]) + 1
    return (f"{shown(path)}: X-IMAPbase {shown_value} is not a UIDVALIDITY and a last UID "
            f"from 1 to {MAX_UID}")  # fmt: skip


def _uids(blocks: list[Block], uidnext: int) -> tuple[list[int], int]:
    """Each message's UID: its X-UID when above the last one kept and below UIDNEXT, else
    the next above all (what Dovecot gives a message it finds without one)."""
    kept, previous = [], 0
    for block in blocks:
        text = block.fields.get(b"x-uid", b"")
        uid = int(text) if _DIGITS.fullmatch(text) and len(text) < 11 else 0
        ok = previous < uid < uidnext
        kept.append(uid if ok else None)
        previous = uid if ok else previous
    highest = max([uidnext - 1, *(uid for uid in kept if uid)])
    out = []
    for uid in kept:
        if uid is None:
            highest += 1
            uid = highest
        out.append(uid)
    return out, sum(uid is None for uid in kept)


def _restored(
    path: str,
    listed: os.stat_result,
    blocks: list[Block],
    uids: list[int],
    notes: list[str],
    unquote: str | None,
    fallback: float,
) -> list[RestoredMessage]:
    out, refused = [], 0
    for uid, block in zip(uids, blocks, strict=True):
        flags = {_STATUS[c] for c in _letters(block, b"status") if c in _STATUS}
        flags |= {_X_STATUS[c] for c in _letters(block, b"x-status") if c in _X_STATUS}
        for keyword in block.fields.get(b"x-keywords", b"").split():
            name = keyword.decode("utf-8", "replace")
            if is_flag(name) and not name.startswith("\\"):
                flags.add(name)
            elif (refused := refused + 1) <= MAX_NOTED:
                notes.append(f"{shown(path)}: message at octet {block.start}: keyword "
                             f"{shown(repr(name[:80]))} is not an IMAP keyword")  # fmt: skip
        date = clamped_date(block.date if block.date is not None else fallback)
        source = MboxMessageSource(path, listed, block, unquote)
        out.append(RestoredMessage(uid, frozenset(flags), date, _FIRST_MODSEQ, source))
    if refused > MAX_NOTED:
        notes.append(f"{shown(path)}: {refused - MAX_NOTED} more keyword(s) that are not IMAP "
                     "keywords left out")  # fmt: skip
    return out


def _letters(block: Block, name: bytes) -> str:
    return block.fields.get(name, b"").decode("ascii", "replace")


def inbox_problem(path: str) -> str | None:
    """Why the INBOX file can't be read as one (None when it is a regular file or absent)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return None if stat.S_ISREG(mode) else f"{shown(path)}: {kind(mode)}"
