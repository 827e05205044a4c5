"""METADATA (RFC 5464): GETMETADATA and SETMETADATA on mailbox and server entries.

Entries are kept by the store (``IMetadataStore``: durable, following their mailbox through
RENAME and DELETE); the server offers METADATA only over a store that declares it. Names are
``/private/...`` or ``/shared/...`` (§3.2), compared without regard to case (stored lower-case),
7-bit, without ``*``, ``%``, empty components or a trailing ``/``. With no other users able to
see a mailbox yet, ``/shared`` entries are the owner's as ``/private`` ones are; both are kept.

Limits (§4.3): a value of at most ``MAX_VALUE_SIZE`` octets (``NO [METADATA MAXSIZE n]``), at
most ``MAX_ENTRIES`` entries on one mailbox or on the server (``NO [METADATA TOOMANY]``). A
GETMETADATA with ``MAXSIZE`` leaves out larger values and says so with ``OK [METADATA
LONGENTRIES n]``, n the size of the largest left out (§4.2.1).
"""

from __future__ import annotations

import re
from typing import Any

from txmailhost.imap import binary, names, replies
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import Done, mailbox_name, string
from txmailhost.store.interfaces import IMetadataStore, NoSuchMailbox, TooManyEntries

MAX_VALUE_SIZE = 16 * 1024
MAX_ENTRIES = 100
MAX_ENTRY_NAME = 256
_ENTRY = re.compile(rb"/(private|shared)(/[\x21-\x7e]+)*", re.I)
_DEPTHS = {b"0": 0, b"1": 1, b"INFINITY": None}


def entry_name(raw: bytes, for_set: bool) -> str:
    """A checked, lower-cased entry name (RFC 5464 §3.2.1); ``BAD`` otherwise. The bare
    ``/private`` and ``/shared`` roots can be asked for (with DEPTH) but not set."""
    if (
        len(raw) > MAX_ENTRY_NAME
        or not _ENTRY.fullmatch(raw)
        or b"//" in raw
        or raw.endswith(b"/")
        or b"*" in raw
        or b"%" in raw
        or (for_set and raw.lower() in (b"/private", b"/shared"))
    ):
        raise replies.BadCommand(
            f"invalid metadata entry name {replies.printable(raw.decode('latin-1'))}"
        )
    return raw.decode("ascii").lower()


def _entries(reader: Reader) -> list[str]:
    if reader.peek() != b"(":
        return [entry_name(reader.astring(), False)]
    reader.open_paren()
    found = [entry_name(reader.astring(), False)]
    while reader.skip_sp():
        found.append(entry_name(reader.astring(), False))
    reader.close_paren()
    return found


def _value(reader: Reader) -> bytes | None:
    """``nstring`` or ``literal8`` (§4.3: a value may hold any octet)."""
    if reader.peek() == b"~":
        reader.pos += 1
        if reader.peek() != b"{":
            raise ParseError("expected a literal8 after ~")
    return reader.nstring()


def _shown_value(value: bytes | None) -> bytes:
    """NIL, a string, or a literal8 for a value holding NUL (§4.3, §5: a value may hold any
    octet, and a ``{n}`` literal no NUL; the server offers BINARY, so clients read ``~{n}``)."""
    if value is None:
        return b"NIL"
    return binary.literal(value) if b"\0" in value else string(value)


def selected_entries(
    stored: dict[str, bytes], wanted: list[str], depth: int | None
) -> dict[str, bytes | None]:
    """What GETMETADATA returns: each entry asked for (NIL when it has no value) and, with
    DEPTH 1 or infinity, the stored entries below it (§4.2.2)."""
    result: dict[str, bytes | None] = {}
    for entry in wanted:
        if entry not in ("/private", "/shared"):
            result[entry] = stored.get(entry)
        if depth == 0:
            continue
        prefix = entry + "/"
        for name in sorted(stored):
            if name.startswith(prefix) and (depth is None or "/" not in name[len(prefix) :]):
                result[name] = stored[name]
    return result


