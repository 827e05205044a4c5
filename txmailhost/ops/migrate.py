"""``txmailhost migrate dovecot|postfix-aliases``: moving in from Postfix + Dovecot.

``migrate dovecot --passwd-file FILE [--maildir-root DIR | --mail-location LOCATION]
[--domain D] [--sieve LOCATION] [--max-message-size BYTES]``
reads Dovecot's passwd-file (``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra``) and, for
each user:

- creates the account with its Dovecot hash (``accounts/legacy.py`` checks it at login; the
  first successful login replaces it with ours), unless the account exists already; a
  hash no login could match is refused first (``dovecot_hashes.py``);
- copies the user's Maildir++ (``DIR/DOMAIN/USER``, ``DIR/DOMAIN/USER/Maildir``,
  ``DIR/USER@DOMAIN``, ``DIR/USER``, ``DIR/USER/Maildir``, ``HOME/Maildir`` or ``HOME``, the
  first that is a Maildir; or the one ``--mail-location maildir:PATH`` names) keeping, per
  folder, the
  UIDVALIDITY, UIDs and UIDNEXT of its ``dovecot-uidlist`` and the keywords of its
  ``dovecot-keywords`` (file-name letters ``a``-``z``), so IMAP clients see the same mailboxes
  and download nothing again; messages Dovecot hadn't given a UID yet get the next ones (a
  uidlist with numbers IMAP can't serve is reported, and its folder gets new UIDs);
- leaves out, and reports, a message file larger than this server takes in itself (the
  larger of ``[smtp] max_message_size`` and ``[imap] max_literal_size``, or
  ``--max-message-size``): a sparse file of 10 GiB would have been written out whole;
- subscribes what Dovecot's ``subscriptions`` file lists;
- brings the user's Sieve scripts, the active one active (``migrate_sieve.py``), and the
  storage limit of their ``quota_rule`` extra field (``dovecot_quota.py``).

With ``--mail-location mbox:~/mail:INBOX=/var/mail/%u`` (Dovecot's setting, for users whose
mail is in mbox files) the INBOX file and the files under the folder root are read instead
(``mbox.py``, ``mbox_tree.py``), with the UIDs, flags and keywords of the headers Dovecot
keeps in them, and ``.subscriptions``. A file that is no mbox is skipped and reported, none
of it imported; so is a folder whose name decodes to one already met.

A second run adds only what the first didn't (``store/restore.py``), so a run cut short
finishes when run again. Into a mailbox that already holds other mail the messages are
appended with new UIDs (as ``import``). The Dovecot files are only read, and never through
a link (``sourcefiles.py``): the source tree is its users' to shape, and the migration runs
as root or the mail user.

``migrate postfix-aliases FILE`` adds the aliases of a Postfix ``virtual_alias_maps`` source
(``alias target, target``; comments and continuation lines as postmap reads them).
``migrate maildir-to-postgres`` moves this installation into PostgreSQL (``to_postgres.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.interfaces import AccountError
from txmailhost.accounts.legacy import scheme_of
from txmailhost.asciinum import is_number
from txmailhost.ops import dovecot_quota, migrate_sieve
from txmailhost.ops.archive import added
from txmailhost.ops.dovecot_hashes import hash_problem
from txmailhost.ops.mailbox_admin import AdminError, emit, json_option, open_store, result_of
from txmailhost.ops.mbox import MboxError, MboxMessageSource
from txmailhost.ops.mbox_tree import MailLocation, MboxFolder, inbox_problem
from txmailhost.ops.mbox_tree import folders as mbox_folders
from txmailhost.ops.mbox_tree import read_folder as read_mbox
from txmailhost.ops.sourcefiles import (
    RegularFileSource,
    SourceFileError,
    entry_problem,
    kind,
    read_regular,
    shown,
)
from txmailhost.routing import blocking_router
from txmailhost.sieve.scripts import ScriptError
from txmailhost.sieve.setup import script_store
from txmailhost.store.interfaces import INBOX, InvalidMailboxName, StoreError
from txmailhost.store.restore import (
    MAX_UID,
    RestoredMessage,
    clamped_date,
    is_flag,
    restore_mailbox_sync,
)

# Maildir info letters (the "2," part of a name) and the IMAP flags they stand for.
_SYSTEM_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                   "T": "\\Deleted", "P": "$Forwarded"}  # fmt: skip
_FIRST_MODSEQ = 2  # above a fresh mailbox's HIGHESTMODSEQ of 1: restore keeps it
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() takes "²", which int() refuses
# Longest line of a passwd-file or an alias map: far above any real one (a hash and a home,
# a few hundred targets), far below what would cost memory.
MAX_LINE = 65536
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path of 256 octets, "<" and ">" included
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHOWN = 80  # most characters of a file's text an error repeats
_F = TypeVar("_F", "Folder", MboxFolder)  # a Maildir folder's messages or an mbox file's


def _printable(text: str) -> str:
    """``text`` of a source file for the report: a control character (a NUL, an escape
    sequence that would drive the terminal) shown as ``\\x00``, not written out."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _clipped(text: str) -> str:
    """``text`` for an error line: quoted, escaped, cut after ``_SHOWN`` characters."""
    return repr(text[:_SHOWN]) + ("..." if len(text) > _SHOWN else "")


