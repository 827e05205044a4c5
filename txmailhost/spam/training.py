"""Learning from what the user does: into Junk is spam, out of Junk is ham.

The IMAP server tells its ``IMailboxObserver``s (``imap/observers.py``) when messages arrive
in a mailbox by COPY, MOVE or APPEND. ``JunkTrainer`` is one: a message put into a Junk
folder is learned as spam for that user (and the global set), one taken out of Junk into
anything but a Trash folder as ham — as Dovecot's antispam plugin and IMAPSieve's
``report-spam``/``report-ham`` do — and the sender of a message rescued from Junk joins the
user's allowed senders, so their next message isn't filed there again. Moving from Junk to
Trash says "delete", not "this is good mail", and trains nothing.

The observer is called on the reactor thread and returns at once: it opens each message
(the store's Deferred) and hands the stream to a thread of its own, which reads a bounded
sample and writes SQLite (``bayes.py``). At most ``MAX_PER_COMMAND`` messages are learned per
command and ``MAX_BACKLOG`` wait at a time: a user moving 100,000 messages costs a bounded
amount; the rest are left unlearned (and logged), never queued without end.

``learn_file``/``learn_stream`` are the same path for ``txmailhost spam train``.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txmailhost.addresslist import parse_address
from txmailhost.imap.observers import IMailboxObserver
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.sample import BODY_CAP, sample_of
from txmailhost.spam.scoring import owner_of
from txmailhost.spam.tokens import tokens

log = Logger()

JUNK_NAMES = frozenset({"junk", "spam", "junk e-mail", "junk email", "bulk mail"})
TRASH_NAMES = frozenset({"trash", "deleted items", "deleted messages", "bin"})
MAX_PER_COMMAND = 500
MAX_BACKLOG = 2000


def is_junk(mailbox: str | None) -> bool:
    return mailbox is not None and mailbox.rsplit("/", 1)[-1].lower() in JUNK_NAMES


def is_trash(mailbox: str | None) -> bool:
    return mailbox is not None and mailbox.rsplit("/", 1)[-1].lower() in TRASH_NAMES


def lesson(origin: str | None, target: str) -> bool | None:
    """What a user's move from ``origin`` (None: APPEND) to ``target`` teaches: True spam,
    False ham, None nothing (Junk to Junk, Junk to Trash, between ordinary folders)."""
    if is_junk(target) and not is_junk(origin):
        return True
    if is_junk(origin) and not is_junk(target) and not is_trash(target):
        return False
    return None


def learn_stream(
    store: TokenStore,
    owner: str,
    stream: BinaryIO,
    is_spam: bool,
    allow_sender: bool = False,
    body_cap: int = BODY_CAP,
) -> bool:
    """Learn one message (a bounded read of ``stream``) for ``owner``; False when it was
    learned so already. ``allow_sender`` adds its From: address to the owner's allowed
    senders (a ham), or takes it off them (a spam)."""
    sample = sample_of(stream, body_cap)
    changed = store.learn(owner, sample.digest, tokens(sample), is_spam)
    _name, sender = parse_address(sample.header("from") or "")
    if allow_sender and sender and "@" in sender:
        if not is_spam:
            store.set_sender(owner, sender, "allow")
        elif store.sender_kind([owner], [sender]) == "allow":
            store.set_sender(owner, sender, None)
    return changed


def learn_file(store: TokenStore, owner: str, path: str, is_spam: bool) -> bool:
    with open(path, "rb") as stream:
        return learn_stream(store, owner, stream, is_spam)


@implementer(IMailboxObserver)
class JunkTrainer:
    """Trains ``store`` from the users' moves in and out of Junk (see the module docstring)."""

    def __init__(self, store: TokenStore, reactor: Any, pool: ThreadPool) -> None:
        self.store = store
        self.pool = pool  # the service runs it (service.py)
        self._reactor = reactor
        self._pool = pool
        self.backlog = 0

    def arrived(self, user: str, origin: str | None, target: str, mailbox: Any, uids: Any) -> None:
        is_spam = lesson(origin, target)
        if is_spam is None:
            return
        uids = list(uids)
        if len(uids) > MAX_PER_COMMAND:
            log.info(
                "spam training: {user} moved {count} messages; learning the first {limit}",
                user=user,
                count=len(uids),
                limit=MAX_PER_COMMAND,
            )
            uids = uids[:MAX_PER_COMMAND]
        for uid in uids:
            if self.backlog >= MAX_BACKLOG:
                log.warn("spam training: backlog full, {user} uid {uid} not learned", user=user,
                         uid=uid)  # fmt: skip
                continue
            self.backlog += 1
            pending = mailbox.open_message(uid)
            pending.addCallback(self._learn_off_reactor, owner_of(user), is_spam)
            pending.addErrback(self._failed, user, uid)
            pending.addBoth(self._done)

    def _learn_off_reactor(self, stream: BinaryIO, owner: str, is_spam: bool) -> Any:
        def learn() -> bool:
            try:
                return learn_stream(self.store, owner, stream, is_spam, allow_sender=True)
            finally:
                stream.close()

        return threads.deferToThreadPool(self._reactor, self._pool, learn)

    def _failed(self, failure: Any, user: str, uid: int) -> None:
        log.failure("spam training: {user} uid {uid} not learned", failure, user=user, uid=uid)

    def _done(self, result: Any) -> None:
        self.backlog -= 1


def build_trainer(data_dir: str, settings: dict[str, Any], reactor: Any) -> JunkTrainer | None:
    """The trainer for the server, when ``[filters.settings.spam] bayes`` is on (the
    default), with a one-thread pool of its own: SQLite writes are serial anyway, and
    training never takes a thread from delivery or the filters."""
    from txmailhost.spam.scoring import store_path

    if not settings.get("bayes", True):
        return None
    store = TokenStore(
        store_path(data_dir),
        max_tokens=int(settings.get("bayes_max_tokens", 2_000_000)),
        max_age_days=float(settings.get("bayes_max_age_days", 180.0)),
        global_per_user=int(settings.get("bayes_global_per_user", 1000)),
    )
    pool = ThreadPool(minthreads=0, maxthreads=1, name="txmailhost-spam-training")
    return JunkTrainer(store, reactor, pool)
