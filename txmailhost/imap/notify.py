"""NOTIFY (RFC 5465): the client names the mailboxes and events it wants pushed to it.

``NOTIFY SET [STATUS] (filter events) ...`` replaces the session's set; ``NOTIFY NONE`` ends it.
What each filter covers, and what is sent:

- ``selected`` / ``selected-delayed``: the selected mailbox. With ``MessageNew`` and
  ``MessageExpunge`` (RFC 5465 §5.2: both or neither; ``FlagChange`` needs them) its changes
  are pushed as they happen, not only at the next command: EXISTS (and a FETCH of the
  attributes given after ``MessageNew``), FETCH FLAGS, and EXPUNGE — which ``selected-delayed``
  holds back until a command that allows it (RFC 3501 §7.4.1), as without NOTIFY.
- ``inboxes`` (INBOX, where mail is delivered), ``personal`` (every mailbox of the user),
  ``subscribed``, ``subtree NAME`` (NAME and below), ``mailboxes NAME``: any other mailbox; a
  change there is one ``* STATUS`` line (MESSAGES, UIDNEXT, UIDVALIDITY for new mail;
  MESSAGES for expunges; UIDVALIDITY, HIGHESTMODSEQ for flag changes), never for the
  selected mailbox. ``STATUS`` after ``SET`` sends those lines at once, as a starting point.
  Another user's mailbox is covered while its ACL gives the user ``r`` (RFC 4314): the rights
  are read again before each line about it, so its owner's SETACL ends the lines at once.
- ``MailboxName`` and ``SubscriptionChange``: another session of the same user creating,
  deleting or renaming a covered mailbox, or (un)subscribing it, is told as a ``* LIST`` line
  (``\\NonExistent`` for a deleted one, ``OLDNAME`` for a rename). Sessions learn of each
  other through the factory, so this covers the sessions of one server process.

A mailbox matching several filters takes the events of the first. ``AnnotationChange`` and the
METADATA events are refused with ``NO [BADEVENT (...)]`` (no METADATA here). Lines for other
mailboxes wait while a command is running (they never land inside a FETCH literal) and go out
before its tagged reply, or at once when the session is idle or in IDLE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txmailhost.imap import fetch, names, replies
from txmailhost.imap.commands import status_response
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import Done, mailbox_name
from txmailhost.imap.search import compress
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import NoSuchMailbox

log = Logger(namespace="txmailhost.imap")

INBOX = "INBOX"
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
_KNOWN = SUPPORTED + ("AnnotationChange", "MailboxMetadataChange", "ServerMetadataChange")
_CANONICAL = {event.upper(): event for event in _KNOWN}
_SELECTED = ("SELECTED", "SELECTED-DELAYED")
_OWN = ("INBOXES", "PERSONAL")  # filters of the user's own mailboxes only
_OTHER = ("INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")
MAX_WATCHED = 1000  # mailboxes one session may watch; past it only the first ones are watched


@dataclass(frozen=True)
class EventGroup:
    """One ``(filter events)`` of a NOTIFY SET."""

    kind: str  # upper case: SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, ...
    names: tuple[str, ...] = ()  # SUBTREE and MAILBOXES
    events: frozenset[str] = frozenset()
    fetch_atts: bytes = b""  # MessageNew's fetch attributes, "(UID FLAGS ...)"
    # ``names`` as a set: every mailbox of the user is asked about on each SET and on each
    # mailbox event from another session, so asking each of thousands of names in turn cost
    # seconds of the reactor (2.8 s for a subtree of 4,000 names over 4,000 mailboxes).
    _name_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_set", frozenset(self.names))

    def covers(self, name: str, subscribed: set[str]) -> bool:
        if self.kind == "INBOXES":
            return name == INBOX
        if self.kind == "PERSONAL":
            return True
        if self.kind == "SUBSCRIBED":
            return name in subscribed
        if self.kind == "MAILBOXES":
            return name in self._name_set
        if self.kind == "SUBTREE":
            # a root at or above the name: "a/bc" is not under "a/b"
            return name in self._name_set or any(
                superior in self._name_set for superior in names.superiors(name)
            )
        return False


@dataclass
class NotifySet:
    """The session's NOTIFY SET."""

    groups: list[EventGroup]
    selected: EventGroup | None = None

    def events_for(self, name: str, subscribed: set[str], personal: bool = True) -> frozenset[str]:
        """``personal``: False for another user's or a shared mailbox (RFC 4314, ``acl.py``),
        which ``inboxes`` and ``personal`` don't cover (RFC 5465 §6)."""
        for group in self.groups:
            if group.kind in _SELECTED or (not personal and group.kind in _OWN):
                continue
            if group.covers(name, subscribed):
                return group.events
        return frozenset()

    @property
    def user_events(self) -> bool:
        """Does the set want to hear of mailboxes created, removed or (un)subscribed?"""
        return any(
            g.events & {"MailboxName", "SubscriptionChange"} or g.kind != "MAILBOXES"
            for g in self.groups
            if g.kind not in _SELECTED
        )


