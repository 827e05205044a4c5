"""``MessageFilter``: a filter that accepts everything, for filter writers to subclass."""

from __future__ import annotations

from typing import BinaryIO

from zope.interface import implementer

from txmailhost.filters.interfaces import (
    ACCEPT,
    STAGES,
    Client,
    IMessageFilter,
    Transaction,
    Verdict,
)


@implementer(IMessageFilter)
class MessageFilter:
    """Override the stages you look at; the others accept. Set ``blocking = True`` when your
    hooks do I/O or heavy work synchronously (they then run in a worker thread)."""

    name = "filter"
    blocking = False

    @property
    def stages(self) -> frozenset[str]:
        """The stages whose hook this class overrides (the others accept without asking)."""
        mine = type(self)
        return frozenset(
            stage
            for stage, hook in STAGES.items()
            if getattr(mine, hook) is not getattr(MessageFilter, hook)
        )

    def skips(self, client: Client) -> bool:
        return False

    def connect(self, client: Client) -> Verdict:
        return ACCEPT

    def helo(self, client: Client, name: str) -> Verdict:
        return ACCEPT

    def mail_from(self, client: Client, sender: str | None) -> Verdict:
        return ACCEPT

    def rcpt_to(self, client: Client, transaction: Transaction, recipient: str) -> Verdict:
        return ACCEPT

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Verdict:
        return ACCEPT