def register(commands: Any, with_accounts: Callable[..., Callable[[argparse.Namespace], int]]):
    migrate = commands.add_parser("migrate", help="move users and mail in from Dovecot/Postfix")
    sources = migrate.add_subparsers(metavar="SOURCE", required=True)
    dovecot = sources.add_parser(
        "dovecot", help="accounts from a passwd-file, Maildirs with their UIDs and keywords"
    )
    dovecot.add_argument("--passwd-file", required=True, metavar="FILE")
    dovecot.add_argument(
        "--maildir-root", metavar="DIR", help="where the Maildirs are (DIR/DOMAIN/USER ...)"
    )
    dovecot.add_argument("--domain", help="domain of passwd-file users without one")
    dovecot.add_argument(
        "--mail-location",
        metavar="LOCATION",
        help="Dovecot's mail_location (mbox:~/mail:INBOX=/var/mail/%%u, maildir:~/Maildir)",
    )
    dovecot.add_argument(
        "--max-message-size",
        type=_size,
        metavar="BYTES",
        help="skip and report messages larger than this (default: the larger of "
        "[smtp] max_message_size and [imap] max_literal_size; 0: no limit)",
    )
    dovecot.add_argument(
        "--mbox-unquote",
        choices=("mboxo", "mboxrd"),
        help="take '>' off '>From ' lines (not done by default: Dovecot served them quoted)",
    )
    dovecot.add_argument(
        "--sieve",
        metavar="LOCATION",
        default=migrate_sieve.DEFAULT_LOCATION,
        help="where Pigeonhole keeps each user's Sieve scripts: Dovecot's 'sieve =' setting "
        "(default %(default)s)",
    )
    json_option(dovecot)
    dovecot.set_defaults(run=with_accounts(_dovecot))
    aliases = sources.add_parser(
        "postfix-aliases", help="aliases from a virtual_alias_maps source file"
    )
    aliases.add_argument("file")
    json_option(aliases)
    aliases.set_defaults(run=with_accounts(_postfix_aliases))
    from txmailhost.ops.to_postgres import register as register_to_postgres

    register_to_postgres(sources, with_accounts)


# -- passwd-file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswdEntry:
    address: str
    password_hash: str
    home: str
    where: str = ""  # FILE:LINE, for the report
    user: str = ""  # as the file names them (Dovecot's %u), domain or not
    extra: str = ""  # the extra fields (userdb_quota_rule=*:storage=1G ...)


def text_lines(path: str) -> Iterator[tuple[int, str]]:
    """(number, line) of a text file in UTF-8, without line ends; a line that isn't UTF-8
    is named with its file and number (not only "'utf-8' codec can't decode byte 0xff").
    A line longer than ``MAX_LINE`` is refused with its number before it is read whole: a
    file of one 2 GB line was read into memory, and its first field came back in the
    error, megabytes on one line of the terminal."""
    with open(path, "rb") as f:
        for number, raw in enumerate(iter(lambda: f.readline(MAX_LINE + 2), b""), 1):
            if len(raw.rstrip(b"\r\n")) > MAX_LINE:
                raise AdminError(f"{path}:{number}: longer than {MAX_LINE} octets")
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise AdminError(
                    f"{path}:{number}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
                ) from None


def read_passwd_file(path: str, domain: str | None) -> list[PasswdEntry]:
    """The users, each once: a user listed twice is refused before anything is done (which
    of the two hashes and homes would be the right one?)."""
    entries = []
    lines: dict[str, int] = {}
    for number, line in text_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        user, password = fields[0], fields[1] if len(fields) > 1 else ""
        named = user
        home = fields[5] if len(fields) > 5 else ""
        if len(user) > MAX_ADDRESS:
            raise AdminError(f"{path}:{number}: user {_clipped(user)} is longer than an "
                             f"address can be ({MAX_ADDRESS} octets)")  # fmt: skip
        if "@" not in user:
            if not domain:
                raise AdminError(f"{path}:{number}: user {user!r} has no domain (--domain)")
            user = f"{user}@{domain}"
        try:
            address = canonical_address(user)
        except AccountError as e:
            raise AdminError(f"{path}:{number}: {e}") from None
        if address in lines:
            raise AdminError(
                f"{path}:{number}: {address} is listed again (first on line {lines[address]})"
            )
        lines[address] = number
        extra = ":".join(fields[7:])  # an extra field may hold ":" (*:storage=1G)
        entries.append(
            PasswdEntry(address, password, home, f"{path}:{number}", user=named, extra=extra)
        )
    return entries