def parse_notify(reader: Reader, utf8: bool = False) -> tuple[NotifySet | None, bool]:
    """(the set, whether STATUS was asked for) from the arguments; (None, False) for NONE.
    Raises ParseError (BAD) for bad syntax and rule breaks, ``replies.BadEvent`` (NO) for
    events this server doesn't support."""
    reader.sp()
    word = reader.atom().upper()
    if word == b"NONE":
        reader.end()
        return None, False
    if word != b"SET":
        raise ParseError("NOTIFY SET or NOTIFY NONE")
    reader.sp()
    status = False
    if reader.peek_upper(b"STATUS"):
        reader.atom()
        reader.sp()
        status = True
    groups = [_event_group(reader, utf8)]
    while reader.skip_sp():
        groups.append(_event_group(reader, utf8))
    reader.end()
    unsupported = {e for g in groups for e in g.events if e not in SUPPORTED}
    if unsupported:
        raise replies.BadEvent(SUPPORTED)
    spec = NotifySet(groups)
    for group in groups:
        if group.kind in _SELECTED:
            if spec.selected is not None:
                raise ParseError("only one selected filter")
            spec.selected = group
    return spec, status


def _event_group(reader: Reader, utf8: bool = False) -> EventGroup:
    reader.open_paren()
    kind = reader.atom().upper().decode("ascii", "replace")
    if kind not in _SELECTED + _OTHER:
        raise ParseError(f"unknown NOTIFY filter {kind}")
    mailboxes: list[str] = []
    if kind in ("SUBTREE", "MAILBOXES"):
        reader.sp()
        if reader.peek() == b"(":
            reader.open_paren()
            mailboxes.append(_mailbox(reader, utf8))
            while reader.skip_sp():
                mailboxes.append(_mailbox(reader, utf8))
            reader.close_paren()
        else:
            mailboxes.append(_mailbox(reader, utf8))
    reader.sp()
    events: set[str] = set()
    fetch_atts = b""
    if reader.peek() == b"(":
        reader.open_paren()
        while True:
            word = reader.atom().decode("ascii", "replace")
            event = _CANONICAL.get(word.upper())
            if event is None:
                raise ParseError(f"unknown NOTIFY event {word}")
            events.add(event)
            if event == "MessageNew" and reader.peek(2) == b" (":
                if kind not in _SELECTED:
                    raise ParseError("fetch attributes only for the selected mailbox")
                reader.sp()
                fetch_atts = _fetch_atts(reader)
            if not reader.skip_sp():
                break
        reader.close_paren()
    elif reader.atom().upper() != b"NONE":
        raise ParseError("events: a list or NONE")
    reader.close_paren()
    message = {"MessageNew", "MessageExpunge"}
    if kind in _SELECTED:
        if events & message and not events >= message:
            raise ParseError("MessageNew and MessageExpunge go together for the selected mailbox")
        if events & {"FlagChange", "AnnotationChange"} and not events >= message:
            raise ParseError("FlagChange needs MessageNew and MessageExpunge")
    return EventGroup(kind, tuple(mailboxes), frozenset(events), fetch_atts)


def _mailbox(reader: Reader, utf8: bool = False) -> str:
    return names.decode(reader.astring(), utf8)


