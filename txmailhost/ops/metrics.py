"""The server's Prometheus metrics, and the one-line hooks that count them.

Every family is named ``txmailhost_*`` and lives in :data:`REGISTRY`, the server's own
registry (not prometheus_client's process-wide default, so an application embedding
txmailhost keeps its own metrics apart). The protocol modules call the small functions below
at the one place each event already happens (the SMTP transaction's log line, the shared
``PasswordLogin``, the IMAP tagged reply, ``_safeio``'s fsync), so they stay readable and a
counter can't drift from the log line beside it. Values that exist anyway (queue length,
thread pool backlog) are read at scrape time instead, by ``exposition.py``.

Labels are kept to small, fixed sets so a hostile client can't grow the series without bound:
listener names, reply classes and RFC 3463 codes the server itself chose, IMAP verbs from the
command table, filter names from the config, and a *class* of destination domain (a handful
of big providers, else "other") rather than the domain itself.

This module imports nothing of txmailhost: every package may call it without an import cycle.
Each hook costs a dictionary lookup and a lock (prometheus_client's): 2-6 µs measured.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

T = TypeVar("T")

REGISTRY = CollectorRegistry(auto_describe=True)

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# -- connections (limits.py, around every listener) ------------------------------------------

CONNECTIONS_ACCEPTED = Counter(
    "txmailhost_connections_accepted",
    "TCP connections accepted, per listener.",
    ["listener"],
    registry=REGISTRY,
)
CONNECTIONS_REFUSED = Counter(
    "txmailhost_connections_refused",
    "TCP connections refused over [security] max_connections or max_connections_per_ip.",
    ["listener"],
    registry=REGISTRY,
)
CONNECTIONS_OPEN = Gauge(
    "txmailhost_connections_open",
    "TCP connections open now, per listener.",
    ["listener"],
    registry=REGISTRY,
    multiprocess_mode="livesum",  # worker processes (workers/): the living workers' sum
)

# -- SMTP and the message flow ---------------------------------------------------------------

SMTP_TRANSACTIONS = Counter(
    "txmailhost_smtp_transactions",
    "SMTP transactions ended by the reply to the end of data, by listener, reply class "
    "(2xx/4xx/5xx) and enhanced status code (RFC 3463).",
    ["listener", "reply_class", "enhanced"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "txmailhost_messages",
    "Messages by event: accepted (one per SMTP transaction answered 250), delivered (one per "
    "local mailbox copy), relayed (one per remote recipient delivered), bounced (one per "
    "recipient given up on).",
    ["event"],
    registry=REGISTRY,
)
MESSAGE_BYTES = Counter(
    "txmailhost_message_bytes",
    "Octets of the messages counted in txmailhost_messages_total, by the same events.",
    ["event"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "txmailhost_delivery_attempts",
    "Remote delivery attempts per recipient, by result (delivered, temporary, permanent) "
    "and destination domain class.",
    ["result", "domain_class"],
    registry=REGISTRY,
)

# -- logins (session/auth.py: every protocol's password login) -------------------------------

LOGINS = Counter(
    "txmailhost_logins",
    "Password logins by protocol and result (success, failure, throttled).",
    ["protocol", "result"],
    registry=REGISTRY,
)

# -- IMAP ------------------------------------------------------------------------------------

IMAP_COMMANDS = Counter(
    "txmailhost_imap_commands",
    "IMAP commands run, by name ('UID FETCH' apart from 'FETCH').",
    ["command"],
    registry=REGISTRY,
)
IMAP_COMMAND_SECONDS = Histogram(
    "txmailhost_imap_command_seconds",
    "Time from an IMAP command's parse to its tagged reply, by name.",
    ["command"],
    buckets=_FAST,
    registry=REGISTRY,
)
IMAP_REPLIES = Counter(
    "txmailhost_imap_replies",
    "Tagged IMAP replies by status (OK, NO, BAD).",
    ["status"],
    registry=REGISTRY,
)

# -- storage, pools, filters, reactor --------------------------------------------------------

FSYNC_SECONDS = Histogram(
    "txmailhost_fsync_seconds",
    "Duration of each fsync the server makes (the price of DESIGN invariant 1), by what was "
    "synced (file or directory).",
    ["kind"],
    buckets=_FAST,
    registry=REGISTRY,
)
FILTER_VERDICTS = Counter(
    "txmailhost_filter_verdicts",
    "Content filter verdicts by filter, SMTP stage and action.",
    ["filter", "stage", "action"],
    registry=REGISTRY,
)
FILTER_SECONDS = Histogram(
    "txmailhost_filter_seconds",
    "Time a content filter took at one SMTP stage.",
    ["filter", "stage"],
    buckets=_FAST,
    registry=REGISTRY,
)
ENGINE_FAILURES = Counter(
    "txmailhost_filter_engine_failures",
    "An outside engine (rspamd) not asked or not answering, by engine and why: down (refused,"
    " reset), timeout, error (a reply that isn't one), backoff (skipped after a recent failure).",
    ["engine", "reason"],
    registry=REGISTRY,
)
REVERSE_DNS = Counter(
    "txmailhost_smtp_reverse_dns",
    "Reverse DNS lookups of smtp clients at connect ([smtp] reverse_dns), by result: name (a"
    " forward-confirmed name), none (no name, or one that doesn't resolve back), unknown (DNS"
    " didn't answer in time), skipped (too many lookups under way).",
    ["result"],
    registry=REGISTRY,
)
REACTOR_LAG = Histogram(
    "txmailhost_reactor_lag_seconds",
    "How late a timer set for every second fired: time the reactor was busy elsewhere "
    "(DESIGN invariant 3 says it never blocks; this shows whether that holds).",
    buckets=_FAST,
    registry=REGISTRY,
)


# -- the hooks -------------------------------------------------------------------------------


def connection_accepted(listener: str) -> None:
    CONNECTIONS_ACCEPTED.labels(listener).inc()
    CONNECTIONS_OPEN.labels(listener).inc()


def connection_closed(listener: str) -> None:
    CONNECTIONS_OPEN.labels(listener).dec()


def connection_refused(listener: str) -> None:
    CONNECTIONS_REFUSED.labels(listener).inc()


_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, remembered: the client library looks the child up under
    a lock and checks the labels each time (~6 us; a dozen calls per message). It hands out
    the same child for the same labels, so keeping it changes nothing but the cost."""
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def smtp_transaction(listener: str, code: int, enhanced: str, size: int) -> None:
    """The reply to the end of data; a 2xx counts the message as accepted."""
    _child(SMTP_TRANSACTIONS, listener, f"{code // 100}xx", enhanced or "none").inc()
    if 200 <= code < 300:
        message("accepted", size)


