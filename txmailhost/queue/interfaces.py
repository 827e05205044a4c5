"""What the queue needs from whoever carries mail to another server (the relay package).

The queue knows envelopes, schedules and bounces; it knows nothing of MX records or SMTP
replies on the wire. A courier takes one message for the recipients of one destination domain
and says, per recipient, whether it was delivered, failed for now, or failed for good —
the split chasquid makes between its queue and its courier.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from zope.interface import Interface

from txmailhost.delivery.interfaces import (
    BODY_BINARYMIME,
    MessageOptions,
    RecipientOptions,
)

__all__ = ["BODY_BINARYMIME", "MessageOptions", "RecipientOptions"]


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # 4xx, timeouts, DNS trouble: try again later
    PERMANENT = "permanent"  # 5xx, null MX: bounce this recipient


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One recipient's fate in one attempt.

    ``status`` is the enhanced status code (RFC 3463) that goes into a DSN's ``Status:``;
    ``diagnostic`` the remote server's reply as it was received (``Diagnostic-Code: smtp;``)
    or our own explanation; ``remote_mta`` the host that gave it (``Remote-MTA: dns;``).
    """

    outcome: Outcome
    status: str
    diagnostic: str
    remote_mta: str = ""
    # Delivered to a server that doesn't offer DSN: a NOTIFY=SUCCESS is answered by us with
    # "Action: relayed" (RFC 3461 6.2.3), since no one further on will.
    relayed: bool = False

    @classmethod
    def delivered(cls, reply: str, remote_mta: str) -> DeliveryResult:
        return cls(Outcome.DELIVERED, "2.0.0", reply, remote_mta)

    @classmethod
    def temporary(cls, status: str, diagnostic: str, remote_mta: str = "") -> DeliveryResult:
        return cls(Outcome.TEMPORARY, status, diagnostic, remote_mta)

    @classmethod
    def permanent(cls, status: str, diagnostic: str, remote_mta: str = "") -> DeliveryResult:
        return cls(Outcome.PERMANENT, status, diagnostic, remote_mta)


class ICourier(Interface):
    """Carries one message to the servers of one destination domain."""

    def deliver(
        sender: str | None,
        recipients: list[str],
        message_path: str,
        domain: str,
        age: float,
        options: MessageOptions | None = None,
        recipient_options: dict[str, RecipientOptions] | None = None,
    ) -> Deferred[dict[str, DeliveryResult]]:
        """Attempt delivery to ``recipients`` (all in ``domain``); fires with a result for each.

        ``age`` is how long the message has been queued (seconds), for rules that turn a
        temporary condition permanent after a while (a domain that keeps not existing).
        ``options`` and ``recipient_options`` are the sender's ESMTP wishes (BODY, SMTPUTF8,
        DSN, REQUIRETLS), which the courier passes on or refuses to deliver without.
        Never errbacks for a delivery problem: failures are results.
        """


class NotQueued(FileNotFoundError):
    """No message with that queue id: a FileNotFoundError, as the spool's own reads raise, so
    a caller written for either backend catches one error."""


class IQueueRecords(Interface):
    """What the admin CLI and the web console read from the queue, and how they ask for a
    change: the seam between them and where the queue is kept (``spool.Spool``: files under
    ``DATA/queue``; ``postgres.PostgresQueueStore``: the shared database). Blocking: callers
    run these in a thread pool (the CLI simply blocks)."""

    def ids() -> list[str]:
        """Queue ids of every queued message, oldest first."""

    def load(queue_id: str) -> object:
        """The message's ``spool.Envelope``; raises ``NotQueued`` (or FileNotFoundError)."""

    def envelopes() -> list[object]:
        """Every queued message's envelope, oldest first (one that can't be read is left
        out: the server owns it)."""

    def header(queue_id: str) -> bytes:
        """The message's header section; raises ``NotQueued`` (or FileNotFoundError)."""

    def request(kind: str, queue_id: str | None = None) -> object:
        """Ask for ``flush`` or, for one message, ``retry``, ``delete``, ``bounce``, ``hold``,
        ``release`` or ``requeue``. The spool leaves a request the running server applies
        within a second; the database applies it at once for every node's runner."""


class IRelayQueue(Interface):
    """The relay queue as the server uses it: ``txmailhost.delivery`` submits to it, the
    service starts and stops it. ``scheduler.Queue`` (over the file spool) and
    ``claims.SharedQueue`` (over PostgreSQL, several nodes) implement it."""

    def submit(
        sender: str | None,
        recipients: list[str],
        source_path: str,
        queue_id: str | None = None,
        options: MessageOptions | None = None,
        recipient_options: object = None,
    ) -> Deferred[str]:
        """Queue a copy of the fsync'd ``source_path``; fires with its queue id once it is
        durable (the SMTP server's 250 follows)."""

    def start() -> Deferred[None]:
        """Begin delivering (a runner) or only accept submissions."""

    def stop() -> None:
        """Stop starting deliveries; those in flight finish and are recorded."""

    def adopt(queue_id: str) -> Deferred[None]:
        """A message was queued by another worker process: look at it now."""

    def envelopes() -> list[object]:
        """The queued messages' envelopes as last known here (metrics), without blocking."""
