"""``FilterChain``: runs the configured filters at each SMTP stage and combines their verdicts.

Filters are asked in order. A TEMPFAIL, or a REJECT for every recipient, ends the stage at
once (later filters are not asked); header fields and Junk marks add up; a REJECT for some
recipients drops those. A filter that raises, returns something that isn't a ``Verdict`` or
takes longer than ``timeout`` gets the ``on_error`` verdict instead — ``tempfail`` by default,
so the client keeps the message and tries again: a failing filter never loses mail — and a
log line. A blocking filter runs in ``pool`` (DESIGN invariant 3); a thread that overruns its
time is left to finish on its own, its answer ignored.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from twisted.internet import threads
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from txmailhost.delivery.incoming import prefixed
from txmailhost.filters.interfaces import (
    ACCEPT,
    STAGES,
    Action,
    Client,
    IMessageFilter,
    Transaction,
    Verdict,
)
from txmailhost.ops import metrics

log = Logger()

_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 2.2: printable ASCII but the colon


def render_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """Header fields as they go into the message: ``Name: value`` CRLF, a value's own line
    breaks turned into folding (RFC 5322 2.2.3), so no filter can end the header section or
    smuggle a line of its own. A field with an impossible name is left out (and logged)."""
    out = []
    for name, value in fields:
        if not _FIELD_NAME.fullmatch(name):
            log.warn("filters: header field name {name!r} is not valid: left out", name=name)
            continue
        lines = [line.strip() for line in re.split(r"\r\n|\r|\n", value)]
        out.append(f"{name}: " + "\r\n\t".join(line for line in lines if line) + "\r\n")
    return "".join(out).encode("utf-8")


@dataclass(frozen=True)
class Decision:
    """The chain's combined answer at one stage.

    ``refusal`` (TEMPFAIL or REJECT) is for the whole stage; ``fields`` are header fields to
    add; ``junk`` and ``dropped`` are recipients whose copy goes to Junk, or who are refused
    while the others go on; ``junk_all`` sends every copy to Junk (a JUNK before any RCPT).
    """

    refusal: Verdict | None = None
    fields: tuple[tuple[str, str], ...] = ()
    junk: frozenset[str] = frozenset()
    junk_all: bool = False
    dropped: frozenset[str] = field(default_factory=frozenset)
    remove: tuple[tuple[str, int], ...] = ()  # fields of the client's message to delete


class FilterChain:
    """The configured filters, with the reactor and pool they run on, and their budget."""

    def __init__(
        self,
        filters: list[Any],
        reactor: Any,
        pool: Any,
        timeout: float = 30.0,
        on_error: str = "tempfail",
    ) -> None:
        for candidate in filters:
            if not IMessageFilter.providedBy(candidate):
                raise TypeError(f"{candidate!r} does not provide IMessageFilter")
        self.filters = list(filters)
        self._at = {stage: [f for f in self.filters if stage in f.stages] for stage in STAGES}
        self._reactor = reactor
        self._pool = pool
        self.timeout = timeout
        self.on_error = on_error

    def asks(self, stage: str) -> bool:
        """Does any filter take part in ``stage`` (a key of ``STAGES``)?"""
        return bool(self._at[stage])

    async def connect(self, client: Client) -> Decision:
        return await self._stage("connect", lambda f: f.connect(client), ())

    async def helo(self, client: Client, name: str) -> Decision:
        return await self._stage("helo", lambda f: f.helo(client, name), ())

    async def mail_from(self, client: Client, sender: str | None) -> Decision:
        return await self._stage("mail", lambda f: f.mail_from(client, sender), ())

    async def rcpt_to(self, client: Client, transaction: Transaction, recipient: str) -> Decision:
        return await self._stage(
            "rcpt", lambda f: f.rcpt_to(client, transaction, recipient), (recipient,)
        )

    async def end_of_data(
        self, client: Client, transaction: Transaction, open_message: Callable[[], BinaryIO]
    ) -> Decision:
        """``open_message`` gives each filter a fresh read-only stream of the message (opened
        where the filter runs: a blocking filter's thread opens its own), with the header
        fields the filters before it added on top, as they will be delivered: the spam score
        then sees mail authentication's ``Authentication-Results:`` (RFC 8601 2.2 puts ours
        first, above any the client brought)."""
        added: list[tuple[str, str]] = []

        def ask(f: Any) -> Any:
            stream = open_message()
            if added:
                stream = prefixed(render_fields(added), stream)
            try:
                answer = f.end_of_data(client, transaction, stream)
            except BaseException:
                stream.close()
                raise
            if isinstance(answer, Deferred):
                return answer.addBoth(lambda result: (stream.close(), result)[1])
            stream.close()
            return answer

        return await self._stage("data", ask, transaction.recipients, added)

    async def _stage(
        self,
        stage: str,
        ask: Callable[[Any], Any],
        recipients: tuple[str, ...],
        fields: list[tuple[str, str]] | None = None,
    ) -> Decision:
        """``fields``, when given, is filled as the filters answer (``end_of_data`` shows each
        filter what the earlier ones added)."""
        fields = [] if fields is None else fields
        remove: list[tuple[str, int]] = []
        junk: set[str] = set()
        junk_all = False
        dropped: set[str] = set()
        for candidate in self._at[stage]:
            verdict = await metrics.filter_verdict(
                candidate.name, stage, self._ask(candidate, stage, ask)
            )
            fields.extend(verdict.headers)
            remove.extend(verdict.remove)
            remaining = set(recipients) - dropped
            named = remaining if verdict.recipients is None else remaining & verdict.recipients
            if verdict.action is Action.TEMPFAIL:
                return Decision(refusal=verdict)
            if verdict.action is Action.REJECT:
                if verdict.recipients is None or named >= remaining:
                    return Decision(refusal=verdict)
                dropped |= named
            if verdict.action is Action.JUNK:
                junk |= named
                junk_all = junk_all or (verdict.recipients is None and not recipients)
            if verdict.action is not Action.ACCEPT:
                log.info(
                    "filters: {filter} at {stage}: {action} {reason}",
                    filter=candidate.name,
                    stage=stage,
                    action=verdict.action.value,
                    reason=verdict.reason,
                )
        return Decision(None, tuple(fields), frozenset(junk), junk_all, frozenset(dropped),
                        tuple(dict.fromkeys(remove)))  # fmt: skip

    async def _ask(self, candidate: Any, stage: str, ask: Callable[[Any], Any]) -> Verdict:
        started = time.monotonic()
        try:
            if candidate.blocking:
                pending = threads.deferToThreadPool(self._reactor, self._pool, ask, candidate)
            else:
                pending = maybeDeferred(ask, candidate)
            pending.addTimeout(self.timeout, self._reactor)
            verdict = await pending
            if not isinstance(verdict, Verdict):
                raise TypeError(f"returned {verdict!r}, not a Verdict")
            return verdict
        except Exception as e:
            log.error(
                "filters: {filter} failed at {stage} after {seconds:.1f}s ({error}):"
                " {default} instead",
                filter=getattr(candidate, "name", repr(candidate)),
                stage=stage,
                seconds=time.monotonic() - started,
                error=repr(e),
                default=self.on_error,
            )
            if self.on_error == "accept":
                return ACCEPT
            return Verdict.tempfail("content check unavailable, try again later")


def transaction_of(
    sender: str | None, recipients: Iterable[str], queue_id: str = ""
) -> Transaction:
    """A ``Transaction`` from the SMTP session's envelope."""
    return Transaction(sender, tuple(recipients), queue_id)
