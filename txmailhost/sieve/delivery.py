"""The delivery agent's Sieve step: a user's active script decides where their copy goes.

The delivery agent (``delivery/agent.py``) asks :meth:`SieveStep.decide_sync` for each local
recipient once the message is acknowledged, in the delivery thread (or a storage-pool thread
for mail delivered before its ``250``). Without an active script the answer is None and the
agent's own rules apply (plus-address folder, Junk, INBOX). With one, the script runs
(``interpreter.py``) and its outcome becomes:

- the mailboxes to store the copy in: a ``fileinto`` mailbox that doesn't exist is created
  with ``:create`` (RFC 5490 3.2) and otherwise replaced by INBOX (RFC 5228 4.1 leaves this to
  the implementation; Pigeonhole does the same); a copy the filters judged spam still goes to
  Junk when the script only kept it (implicit keep or ``keep``);
- the IMAP flags of each of those copies (imap4flags, RFC 5232), which follow the copy where
  it is redirected to (INBOX for a missing mailbox, Junk); two copies that end up in one
  mailbox are one copy with the flags of both;
- messages to send: redirects (with the original envelope sender, as forwarding does, and
  the sender's ESMTP options: ``redirected_options``), a
  refusal for ``reject`` (RFC 5429 2.1: to the envelope sender, never to ``<>``) and the
  vacation reply (``vacation.py``). They are handed to :meth:`SieveStep.send_sync` /
  :meth:`send`, which submit them through the one durable hand-off (``ISubmission``).

A script that can't be read, compiled or run, or that passes a limit, leaves the copy in INBOX
and is logged (invariant 1 of the package): mail is never lost to a script.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.logger import Logger

from txmailhost._safeio import directory_locked, makedirs_durably, write_atomic
from txmailhost.delivery.interfaces import Envelope, MessageOptions, RecipientOptions
from txmailhost.routing import Outcome, Route, RouteKind
from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.interpreter import INBOX, Interpreter, SieveRuntimeError
from txmailhost.sieve.interpreter import Outcome as SieveOutcome
from txmailhost.sieve.message import MessageView
from txmailhost.sieve.refusal import rejection
from txmailhost.sieve.scripts import ScriptError, ScriptStore
from txmailhost.sieve.vacation import ResponseLog, build_reply, handle_of, refusal
from txmailhost.store.mailboxnames import creation_problem, with_inbox

log = Logger(namespace="txmailhost.sieve")

JUNK = "Junk"
_PLAIN = MessageOptions()
_NO_WISHES = RecipientOptions()


REDIRECTED_FROM = b"X-Sieve-Redirected-From"  # each user whose script sent the copy on
MAX_REDIRECT_HOPS = 10  # redirects one message may have been through, whoever made them


def _redirected_before(view: MessageView, user: str) -> bool:
    """Did ``user``'s script (or too many scripts) send this message on already?"""
    marks = [value.strip().lower() for value in view.values(REDIRECTED_FROM.decode())]
    return user.lower() in marks or len(marks) >= MAX_REDIRECT_HOPS


@dataclass
class Decision:
    """Where one recipient's copy goes, and what the script sends because of it."""

    mailboxes: list[str]
    outgoing: list[tuple[Envelope, bytes]] = field(default_factory=list)
    flags: dict[str, frozenset[str]] = field(default_factory=dict)  # mailbox -> IMAP flags


