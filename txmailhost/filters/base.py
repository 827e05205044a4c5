"""``MessageFilter``: a filter that accepts everything, for filter writers to subclass."""

from __future__ import annotations

from collections.abc import Iterable
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


def fields_named(header: bytes, names: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """Every field of ``header`` (a message's header section, as a filter reads it) whose name
    is one of ``names``, as ``(name, n)`` for ``Verdict.remove``: the n-th field of that name,
    counted as ``delivery.incoming.strip_fields`` counts them (a line that doesn't begin with
    white space starts a field). For a filter's own fields (``X-Spam-Status``,
    ``X-Virus-Scanned``): one the sender wrote would be read below ours as if we had written
    it (by a mail client, by Sieve's ``spamtest``/``virustest`` when ours is missing), so a
    filter that writes a field removes the sender's. Only for names no other filter writes:
    the stream a filter reads has the earlier filters' fields on top, which ``remove``
    doesn't count."""
    wanted = {name.lower(): name for name in names}
    end = header.find(b"\r\n\r\n")
    section = header if end < 0 else header[: end + 2]
    # Nearly every message has none of them: one search of the section for each name (a
    # field's name, less white space, stands in it as it is, ASCII lowering alike) spares
    # taking apart each of its lines (forty calls for the throughput bench's message, of
    # the some 380 the spam filter adds to the server's work a message).
    lowered = section.lower()
    for name in wanted:
        if not name.isascii() or name.encode("ascii") in lowered:
            break
    else:
        return ()
    seen: dict[str, int] = {}
    found = []
    for line in section.split(b"\r\n"):
        if not line or line[:1] in (b" ", b"\t"):
            continue
        name = line.partition(b":")[0].strip().decode("ascii", "replace").lower()
        if name in wanted:
            seen[name] = seen.get(name, 0) + 1
            found.append((wanted[name], seen[name]))
    return tuple(found)
