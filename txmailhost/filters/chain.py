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

import inspect
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from txmailhost.delivery.incoming import prefixed
from txmailhost.filters.deadlines import Deadlines
from txmailhost.filters.fairness import ClientSlots, client_key
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
        if "\n" not in value and "\r" not in value:  # one line (most values): no split
            out.append(f"{name}: {value.strip()}\r\n")
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


NOTHING_TO_DO = Decision()  # a stage no filter took part in: nothing refused or added


class FilterChain:
    """The configured filters, with the reactor and pool they run on, and their budget."""

    def __init__(
        self,
        filters: list[Any],
        reactor: Any,
        pool: Any,
        timeout: float = 30.0,
        on_error: str = "tempfail",
        per_client: int = 4,
        slots: ClientSlots | None = None,
    ) -> None:
        for candidate in filters:
            if not IMessageFilter.providedBy(candidate):
                raise TypeError(f"{candidate!r} does not provide IMessageFilter")
        self.filters = list(filters)
        self._at = {stage: [f for f in self.filters if stage in f.stages] for stage in STAGES}
        self._reactor = reactor
        self._pool = pool
        self.timeout = timeout
        self._deadlines = Deadlines(reactor, timeout)
        self.on_error = on_error
        # how many of the threads one client's checks may hold at once (fairness.py)
        self.slots = slots if slots is not None else ClientSlots(per_client)

    def asks(self, stage: str) -> bool:
        """Does any filter take part in ``stage`` (a key of ``STAGES``)?"""
        return bool(self._at[stage])

    async def connect(self, client: Client) -> Decision:
        return await self._stage("connect", client, lambda f: f.connect(client), ())

    async def helo(self, client: Client, name: str) -> Decision:
        return await self._stage("helo", client, lambda f: f.helo(client, name), ())

    async def mail_from(self, client: Client, sender: str | None) -> Decision:
        return await self._stage("mail", client, lambda f: f.mail_from(client, sender), ())

    async def rcpt_to(self, client: Client, transaction: Transaction, recipient: str) -> Decision:
        return await self._stage(
            "rcpt", client, lambda f: f.rcpt_to(client, transaction, recipient), (recipient,)
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

        return await self._stage("data", client, ask, transaction.recipients, added)

    async def _stage(
        self,
        stage: str,
        client: Client,
        ask: Callable[[Any], Any],
        recipients: tuple[str, ...],
        fields: list[tuple[str, str]] | None = None,
    ) -> Decision:
        """``fields``, when given, is filled as the filters answer (``end_of_data`` shows each
        filter what the earlier ones added). Consecutive blocking filters are asked in one
        trip to the pool (``_Batch``): a trip costs two thread wake-ups, which on a busy
        machine cost more than mail authentication's checks themselves."""
        filters = [f for f in self._at[stage] if not _skips(f, client)]
        if not filters:
            return NOTHING_TO_DO  # every filter skipped this client, or none takes the stage
        combined = _Combined(recipients, [] if fields is None else fields)
        index = 0
        while index < len(filters):
            if filters[index].blocking:
                group = [filters[index]]
                while index + len(group) < len(filters) and filters[index + len(group)].blocking:
                    group.append(filters[index + len(group)])
                answered = await self._ask_blocking(group, stage, ask, combined, client)
            else:
                candidate = filters[index]
                started = time.monotonic()
                verdict = await self._ask(candidate, stage, ask)
                metrics.filter_observed(candidate.name, stage, time.monotonic() - started, verdict)
                combined.take(verdict)
                answered = [(candidate, verdict)]
            for candidate, verdict in answered:
                if verdict.action is not Action.ACCEPT:
                    log.info(
                        "filters: {filter} at {stage}: {action} {reason}",
                        filter=candidate.name,
                        stage=stage,
                        action=verdict.action.value,
                        reason=verdict.reason,
                    )
            if combined.refusal is not None:
                break
            index += len(answered)
        return combined.decision()

    def _fallback(self) -> Verdict:
        """What a filter that failed or overran gets (``on_error``)."""
        if self.on_error == "accept":
            return ACCEPT
        return Verdict.tempfail("content check unavailable, try again later")

    def _log_failure(self, candidate: Any, stage: str, seconds: float, error: Any) -> None:
        log.error(
            "filters: {filter} failed at {stage} after {seconds:.1f}s ({error}): {default} instead",
            filter=getattr(candidate, "name", repr(candidate)),
            stage=stage,
            seconds=seconds,
            error=repr(error),
            default=self.on_error,
        )

    async def _ask(self, candidate: Any, stage: str, ask: Callable[[Any], Any]) -> Verdict:
        """A filter that doesn't block, on the reactor thread, within its time budget."""
        started = time.monotonic()
        try:
            verdict = ask(candidate)
            if inspect.iscoroutine(verdict):
                verdict = Deferred.fromCoroutine(verdict)
            if isinstance(verdict, Deferred):
                # Only an answer still to come is watched (a synchronous one costs nothing);
                # one timer watches them all (``deadlines.py``).
                verdict = await self._deadlines.watch(verdict)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"returned {verdict!r}, not a Verdict")
            return verdict
        except Exception as e:
            self._log_failure(candidate, stage, time.monotonic() - started, e)
            return self._fallback()

    async def _ask_blocking(
        self,
        group: list[Any],
        stage: str,
        ask: Callable[[Any], Any],
        combined: _Combined,
        client: Client,
    ) -> list[tuple[Any, Verdict]]:
        """``_run_blocking`` once one of the client's slots is free (``fairness.py``): a client
        with ``per_client`` batches in the threads waits for one of them to end, within the
        budget: the budget runs from when the message asked, as for a free thread."""
        key = client_key(client.address)
        started = self._reactor.seconds()
        waiter = self.slots.acquire(key, first=stage != "data")
        if not waiter.called:
            try:
                await waiter.addTimeout(self.timeout, self._reactor)
            except DeferredTimeout:
                seconds = self._reactor.seconds() - started
                error = TimeoutError(
                    f"no free thread within {self.timeout:g}s: {self.slots.per_client} checks"
                    f" of {key}'s mail still running"
                )
                return [self._given_up(group[0], stage, seconds, error, combined)]
        return await self._run_blocking(group, stage, ask, combined, key, started)

    async def _run_blocking(
        self,
        group: list[Any],
        stage: str,
        ask: Callable[[Any], Any],
        combined: _Combined,
        key: str,
        asked_at: float,
    ) -> list[tuple[Any, Verdict]]:
        """Blocking filters asked in order in one worker thread, each within its own
        ``timeout`` as if asked alone: the first's budget starts when the message asked
        (``asked_at``), each next one's when the one before answered. A reactor timer watches
        the budgets (it fires only when one is spent); a filter past its budget gets
        ``on_error`` and its thread is left to finish, its answer and the rest of the group
        ignored — the filters after it are asked anew.
        A batch still waiting for a thread when its budget ends asks nothing once it gets one:
        with the threads held up by a slow check, the checks queued behind it would otherwise
        all run late for sessions already answered."""
        batch = _Batch(group, self.timeout, self._reactor.seconds, self._fallback())
        batch.budget_from = asked_at
        pending = self.slots.run_held(key, self._reactor, self._pool, batch.run, ask, combined)
        watchdog = None

        def watch() -> None:
            nonlocal watchdog
            deadline = batch.overran_or_deadline()
            if deadline is None:
                pending.cancel()
            elif deadline > 0:
                watchdog = self._reactor.callLater(
                    max(0.0, deadline - self._reactor.seconds()), watch
                )

        if not pending.called:
            watchdog = self._reactor.callLater(
                max(0.0, asked_at + self.timeout - self._reactor.seconds()), watch
            )
        crashed = None
        try:
            await pending
        except CancelledError as e:
            if batch.overran is None:  # not the watchdog: the session went away
                crashed = e
        except Exception as e:  # the batch itself failed: not a filter's doing
            crashed = e
        finally:
            if watchdog is not None and watchdog.active():
                watchdog.cancel()
        answered = batch.close()
        for candidate, verdict, seconds, error in answered:
            if error is not None:
                self._log_failure(candidate, stage, seconds, error)
            metrics.filter_observed(candidate.name, stage, seconds, verdict)
        result = [(candidate, verdict) for candidate, verdict, _seconds, _error in answered]
        if (batch.overran is not None or crashed is not None) and len(answered) < len(group):
            seconds = self._reactor.seconds() - batch.budget_from
            error = crashed or TimeoutError(f"no verdict within {self.timeout:g}s")
            result.append(self._given_up(group[len(answered)], stage, seconds, error, combined))
        return result

    def _given_up(
        self, late: Any, stage: str, seconds: float, error: BaseException, combined: _Combined
    ) -> tuple[Any, Verdict]:
        """A blocking filter that got no thread, or no verdict, in time: logged, counted
        and given ``on_error``."""
        self._log_failure(late, stage, seconds, error)
        fallback = self._fallback()
        metrics.filter_observed(late.name, stage, seconds, fallback)
        combined.take(fallback)
        return late, fallback