class SieveStep:
    """Runs users' active scripts for the delivery agent.

    ``resolve_sync(local, domain)`` is the ``Router``'s blocking lookup (where a reply or a
    redirect goes); ``submission`` the server's ``ISubmission``; ``reactor`` runs it.
    ``create_mailbox_sync(user, name)`` makes a mailbox for ``fileinto :create``.
    """

    def __init__(
        self,
        scripts: Any,  # scripts.ScriptStore, or shared.SharedScriptStore
        resolve_sync: Callable[[str, str], Any],
        submission: Any,
        reactor: Any,
        hostname: str,
        *,
        pool: Any = None,
        responses: Any = None,
        notified: Any = None,
        create_mailbox_sync: Callable[[str, str], None] | None = None,
        max_steps: int = 10_000,
        max_redirects: int = 4,
    ) -> None:
        self.scripts = scripts
        self._resolve_sync = resolve_sync
        self.submission = submission  # ISubmission; set by service.py once delivery is built
        self._reactor = reactor
        self._pool = pool  # runs ``decide`` for mail delivered before its 250
        self._hostname = hostname
        # Keyed by ``scripts.state_key(user)``: the files beside the user's scripts, or the
        # shared tables (sieve/shared.py) for a store several nodes share, which has no
        # directory to default to.
        if not isinstance(scripts, ScriptStore) and (responses is None or notified is None):
            raise TypeError("a shared script store needs shared responses and notices")
        self._responses = responses if responses is not None else ResponseLog()
        self._notified = notified if notified is not None else Notified()
        self._create_mailbox_sync = create_mailbox_sync
        self.max_steps = max_steps
        self.max_redirects = max_redirects

    # -- deciding (a worker thread) -----------------------------------------------------------

    def decide_sync(
        self,
        user: str,
        path: str,
        names: Callable[[str], list[str]],
        junk: bool = False,
        *,
        options: MessageOptions = _PLAIN,
        dsn: RecipientOptions = _NO_WISHES,
    ) -> Decision | None:
        """The decision for ``user``'s copy of the message at ``path``; None without an
        active script. ``names(user)`` lists the user's mailboxes; ``options`` and ``dsn``
        are what the sender asked for the message and for this copy (MAIL and RCPT
        parameters), which a redirect passes on (``redirected_options``)."""
        try:
            active = self.scripts.active_script(user)
        except (SieveSyntaxError, ScriptError, OSError, UnicodeError) as e:
            log.error("sieve: {user}'s active script can't be used, kept in INBOX: {error}",
                      user=user, error=e)  # fmt: skip
            try:
                name = self.scripts.active_name(user) or "?"
            except (ScriptError, OSError, UnicodeError):
                name = "?"  # the same fault again: the copy still goes to INBOX
            return self._failed(user, name, str(e))
        if active is None:
            return None
        name, script = active
        listed: list[list[str]] = []

        def mailboxes() -> list[str]:  # listed only when a script asks (a directory scan)
            if not listed:
                listed.append(names(user))
            return listed[0]

        try:
            view = MessageView.from_path(path, user)
            outcome = Interpreter(
                script,
                view,
                mailbox_exists=lambda m: m.upper() == INBOX or m in mailboxes(),
                max_steps=self.max_steps,
                max_redirects=self.max_redirects,
                loader=lambda location, included: self.scripts.included(user, location, included),
            ).run()
        except (SieveRuntimeError, SieveSyntaxError) as e:  # the latter: an included script
            log.error("sieve: script {name} of {user} failed, kept in INBOX: {error}",
                      name=name, user=user, error=e)  # fmt: skip
            return self._failed(user, name, str(e))
        except Exception:
            log.failure("sieve: script {name} of {user} failed, kept in INBOX", name=name,
                        user=user)  # fmt: skip
            return Decision([INBOX])
        if outcome.redirects and _redirected_before(view, user):
            # RFC 5228 4.2: loop control. The copy came back to a user whose script sent it
            # on before (to itself, or round two users): an error, so the implicit keep.
            log.error("sieve: script {name} of {user} redirects a message it redirected "
                      "before (a loop), kept in INBOX", name=name, user=user)  # fmt: skip
            return self._failed(user, name, "redirect loop: the message came back")
        decision = Decision([])
        self._mailboxes(user, outcome, mailboxes, junk, decision)
        self._outgoing(user, name, view, outcome, path, decision, (options, dsn))
        log.info(
            "sieve: {user} script {name}: {mailboxes}{redirects}{extra}",
            user=user,
            name=name,
            mailboxes=", ".join(_described(m, decision.flags) for m in decision.mailboxes)
            or "discarded",
            redirects="".join(f", redirect to {a}" for a in outcome.redirects),
            extra=", rejected" if outcome.reject is not None else "",
        )
        return decision

    def decide(
        self,
        user: str,
        path: str,
        folders: Callable[[str], Deferred[list[str]]],
        junk: bool,
        *,
        options: MessageOptions = _PLAIN,
        dsn: RecipientOptions = _NO_WISHES,
    ) -> Deferred[Decision | None]:
        """``decide_sync`` from the reactor thread: run in the pool, listing the user's
        mailboxes with ``folders`` (a Deferred) back on the reactor."""

        def names(who: str) -> list[str]:
            return blockingCallFromThread(self._reactor, folders, who)

        return deferToThreadPool(
            self._reactor, self._pool, self.decide_sync, user, path, names, junk,
            options=options, dsn=dsn,
        )  # fmt: skip

    def _failed(self, user: str, name: str, error: str) -> Decision:
        """INBOX, and a notice to the user the first time this script fails this way
        (issue 19: "tell the user once"), remembered in ``DATA/sieve/DOMAIN/USER/notified``."""
        decision = Decision([INBOX])
        try:
            if self._notified.first(self.scripts.state_key(user), f"{name}\0{error}"):
                notice = _error_notice(user, name, error, self._hostname)
                decision.outgoing.append(
                    (Envelope(None, (Route(RouteKind.LOCAL, user, user, INBOX),)), notice)
                )
        except (OSError, ScriptError):
            log.failure("sieve: can't tell {user} about a failed script", user=user)
        return decision

    def _mailboxes(
        self,
        user: str,
        outcome: SieveOutcome,
        existing: Callable[[], list[str]],
        junk: bool,
        decision: Decision,
    ) -> None:
        chosen = decision.mailboxes
        for named, create in outcome.targets:
            mailbox = with_inbox(named)
            if mailbox == INBOX:
                target = JUNK if junk and JUNK in existing() else INBOX
            elif (
                mailbox in existing()
                or create
                and creation_problem(mailbox) is None
                and self._create(user, mailbox)
            ):
                target = mailbox
            else:
                log.warn("sieve: {user} has no mailbox {mailbox}; the copy goes to INBOX",
                         user=user, mailbox=mailbox)  # fmt: skip
                target = INBOX
            if target not in chosen:
                chosen.append(target)
            flags = outcome.flags.get(named)
            if flags:
                decision.flags[target] = decision.flags.get(target, frozenset()) | flags

    def _create(self, user: str, mailbox: str) -> bool:
        if self._create_mailbox_sync is None or not self._reactor.running:
            return False
        try:
            self._create_mailbox_sync(user, mailbox)
        except Exception as e:
            log.warn("sieve: can't create {mailbox} for {user}: {error}", mailbox=mailbox,
                     user=user, error=e)  # fmt: skip
            return False
        return True

    def _outgoing(
        self,
        user: str,
        name: str,
        view: MessageView,
        outcome: SieveOutcome,
        path: str,
        decision: Decision,
        asked: tuple[MessageOptions, RecipientOptions],
    ) -> None:
        if outcome.redirects:
            with open(path, "rb") as f:
                # marked for loop control (``_redirected_before``), as Pigeonhole marks it
                marked = REDIRECTED_FROM + b": " + user.encode() + b"\r\n" + f.read()
            options, dsn = asked
            passed_on = redirected_options(dsn)
            for address in outcome.redirects:
                routes = self._routes(address)
                if routes:
                    envelope = Envelope(
                        view.sender, tuple(routes), options=options,
                        recipient_options={route.address: passed_on for route in routes},
                    )  # fmt: skip
                    decision.outgoing.append((envelope, marked))
                elif INBOX not in decision.mailboxes:
                    # it can't go where the script sends it: kept, never lost (RFC 5228
                    # 2.10.6: an action that fails leaves the implicit keep)
                    decision.mailboxes.append(INBOX)
        if outcome.reject is not None and view.sender:
            routes = self._routes(view.sender)
            if routes:
                refusal_text = rejection(view, outcome.reject, user, self._hostname)
                decision.outgoing.append((Envelope(None, tuple(routes)), refusal_text))
        request = outcome.vacation
        if request is not None:
            why = refusal(view, request, [user])
            if why is not None:
                log.info("sieve: no vacation reply from {user} to {sender}: {why}", user=user,
                         sender=view.sender or "<>", why=why)  # fmt: skip
                return
            assert view.sender is not None
            if not self._responses.claim(
                self.scripts.state_key(user), view.sender, handle_of(request), request.seconds
            ):
                log.info("sieve: {user} answered {sender} already within the period",
                         user=user, sender=view.sender)  # fmt: skip
                return
            routes = self._routes(view.sender)
            if routes:
                reply = build_reply(view, request, user, self._hostname)
                decision.outgoing.append((Envelope(None, tuple(routes)), reply))
                log.info("sieve: vacation reply from {user} to {sender}", user=user,
                         sender=view.sender)  # fmt: skip

    def _routes(self, address: str) -> list[Route]:
        local, _, domain = address.rpartition("@")
        resolution = self._resolve_sync(local, domain)
        if resolution.outcome is Outcome.OK:
            return list(resolution.routes)
        if resolution.outcome is Outcome.NOT_OURS:
            return [Route(RouteKind.REMOTE, address)]
        log.warn("sieve: nowhere to send to {address} ({why})", address=address,
                 why=resolution.outcome.value)  # fmt: skip
        return []

    # -- sending -------------------------------------------------------------------------------

    def send_sync(self, outgoing: list[tuple[Envelope, bytes]]) -> None:
        """Submit ``outgoing`` from a worker thread, durably, before returning. Recovery at
        start runs before the reactor, which can't be asked anything then (it would wait for
        ever): the messages are submitted once it runs."""
        for envelope, data in outgoing:
            if not self._reactor.running:
                self._reactor.callWhenRunning(self._submit_logged, envelope, data)
                continue
            try:
                blockingCallFromThread(self._reactor, self.submission.submit_bytes, envelope, data)
            except Exception:
                log.failure("sieve: submitting a message failed")

    async def send(self, outgoing: list[tuple[Envelope, bytes]]) -> None:
        """Submit ``outgoing`` from the reactor thread."""
        for envelope, data in outgoing:
            try:
                await self.submission.submit_bytes(envelope, data)
            except Exception:
                log.failure("sieve: submitting a message failed")

    def _submit_logged(self, envelope: Envelope, data: bytes) -> Deferred[Any]:
        d = self.submission.submit_bytes(envelope, data)
        d.addErrback(lambda f: log.failure("sieve: submitting a message failed", f))
        return d


