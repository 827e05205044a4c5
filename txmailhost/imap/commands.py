"""Commands of the authenticated state (RFC 3501 §6.3) and the extensions that live there:
SELECT/EXAMINE (with CONDSTORE and QRESYNC parameters, RFC 7162), CREATE, DELETE, RENAME,
SUBSCRIBE, LIST/LSUB (LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154, CHILDREN RFC 3348,
LIST-STATUS RFC 5819), STATUS, APPEND (UIDPLUS RFC 4315, MULTIAPPEND RFC 3502, CATENATE RFC 4469), NAMESPACE (RFC 2342), ENABLE
(RFC 5161), ID (RFC 2971) and QUOTA (RFC 9208, usage only).

Every mailbox name goes through ``names.decode`` and the store's own checks. Over a store
that keeps ACLs, a name is then resolved by ``acl.py`` to its owner's tree and checked against
the user's rights there (RFC 4314 §4: ``r`` to SELECT and STATUS, ``i`` to APPEND, ``k`` on the
parent to CREATE, ``x`` to DELETE and RENAME); otherwise every name is the user's own, and there
is no syntax that reaches another user's tree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from txmailhost.imap import append, catenate, names, observers, replies
from txmailhost.imap.acl import (
    ALL,
    NAMESPACE_LINE,
    NoPermission,
    Target,
    client_name,
    locate,
    myrights_line,
    permitted_flags,
    reserved,
)
from txmailhost.imap.fetch import flag_list
from txmailhost.imap.keywords import check_keywords
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.quotaroom import QuotaRoom
from txmailhost.imap.replies import Done, mailbox_name, printable
from txmailhost.imap.search import compress
from txmailhost.imap.session import SelectedMailbox
from txmailhost.ops.eventlog import PRERENDERED
from txmailhost.store.interfaces import (
    INBOX,
    MailboxExists,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
    TooManyMailboxes,
)

log = Logger(namespace="txmailhost.imap")

_STATUS_ITEMS = (
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "HIGHESTMODSEQ",
    "SIZE",
    "DELETED",
    "MAILBOXID",  # RFC 8474
    "APPENDLIMIT",  # RFC 7889 §3.2: what the capability advertises, asked of one mailbox
)
UNLIMITED_KIB = 2**40  # "no limit yet": a STORAGE limit of 1 PiB


class MailboxCommands:
    """Part of ``IMAPServer``: the authenticated-state handlers."""

    account: Any
    user: str | None
    view: SelectedMailbox | None
    condstore: bool
    qresync: bool
    rev2: bool  # ENABLE IMAP4rev2 (RFC 9051)
    utf8: bool  # ENABLE UTF8=ACCEPT (RFC 6855) or IMAP4rev2: names in UTF-8
    factory: Any
    quota_room: QuotaRoom  # what the session last saw of each owner's room (quotaroom.py)

    # provided by IMAPServer / UpdateMixin (annotations only: nothing may shadow them)
    write: Callable[[bytes], None]
    select_view: Callable[[SelectedMailbox], None]
    unselect: Callable[[], None]
    flags_line: Callable[[SelectedMailbox], bytes]
    announce_keywords: Callable[[SelectedMailbox, Any], None]
    enable_condstore: Callable[[], None]
    notify_tell_others: Callable[..., None]  # notify.NotifyCommands (RFC 5465)
    # acl.AclCommands (RFC 4314)
    acl_offered: Callable[[], bool]
    target: Callable[[str], Any]
    access: Callable[..., Any]
    visible_shared: Callable[[], Any]

    @property
    def store(self) -> Any:
        return self.account.store

    def _mailbox_arg(self, reader: Reader) -> str:
        reader.sp()
        return names.decode(reader.astring(), self.utf8)

    async def _open(self, name: str, missing: type[replies.IMAPError] = replies.Nonexistent):
        """The mailbox ``name`` for reading (``r``: STATUS, GETQUOTAROOT)."""
        found = await self.access(name, "r", missing)
        try:
            return await self.store.open(found.owner, found.mailbox)
        except NoSuchMailbox:
            raise missing() from None

    async def _all_names(self) -> tuple[list[str], dict[str, str]]:
        """Every mailbox name LIST and LSUB may show: the user's own, then the other users'
        and shared ones the user may look up, with the user's rights on those."""
        shared = await self.visible_shared()
        return [*await self.store.list_mailboxes(self.account.address), *shared], shared

    # -- ID, ENABLE, NAMESPACE -------------------------------------------------------------------

    async def _id(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 2971: log what the client says it is; say what we are."""
        reader.sp()
        client: list[str] = []
        if reader.peek() == b"(":
            reader.open_paren()
            while reader.peek() != b")":
                if client:
                    reader.sp()
                client.append(printable(reader.string(), 64))
                reader.sp()
                value = reader.nstring()
                client.append(printable(value, 128) if value is not None else "NIL")
                if len(client) > 60:
                    raise ParseError("too many ID fields")
            reader.close_paren()
        else:
            reader.expect(b"NIL")
        reader.end()
        if client:
            log.info("imap client id {fields}", fields=" ".join(client))
        self.write(b'* ID ("name" "txmailhost" "vendor" "txmailhost")\r\n')
        return Done("ID completed")

    async def _enable(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 5161; QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)."""
        enabled = []
        reader.sp()
        while True:
            word = reader.atom().upper()
            if word == b"CONDSTORE" and not self.condstore:
                self.condstore = True
                enabled.append("CONDSTORE")
            elif word == b"QRESYNC" and not self.qresync:
                self.qresync = self.condstore = True
                enabled.append("QRESYNC")
            elif word == b"IMAP4REV2" and not self.rev2:
                # RFC 9051 §6.3.1, Appendix E: no \\Recent, ESEARCH for SEARCH, UTF-8 names
                self.rev2 = self.utf8 = True
                enabled.append("IMAP4rev2")
                if self.view is not None:
                    self.view.recent_ranges.clear()  # FETCH shows \\Recent no more
            elif word == b"UTF8=ACCEPT" and not self.utf8:
                self.utf8 = True  # RFC 6855 §3
                enabled.append("UTF8=ACCEPT")
            if not reader.skip_sp():
                break
        reader.end()
        self.write(("* ENABLED" + "".join(" " + e for e in enabled) + "\r\n").encode())
        return Done("ENABLE completed")

    async def _namespace(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 2342: the personal namespace; with ACLs (RFC 4314), the other users' and the
        shared ones too (``acl.py``)."""
        reader.end()
        if self.acl_offered():
            self.write(NAMESPACE_LINE)
        else:
            self.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return Done("NAMESPACE completed")

    # -- SELECT / EXAMINE ------------------------------------------------------------------------

    async def _select(self, reader: Reader, by_uid: bool) -> Done:
        return await self._open_mailbox(reader, readonly=False)

    async def _examine(self, reader: Reader, by_uid: bool) -> Done:
        return await self._open_mailbox(reader, readonly=True)

    async def _open_mailbox(self, reader: Reader, readonly: bool) -> Done:
        """RFC 3501 §6.3.1: FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY,
        and HIGHESTMODSEQ (RFC 7162 §3.1.2.1); with QRESYNC, VANISHED (EARLIER) and the flag
        changes since the client's modseq (§3.2.5)."""
        name = self._mailbox_arg(reader)
        qresync = None
        if reader.skip_sp():
            reader.open_paren()
            while reader.peek() != b")":
                word = reader.atom().upper()
                if word == b"CONDSTORE":
                    self.condstore = True  # SELECT reports HIGHESTMODSEQ anyway
                elif word == b"QRESYNC" and self.qresync:
                    qresync = _qresync_params(reader)
                else:
                    raise ParseError(f"unknown SELECT parameter {printable(word)}")
                reader.skip_sp()
            reader.close_paren()
        reader.end()
        was_selected = self.view is not None
        self.unselect()
        if was_selected and (self.qresync or self.rev2):  # RFC 7162 §3.2.11, RFC 9051 §6.3.2
            self.write(b"* OK [CLOSED] previous mailbox closed\r\n")
        found = await self.access(name, "r")
        try:
            mailbox, selection = await self.store.open_selected(
                found.owner, found.mailbox, not readonly and not self.rev2
            )
        except NoSuchMailbox:
            raise replies.Nonexistent() from None
        examined = readonly
        # RFC 4314 §5.2: READ-ONLY for a user who may change nothing in it
        readonly = readonly or not any(r in found.rights for r in "iestw")
        if self.rev2:
            await self._write_own_list_line(name)
        view = SelectedMailbox(
            mailbox=mailbox,
            name=name,
            readonly=readonly,
            uids=selection.uids,
            uidvalidity=selection.uidvalidity,
            uidnext=selection.uidnext,
            modseq=selection.highestmodseq,
            keywords=set(selection.keywords),
            rights=found.rights,
            mailboxid=selection.mailboxid,
        )
        if not self.rev2:
            view.add_recent(selection.first_recent, selection.uidnext)
        self.select_view(view)
        out = [self.flags_line(view)]
        permanent = b"()" if readonly else flag_list(frozenset(view.keywords | {"\\*"}))
        if not readonly and found.has("stw"):
            permanent = b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft " + permanent[1:]
        elif not readonly:
            # RFC 4314 §5.1.1: only the flags this user may set
            system = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
            allowed = permitted_flags([*system, *sorted(view.keywords), "\\*"], found.rights)
            permanent = b"(" + " ".join(allowed).encode() + b")"
        out.append(b"* OK [PERMANENTFLAGS " + permanent + b"] flags permitted\r\n")
        if self.rev2:
            out.append(b"* %d EXISTS\r\n" % view.exists)  # RFC 9051: no RECENT
        else:
            out.append(b"* %d EXISTS\r\n* %d RECENT\r\n" % (view.exists, view.recent))
        if selection.first_unseen and not self.rev2:  # no UNSEEN code in RFC 9051
            out.append(b"* OK [UNSEEN %d] first unseen message\r\n" % selection.first_unseen)
        out.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % view.uidvalidity)
        out.append(b"* OK [UIDNEXT %d] predicted next UID\r\n" % view.uidnext)
        out.append(b"* OK [HIGHESTMODSEQ %d] highest modseq\r\n" % view.modseq)
        if selection.mailboxid:
            out.append(b"* OK [MAILBOXID (%s)] mailbox id\r\n" % selection.mailboxid.encode())
        self.write(b"".join(out))
        if qresync is not None and qresync[0] == view.uidvalidity:
            await self._qresync(view, qresync[1], qresync[2])
        return Done(
            "EXAMINE completed" if examined else "SELECT completed",
            code="READ-ONLY" if readonly else "READ-WRITE",
        )

    async def _write_own_list_line(self, name: str) -> None:
        """RFC 9051 §6.3.2: SELECT and EXAMINE give the mailbox's LIST response, its
        attributes as LIST itself gives them."""
        address = self.account.address
        entries = names.list_entries(
            (await self._all_names())[0],
            await self.store.subscriptions(address),
            [names.ListPattern("", name)],
            set(),
            False,
        )
        for entry in entries:
            if entry.name == name:
                line = f'* LIST ({" ".join(entry.attributes)}) "{names.SEPARATOR}" '.encode()
                self.write(line + mailbox_name(name, True) + b"\r\n")

    async def _qresync(self, view: SelectedMailbox, modseq: int, known: bytes | None) -> None:
        gone = await view.mailbox.expunged_since(modseq)
        if known is not None:
            ranges = _uid_ranges(known)
            gone = [uid for uid in gone if any(lo <= uid <= hi for lo, hi in ranges)]
        if gone:
            self.write(b"* VANISHED (EARLIER) " + compress(gone).encode() + b"\r\n")
        changes = await view.mailbox.changes_since(modseq)
        self.announce_keywords(view, (m.flags for m in changes.changed))
        lines = []
        for message in changes.changed:
            seq = view.seq_of(message.uid)
            if seq:
                lines.append(
                    b"* %d FETCH (UID %d FLAGS " % (seq, message.uid)
                    + flag_list(message.flags, view.is_recent(message.uid))
                    + b" MODSEQ (%d))\r\n" % message.modseq
                )
        self.write(b"".join(lines))

    # -- CREATE / DELETE / RENAME / SUBSCRIBE ----------------------------------------------------

    async def _create(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 3501 §6.3.3; missing superiors are created too."""
        name = self._mailbox_arg(reader)
        reader.end()
        names.check_creatable(name)
        found = await self._creatable(name)
        owner, mailbox = found.owner, found.mailbox
        if mailbox.upper() == INBOX:
            raise replies.AlreadyExists("INBOX always exists")
        parent = None
        if self.acl_offered():
            parent = _nearest_parent(mailbox, set(await self.store.list_mailboxes(owner)))
        await self._may_create(found, parent)
        # The mailbox first: a name the store refuses (too long for it, say) then creates
        # nothing, where its superiors made first were left behind (127 of them for a name
        # of 200 levels). Each superior is a prefix of it, so the store takes them too.
        await self.store.create_mailbox(owner, mailbox)
        parts = mailbox.split(names.SEPARATOR)
        for i in range(1, len(parts)):
            level = names.SEPARATOR.join(parts[:i])
            if level.upper() == INBOX:
                continue
            # a superior past the limit stays implied (LIST shows it \NonExistent)
            with contextlib.suppress(MailboxExists, TooManyMailboxes):
                await self.store.create_mailbox(owner, level)
        if parent is not None and self.acl_offered():
            # RFC 4314 §4: a new mailbox SHOULD inherit its parent's ACL
            for identifier, held in (await self.store.get_acl(owner, parent)).items():
                await self.store.set_acl(owner, mailbox, identifier, held)
        self.notify_tell_others("create", name)
        return Done("CREATE completed", code=await self._mailboxid_code(owner, mailbox))

    async def _mailboxid_code(self, owner: str, mailbox: str) -> str | None:
        """RFC 8474: CREATE's OK names the new mailbox's MAILBOXID (none if it is gone
        already, deleted by another session). ``owner``'s ``mailbox``: the name resolved, as
        a folder made under ``Other Users/`` or ``Shared/`` is another owner's."""
        try:
            status = await (await self.store.open(owner, mailbox)).status()
        except NoSuchMailbox:
            return None
        return f"MAILBOXID ({status.mailboxid})" if status.mailboxid else None

    async def _creatable(self, name: str) -> Target:
        """``name`` resolved for CREATE or RENAME's new name: a namespace's own level
        (``Other Users``, ``Other Users/bob@example.org``, ``Shared``) is no mailbox."""
        try:
            return await self.target(name)
        except replies.Nonexistent:
            raise replies.Cannot("that name is a namespace: Other Users/, Shared/") from None

    async def _may_create(self, found: Target, parent: str | None) -> None:
        """RFC 4314 §4: CREATE (and RENAME's new name) needs ``k`` on the nearest existing
        parent; another user's top level can't be created. The user's own tree may not hide
        a namespace (``Other Users``, ``Shared``)."""
        if found.own:
            if self.acl_offered() and reserved(found.mailbox):
                raise replies.Cannot("that name is a namespace: Other Users/, Shared/")
            return
        if parent is None:
            raise NoPermission("can't create a top-level mailbox there")
        await self.access(client_name(found.owner, parent, self.account.address), "k")

    async def _delete(self, reader: Reader, by_uid: bool) -> Done:
        name = self._mailbox_arg(reader)
        reader.end()
        found = await self.access(name, "x")
        if found.mailbox == INBOX:
            raise replies.Cannot("INBOX can't be deleted")
        if self.view is not None and self.view.name == name:
            self.unselect()
        await self.store.delete_mailbox(found.owner, found.mailbox)
        self.notify_tell_others("delete", name)
        return Done("DELETE completed")

    async def _rename(self, reader: Reader, by_uid: bool) -> Done:
        old = self._mailbox_arg(reader)
        new = self._mailbox_arg(reader)
        reader.end()
        names.check_creatable(new)
        source = await self.access(old, "x")
        target = await self._creatable(new)
        if target.owner != source.owner:
            raise replies.Cannot("a mailbox can't be renamed into another user's tree")
        if not target.own:
            existing = set(await self.store.list_mailboxes(target.owner))
            await self._may_create(target, _nearest_parent(target.mailbox, existing))
        else:
            await self._may_create(target, None)
        await self.store.rename_mailbox(source.owner, source.mailbox, target.mailbox)
        self.notify_tell_others("rename", new, old)
        return Done("RENAME completed")

    async def _subscribe(self, reader: Reader, by_uid: bool) -> Done:
        name = self._mailbox_arg(reader)
        reader.end()
        await self.store.subscribe(self.account.address, name, True)
        self.notify_tell_others("subscribe", name)
        return Done("SUBSCRIBE completed")

    async def _unsubscribe(self, reader: Reader, by_uid: bool) -> Done:
        name = self._mailbox_arg(reader)
        reader.end()
        await self.store.subscribe(self.account.address, name, False)
        self.notify_tell_others("unsubscribe", name)
        return Done("UNSUBSCRIBE completed")

    # -- LIST / LSUB / STATUS --------------------------------------------------------------------

    async def _list(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 3501 §6.3.8 with LIST-EXTENDED (RFC 5258: selection and return options,
        several patterns), SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and LIST-STATUS
        (RFC 5819); ``names.list_entries`` decides what is listed."""
        reader.sp()
        selection: set[str] = set()
        if reader.peek() == b"(":
            selection = _atom_list(reader)
            reader.sp()
            problem = names.check_selection(selection)
            if problem:
                raise ParseError(problem)
        reference = _wire_name(reader.astring(), self.utf8)
        reader.sp()
        patterns = []
        if reader.peek() == b"(":
            reader.open_paren()
            while reader.peek() != b")":
                if patterns:
                    reader.sp()
                patterns.append(_wire_name(reader.list_mailbox(), self.utf8))
            reader.close_paren()
        else:
            patterns.append(_wire_name(reader.list_mailbox(), self.utf8))
        returns: set[str] = set()
        status_items: list[str] = []
        if reader.skip_sp():
            reader.expect(b"RETURN")
            reader.sp()
            returns, status_items = _return_options(reader)
            self._check_status_items(status_items)
        reader.end()
        if "MYRIGHTS" in returns and not self.acl_offered():
            raise ParseError("unknown LIST return option MYRIGHTS")
        if patterns == [""] and not selection:
            self.write(b'* LIST (\\Noselect) "/" ""\r\n')
            return Done("LIST completed")
        existing, shared = await self._all_names()
        entries = names.list_entries(
            existing,
            await self.store.subscriptions(self.account.address),
            [names.ListPattern(reference, p) for p in patterns if p],
            selection,
            "SUBSCRIBED" in returns,
        )
        for entry in entries:
            line = f'* LIST ({" ".join(entry.attributes)}) "/" '.encode()
            line += mailbox_name(entry.name, self.utf8)
            if entry.childinfo:
                line += b' ("CHILDINFO" ("SUBSCRIBED"))'
            self.write(line + b"\r\n")
            if "MYRIGHTS" in returns and entry.exists:  # RFC 8440 LIST-MYRIGHTS
                self.write(myrights_line(entry.name, shared.get(entry.name, ALL), self.utf8))
            if status_items and entry.exists:
                with contextlib.suppress(replies.IMAPError):
                    await self._write_status(entry.name, status_items)
        return Done("LIST completed")

    async def _lsub(self, reader: Reader, by_uid: bool) -> Done:
        reader.sp()
        reference = _wire_name(reader.astring(), self.utf8)
        reader.sp()
        pattern = _wire_name(reader.list_mailbox(), self.utf8)
        reader.end()
        entries = names.lsub_entries(
            await self.store.subscriptions(self.account.address),
            (await self._all_names())[0],
            names.ListPattern(reference, pattern),
        )
        for name, noselect in entries:
            attrs = "\\Noselect" if noselect else ""
            self.write(f'* LSUB ({attrs}) "/" '.encode() + mailbox_name(name, self.utf8) + b"\r\n")
        return Done("LSUB completed")

    async def _status(self, reader: Reader, by_uid: bool) -> Done:
        name = self._mailbox_arg(reader)
        reader.sp()
        items = [item.upper() for item in _atom_list(reader, ordered=True)]
        reader.end()
        if not items:
            raise ParseError("STATUS needs at least one item")  # status-att-list is 1*
        self._check_status_items(items)
        if "HIGHESTMODSEQ" in items:
            self.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
        await self._write_status(name, items)
        return Done("STATUS completed")

    def _check_status_items(self, items: list[str]) -> None:
        """RFC 9051 §6.3.11 has no RECENT (\\Recent is gone from IMAP4rev2, Appendix E)."""
        for item in items:
            if item not in _STATUS_ITEMS or (item == "RECENT" and self.rev2):
                raise ParseError(f"unknown STATUS item {item}")

    async def _write_status(self, name: str, items: list[str]) -> None:
        mailbox = await self._open(name)
        deleted = await count_deleted(mailbox) if "DELETED" in items else None
        limit = self.factory.max_literal_size
        self.write(status_response(name, await mailbox.status(), items, self.utf8, deleted, limit))

    # -- APPEND ----------------------------------------------------------------------------------

    async def _append(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 3501 §6.3.11 with MULTIAPPEND (RFC 3502, ``append.py``); OK with APPENDUID
        (RFC 4315) only once every message and its directory entry are fsync'd."""
        name = self._mailbox_arg(reader)
        messages = append.parse_messages(reader, self.utf8)
        reader.end()
        # The keywords' bounds (keywords.py): against the mailbox's own when it is the one
        # selected, else those of this APPEND alone.
        view = self.view
        known = view.keywords if view is not None and view.name == name else None
        check_keywords([flag for message in messages for flag in message.flags], known)
        found = await self.access(name, "i", missing=replies.TryCreate)
        try:
            mailbox = await self.store.open(found.owner, found.mailbox)
        except NoSuchMailbox:
            raise (replies.TryCreate() if found.own else replies.Nonexistent()) from None
        for message in messages:  # RFC 4314 §4: flags without the right are dropped
            message.flags[:] = permitted_flags(message.flags, found.rights)
        reactor, limit = self.factory.reactor, self.factory.max_literal_size
        messages = await append.assemble(messages, self._url_data, reactor, limit)
        size = sum(message.size for message in messages)
        quota = await self._check_quota(size, found.owner)
        try:
            uidvalidity, uids = await append.store_messages(mailbox, messages, reactor, quota)
        except QuotaExceeded:  # another session (on any node) filled it meanwhile
            log.info("imap append refused: {user} over quota", user=self.user)
            raise replies.OverQuota() from None
        if found.own:
            observers.tell(self.factory.observers, found.owner, None, name, mailbox, uids)
        # One event per APPEND: rendered here once (an f-string), not by each log observer's
        # str.format; the fields stay on the event for the JSON log.
        user, shown, uid_set = self.user, printable(name), compress(uids)
        log.info(PRERENDERED, line=f"imap append {user} {shown} uid {uid_set} ({size} octets)",
                 user=user, mailbox=shown, uids=uid_set, size=size)  # fmt: skip
        return Done("APPEND completed", code=f"APPENDUID {uidvalidity} {compress(uids)}")

    def _append_fits(self, announced: append.Announced) -> bool:
        """Whether the look before an APPEND literal (``_append_refused_early``) can be left
        out: the room the session saw moments ago (``quotaroom.py``) for the mailbox's owner
        takes the message octets announced. That look then answers None whatever else it
        finds (its other checks only ever let the literal be read), so nothing is asked of
        the ACLs, the accounts or the store, and no coroutine is run: the owner follows from
        the name alone (``acl.locate``). Most APPENDs of a session go this way: the look cost
        a fifth of the reactor's instructions per APPEND (measured)."""
        try:
            name = names.decode(announced.mailbox, self.utf8)
        except replies.IMAPError:
            return False  # the look answers it (None: the literal is read)
        user = self.account.address
        located = locate(name, user) if self.acl_offered() else (user, name)
        return located is not None and self.quota_room.fits(located[0], announced.octets)

    async def _append_refused_early(self, announced: append.Announced) -> replies.IMAPError | None:
        """The look at the quota before an APPEND literal's octets come (``server.py``,
        RFC 9208 §4.3): ``OverQuota`` when the message octets announced so far
        (``announced.octets``, of all the command's messages) would take the mailbox owner
        past the limit, by the rule ``_append`` applies once they are read. Only when every
        check ``_append`` makes before that one would pass (the name, the right to insert,
        the keywords, the mailbox's existence): otherwise None, the literal is read, and
        ``_append`` answers as it always has (``TRYCREATE`` for a missing mailbox first). A
        refusal only: ``_append`` and the store check again, since other sessions append too.
        Its cost: nothing when the session saw room enough moments ago (``quotaroom.py``),
        else a trip to the accounts for the limit and, with one, to the store for the usage;
        the mailbox is opened (is it there?) only to refuse."""
        try:
            name = names.decode(announced.mailbox, self.utf8)
            found = await self.access(name, "i", missing=replies.TryCreate)
            view = self.view
            known = view.keywords if view is not None and view.name == name else None
            check_keywords(announced.flags, known)
            if self.quota_room.fits(found.owner, announced.octets):
                return None
            limit = await self._quota_limit(found.owner)
            if limit is None:
                self.quota_room.saw(found.owner, None)
                return None
            room = await self._room(found.owner, limit)
            self.quota_room.saw(found.owner, room)  # before this command's messages
            if announced.octets <= room:
                return None
            await self.store.open(found.owner, found.mailbox)
        except (replies.IMAPError, ParseError, StoreError):
            return None  # the command answers it once its literals are read
        log.info("imap append refused before its literal: {user} over quota", user=self.user)
        return replies.OverQuota()

    async def _url_data(self, url: bytes) -> bytes:
        """CATENATE's URLs name only this user's own messages (``catenate.url_data``)."""
        return await catenate.url_data(self.store, self.account.address, url)

    # -- QUOTA (RFC 9208) ------------------------------------------------------------------------

    async def _check_quota(
        self, size: int, owner: str | None = None, what: str = "append"
    ) -> int | None:
        """RFC 9208 §4.3: an APPEND that would pass the limit fails with OVERQUOTA (the
        same limit SMTP enforces at RCPT, from ``Router.quota_of``). The limit is the
        mailbox owner's: what is appended to another user's mailbox is the owner's mail.
        Returns the limit (None: unlimited), for the store to check again as it adds the
        message (``IQuotaAppend``): this look came before, and other sessions append too."""
        owner = owner or self.account.address
        limit = await self._quota_limit(owner)
        if limit is None:
            self.quota_room.saw(owner, None)
        else:
            room = await self._room(owner, limit)
            if size > room:
                self.quota_room.saw(owner, room)
                log.info("imap {what} refused: {user} over quota", what=what, user=self.user)
                raise replies.OverQuota()
            self.quota_room.saw(owner, room - size)  # once they are added: at most that
        return limit

    async def _room(self, owner: str, limit: int) -> int:
        """The octets ``owner`` may add under ``limit``: what is stored counts (the rule of
        ``_check_quota``, and of the look before an APPEND literal), and more than the
        limit leaves a room below zero."""
        return limit - await self.store.usage(owner)

    async def _quota_limit(self, owner: str) -> int | None:
        """``owner``'s limit from the accounts (None: unlimited). The accounts' database out of
        reach (a PostgreSQL restart, a failover) is a temporary failure the client may retry,
        ``NO [UNAVAILABLE]`` as for the store's, not a ``[SERVERBUG]``: the accounts backends
        raise their driver's errors, so any failure of the lookup is taken for one."""
        if self.factory.quota_of is None:
            return None
        try:
            return await self.factory.quota_of(owner)
        except Exception as e:
            log.warn(
                "imap quota of {owner} could not be read: {error}",
                owner=printable(owner),
                error=" ".join(str(e).split()),
            )
            raise replies.Unavailable("quota unavailable, try again later") from None

    async def _getquotaroot(self, reader: Reader, by_uid: bool) -> Done:
        name = self._mailbox_arg(reader)
        reader.end()
        await self._open(name)
        if not (await self.target(name)).own:
            # another user's quota is not this user's to see (RFC 9208 §4.2: no root)
            self.write(b"* QUOTAROOT " + mailbox_name(name, self.utf8) + b"\r\n")
            return Done("GETQUOTAROOT completed")
        self.write(b"* QUOTAROOT " + mailbox_name(name, self.utf8) + b' ""\r\n')
        await self._write_quota()
        return Done("GETQUOTAROOT completed")

    async def _getquota(self, reader: Reader, by_uid: bool) -> Done:
        reader.sp()
        root = reader.astring()
        reader.end()
        if root != b"":
            raise replies.Nonexistent("no such quota root")
        await self._write_quota()
        return Done("GETQUOTA completed")

    async def _setquota(self, reader: Reader, by_uid: bool) -> Done:
        raise replies.Cannot("quotas are set by the administrator")

    async def _write_quota(self) -> None:
        used = await self.store.usage(self.account.address)
        limit_bytes = await self._quota_limit(self.account.address)
        limit = (limit_bytes + 1023) // 1024 if limit_bytes else UNLIMITED_KIB
        self.write(b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit))


def _wire_name(raw: bytes, utf8: bool = False) -> str:
    """A LIST reference or pattern: modified UTF-7 (UTF-8 once UTF8=ACCEPT or IMAP4rev2 is
    enabled), may be empty or hold wildcards. One that isn't valid is taken literally (as
    Dovecot does) rather than refused: a pattern is a question, and the answer to a strange one
    is the names it matches."""
    try:
        if utf8:
            return raw.decode("utf-8")
        return raw.decode("ascii").encode("ascii").decode("imap4-utf-7")
    except (UnicodeError, ValueError):
        return raw.decode("latin-1")


def _atom_list(reader: Reader, ordered: bool = False) -> Any:
    reader.open_paren()
    items: list[str] = []
    while reader.peek() != b")":
        if items:
            reader.sp()
        items.append(reader.atom().decode("ascii", "replace").upper())
        if len(items) > 50:
            raise ParseError("list too long")
    reader.close_paren()
    return items if ordered else set(items)


def _return_options(reader: Reader) -> tuple[set[str], list[str]]:
    """LIST ... RETURN (SUBSCRIBED CHILDREN SPECIAL-USE STATUS (items) MYRIGHTS) (RFC 5258,
    5819, 8440)."""
    reader.open_paren()
    options: set[str] = set()
    status_items: list[str] = []
    while reader.peek() != b")":
        if options:
            reader.sp()
        word = reader.atom().decode("ascii", "replace").upper()
        options.add(word)
        if word == "STATUS":
            reader.sp()
            status_items = _atom_list(reader, ordered=True)
            if not status_items:
                raise ParseError("RETURN STATUS needs at least one item")  # RFC 5819 is 1*
            for item in status_items:
                if item not in _STATUS_ITEMS:
                    raise ParseError(f"unknown STATUS item {item}")
        elif word not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"):
            raise ParseError(f"unknown LIST return option {word}")
    reader.close_paren()
    return options, status_items


def _nearest_parent(mailbox: str, existing: set[str]) -> str | None:
    """The nearest existing mailbox above ``mailbox`` (RFC 4314 §4 CREATE), or None."""
    parts = mailbox.split(names.SEPARATOR)
    for i in range(len(parts) - 1, 0, -1):
        parent = names.SEPARATOR.join(parts[:i])
        if parent in existing or (i == 1 and parent.upper() == INBOX):
            return INBOX if parent.upper() == INBOX else parent
    return None


def _qresync_params(reader: Reader) -> tuple[int, int, bytes | None]:
    """``QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])`` (RFC 7162 §3.2.5)."""
    reader.sp()
    reader.open_paren()
    uidvalidity = reader.number(nonzero=True)
    if uidvalidity > 2**32 - 1:  # nz-number: 32 bits (RFC 9051 9); modseq has 63
        raise ParseError("UIDVALIDITY out of range")
    reader.sp()
    modseq = reader.number()
    known = None
    if reader.skip_sp():
        if reader.peek() != b"(":
            known = reader.sequence_set()
            reader.skip_sp()
        if reader.peek() == b"(":
            reader.open_paren()
            reader.sequence_set()
            reader.sp()
            reader.sequence_set()
            reader.close_paren()
    reader.close_paren()
    return uidvalidity, modseq, known


def _uid_ranges(text: bytes) -> list[tuple[int, int]]:
    ranges = []
    for piece in text.split(b","):
        low, _, high = piece.partition(b":")
        lo = 2**32 if low == b"*" else int(low)
        hi = lo if not high else (2**32 if high == b"*" else int(high))
        ranges.append((min(lo, hi), max(lo, hi)))
    return ranges


async def count_deleted(mailbox: Any) -> int:
    """STATUS DELETED (RFC 9051 §6.3.11): the messages flagged \\Deleted, from the index
    (any backend's ``IMailbox.uid_range``), not from the message files."""
    messages = await mailbox.uid_range(1, 2**32 - 1)
    return sum(1 for message in messages if "\\Deleted" in message.flags)


def status_response(
    name: str,
    status: Any,
    items: list[str],
    utf8: bool = False,
    deleted: int | None = None,
    appendlimit: int | None = None,
) -> bytes:
    """``* STATUS name (ITEM value ...)`` for a ``MailboxStatus`` (STATUS, NOTIFY); DELETED
    is counted apart (``count_deleted``), only when asked for. APPENDLIMIT is the server's
    for every mailbox (NIL: none, RFC 7889 §4)."""
    values = {
        "APPENDLIMIT": "NIL" if appendlimit is None else appendlimit,
        "DELETED": deleted,
        "MESSAGES": status.messages,
        "RECENT": status.recent,
        "UIDNEXT": status.uidnext,
        "UIDVALIDITY": status.uidvalidity,
        "UNSEEN": status.unseen,
        "HIGHESTMODSEQ": status.highestmodseq,
        "SIZE": status.size,
        "MAILBOXID": f"({status.mailboxid})",
    }
    if not status.mailboxid:  # a store that keeps none: the item is left out
        items = [item for item in items if item != "MAILBOXID"]
    body = " ".join(f"{item} {values[item]}" for item in items)
    return b"* STATUS " + mailbox_name(name, utf8) + f" ({body})\r\n".encode()