def _skips(candidate: Any, client: Client) -> bool:
    """The filter's own word that it has nothing to do for this client (``skips``); a
    failure there is the filter's, so it is asked as usual and its hook decides."""
    skips = getattr(candidate, "skips", None)
    if skips is None:
        return False
    try:
        return bool(skips(client))
    except Exception:
        log.failure("filters: {filter}.skips failed", filter=getattr(candidate, "name", "?"))
        return False


class _Combined:
    """The verdicts of one stage added up as the module docstring says. Filled on the
    reactor thread, or by the worker thread of a ``_Batch`` while the reactor awaits it."""

    def __init__(self, recipients: tuple[str, ...], fields: list[tuple[str, str]]) -> None:
        self.recipients = recipients
        self.fields = fields
        self.remove: list[tuple[str, int]] = []
        self.junk: set[str] = set()
        self.junk_all = False
        self.dropped: set[str] = set()
        self.refusal: Verdict | None = None

    def take(self, verdict: Verdict) -> bool:
        """Add ``verdict``; True when it ends the stage (a refusal for everyone)."""
        self.fields.extend(verdict.headers)
        self.remove.extend(verdict.remove)
        remaining = set(self.recipients) - self.dropped
        named = remaining if verdict.recipients is None else remaining & verdict.recipients
        if verdict.action is Action.TEMPFAIL:
            self.refusal = verdict
            return True
        if verdict.action is Action.REJECT:
            if verdict.recipients is None or named >= remaining:
                self.refusal = verdict
                return True
            self.dropped |= named
        if verdict.action is Action.JUNK:
            self.junk |= named
            self.junk_all = self.junk_all or (verdict.recipients is None and not self.recipients)
        return False

    def decision(self) -> Decision:
        if self.refusal is not None:
            return Decision(refusal=self.refusal)
        return Decision(None, tuple(self.fields), frozenset(self.junk), self.junk_all,
                        frozenset(self.dropped), tuple(dict.fromkeys(self.remove)))  # fmt: skip