def _fetch_atts(reader: Reader) -> bytes:
    """The parenthesised fetch attributes after MessageNew, checked as FETCH would."""
    start = reader.pos
    depth = 0
    while True:
        c = reader.peek()
        if not c:
            raise ParseError("unterminated fetch attributes")
        if c == b"(":
            depth += 1
        elif c == b")":
            depth -= 1
        reader.pos += 1
        if depth == 0:
            break
    text = reader.text[start : reader.pos]
    fetch.parse_fetch(Reader(text))  # a bad attribute is BAD now, not at the first new mail
    return text


@dataclass
class NotifyHub:
    """The sessions of each user that want mailbox-name and subscription events.

    One per server process, shared by its IMAP listeners (``listeners.ServerParts``), so a
    session on 993 hears a CREATE made on 143. ``forward``, when set (worker processes,
    ``service._join_workers``), carries this process's events to the other workers, whose
    hubs ``tell`` them with no origin."""

    sessions: dict[str, set[Any]] = field(default_factory=dict)
    forward: Callable[[str, str, str, str | None], None] | None = None

    def join(self, user: str, session: Any) -> None:
        self.sessions.setdefault(user, set()).add(session)

    def leave(self, user: str, session: Any) -> None:
        mine = self.sessions.get(user)
        if mine is not None:
            mine.discard(session)
            if not mine:
                del self.sessions[user]

    def tell(self, user: str, origin: Any, event: str, name: str, old: str | None = None) -> None:
        """``origin``: the session that made the change (not told), None for one made in
        another process (not forwarded again)."""
        for session in list(self.sessions.get(user, ())):
            if session is not origin:
                session.notify_mailbox_event(event, name, old)
        if origin is not None and self.forward is not None:
            self.forward(user, event, name, old)


def hub_of(factory: Any) -> NotifyHub:
    hub = getattr(factory, "notify_hub", None)
    if hub is None:
        hub = factory.notify_hub = NotifyHub()
    return hub


def _status_items(events: frozenset[str], new: bool, gone: bool, flags: bool) -> list[str]:
    items: list[str] = []
    if "MessageNew" in events and new or "MessageExpunge" in events and gone:
        items.append("MESSAGES")
    if "MessageNew" in events and new:
        items += ["UIDNEXT", "UIDVALIDITY"]
    if "FlagChange" in events and flags:
        if "UIDVALIDITY" not in items:
            items.append("UIDVALIDITY")
        items.append("HIGHESTMODSEQ")
    return items