# -- Dovecot's Maildir files -------------------------------------------------------------------


@dataclass
class UidList:
    uidvalidity: int
    uidnext: int
    uids: dict[str, int]  # base name -> UID


@dataclass(frozen=True)
class Folder:
    """What ``folder_messages`` found: the numbers to restore with, and why the uidlist's
    weren't kept (None when they were)."""

    uidvalidity: int
    uidnext: int
    messages: list[RestoredMessage]
    problem: str | None = None


class UidListError(ValueError):
    """A ``dovecot-uidlist`` whose numbers can't be kept (the text names the file, the line
    and the value); ``uidvalidity`` is the one it gave, if that much could be read."""

    def __init__(self, text: str, uidvalidity: int | None = None) -> None:
        super().__init__(text)
        self.uidvalidity = uidvalidity


def read_listing(path: str, skipped: list[str], errors: str = "strict") -> str | None:
    """A small file of Dovecot's (uidlist, keywords, subscriptions): its text, or None when it
    is absent, not a regular file (a link is not followed, a FIFO would hang the migration)
    or not UTF-8; those are reported in ``skipped``."""
    try:
        data = read_regular(path)
        return None if data is None else data.decode("utf-8", errors)
    except SourceFileError as e:
        skipped.append(str(e))
    except UnicodeDecodeError as e:
        skipped.append(f"{shown(path)}: not UTF-8 (byte {e.object[e.start]:#04x} at {e.start})")
    return None


def read_uidlist(directory: str, skipped: list[str]) -> UidList | None:
    """``dovecot-uidlist``: version 3 (``3 V<validity> N<next> ...`` then ``UID [ext] :name``)
    or version 1 (``1 validity next`` then ``UID name``); None when absent. The checks are
    Dovecot's own (maildir-uidlist.c): each UID listed once and below 2^32-1, and, in
    version 1 only, below the header's next UID. Version 3 appends records without
    rewriting its header, so a live file reads ``3 V… N1`` then ``1 :name``: UIDNEXT is
    the greater of N and the last UID + 1, as Dovecot reads it."""
    path = os.path.join(directory, "dovecot-uidlist")
    text = read_listing(path, skipped, "surrogateescape")
    if text is None:
        return None
    first, _, rest = text.partition("\n")
    header = first.split()
    if not header:
        return None
    validity, nextuid = _uidlist_header(shown(path), header)
    uids: dict[str, int] = {}
    listed: set[int] = set()
    for number, line in enumerate(rest.splitlines(), 2):
        uid_text, _, rest = line.partition(" ")
        if not _DIGITS.fullmatch(uid_text):
            continue
        name = rest.split(":", 1)[1] if ":" in rest else rest.split()[-1] if rest else ""
        uid = int(uid_text)
        highest = nextuid - 1 if header[0] == "1" else MAX_UID - 1
        if not 1 <= uid <= highest or uid in listed:
            why = "listed twice" if uid in listed else f"not from 1 to {highest}"
            raise UidListError(f"{shown(path)}:{number}: UID {uid} {why}", validity)
        listed.add(uid)
        if name:
            uids[maildir_name(name)[0]] = uid
    return UidList(validity, max(nextuid, *(uid + 1 for uid in listed)), uids)


def _uidlist_header(path: str, header: list[str]) -> tuple[int, int]:
    """(UIDVALIDITY, UIDNEXT) of a uidlist's first line, each from 1 to 2^32-1."""
    if header[0] == "1" and len(header) >= 3:
        values = {"V": header[1], "N": header[2]}
    else:
        values = {h[0]: h[1:] for h in header[1:] if h}
    numbers = []
    for key, label in (("V", "UIDVALIDITY"), ("N", "UIDNEXT")):
        text = values.get(key)
        if text is None or not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_UID:
            found = "missing" if text is None else repr(text)
            raise UidListError(
                f"{path}:1: {label} {found} is not a number from 1 to {MAX_UID}",
                numbers[0] if numbers else None,
            )
        numbers.append(int(text))
    return numbers[0], numbers[1]


def read_keywords(directory: str, skipped: list[str]) -> dict[str, str]:
    """``dovecot-keywords``: ``N keyword`` lines; letter ``a``+N stands for the keyword. A
    keyword IMAP can't carry (``a b``, ``(x``: not an atom, ``store/restore.is_flag``) is
    left out and reported; it would have been written as it is into ``FETCH FLAGS``."""
    found: dict[str, str] = {}
    path = os.path.join(directory, "dovecot-keywords")
    text = read_listing(path, skipped)
    for number_of_line, line in enumerate((text or "").splitlines(), 1):
        number, _, keyword = line.strip().partition(" ")
        if is_number(number) and int(number) < 26 and keyword:
            if is_flag(keyword) and not keyword.startswith("\\"):
                found[chr(ord("a") + int(number))] = keyword
            else:
                skipped.append(f"{shown(path)}:{number_of_line}: keyword "
                               f"{_printable(_clipped(keyword))} is not an IMAP keyword")  # fmt: skip
    return found