class MetadataCommands:
    """Part of ``IMAPServer``: GETMETADATA and SETMETADATA."""

    account: Any
    utf8: bool
    write: Any

    def metadata_offered(self) -> bool:
        return self.account is not None and IMetadataStore.providedBy(self.account.store)

    def _metadata_mailbox(self, reader: Reader) -> str | None:
        """The mailbox argument: ``""`` is the server (the account's own entries)."""
        raw = reader.astring()
        return None if raw == b"" else names.decode(raw, self.utf8)

    async def _stored(self, mailbox: str | None) -> dict[str, bytes]:
        try:
            return await self.account.store.get_metadata(self.account.address, mailbox)
        except NoSuchMailbox:
            raise replies.Nonexistent() from None

    async def _getmetadata(self, reader: Reader, by_uid: bool) -> Done:
        """§4.2: ``GETMETADATA [(MAXSIZE n DEPTH d)] mailbox entries``."""
        if not self.metadata_offered():
            raise replies.BadCommand("unknown command")
        reader.sp()
        maxsize: int | None = None
        depth: int | None = 0
        if reader.peek() == b"(":
            reader.open_paren()
            while True:
                option = reader.atom().upper()
                reader.sp()
                if option == b"MAXSIZE":
                    maxsize = reader.number()
                elif option == b"DEPTH":
                    word = reader.atom().upper()
                    if word not in _DEPTHS:
                        raise ParseError("DEPTH is 0, 1 or infinity")
                    depth = _DEPTHS[word]
                else:
                    raise ParseError("unknown GETMETADATA option")
                if not reader.skip_sp():
                    break
            reader.close_paren()
            reader.sp()
        mailbox = self._metadata_mailbox(reader)
        reader.sp()
        wanted = _entries(reader)
        reader.end()
        found = selected_entries(await self._stored(mailbox), wanted, depth)
        longest = 0
        parts = []
        for name, value in found.items():
            if value is not None and maxsize is not None and len(value) > maxsize:
                longest = max(longest, len(value))
                continue
            # an astring (§5): ``"``, ``\``, ``(`` or ``)`` in a name are allowed, and a name
            # written bare with them would end the list or the string early for the client
            shown = replies.astring(name)
            parts.append(shown + b" " + _shown_value(value))
        if parts:
            box = b'""' if mailbox is None else mailbox_name(mailbox, self.utf8)
            self.write(b"* METADATA " + box + b" (" + b" ".join(parts) + b")\r\n")
        if longest:
            return Done("GETMETADATA completed", code=f"METADATA LONGENTRIES {longest}")
        return Done("GETMETADATA completed")

    async def _setmetadata(self, reader: Reader, by_uid: bool) -> Done:
        """§4.3: ``SETMETADATA mailbox (entry value ...)``, all or nothing; NIL removes."""
        if not self.metadata_offered():
            raise replies.BadCommand("unknown command")
        reader.sp()
        mailbox = self._metadata_mailbox(reader)
        reader.sp()
        reader.open_paren()
        changes: dict[str, bytes | None] = {}
        while True:
            name = entry_name(reader.astring(), True)
            reader.sp()
            changes[name] = _value(reader)
            if not reader.skip_sp():
                break
        reader.close_paren()
        reader.end()
        largest = max((len(v) for v in changes.values() if v is not None), default=0)
        if largest > MAX_VALUE_SIZE:
            raise replies.IMAPError(
                "metadata value too large", code=f"METADATA MAXSIZE {MAX_VALUE_SIZE}"
            )
        stored = await self._stored(mailbox)
        after = {n for n in stored if changes.get(n, stored[n]) is not None}
        after |= {n for n, v in changes.items() if v is not None}
        if len(after) > MAX_ENTRIES and len(after) > len(stored):  # removing is always allowed
            raise replies.IMAPError("too many metadata entries", code="METADATA TOOMANY")
        try:  # the limit again, kept by the store atomically with the write: another
            # session (another worker, another node) may have added entries since _stored
            await self.account.store.set_metadata(
                self.account.address, mailbox, changes, MAX_ENTRIES
            )
        except NoSuchMailbox:
            raise replies.Nonexistent() from None
        except TooManyEntries:
            raise replies.IMAPError("too many metadata entries", code="METADATA TOOMANY") from None
        return Done("SETMETADATA completed")