def message(event: str, size: int, count: int = 1) -> None:
    """``count`` messages (or copies) of ``size`` octets each reached ``event``."""
    _child(MESSAGES, event).inc(count)
    _child(MESSAGE_BYTES, event).inc(max(0, size) * count)


def delivery_attempt(result: str, domain: str) -> None:
    DELIVERY_ATTEMPTS.labels(result, domain_class(domain)).inc()


def login(protocol: str, result: str) -> None:
    """``result``: success, failure or throttled."""
    LOGINS.labels(protocol, result).inc()


async def imap_command(name: str, running: Awaitable[T]) -> T:
    """Count and time one IMAP command: ``running`` is the coroutine that runs it."""
    started = time.perf_counter()
    try:
        return await running
    finally:
        # ``_child``: the names are COMMANDS' verbs only (an unknown one never runs)
        _child(IMAP_COMMANDS, name).inc()
        _child(IMAP_COMMAND_SECONDS, name).observe(time.perf_counter() - started)


def imap_reply(status: str) -> None:
    _child(IMAP_REPLIES, status).inc()


def fsync(fd: int, kind: str = "file") -> None:
    """``os.fsync(fd)``, timed."""
    started = time.perf_counter()
    os.fsync(fd)
    _child(FSYNC_SECONDS, kind).observe(time.perf_counter() - started)


async def filter_verdict(name: str, stage: str, asking: Awaitable[Any]) -> Any:
    """Time one filter at one stage; ``asking`` fires with its ``Verdict``."""
    started = time.perf_counter()
    verdict = await asking
    filter_observed(name, stage, time.perf_counter() - started, verdict)
    return verdict


def filter_observed(name: str, stage: str, seconds: float, verdict: Any) -> None:
    """One filter's verdict at one stage and the time it took (the chain measured it)."""
    _child(FILTER_SECONDS, name, stage).observe(max(0.0, seconds))
    action = getattr(verdict, "action", None)
    _child(FILTER_VERDICTS, name, stage, getattr(action, "value", str(action))).inc()


def engine_failure(engine: str, reason: str) -> None:
    """An outside engine gave no verdict for a message (the message went on without it)."""
    ENGINE_FAILURES.labels(engine, reason).inc()


def reverse_dns(result: str) -> None:
    """One smtp client's reverse DNS lookup came back (or was skipped) with ``result``."""
    REVERSE_DNS.labels(result).inc()


def reactor_lag(seconds: float) -> None:
    REACTOR_LAG.observe(max(0.0, seconds))


# Destination domains of the big mailbox providers, each a class of its own; every other
# domain is "other". Enough to see "Microsoft is deferring us" without a series per domain.
_PROVIDERS = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "outlook.com": "microsoft",
    "hotmail.com": "microsoft",
    "live.com": "microsoft",
    "msn.com": "microsoft",
    "yahoo.com": "yahoo",
    "ymail.com": "yahoo",
    "aol.com": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
    "gmx.de": "gmx",
    "gmx.net": "gmx",
    "web.de": "gmx",
    "mail.ru": "mailru",
    "yandex.ru": "yandex",
    "proton.me": "proton",
    "protonmail.com": "proton",
}


def domain_class(domain: str) -> str:
    """``google``, ``microsoft``, ... for the big providers (and their country variants such
    as hotmail.co.uk), else ``other``."""
    domain = domain.lower().rstrip(".")
    found = _PROVIDERS.get(domain)
    if found is not None:
        return found
    first = domain.split(".", 1)[0]
    for known, provider in _PROVIDERS.items():
        if known.split(".", 1)[0] == first and first not in ("mail", "me", "mac", "live", "web"):
            return provider
    return "other"