def folders(maildir: str, skipped: list[str]) -> Iterator[tuple[str, str]]:
    """(IMAP name, directory) of INBOX and each Maildir++ folder (``.Lists.twisted``); a
    link among them is reported in ``skipped``, never followed (it could lead into another
    user's Maildir), and so is a folder whose name is not text (``folder_name``) or is
    INBOX in any case (``.INBOX``: Dovecot's INBOX is the Maildir itself)."""
    yield INBOX, maildir
    for entry in sorted(os.listdir(maildir)):
        if not entry.startswith(".") or entry in (".", ".."):
            continue
        full = os.path.join(maildir, entry)
        mode = os.lstat(full).st_mode
        if entry == migrate_sieve.ACTIVE_LINK and not stat.S_ISDIR(mode):
            continue  # Pigeonhole's active script in a Maildir that is the home: not a folder
        if stat.S_ISLNK(mode):
            skipped.append(f"{shown(full)}: {kind(mode)}")
        elif stat.S_ISDIR(mode) and os.path.lexists(os.path.join(full, "cur")):
            name = folder_name(entry[1:].split("."))
            if name is None:
                skipped.append(f"{shown(full)}: a name neither modified UTF-7 nor UTF-8")
            elif name.upper() == INBOX:
                # INBOX is the Maildir itself (RFC 3501 5.1: any case); merged into it, a
                # ".INBOX" folder's mail was appended again on every run
                skipped.append(f"{shown(full)}: a folder named INBOX beside the Maildir's own")
            else:
                yield name, full


def folder_name(levels: list[str]) -> str | None:
    """The IMAP name of a folder from its hierarchy levels as Dovecot stored them: each in
    modified UTF-7 (RFC 3501 5.1.3, Dovecot's default) when it is valid modified UTF-7,
    else as it is (UTF-8: Dovecot's ``UTF-8`` layout option, or ASCII such as ``R&D``);
    None when a level is neither (bytes that ``os.listdir`` could only surrogate-escape)."""
    import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 codec

    names = []
    for level in levels:
        if not level.isascii():
            try:
                level.encode("utf-8")
            except UnicodeEncodeError:
                return None
            names.append(level)
            continue
        try:
            decoded = level.encode("ascii").decode("imap4-utf-7")
        except UnicodeDecodeError:
            decoded = None
        # Twisted's decoder also takes sloppy forms ("&AOk" unterminated): only a name that
        # encodes back to itself is modified UTF-7.
        valid = decoded is not None and decoded.encode("imap4-utf-7") == level.encode("ascii")
        names.append(decoded if valid else level)
    return "/".join(names)


def maildir_name(filename: str) -> tuple[str, str]:
    """(base, flag letters) of a Maildir file name as Dovecot reads it (maildir-filename):
    the base ends at the first ``:``; the letters follow the *last* ``:`` when it is
    ``:2,``, up to the next ``,``. ``x:2,S:2,T`` is ``\\Deleted`` and ``x:2,F,kw`` only
    ``\\Flagged`` there, not ``\\Seen \\Deleted`` and the keywords of ``k`` and ``w``."""
    base, _, _rest = filename.partition(":")
    _before, colon, info = filename.rpartition(":")
    if not colon or not info.startswith("2,"):
        return base, ""
    return base, info[2:].partition(",")[0]