def redirected_options(dsn: RecipientOptions) -> RecipientOptions:
    """The RCPT parameters a redirected copy leaves with, from those of the copy.

    A redirect is the user's own forward of their copy: the sender's ORCPT and NOTIFY go on
    with it (RFC 3461 5.2.7), so a failure further on is reported to the sender, with the
    address they wrote, and a next hop without DSN gets a "relayed" report from the queue.
    Except SUCCESS: the copy was reported "delivered" to this user already, when it was
    acknowledged (``Submission``, before the script ran), and one success report a
    recipient is what was asked for. NOTIFY=SUCCESS alone leaves as NEVER, not as no
    NOTIFY (which would mean FAILURE,DELAY: reports the sender did not ask for).
    """
    if "SUCCESS" not in dsn.notify:
        return dsn
    rest = tuple(n for n in dsn.notify if n != "SUCCESS") or ("NEVER",)
    return RecipientOptions(rest, dsn.orcpt)


def _described(mailbox: str, flags: dict[str, frozenset[str]]) -> str:
    """``Work`` or, with flags, ``Work (\\Flagged $Label1)`` for the log."""
    held = flags.get(mailbox)
    return f"{mailbox} ({' '.join(sorted(held))})" if held else mailbox


class Notified:
    """Which failure a user was last told about: the digest of (script, error) in a file."""

    NAME = "notified"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def first(self, directory: str, failure: str) -> bool:
        """True (and remembered) the first time ``failure`` is reported for this user."""
        digest = hashlib.sha256(failure.encode("utf-8", "replace")).hexdigest()
        path = os.path.join(directory, self.NAME)
        makedirs_durably(directory)
        with self._lock, directory_locked(directory):  # one notice, whichever worker asks
            try:
                with open(path, encoding="ascii") as f:
                    if f.read().strip() == digest:
                        return False
            except (FileNotFoundError, UnicodeDecodeError):
                pass
            write_atomic(path, digest.encode())
        return True


def _error_notice(user: str, name: str, error: str, hostname: str) -> bytes:
    """The message telling ``user`` that their script failed (sent once per failure)."""
    domain = user.rpartition("@")[2]
    text = (
        f'Your Sieve script "{name}" could not be run:\r\n\r\n    {error}\r\n\r\n'
        "Your mail is delivered to your INBOX, unsorted, until the script is fixed (with your\r\n"
        "mail program's filter settings, or ManageSieve). You are told once per problem.\r\n"
    )
    headers = (
        f"From: Mail server <postmaster@{domain}>\r\nTo: <{user}>\r\n"
        f'Subject: Your mail filter script "{name}" has a problem\r\n'
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: {make_msgid('sieve-error', domain=hostname)}\r\n"
        "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (headers + text).encode("utf-8")