class _Batch:
    """Consecutive blocking filters of one stage, run in order by one worker thread.

    The worker and the reactor's watchdog share ``answered`` and ``overran`` under a lock:
    once the reactor has taken the batch back (``close``), or a filter overran its budget,
    nothing the worker learns afterwards counts."""

    def __init__(
        self, group: list[Any], timeout: float, now: Callable[[], float], fallback: Verdict
    ) -> None:
        self.group = group
        self.timeout = timeout
        self.now = now
        self.fallback = fallback
        self.lock = threading.Lock()
        self.answered: list[tuple[Any, Verdict, float, BaseException | None]] = []
        self.budget_from = 0.0  # when the running filter's budget started
        self.overran: int | None = None  # the index of the filter that overran
        self.closed = False

    def run(self, ask: Callable[[Any], Any], combined: _Combined) -> None:
        for candidate in self.group:
            with self.lock:  # taken back while it waited for a thread: its session moved on
                if self.closed or self.overran is not None:
                    return
            error: BaseException | None = None
            try:
                verdict = ask(candidate)
                if not isinstance(verdict, Verdict):
                    raise TypeError(f"returned {verdict!r}, not a Verdict")
            except Exception as e:
                verdict, error = self.fallback, e
            with self.lock:
                if self.closed or self.overran is not None:
                    return
                ended = self.now()
                seconds = ended - self.budget_from
                if seconds >= self.timeout:  # past its budget: as if the watchdog had fired
                    self.overran = len(self.answered)
                    return
                self.answered.append((candidate, verdict, seconds, error))
                self.budget_from = ended
                if combined.take(verdict):
                    return

    def overran_or_deadline(self) -> float | None:
        """For the watchdog: None when the running filter is past its budget (it is marked
        overran), else when its budget ends (0: the batch is done)."""
        with self.lock:
            if self.closed or len(self.answered) == len(self.group):
                return 0
            deadline = self.budget_from + self.timeout
            if self.now() >= deadline:
                self.overran = len(self.answered)
                return None
            return deadline

    def close(self) -> list[tuple[Any, Verdict, float, BaseException | None]]:
        """The filters that answered in time; the worker's later answers are ignored."""
        with self.lock:
            self.closed = True
            return list(self.answered)


def transaction_of(
    sender: str | None, recipients: Iterable[str], queue_id: str = ""
) -> Transaction:
    """A ``Transaction`` from the SMTP session's envelope."""
    return Transaction(sender, tuple(recipients), queue_id)