def message_files(directory: str, skipped: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of each regular file in the folder's ``cur/`` and ``new/``; anything
    else there (a link, a FIFO, a directory) is reported in ``skipped`` and left alone."""
    for sub in ("cur", "new"):
        where = os.path.join(directory, sub)
        if not os.path.lexists(where):
            continue
        problem = entry_problem(where, want_directory=True)
        if problem is not None:
            skipped.append(problem)
            continue
        for filename in sorted(os.listdir(where)):
            if filename.startswith("."):
                continue
            path = os.path.join(where, filename)
            listed = os.lstat(path)
            if stat.S_ISREG(listed.st_mode):
                yield path, listed
            else:
                skipped.append(f"{shown(path)}: {kind(listed.st_mode)}")


def folder_messages(directory: str, skipped: list[str]) -> Folder:
    """A folder's messages with the UIDs of its ``dovecot-uidlist``, or, when that can't be
    kept, with new ones under a new UIDVALIDITY, and the reason in ``problem``."""
    noted: list[str] = []
    try:
        folder = Folder(*messages_of(directory, read_uidlist(directory, noted), noted))
    except UidListError as e:
        fresh = messages_of(directory, None, skipped, avoid=e.uidvalidity)
        return Folder(*fresh, problem=str(e))
    skipped.extend(noted)
    return folder


def messages_of(
    directory: str, uidlist: UidList | None, skipped: list[str], avoid: int | None = None
) -> tuple[int, int, list[RestoredMessage]]:
    """(UIDVALIDITY, UIDNEXT, messages) of one Dovecot Maildir folder. Without a uidlist the
    UIDVALIDITY is the folder's mtime (the same on a second run), but never ``avoid``: the
    one of a uidlist that was refused, which clients may have cached."""
    keywords = read_keywords(directory, skipped)
    known = uidlist.uids if uidlist else {}
    nextuid = uidlist.uidnext if uidlist else 1
    found: list[tuple[int | None, str, str, os.stat_result]] = []
    for path, listed in message_files(directory, skipped):
        base, info = maildir_name(os.path.basename(path))
        found.append((known.get(base), path, info, listed))
    highest = max([nextuid - 1, *(uid for uid, *_rest in found if uid)])
    out = []
    for uid, path, info, listed in sorted(found, key=lambda f: (f[0] is None, f[0] or 0, f[1])):
        if uid is None:
            highest += 1
            uid = highest
        flags = {_SYSTEM_LETTERS[c] for c in info if c in _SYSTEM_LETTERS}
        flags |= {keywords[c] for c in info if c in keywords}
        date = clamped_date(listed.st_mtime)  # a file's time may be past what IMAP writes
        out.append(RestoredMessage(uid, frozenset(flags), date, _FIRST_MODSEQ,
                                   RegularFileSource(path, listed)))  # fmt: skip
    if uidlist is None:
        validity = min(max(int(os.stat(directory).st_mtime), 1), MAX_UID - 1)
        return validity + (validity == avoid), highest + 1, out
    if highest >= MAX_UID:
        raise UidListError(
            f"{shown(directory)}: no UIDs left below {MAX_UID} for the messages Dovecot "
            f"hadn't numbered (UIDNEXT {nextuid})",
            uidlist.uidvalidity,
        )
    return uidlist.uidvalidity, max(nextuid, highest + 1), out


def read_subscriptions(
    maildir: str, skipped: list[str], filename: str = "subscriptions"
) -> list[str]:
    """Dovecot's ``subscriptions`` (``.subscriptions`` beside mbox folders): one name a line,
    after an optional ``V\\t2`` header; its version 2 separates hierarchy levels with a tab.
    Names are stored as the folders' are (``Caf&AOk-``), and read the same way."""
    lines = (read_listing(os.path.join(maildir, filename), skipped) or "").splitlines()
    names = [folder_name(line.split("\t")) for line in lines if not re.fullmatch(r"V\t\d+", line)]
    return [name for name in names if name]


def find_maildir(
    root: str | None,
    entry: PasswdEntry,
    skipped: list[str],
    location: MailLocation | None = None,
) -> str | None:
    """The user's Maildir: the path of a ``maildir:`` ``location`` (Dovecot's own
    ``mail_location``), else the first of the layouts Dovecot installs use that is a
    Maildir (its ``cur/`` a directory, the test Dovecot's autodetection makes): under
    ``root`` ``DOMAIN/USER``, ``DOMAIN/USER/Maildir`` (``mail_location =
    maildir:~/Maildir`` with homes ``/var/vmail/%d/%n``), ``USER@DOMAIN``, ``USER``,
    ``USER/Maildir`` (one domain), then ``HOME/Maildir`` and ``HOME``. A directory without
    ``cur/`` is never taken; when none is found, the places looked in are reported. The
    administrator's paths (the root, the passwd-file's home) may lead through links;
    ``HOME/Maildir`` is the user's own entry, so a link there (perhaps to someone else's
    Maildir) is reported and not followed."""
    local, domain = entry.address.split("@", 1)
    candidates = []
    if location is not None:
        candidates.append(location.paths(entry.user or entry.address, entry.address,
                                         entry.home)[0])  # fmt: skip
    elif root:
        candidates += [os.path.join(root, domain, local),
                       os.path.join(root, domain, local, "Maildir"),
                       os.path.join(root, entry.address), os.path.join(root, local),
                       os.path.join(root, local, "Maildir")]  # fmt: skip
    if entry.home and location is None:
        own = os.path.join(entry.home, "Maildir")
        if os.path.islink(own):
            skipped.append(f"{shown(own)}: {kind(stat.S_IFLNK)}")
        else:
            candidates.append(own)
        candidates.append(entry.home)
    for candidate in candidates:
        if os.path.isdir(os.path.join(candidate, "cur")):
            return candidate
    if candidates:
        skipped.append("no Maildir (a directory with cur/) in "
                       + ", ".join(shown(c) for c in candidates))  # fmt: skip
    return None


# -- the commands ------------------------------------------------------------------------------


def _size(text: str) -> int:
    """``--max-message-size``: a number of bytes, 0 for no limit."""
    if not _DIGITS.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes")
    return int(text)


def size_limit(args: argparse.Namespace, config: Any) -> int | None:
    """The largest message file ``migrate dovecot`` copies, None for any: by default the
    largest this server takes in itself (over SMTP, or by IMAP APPEND), so a message file
    no client could have sent here (a 10 GB file in a user's Maildir, a sparse file that
    would be written out whole) isn't copied without the administrator's word."""
    if args.max_message_size is not None:
        return args.max_message_size or None
    return max(config.smtp.max_message_size, config.imap.max_literal_size)


def _within(folder: _F, limit: int | None, skipped: list[str]) -> _F:
    """``folder`` without the messages larger than ``limit``, each reported; judged by the
    size a Maildir file was listed with, or an mbox message's octets in its file: nothing
    of them is read."""
    if limit is None:
        return folder
    kept = []
    for message in folder.messages:
        source = message.source
        if isinstance(source, MboxMessageSource):
            size, where = source.octets_in_file, source.where
        else:
            assert isinstance(source, RegularFileSource)
            size, where = source.size or 0, shown(source.path)
        if size > limit:
            skipped.append(f"{where}: {size} bytes, larger than the {limit} copied "
                           "(--max-message-size)")  # fmt: skip
        else:
            kept.append(message)
    return dataclasses.replace(folder, messages=kept)


def _dovecot(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    location = None
    if args.mail_location is not None:
        if args.maildir_root is not None:
            raise AdminError("--maildir-root and --mail-location: one or the other")
        location = MailLocation.parse(args.mail_location)
    entries = read_passwd_file(args.passwd_file, args.domain)
    sieve = migrate_sieve.parse_location(args.sieve)
    store = open_store(config)
    scripts = script_store(config)
    report = []
    for entry in entries:
        # One user's failure is reported and the others still move in (a run again
        # finishes this one: docs/admin.rst).
        try:
            if location is None or location.maildir:
                report.append(migrate_user(store, accounts, entry, args.maildir_root, scripts,
                                           sieve, location, size_limit(args, config)))  # fmt: skip
            else:
                report.append(migrate_mbox_user(store, accounts, entry, location,
                                                args.mbox_unquote, scripts, sieve,
                                                size_limit(args, config)))  # fmt: skip
        except (AccountError, StoreError, OSError, ValueError, sqlite3.Error, ScriptError) as e:
            report.append({"user": entry.address, "error": _failure(e)})

    def lines() -> list[str]:
        out = []
        for user in report:
            if "error" in user:
                out.append(f"skipped {user['user']}: {user['error']}")
                continue
            out.append(f"{user['user']}: account {user['account']}")
            if user.get("maildir"):
                out.append(f"  Maildir {shown(user['maildir'])}")
            out.extend(f"  skipped {line}" for line in user["skipped"])
            for box in user["mailboxes"]:
                how = "UIDs kept" if box["kept_uids"] else "new UIDs (the mailbox held mail)"
                if box.get("uidlist_problem"):  # an mbox's is in its X-IMAPbase
                    how = (
                        box.get("numbering") or "new UIDs, as the dovecot-uidlist's can't be kept:"
                    )
                elif box.get("numbering") and box["kept_uids"]:
                    how = box["numbering"]
                out.append(
                    f"  {box['name']}: {added(box)}, UIDVALIDITY {box['uidvalidity']}, {how}"
                )
                if box.get("uidlist_problem"):
                    out.append(f"    {box['uidlist_problem']}")
                out.extend(f"    {note}" for note in box.get("notes", ()))
            if user.get("quota"):
                out.extend(f"  {line}" for line in dovecot_quota.report_lines(user["quota"]))
            out.extend(f"  {line}" for line in migrate_sieve.report_lines(user.get("sieve", [])))
        return out

    emit(args, report, lines)
    return 1 if any("error" in user for user in report) else 0


def checked_hash(entry: PasswdEntry) -> str:
    """The entry's hash as ``{SCHEME}value``, if it is one a login can match (else
    ``AccountError`` naming the passwd-file line: the user is skipped)."""
    encoded = entry.password_hash
    if scheme_of(encoded) is None and not encoded.startswith("$"):
        raise AccountError(f"{entry.where}: password scheme not supported: {encoded[:16]!r}")
    if scheme_of(encoded) is None:  # a bare crypt(3) string ($6$...), Dovecot's CRYPT
        encoded = "{CRYPT}" + encoded
    scheme = scheme_of(encoded)
    assert scheme is not None
    problem = hash_problem(scheme, encoded[len(scheme) + 2 :])
    if problem is not None:
        raise AccountError(f"{entry.where}: {problem}")
    return encoded


def migrate_user(
    store: Any,
    accounts: Any,
    entry: PasswdEntry,
    root: str | None,
    scripts: Any = None,
    sieve: migrate_sieve.SieveLocation | None = None,
    location: MailLocation | None = None,
    max_size: int | None = None,
) -> dict:
    user = entry.address
    account = _account(accounts, entry)
    quota = dovecot_quota.migrate_quota(accounts, user, entry.extra)
    result_of(store.provision(user))
    skipped: list[str] = []
    maildir = find_maildir(root, entry, skipped, location)
    boxes = []
    if maildir is not None:
        seen: dict[str, str] = {}
        for name, directory in folders(maildir, skipped):
            if name in seen:  # .Caf&AOk- and .Café: one mailbox would get both, or one lost
                skipped.append(f"{shown(directory)}: the same mailbox name as "
                               f"{shown(seen[name])} ({_printable(_clipped(name))})")  # fmt: skip
                continue
            seen[name] = directory
            box = migrate_folder(store, user, name, directory, skipped, max_size)
            if box is not None:
                boxes.append(box)
        existing = set(result_of(store.list_mailboxes(user)))
        for name in read_subscriptions(maildir, skipped):
            if name in existing:
                result_of(store.subscribe(user, name, True))
    sieve_report = _scripts(scripts, sieve, user, migrate_sieve.sieve_home(entry.home, maildir),
                            skipped)  # fmt: skip
    return {"user": user, "account": account, "maildir": maildir, "mailboxes": boxes,
            "skipped": skipped, "quota": quota, "sieve": sieve_report}  # fmt: skip


def _scripts(
    scripts: Any,
    sieve: migrate_sieve.SieveLocation | None,
    user: str,
    home: str | None,
    skipped: list[str],
) -> list:
    """The user's Pigeonhole scripts brought over (``migrate_sieve.py``): the report's lines."""
    if scripts is None or sieve is None:
        return []
    found = migrate_sieve.find_scripts(sieve, user, home, skipped)
    return migrate_sieve.migrate_scripts(scripts, user, found)


def migrate_folder(
    store: Any,
    user: str,
    name: str,
    directory: str,
    skipped: list[str],
    max_size: int | None = None,
) -> dict | None:
    """Restore one Dovecot folder as the mailbox ``name``; a line of the report (None when
    the store refuses the name: the folder is skipped, and said so in ``skipped``). A
    message file larger than ``max_size`` is left out and reported (``_within``)."""
    folder = _within(folder_messages(directory, skipped), max_size, skipped)
    restored = _restore(store, user, name, directory, folder, skipped)
    if restored is None:
        return None
    return {**restored, "uidlist_problem": folder.problem}


def _restore(
    store: Any, user: str, name: str, where: str, folder: Folder | MboxFolder, skipped: list[str]
) -> dict | None:
    """``folder`` restored as the mailbox ``name``, all of it or (on an error) none of it
    (``store/restore.py``); None when the store refuses the name (said in ``skipped``)."""
    try:
        restored = restore_mailbox_sync(
            store, user, name, folder.uidvalidity, folder.uidnext, folder.messages, result_of
        )
    except InvalidMailboxName as e:
        skipped.append(f"{shown(where)}: {e}")
        return None
    except SourceFileError:
        raise  # it names its file
    except (ValueError, StoreError, sqlite3.Error) as e:
        raise AdminError(f"{shown(where)}: {_failure(e)}") from e
    return {"name": name, "messages": restored.messages, "present": restored.present,
            "uidvalidity": restored.uidvalidity, "kept_uids": restored.kept_uids}  # fmt: skip


def migrate_mbox_user(
    store: Any,
    accounts: Any,
    entry: PasswdEntry,
    location: MailLocation,
    unquote: str | None,
    scripts: Any = None,
    sieve: migrate_sieve.SieveLocation | None = None,
    max_size: int | None = None,
) -> dict:
    """``migrate_user`` for a user whose mail is in mbox files (``mbox_tree.py``): the INBOX
    file, then each file of the folder tree, then ``.subscriptions``. A file that is no mbox
    is skipped and reported, none of it imported; so is a folder whose name decodes to one
    met already (``Caf&AOk-`` beside ``Café``), which would have been merged into it."""
    user = entry.address
    account = _account(accounts, entry)
    quota = dovecot_quota.migrate_quota(accounts, user, entry.extra)
    result_of(store.provision(user))
    skipped: list[str] = []
    root, inbox = location.paths(entry.user or user, user, entry.home)
    boxes = []
    files: list[tuple[str, str]] = []
    if inbox is not None:
        problem = inbox_problem(inbox)
        if problem is not None:
            skipped.append(problem)
        elif os.path.lexists(inbox):
            files.append((INBOX, inbox))
    names = {INBOX: inbox or ""}
    tree = os.path.lexists(root)
    if tree:
        for levels, path in mbox_folders(root, skipped):
            name = folder_name(levels)
            if name is None:
                skipped.append(f"{shown(path)}: a name neither modified UTF-7 nor UTF-8")
            elif name.upper() == INBOX and inbox is None and INBOX not in dict(files):
                files.append((INBOX, path))  # mbox:~/mail without INBOX=: ~/mail/inbox
            elif name.upper() == INBOX:
                skipped.append(f"{shown(path)}: a folder named INBOX beside the INBOX file")
            elif name in names:
                skipped.append(f"{shown(path)}: the same mailbox name as {shown(names[name])} "
                               f"({_printable(_clipped(name))})")  # fmt: skip
            else:
                names[name] = path
                files.append((name, path))
    for name, path in files:
        try:
            folder = _within(read_mbox(path, unquote), max_size, skipped)
        except MboxError as e:
            skipped.append(str(e))
            continue
        box = _restore(store, user, name, path, folder, skipped)
        if box is not None:
            boxes.append({**box, "numbering": folder.numbering, "notes": folder.notes,
                          "uidlist_problem": folder.problem})  # fmt: skip
    if tree and stat.S_ISDIR(os.lstat(root).st_mode):  # not read through a link
        existing = set(result_of(store.list_mailboxes(user)))
        for name in read_subscriptions(root, skipped, ".subscriptions"):
            if name in existing:
                result_of(store.subscribe(user, name, True))
    sieve_report = _scripts(scripts, sieve, user, entry.home or None, skipped)
    return {"user": user, "account": account, "mbox": inbox, "folders": root,
            "mailboxes": boxes, "skipped": skipped, "quota": quota,
            "sieve": sieve_report}  # fmt: skip


def _account(accounts: Any, entry: PasswdEntry) -> str:
    """The user's account made with the Dovecot hash ("created"), or "existed"."""
    if accounts.has_user(entry.address):
        return "existed"
    accounts.add_user_with_hash(entry.address, checked_hash(entry))
    return "created"


def _failure(error: Exception) -> str:
    """A failure as the report says it: the file first where there is one."""
    if isinstance(error, OSError) and error.filename:
        return f"{shown(os.fsdecode(error.filename))}: {error.strerror}"
    return str(error) or type(error).__name__


def read_alias_map(path: str) -> list[tuple[str, list[str]]]:
    """A Postfix lookup table source: ``key value``, ``#`` comments, lines starting with
    white space continue the previous one (postmap(1)); the key ends at the first white
    space, a space or a tab as postmap reads it (``info@example.org<TAB>alice@...`` was
    read as one key without a value and dropped without a word); values split on commas
    and white space. A key without a value is refused with its line, as postmap refuses
    it ("expected format: key whitespace value")."""
    logical: list[tuple[int, str]] = []
    for number, stripped in text_lines(path):
        if not stripped.strip() or stripped.lstrip().startswith("#"):
            continue
        if stripped[0].isspace() and logical:
            logical[-1] = (logical[-1][0], logical[-1][1] + " " + stripped.strip())
        else:
            logical.append((number, stripped.strip()))
    out = []
    for number, line in logical:
        key, *rest = line.split(None, 1)
        targets = [t for t in re.split(r"[\s,]+", rest[0] if rest else "") if t]
        if not targets:
            raise AdminError(f"{path}:{number}: {_clipped(key)} has no target (expected "
                             "'alias target, target')")  # fmt: skip
        out.append((key, targets))
    return out


def _postfix_aliases(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    rules = accounts.address_rules()
    # The check alias add runs: an alias closing a loop is skipped and reported, not added
    # for the server to refuse its mail with 550 5.4.6 (the map's other lines go on).
    check = blocking_router(config, accounts).refuse_loops
    report = []
    for alias, targets in read_alias_map(args.file):
        try:
            rules.add_alias(alias, targets, check)
            report.append({"alias": alias, "targets": targets, "added": True})
        except AccountError as e:
            report.append({"alias": alias, "targets": targets, "added": False, "error": str(e)})
    emit(
        args,
        report,
        lambda: [
            _printable(f"{r['alias']} -> {', '.join(r['targets'])}")
            + ("" if r["added"] else f": skipped: {r['error']}")
            for r in report
        ],
    )
    # As ``migrate dovecot`` exits 1 when a user failed: a script (or the administrator
    # reading only ``$?``) learns that some of the map didn't come in. An entry added
    # again on a second run is no failure (the alias is there), so a run that finished
    # exits 0 again.
    return 1 if any(not r["added"] for r in report) else 0