class NotifyCommands:
    """Part of ``IMAPServer``: the NOTIFY command and the pushes it sets up."""

    factory: Any
    account: Any
    user: str | None
    view: SelectedMailbox | None
    lost: bool
    utf8: bool
    _running: bool
    _idling: bool
    write: Callable[[bytes], None]
    flush: Callable[[], None]
    sync: Callable[..., Any]
    _fetch: Callable[..., Any]
    _pause: Callable[[], None]
    _resume: Callable[[], None]

    _notify: NotifySet | None = None
    _notify_watches: dict[str, Any] | None = None  # name -> (IMailbox, stop watching)
    _notify_subscribed: set[str] | None = None  # the subscriptions as last read
    _notify_last: dict[str, Any] | None = None  # name -> the MailboxStatus last told
    _notify_pending: list[bytes] | None = None  # lines waiting for the running command
    _notify_dirty: set[str] | None = None
    _notify_busy = False
    _notify_foreign: frozenset[str] = frozenset()  # watched names in other users' trees
    visible_shared: Callable[[], Any]  # acl.AclCommands
    target: Callable[[str], Any]

    @property
    def store(self) -> Any:
        return self.account.store

    async def _notify_cmd(self, reader: Reader, by_uid: bool) -> Done:
        spec, status = parse_notify(reader, self.utf8)
        self.notify_stop()
        if spec is None:
            return Done("NOTIFY completed")
        self._notify = spec
        await self._notify_resolve(initial_status=status)
        if spec.user_events:
            hub_of(self.factory).join(self.account.address, self)
        return Done("NOTIFY completed")

    def notify_stop(self) -> None:
        """NOTIFY NONE, a new NOTIFY SET, or the end of the session."""
        if self._notify is None:
            return
        self._notify = None
        for _mailbox, stop in (self._notify_watches or {}).values():
            stop()
        self._notify_watches, self._notify_last, self._notify_dirty = None, None, None
        self._notify_subscribed = None
        if self.account is not None:
            hub_of(self.factory).leave(self.account.address, self)

    async def _notify_resolve(
        self, initial_status: bool = False, subscribed: set[str] | None = None
    ) -> None:
        """Watch the mailboxes the set covers now (after SET, and when mailboxes come and go);
        ``subscribed`` when the caller has just read the subscriptions."""
        spec = self._notify
        if spec is None:
            return
        user = self.account.address
        listed = await self.store.list_mailboxes(user)
        # other users' and shared mailboxes the user may read (RFC 4314 "r" gives STATUS)
        foreign = frozenset(n for n, held in (await self.visible_shared()).items() if "r" in held)
        if subscribed is None:
            subscribed = set(await self.store.subscriptions(user))
        if self._notify is not spec:
            return  # a new NOTIFY came meanwhile
        self._notify_subscribed = subscribed
        self._notify_foreign = foreign
        watches = self._notify_watches = self._notify_watches or {}
        last = self._notify_last = self._notify_last or {}
        wanted = [n for n in listed if spec.events_for(n, subscribed)]
        wanted += [n for n in sorted(foreign) if spec.events_for(n, subscribed, False)]
        wanted = wanted[:MAX_WATCHED]
        for name in set(watches) - set(wanted):
            watches.pop(name)[1]()
            last.pop(name, None)
        for name in wanted:
            if name in watches:
                continue
            try:
                found = await self.target(name) if name in foreign else None
                owner, inner = (found.owner, found.mailbox) if found else (user, name)
                mailbox = await self.store.open(owner, inner)
                status = await mailbox.status()
            except (NoSuchMailbox, replies.Nonexistent):
                continue
            if self._notify is not spec:
                return
            watches[name] = (mailbox, mailbox.watch(lambda name=name: self._notify_changed(name)))
            last[name] = status
            if initial_status and not self._is_selected(name):
                events = spec.events_for(name, subscribed, name not in foreign)
                self._notify_write_status(name, status, _status_items(events, True, True, True))

    def _is_selected(self, name: str) -> bool:
        return self.view is not None and self.view.name == name

    def _notify_write_status(self, name: str, status: Any, items: list[str]) -> None:
        if items:
            self.notify_send(status_response(name, status, items, self.utf8))

    def notify_send(self, line: bytes) -> None:
        """An unsolicited line: now when no command's responses are on their way, else
        before the running command's tagged reply (``notify_flush``)."""
        if self._running and not self._idling:
            if self._notify_pending is None:
                self._notify_pending = []
            self._notify_pending.append(line)
            return
        self.write(line)
        self.flush()

    def notify_flush(self) -> None:
        """Called by the session just before a tagged reply."""
        pending, self._notify_pending = self._notify_pending, None
        for line in pending or ():
            self.write(line)

    # -- other mailboxes -------------------------------------------------------------------------

    def _notify_changed(self, name: str) -> None:
        if self._notify is None or self.lost:
            return
        if self._notify_dirty is None:
            self._notify_dirty = set()
        self._notify_dirty.add(name)
        if not self._notify_busy:
            d = Deferred.fromCoroutine(self._notify_poll())
            d.addErrback(lambda f: log.failure("imap NOTIFY update failed", f))

    async def _notify_poll(self) -> None:
        self._notify_busy = True
        try:
            while self._notify_dirty and self._notify is not None and not self.lost:
                name = self._notify_dirty.pop()
                await self._notify_check(name)
        finally:
            self._notify_busy = False

    async def _notify_check(self, name: str) -> None:
        spec, last, watched = self._notify, self._notify_last, self._notify_watches
        if spec is None or last is None or not watched or name not in watched:
            return
        try:
            status = await watched[name][0].status()
        except NoSuchMailbox:
            return
        before = last.get(name)
        if before is None or self._notify is not spec:
            return
        if name in self._notify_foreign and not await self._notify_still_readable(name):
            return
        if self._notify is not spec:
            return
        last[name] = status
        if self._is_selected(name):
            return  # the selected mailbox is told in its own way
        events = spec.events_for(
            name, self._notify_subscribed or set(), name not in self._notify_foreign
        )
        recreated = status.uidvalidity != before.uidvalidity
        new = recreated or status.uidnext != before.uidnext
        gone = recreated or status.messages < before.messages + (status.uidnext - before.uidnext)
        flags = status.highestmodseq != before.highestmodseq and not (new or gone)
        self._notify_write_status(name, status, _status_items(events, new, gone, flags))

    async def _notify_still_readable(self, name: str) -> bool:
        """Another user's mailbox was watched because this user held "r" on it when the set
        was resolved; its owner may have taken the right away since (SETACL, DELETEACL) and
        then a STATUS line would tell of a mailbox the user may no longer see (RFC 4314 §4:
        STATUS needs "r"). The rights are asked again before each line; stop watching a
        mailbox whose right is gone."""
        try:
            readable = (await self.target(name)).has("r")
        except replies.IMAPError:
            readable = False
        if readable:
            return True
        watches = self._notify_watches
        if watches is not None and name in watches:
            watches.pop(name)[1]()
        if self._notify_last is not None:
            self._notify_last.pop(name, None)
        self._notify_foreign = self._notify_foreign - {name}
        return False

    # -- mailbox names and subscriptions ---------------------------------------------------------

    def notify_tell_others(self, event: str, name: str, old: str | None = None) -> None:
        """This session created, deleted, renamed or (un)subscribed ``name``: tell the user's
        other sessions that asked, and keep our own watch list current."""
        if self.account is None:
            return
        hub_of(self.factory).tell(self.account.address, self, event, name, old)
        if self._notify is not None:
            self._notify_refresh()

    def notify_mailbox_event(self, event: str, name: str, old: str | None) -> None:
        """From another session of this user (``NotifyHub.tell``)."""
        spec = self._notify
        if spec is None or self.lost:
            return
        d = Deferred.fromCoroutine(self._notify_mailbox_event(spec, event, name, old))
        d.addErrback(lambda f: log.failure("imap NOTIFY mailbox event failed", f))

    async def _notify_mailbox_event(
        self, spec: NotifySet, event: str, name: str, old: str | None
    ) -> None:
        subscribed = set(await self.store.subscriptions(self.account.address))
        wanted = "SubscriptionChange" if event in ("subscribe", "unsubscribe") else "MailboxName"
        if wanted in spec.events_for(name, subscribed) or (
            old is not None and wanted in spec.events_for(old, subscribed)
        ):
            quoted = mailbox_name(name, self.utf8)
            separator = b' "' + names.SEPARATOR.encode() + b'" '
            if event == "delete":
                line = b"* LIST (\\NonExistent)" + separator + quoted
            elif event == "rename" and old is not None:
                line = (
                    b"* LIST ()"
                    + separator
                    + quoted
                    + b' ("OLDNAME" ('
                    + mailbox_name(old, self.utf8)
                )
                line += b"))"
            elif event == "subscribe":
                line = b"* LIST (\\Subscribed)" + separator + quoted
            else:
                line = b"* LIST ()" + separator + quoted
            self.notify_send(line + b"\r\n")
        await self._notify_resolve(subscribed=subscribed)

    def _notify_refresh(self) -> None:
        d = Deferred.fromCoroutine(self._notify_resolve())
        d.addErrback(lambda f: log.failure("imap NOTIFY refresh failed", f))

    # -- the selected mailbox --------------------------------------------------------------------

    def notify_pushes_selected(self) -> bool:
        """Are the selected mailbox's changes to be pushed without waiting for a command?"""
        spec = self._notify
        return (
            spec is not None
            and spec.selected is not None
            and "MessageNew" in spec.selected.events
            and self.view is not None
        )

    async def notify_push_selected(self) -> None:
        """Push the selected mailbox's changes now (no command is running)."""
        spec, view = self._notify, self.view
        if spec is None or spec.selected is None or view is None:
            return
        idle = self._running  # IDLE: a command is running already, and waits for DONE
        if not idle:
            self._running = True  # no command starts while the updates are written
            self._pause()
        try:
            known = view.uids[-1] if len(view.uids) else 0
            await self.sync(expunges=self._idling or spec.selected.kind == "SELECTED")
            if spec.selected.fetch_atts and self.view is view and not self.lost:
                new = [uid for uid in view.uids if uid > known]
                if new:
                    text = b" " + compress(new).encode() + b" " + spec.selected.fetch_atts
                    await self._fetch(Reader(text), True)
            self.notify_flush()
            self.flush()
        finally:
            if not idle:
                self._running = False
                self._resume()
