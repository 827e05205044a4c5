"""What a content filter is: ``IMessageFilter``, the facts it is shown and the ``Verdict`` it gives.

The stages are the SMTP dialogue's, as in the milter protocol and aiosmtpd's handler hooks:
connect, HELO/EHLO, MAIL, RCPT and the end of data. At each a filter answers with a verdict
shaped like rspamd's reply (an action, a reason, header fields to add) — accept, add header
fields, deliver to Junk, tempfail (4xx) or reject (5xx) — and may name the recipients it
applies to. Every hook is declared here, and a filter implements them all (``MessageFilter``
in ``base.py`` accepts everything, so a filter overrides only its stages): nothing is found
by method name.

A filter whose ``blocking`` is true is called in a worker thread (it may use a socket, a
subprocess, a slow library); otherwise on the reactor thread, where it must return at once or
return a Deferred. Either way the chain gives it ``[filters] timeout`` seconds per stage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from zope.interface import Attribute, Interface


class Action(enum.Enum):
    ACCEPT = "accept"  # go on (header fields, if any, are added)
    JUNK = "junk"  # accept, into the recipients' Junk folder
    TEMPFAIL = "tempfail"  # 4xx: the client keeps the message and retries later
    REJECT = "reject"  # 5xx: refused for good


@dataclass(frozen=True)
class Verdict:
    """A filter's answer at one stage.

    ``headers`` are (name, value) fields to add at the top of the message; ``reason`` is the
    text of the reply for TEMPFAIL/REJECT (and is logged for JUNK); ``recipients`` limits a
    JUNK or REJECT to some recipients (addresses as accepted at RCPT), None meaning all.
    After DATA, SMTP has one reply for all recipients: a REJECT for some of them drops them
    quietly (milter's ``delrcpt``) and the rest are accepted; a TEMPFAIL is for everyone.
    """

    action: Action = Action.ACCEPT
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    recipients: frozenset[str] | None = None
    # At the end of data: fields of the message as the client sent it to delete, as (name,
    # n): the n-th field of that name, counting from 1 (milter's chgheader index). Our own
    # trace fields on top are not counted. E.g. an Authentication-Results claiming our name.
    remove: tuple[tuple[str, int], ...] = ()
    # A REJECT's SMTP reply code when not the default 550 (554 for a virus, "transaction
    # failed", RFC 5321 4.2.3); the enhanced code stays 5.7.1.
    code: int = 0

    @classmethod
    def accept(
        cls, headers: tuple[tuple[str, str], ...] = (), remove: tuple[tuple[str, int], ...] = ()
    ) -> Verdict:
        return cls(Action.ACCEPT, headers=headers, remove=remove)

    @classmethod
    def junk(
        cls,
        reason: str = "",
        recipients: frozenset[str] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        remove: tuple[tuple[str, int], ...] = (),
    ) -> Verdict:
        return cls(Action.JUNK, reason, headers, recipients, remove)

    @classmethod
    def tempfail(cls, reason: str) -> Verdict:
        return cls(Action.TEMPFAIL, reason)

    @classmethod
    def reject(
        cls, reason: str, recipients: frozenset[str] | None = None, code: int = 0
    ) -> Verdict:
        if code and code not in (550, 554):
            raise ValueError("a filter's refusal is 550 or 554")
        return cls(Action.REJECT, reason, (), recipients, code=code)


ACCEPT = Verdict()

# The stages, in dialogue order, and the hook each one calls.
STAGES = {
    "connect": "connect",
    "helo": "helo",
    "mail": "mail_from",
    "rcpt": "rcpt_to",
    "data": "end_of_data",
}


@dataclass(frozen=True)
class Client:
    """What is known of the SMTP client when a hook runs."""

    address: str  # its IP address
    # its forward-confirmed reverse DNS name (reversedns.py): "" when it has none, None when
    # it wasn't looked up (loopback, private, [smtp] reverse_dns off) or DNS didn't answer
    reverse_name: str | None = None
    helo: str | None = None  # the name it gave in HELO/EHLO
    tls: bool = False  # the session is encrypted (STARTTLS or implicit TLS)
    authenticated_as: str | None = None  # the user logged in with AUTH
    listener: str = "smtp"  # which listener ("smtp", "submission", "submissions")


@dataclass(frozen=True)
class Transaction:
    """The envelope as a filter sees it: the reverse path and the accepted recipients."""

    sender: str | None  # None for the null sender <>
    recipients: tuple[str, ...]
    queue_id: str = ""


class IMessageFilter(Interface):
    """One filter of the chain (``chain.py``). Each hook returns a ``Verdict``, or a Deferred
    of one when ``blocking`` is false and the answer takes a while."""

    name = Attribute("A short name for logs and the reason of a failure.")
    blocking = Attribute("True: the hooks block (I/O, CPU) and run in a worker thread.")
    stages = Attribute(
        "The stages whose hooks do something, among STAGES: the chain asks only those (a "
        "stage no filter takes part in costs the session nothing)."
    )

    def skips(client):
        """True when this filter has nothing to do for ``client`` (e.g. an exempt network,
        an authenticated user): asked on the reactor thread before each stage, so a blocking
        filter with nothing to do costs no trip to the thread pool. Optional: a filter
        without this method is always asked."""

    def connect(client):
        """A client connected (before the greeting); a refusal closes the connection."""

    def helo(client, name):
        """HELO/EHLO ``name``."""

    def mail_from(client, sender):
        """MAIL FROM; ``sender`` is None for the null reverse path."""

    def rcpt_to(client, transaction, recipient):
        """RCPT TO ``recipient``; ``transaction`` holds the recipients accepted so far.
        A JUNK verdict marks this recipient's copy."""

    def end_of_data(client, transaction, message):
        """The whole message is in: ``message`` is a read-only binary stream of it, as it
        will be stored (our Received: field on top). Read what you need; don't close it."""
