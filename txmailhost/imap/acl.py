"""ACL (RFC 4314), the namespaces of other users' and shared mailboxes (RFC 2342), and the
rights every command checks.

Offered only over a store that keeps ACLs (``IAclStore``); without one, every name is the
user's own and nothing here changes a command. With one, a client's mailbox name is resolved
to an owner and a name in the owner's tree (``Target``):

* ``Sent``, ``Lists/twisted``: the user's own (personal namespace ``""``); the owner holds every
  right, always;
* ``Other Users/bob@example.org/Projects``: Bob's ``Projects``, with the rights Bob's ACL gives
  this user (the entries for the user and for ``anyone``, less the negative ones);
* ``Shared/Support``: the folder ``Support`` of the domain's pseudo-user ``#shared@DOMAIN``
  (made by ``txmailhost mailbox share``), with the rights its ACL gives; only the user's own
  domain's shared folders are reachable.

A mailbox the user may neither look up (``l``) nor read (``r``) is answered exactly as one that
doesn't exist (``NO [NONEXISTENT]``), so its existence doesn't leak (RFC 4314 §6); a missing
right otherwise is ``NO [NOPERM]`` (RFC 5530). The rights of a selected mailbox are those at
SELECT (§5.1.1 allows caching them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from txmailhost.imap import names, replies
from txmailhost.imap.parser import Reader
from txmailhost.imap.replies import Done, astring, mailbox_name
from txmailhost.store import acl as rights
from txmailhost.store.acl import shared_owner
from txmailhost.store.interfaces import (
    DELETED,
    INBOX,
    SEEN,
    IAclStore,
    InvalidMailboxName,
    NoSuchMailbox,
)
from txmailhost.store.mailboxnames import with_inbox

OTHER_USERS = "Other Users"
SHARED = "Shared"
ALL = rights.RIGHTS
NAMESPACE_LINE = f'* NAMESPACE (("" "/")) (("{OTHER_USERS}/" "/")) (("{SHARED}/" "/"))\r\n'.encode()


class NoPermission(replies.IMAPError):
    """RFC 5530 ``NOPERM``: the mailbox is visible to the user, the right is not held."""

    code = "NOPERM"
    text = "permission denied"


def locate(name: str, user: str) -> tuple[str, str] | None:
    """(owner, name in the owner's tree) of a client's mailbox name, or None for a level of
    a namespace that is no mailbox (``Other Users``, ``Other Users/bob@example.org``,
    ``Shared``)."""
    head, _, rest = name.partition(names.SEPARATOR)
    if head == OTHER_USERS:
        owner, _, mailbox = rest.partition(names.SEPARATOR)
        owner = owner.lower()
        if not mailbox or owner.startswith("#") or "@" not in owner:
            return None
        return owner, with_inbox(mailbox)
    if head == SHARED:
        if not rest or rest.upper() == INBOX or rest.upper().startswith(INBOX + "/"):
            return None  # the pseudo-user's INBOX is no shared folder
        return shared_owner(user), rest
    return user, name


def client_name(owner: str, mailbox: str, user: str) -> str:
    """The name ``user`` sees ``owner``'s ``mailbox`` under (the inverse of ``locate``)."""
    if owner == user:
        return mailbox
    if owner == shared_owner(user):
        return f"{SHARED}/{mailbox}"
    return f"{OTHER_USERS}/{owner}/{mailbox}"


def reserved(name: str) -> bool:
    """A personal name that would hide a namespace (CREATE and RENAME refuse it)."""
    head = name.partition(names.SEPARATOR)[0]
    return head in (OTHER_USERS, SHARED)


@dataclass(frozen=True)
class Target:
    """A client's mailbox name resolved: whose it is, its name there, and what this session's
    user may do with it."""

    owner: str
    mailbox: str
    name: str
    rights: str
    own: bool

    def has(self, needed: str) -> bool:
        return all(r in self.rights for r in needed)


def _parse_rights(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeError:
        raise replies.BadCommand("rights are ASCII letters") from None


class AclCommands:
    """Part of ``IMAPServer``: SETACL, DELETEACL, GETACL, MYRIGHTS, LISTRIGHTS, and the name
    resolution and rights checks the other commands call."""

    account: Any
    utf8: bool
    write: Callable[[bytes], None]

    def acl_offered(self) -> bool:
        return self.account is not None and IAclStore.providedBy(self.account.store)

    async def target(self, name: str) -> Target:
        """Resolve ``name`` (``names.decode``d): ``Nonexistent`` for a namespace level."""
        user = self.account.address
        if not self.acl_offered():
            return Target(user, name, name, ALL, True)
        located = locate(name, user)
        if located is None:
            raise replies.Nonexistent()
        owner, mailbox = located
        if owner == user:
            return Target(owner, mailbox, name, ALL, True)
        try:
            acl = await self.account.store.get_acl(owner, mailbox)
        except (NoSuchMailbox, InvalidMailboxName):
            acl = {}  # no such mailbox, or no such owner: the same to the client
        return Target(owner, mailbox, name, rights.effective(acl, user), False)

    async def access(
        self,
        name: str,
        needed: str,
        missing: type[replies.IMAPError] = replies.Nonexistent,
    ) -> Target:
        """``name`` resolved, if the user holds every right in ``needed``; else NONEXISTENT
        (or ``missing``) when the mailbox is invisible to the user, NOPERM when it isn't."""
        found = await self.target(name)
        if found.has(needed):
            return found
        if "l" not in found.rights and "r" not in found.rights:
            raise missing() if found.own else replies.Nonexistent()
        raise NoPermission(f"the {needed!r} right is needed")

    async def visible_shared(self) -> dict[str, str]:
        """Client name → rights of every other user's (and the domain's shared) mailbox this
        user may look up (``l``): from the store's index of grants, not a walk of every
        user's tree."""
        if not self.acl_offered():
            return {}
        user = self.account.address
        grants = await self.account.store.shared_with([user, rights.ANYONE])
        found = {}
        for (owner, mailbox), acl in grants.items():
            if owner == user or (owner.startswith("#") and owner != shared_owner(user)):
                continue
            held = rights.effective(acl, user)
            if "l" in held:
                found[client_name(owner, mailbox, user)] = held
        return found

    # -- the ACL commands --------------------------------------------------------------------

    def _require_acl(self) -> None:
        """Over a store without ACLs the commands are not offered: as unknown as any."""
        if not self.acl_offered():
            raise replies.BadCommand("unknown command")

    def _acl_args(self, reader: Reader, with_identifier: bool) -> tuple[str, str]:
        self._require_acl()
        reader.sp()
        name = names.decode(reader.astring(), self.utf8)
        identifier = ""
        if with_identifier:
            reader.sp()
            raw = reader.astring()
            try:
                identifier = rights.check_identifier(raw.decode("utf-8"))
            except (UnicodeError, rights.RightsError) as error:
                raise replies.BadCommand(f"invalid identifier: {error}") from None
        return name, identifier

    async def _setacl(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 4314 §3.1: replace, add to (``+``) or take from (``-``) an identifier's rights;
        an unknown right is BAD. The owner's rights are not an entry: they can't change."""
        name, identifier = self._acl_args(reader, True)
        reader.sp()
        change = _parse_rights(reader.astring())
        reader.end()
        try:
            rights.normalize(change.lstrip("+-") if change[:1] in "+-" else change)
        except rights.RightsError as error:
            raise replies.BadCommand(str(error)) from None
        found = await self.access(name, "a")
        if identifier.lstrip("-") == found.owner:
            raise replies.Cannot("the owner always holds every right")
        # one step in the store: a "+" or "-" read apart from its write could lose another
        # session's change made between the two
        await self.account.store.change_acl(found.owner, found.mailbox, identifier, change)
        return Done("SETACL completed")

    async def _deleteacl(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 4314 §3.2."""
        name, identifier = self._acl_args(reader, True)
        reader.end()
        found = await self.access(name, "a")
        if identifier.lstrip("-") == found.owner:
            raise replies.Cannot("the owner always holds every right")
        await self.account.store.set_acl(found.owner, found.mailbox, identifier, None)
        return Done("DELETEACL completed")

    async def _getacl(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 4314 §3.3, §3.6: the owner first (implicit, every right), then the entries."""
        name, _ = self._acl_args(reader, False)
        reader.end()
        found = await self.access(name, "a")
        acl = await self.account.store.get_acl(found.owner, found.mailbox)
        entries = [] if found.owner.startswith("#") else [(found.owner, ALL)]
        entries += sorted(acl.items())
        line = b"* ACL " + mailbox_name(name, self.utf8)
        for identifier, held in entries:
            line += b" " + astring(identifier) + b" " + astring(rights.display(held))
        self.write(line + b"\r\n")
        return Done("GETACL completed")

    async def _myrights(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 4314 §3.5: any of ``lrikxa`` is enough to ask."""
        name, _ = self._acl_args(reader, False)
        reader.end()
        found = await self.target(name)
        if not any(r in found.rights for r in "lrikxa"):
            raise replies.Nonexistent()
        if found.own:
            await self._must_exist(found)
        self.write(myrights_line(name, found.rights, self.utf8))
        return Done("MYRIGHTS completed")

    async def _listrights(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 4314 §3.4, §3.7: the owner is always granted everything; anyone else may be
        granted each right on its own (none is tied to another)."""
        self._require_acl()
        reader.sp()
        raw_name = reader.astring()
        reader.sp()
        raw_identifier = reader.astring()
        reader.end()
        name = names.decode(raw_name, self.utf8)
        found = await self.access(name, "a")
        if found.own:
            await self._must_exist(found)
        try:
            identifier = rights.check_identifier(raw_identifier.decode("utf-8"))
        except (UnicodeError, rights.RightsError) as error:
            raise replies.BadCommand(f"invalid identifier: {error}") from None
        line = b"* LISTRIGHTS " + mailbox_name(name, self.utf8) + b" " + astring(raw_identifier)
        if identifier == found.owner:
            line += b" " + astring(rights.display(ALL))
        else:
            line += b' ""' + b"".join(b" " + r.encode() for r in ALL + "cd")
        self.write(line + b"\r\n")
        return Done("LISTRIGHTS completed")

    async def _must_exist(self, found: Target) -> None:
        """The user's own mailbox: the owner's rights are implicit, so ask the store."""
        try:
            await self.account.store.get_acl(found.owner, found.mailbox)
        except NoSuchMailbox:
            raise replies.Nonexistent() from None


def permitted_flags(flags: list[str], held: str) -> list[str]:
    """The ``flags`` a user with the rights ``held`` may set (RFC 4314 §4): \\Seen needs
    ``s``, \\Deleted ``t``, any other ``w``. APPEND and COPY drop the rest silently."""
    needed = {SEEN: "s", DELETED: "t"}
    return [flag for flag in flags if needed.get(flag, "w") in held]


def myrights_line(name: str, held: str, utf8: bool) -> bytes:
    """``* MYRIGHTS name rights`` (RFC 4314 §3.8, and RFC 8440 after a LIST entry)."""
    shown = astring(rights.display(held)) if held else b'""'
    return b"* MYRIGHTS " + mailbox_name(name, utf8) + b" " + shown + b"\r\n"
