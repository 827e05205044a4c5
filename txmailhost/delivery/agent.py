"""The delivery agent: which mailbox each local recipient's copy goes into, decided after 250.

What the SMTP server accepts is a list of recipients with *wishes*: the folder a plus-address
names (``alice+lists@`` asks for ``lists``, ``[routing] plus_folders``) and the filters'
verdict that a copy is spam (Junk). Neither is frozen into the spool record as a final
mailbox: the record keeps the wishes (``local.py``), and this step turns them into mailboxes
when the copies are made, in the delivery thread — after the ``250``, where a user's Sieve
script will run (as Postfix's ``local`` runs ``.forward`` and procmail, not ``smtpd``).

The rules today: a user's active Sieve script decides when there is one (``sieve``, a
``txmailhost.sieve.delivery.SieveStep`` handed in; what it sends, a redirect or a vacation
reply, is submitted before the copy is delivered), and may give a copy IMAP flags (RFC 5232:
``\\Seen``, ``$Label1``) that the store keeps with it. Otherwise: Junk for a copy the filters
judged spam; the plus-address's folder when the user has one by that name, matched without
regard to case (addresses are case-insensitive, folder names aren't); INBOX otherwise, and for
anything that doesn't exist (any more).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from txmailhost.delivery import mailboxes
from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions
from txmailhost.store.interfaces import INBOX

JUNK = "Junk"
_PLAIN = MessageOptions()


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """One local user's copy of a message, and what was asked for it."""

    user: str
    folder: str = INBOX  # the folder a plus-address asked for: a wish, not a promise
    junk: bool = False  # a filter judged this copy spam
    # RFC 3461 NOTIFY/ORCPT of the RCPT that led here: what a Sieve redirect passes on. Not
    # part of the copy's identity: two addresses of one user are still one copy.
    dsn: RecipientOptions = field(default=RecipientOptions(), compare=False)


def wanted(recipient: LocalRecipient) -> str:
    """The folder the wishes point at, before checking that it exists."""
    return JUNK if recipient.junk else recipient.folder


def _pick(recipient: LocalRecipient, names: Callable[[str], list[str]]) -> str:
    folder = wanted(recipient)
    if folder.upper() == INBOX:
        return INBOX
    existing = {name.lower(): name for name in names(recipient.user)}
    return existing.get(folder.lower(), INBOX)


def _unique(targets: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    for target in targets:
        if target not in result:
            result.append(target)
    return result


class Choice(NamedTuple):
    """The ``(user, mailbox)`` targets of a message's copies, and the flags of the copies a
    user's script flagged (the others have none)."""

    targets: list[tuple[str, str]]
    flags: dict[tuple[str, str], frozenset[str]]


def _decided(user: str, decision: Any, choice: Choice) -> None:
    """Add a script's ``decision`` for ``user`` to ``choice``. The same mailbox chosen twice
    for one user (two addresses of theirs in one envelope) is one copy with both flag sets."""
    for mailbox in decision.mailboxes:
        target = (user, mailbox)
        choice.targets.append(target)
        flags = decision.flags.get(mailbox)
        if flags:
            choice.flags[target] = choice.flags.get(target, frozenset()) | flags


class DeliveryAgent:
    """Chooses the ``(user, mailbox)`` targets of a message's local recipients."""

    def __init__(self, store: Any, sieve: Any = None) -> None:
        self._store = store
        self._sieve = sieve  # SieveStep, or None: no user scripts

    @property
    def reads_message(self) -> bool:
        """Does choosing read the message file (users' scripts)? It must be written first."""
        return self._sieve is not None

    def guess(self, recipients: Iterable[LocalRecipient]) -> list[tuple[str, str]]:
        """The targets the wishes point at, without asking the store: which mailboxes' readers
        should wait for the message (``store/pending.py``) before it is delivered."""
        return _unique((r.user, wanted(r)) for r in recipients)

    def choose_sync(
        self,
        recipients: Iterable[LocalRecipient],
        path: str | None = None,
        options: MessageOptions = _PLAIN,
    ) -> Choice:
        """The targets, from a worker thread (the local delivery thread, recovery at start);
        ``path`` is the message, for users' scripts; ``options`` what its sender asked in MAIL
        FROM, which what a script redirects keeps (RFC 8689 6, RFC 6531, RFC 3461 5.2.7)."""
        listed: dict[str, list[str]] = {}

        def names(user: str) -> list[str]:
            if user not in listed:
                listed[user] = mailboxes.folders_sync(self._store, user)
            return listed[user]

        if self._sieve is None or path is None:
            return Choice(_unique((r.user, _pick(r, names)) for r in recipients), {})
        choice = Choice([], {})
        for r in recipients:
            decision = self._sieve.decide_sync(
                r.user, path, names, r.junk, options=options, dsn=r.dsn
            )
            if decision is None:
                choice.targets.append((r.user, _pick(r, names)))
                continue
            self._sieve.send_sync(decision.outgoing)
            _decided(r.user, decision, choice)
        return Choice(_unique(choice.targets), choice.flags)

    async def choose(
        self,
        recipients: Iterable[LocalRecipient],
        path: str | None = None,
        options: MessageOptions = _PLAIN,
    ) -> Choice:
        """The targets, from the reactor thread (mail delivered before its ``250``)."""
        recipients = list(recipients)
        listed: dict[str, list[str]] = {}
        for r in recipients:
            if wanted(r).upper() != INBOX and r.user not in listed:
                listed[r.user] = await mailboxes.folders(self._store, r.user)
        if self._sieve is None or path is None:
            return Choice(_unique((r.user, _pick(r, listed.__getitem__)) for r in recipients), {})
        choice = Choice([], {})

        def folders(user: str) -> Any:
            return mailboxes.folders(self._store, user)

        for r in recipients:
            decision = await self._sieve.decide(
                r.user, path, folders, r.junk, options=options, dsn=r.dsn
            )
            if decision is None:
                choice.targets.append((r.user, _pick(r, listed.__getitem__)))
                continue
            await self._sieve.send(decision.outgoing)
            _decided(r.user, decision, choice)
        return Choice(_unique(choice.targets), choice.flags)
