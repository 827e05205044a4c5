"""What producers of mail see of delivery: ``ISubmission`` and the ``Envelope`` they hand it.

Everything that creates mail — the SMTP listeners, the queue's bounces (DSNs), the quota
notice, later webmail and Sieve's redirect and vacation — writes the message into a file that
``open`` hands out and calls ``submit``: Postfix's cleanup, one entry for many producers. What
makes mail durable, where remote recipients go and which mailbox a local copy lands in are
decided behind it, so a new producer is one call, not a fourth copy of the durable path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from zope.interface import Interface

from txmailhost.routing import Route

BODY_7BIT = "7BIT"
BODY_8BITMIME = "8BITMIME"
BODY_BINARYMIME = "BINARYMIME"


@dataclass(frozen=True)
class MessageOptions:
    """What the sender asked of the whole message in MAIL FROM, kept for every later hop.

    ``body`` is RFC 6152/3030's BODY (a BINARYMIME message can only leave by BDAT to a server
    offering BINARYMIME); ``smtputf8`` RFC 6531's flag (never downgraded: a next hop without
    SMTPUTF8 bounces it with 5.6.7); ``ret`` and ``envid`` RFC 3461's RET (``FULL``/``HDRS``,
    "" when not given) and ENVID (decoded from xtext); ``requiretls`` RFC 8689's REQUIRETLS.
    """

    body: str = BODY_7BIT
    smtputf8: bool = False
    ret: str = ""
    envid: str = ""
    requiretls: bool = False


@dataclass(frozen=True)
class RecipientOptions:
    """RFC 3461 per recipient: ``notify`` the NOTIFY values (``()`` when not given, which
    means FAILURE and DELAY, 4.1), ``orcpt`` the ORCPT as ``type;address`` decoded from xtext
    ("" when not given)."""

    notify: tuple[str, ...] = ()
    orcpt: str = ""

    def wants(self, what: str) -> bool:
        """Does the sender want a notification of ``what`` (SUCCESS, FAILURE, DELAY)?"""
        if not self.notify:
            return what in ("FAILURE", "DELAY")
        return what in self.notify


@dataclass(frozen=True)
class Envelope:
    """Who a message is from and where each of its recipients leads (RFC 5321 2.3.1).

    ``routes`` are resolved already (``routing.Router``): local users with the folder their
    address asks for, and remote addresses for the relay queue. ``junk`` names users whose
    copy a filter judged spam; ``quota_usage`` is what each local user held when the recipient
    was accepted, and their quota (user -> (bytes, bytes)), for the 90% warning. ``options``
    and ``recipient_options`` are the ESMTP parameters that travel with the message (BODY,
    SMTPUTF8, DSN, REQUIRETLS).
    """

    sender: str | None  # the reverse path; None for the null sender (bounces, notices)
    routes: tuple[Route, ...]
    junk: frozenset[str] = frozenset()
    quota_usage: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    options: MessageOptions = MessageOptions()
    # RFC 3461 options per route address (``Route.address``), from the RCPT it came from
    recipient_options: Mapping[str, RecipientOptions] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """What ``submit`` promises once it fires: the message is durable under ``queue_id``;
    ``queued`` when some copy still waits for a delivery thread or the relay queue, False when
    every copy is in its mailbox already."""

    queue_id: str
    queued: bool


class SubmissionError(Exception):
    """The message could not be made durable; nothing was acknowledged (say 4xx)."""


class ISubmission(Interface):
    """The one durable hand-off of a message (DESIGN, "the path of a message")."""

    def open():
        """A new ``IncomingMessage`` to write the message into (``write``), in the spool."""

    def submit(envelope, message):
        """Deferred[Receipt]: make ``message`` (from ``open``, fully written) durable for every
        route of ``envelope``; fires with its ``Receipt`` once it is (file and record fsync'd,
        DESIGN invariant 1) — the moment to say ``250``. Fails (``SubmissionError`` or the
        disk's ``OSError``) when it isn't: nothing is then delivered or queued. Local copies
        reach their mailboxes now or, acknowledged in the spool, a moment later; either way
        the message's file belongs to delivery from here on."""

    def submit_bytes(envelope, data):
        """Deferred[Receipt]: ``submit`` for a message the server wrote itself (a DSN, a notice)."""
