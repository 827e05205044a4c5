"""The measurements: each suite runs one workload ``repeat`` times against a server and records.

A suite only talks to a ``Server`` (ports, pids, add_user, populate), so txmailhost and its
anchor run the very same code. Suites are generators that yield after each measured run: the
runner alternates servers run by run (txmailhost, Postfix, txmailhost, Postfix...), so a noisy
minute on a shared machine hurts both columns alike instead of one.

Fresh mailboxes are used where a figure depends on mailbox size (SMTP, memory), the same
populated ones where it should not (POP3 and IMAP, whose first session builds the server's
index and is therefore a warm-up, not measured).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import fsync_ceiling, imap_load, pop3_load, smtp_load
from bench.maildirs import MaildirWatch
from bench.memory import MemorySampler, status_kib, total_kib
from bench.results import MACHINE, Figure, Results
from bench.server import BENCH_DOMAIN, PASSWORD, Server
from bench.stats import percentile
from bench.workload import MiB, Workload

Suite = Callable[[Server, Workload, Results], Iterator[None]]

# (name, label, unit, higher is better); keys become "smtp.NAME@CONNECTIONS".
_SMTP_FIGURES = (
    ("accepted", "SMTP msgs/s accepted", "/s", True),
    ("delivered", "SMTP msgs/s delivered into the Maildir", "/s", True),
    ("data_p50", "SMTP DATA-to-250 p50", "ms", False),
    ("data_p99", "SMTP DATA-to-250 p99", "ms", False),
    ("txn_p99", "SMTP transaction p99", "ms", False),
    ("memory", "Peak server memory (PSS) during SMTP", "MiB", False),
    ("failed", "SMTP transactions refused or failed", "count", False),
)


def say(text: str) -> None:
    """Progress on stderr, so stdout carries only the final table."""
    print(text, file=sys.stderr, flush=True)


def fsync(workdir: Path, workload: Workload, results: Results) -> None:
    """The disk's fsync'd-create ceiling, at 1 writer and at ``fsync_writers`` concurrently."""
    for writers in (1, workload.fsync_writers):
        plural = "s" if writers > 1 else ""
        label = f"fsync'd 4 KiB file creates/s, {writers} writer{plural}"
        figure = Figure(f"fsync.creates@{writers}", label, "/s", True, MACHINE)
        for run in range(workload.repeat):
            rate = fsync_ceiling.measure(workdir, workload.fsync_seconds, writers)
            results.record(MACHINE, figure, rate)
            say(f"disk: {rate:.0f} fsync'd creates/s, {writers} writer{plural}, run {run + 1}")


def smtp(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Accepted and delivered msgs/s, latencies and memory, at each connection count."""
    if (server.submission_port if workload.auth else server.smtp_port) is None:
        return
    auth = _sender_account(server, workload, "smtp")
    # A warm-up so process spawning and first-time imports are not in run 1.
    server.add_user(f"smtp-warmup@{BENCH_DOMAIN}")
    _smtp_load(server, workload, "smtp-warmup", workload.warmup, max(workload.connections), auth)
    for conns in workload.connections:
        at = f"{conns} connection{'s' if conns > 1 else ''}"
        figures = {
            name: Figure(f"smtp.{name}@{conns}", f"{label}, {at}", unit, higher, "Postfix")
            for name, label, unit, higher in _SMTP_FIGURES
        }
        for run in range(workload.repeat):
            what = f"{server.name}: SMTP {at}, run {run + 1}"
            local = f"smtp-c{conns}-r{run}"
            maildir = server.add_user(f"{local}@{BENCH_DOMAIN}")
            with MemorySampler(server.pids) as sampler, MaildirWatch(maildir) as watch:
                started = time.perf_counter()
                result = _smtp_load(server, workload, local, workload.messages, conns, auth)
                landed = watch.wait_for(result.accepted, workload.delivery_timeout)
            delivered = result.accepted / (landed - started) if landed else math.nan
            if landed is None:
                results.problem(f"{what}: accepted messages missing from the Maildir")
            if result.failed:
                first = result.error_samples[0]
                results.problem(f"{what}: {result.failed} failed; first: {first}")
            values = {
                "accepted": result.rate,
                "delivered": delivered,
                "data_p50": percentile(result.data_latency, 50) * 1e3,
                "data_p99": percentile(result.data_latency, 99) * 1e3,
                "txn_p99": percentile(result.transaction_latency, 99) * 1e3,
                "memory": sampler.peak / 1024,
                "failed": result.failed,
            }
            for name, value in values.items():
                results.record(server.name, figures[name], value)
            say(f"{what}: {result.summary()}; delivered {delivered:.1f}/s")
            yield


def memory(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Memory growth while one large message goes through SMTP, and txmailhost's VmHWM."""
    if (server.submission_port if workload.auth else server.smtp_port) is None:
        return
    auth = _sender_account(server, workload, "memory")
    size = f"{workload.large_size / MiB:g} MiB"
    label = f"Server memory (PSS) growth during one {size} message"
    growth = Figure("memory.large", label, "MiB", False, "Postfix")
    label = f"SMTP transaction of one {size} message"
    seconds = Figure("memory.large_s", label, "s", False, "Postfix")
    for run in range(workload.repeat):
        what = f"{server.name}: one {size} message, run {run + 1}"
        maildir = server.add_user(f"large-r{run}@{BENCH_DOMAIN}")
        load = _smtp_workload(server, workload, f"large-r{run}", 1, 1, auth)
        load = dataclasses.replace(load, size=workload.large_size)
        with MemorySampler(server.pids) as sampler, MaildirWatch(maildir) as watch:
            try:
                took = asyncio.run(smtp_load.send_large(load, connected=sampler.split))
            except (OSError, TimeoutError, ConnectionError, smtp_load.SmtpReplyError) as e:
                results.problem(f"{what}: {e!r}")
                continue
            if watch.wait_for(1, workload.delivery_timeout) is None:
                results.problem(f"{what}: it never reached the Maildir")
        results.record(server.name, growth, sampler.growth / 1024)
        results.record(server.name, seconds, took)
        before, peak = sampler.before / 1024, sampler.peak / 1024
        say(f"{what}: {took:.2f}s, PSS {before:.1f} -> peak {peak:.1f} MiB")
        yield
    pids = server.pids()
    if len(pids) == 1:  # VmHWM is per process: only meaningful for a one-process server
        label = "Server VmHWM (peak RSS of its life) after its runs"
        hwm = Figure("memory.hwm", label, "MiB", False, "Postfix")
        results.record(server.name, hwm, status_kib(pids[0], "VmHWM") / 1024)


def pop3(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """UIDL and RETR-all on one session, then RETR-all on several sessions at once."""
    if server.pop3_port is None or server.populate is None:
        return
    count, sessions = workload.pop3_messages, workload.pop3_sessions
    each = max(1, count // sessions)
    say(f"{server.name}: POP3: populating {count} + {sessions} x {each} messages")
    single = [_pop3_account(server, "pop-single", count, workload.size)]
    many = [_pop3_account(server, f"pop-multi{i}", each, workload.size) for i in range(sessions)]
    _pop3_run(server, single + many, retrieve=False)  # warm-up: the server indexes the mailboxes
    n = f"{sessions} sessions"
    table = (  # name, key, label, unit, higher is better
        ("uidl", "pop3.uidl", f"POP3 UIDL of {count} messages", "ms", False),
        ("rate", "pop3.retr@1", "POP3 RETR/s, 1 session", "/s", True),
        ("mbps", "pop3.mbps@1", "POP3 MB/s, 1 session", "MB/s", True),
        ("p99", "pop3.retr_p99@1", "POP3 RETR p99, 1 session", "ms", False),
        ("rate_n", f"pop3.retr@{sessions}", f"POP3 RETR/s, {n} at once", "/s", True),
        ("login_n", f"pop3.login@{sessions}", f"POP3 {n} logging in at once", "ms", False),
        ("memory_login", f"pop3.login_memory@{sessions}",
         f"Peak server memory (PSS) while {n} log in", "MiB", False),
        ("memory_n", f"pop3.memory@{sessions}",
         f"Peak server memory (PSS) while {n} download", "MiB", False),
    )  # fmt: skip
    figures = {
        name: Figure(key, label, unit, up, "Dovecot") for name, key, label, unit, up in table
    }
    for run in range(workload.repeat):
        one = _pop3_run(server, single, retrieve=True)
        _check_pop3(server, results, one, f"1 session, run {run + 1}")
        with MemorySampler(server.pids) as sampler:  # split when all are logged in
            several = _pop3_run(server, many, True, logged_in=sampler.split)
        _check_pop3(server, results, several, f"{n}, run {run + 1}")
        values = {
            "uidl": max(one.uidl_seconds, default=math.nan) * 1e3,
            "rate": one.retr_rate,
            "mbps": one.megabytes_per_second,
            "p99": percentile(one.retr_latency, 99) * 1e3,
            "rate_n": several.retr_rate,
            "login_n": several.login_seconds * 1e3,
            "memory_login": sampler.phase_peaks[0] / 1024 if sampler.phase_peaks else math.nan,
            "memory_n": sampler.peak / 1024,
        }
        for name, value in values.items():
            results.record(server.name, figures[name], value)
        yield


def imap(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """A client on a big INBOX, APPEND rate, concurrent sessions, and idle-connection memory.

    The INBOX gets ``imap_messages`` files written straight into ``new/``; warm-up sessions
    then run every measured command, so the server's index (and header cache: txmailhost
    fills it on first fetch of a message written by another tool, Dovecot its
    dovecot.index.cache) is built before anything is timed: the figures are a client
    returning to its mailbox, not the first visit after an import. LOGIN+SELECT includes the
    password hash (scrypt, Argon2id); SELECT alone is timed too, since the issue's target is
    about SELECT and UID FETCH on a large mailbox, not about hashing.
    """
    if server.imap_port is None or server.store_files is None:
        return
    # Idle memory first, on a server that has not yet served the big mailbox: a Python heap
    # that once held a 10,000-message FETCH keeps those pages, reuses them for new sessions,
    # and the growth per session would then read as nothing (or less than nothing).
    yield from _imap_idle(server, workload, results)
    host, port, count = server.host, server.imap_port, workload.imap_messages
    address = f"imap-big@{BENCH_DOMAIN}"
    server.add_user(address)
    say(f"{server.name}: IMAP: populating {count} messages")
    started = time.perf_counter()
    line_end = b"\n" if workload.lf_maildir else b"\r\n"
    server.store_files(
        address, (imap_load.message(i, workload.size, line_end) for i in range(count))
    )
    warm = asyncio.run(imap_load.session(host, port, address, PASSWORD))
    took = time.perf_counter() - started
    # A second warm-up a little later: Dovecot distrusts a maildir whose cur/ changed within
    # the last second or two (it just moved every file there from new/) and rescans it on the
    # next SELECT, which the first measured run would otherwise pay (120 ms at 10,000).
    time.sleep(2.0)
    warm = asyncio.run(imap_load.session(host, port, address, PASSWORD))
    say(f"{server.name}: IMAP: written and indexed in {took:.1f}s (warm-up SELECT included)")
    expected_from = len(range(7, count, imap_load.FROM_VARIETY))
    expected_text = len(range(0, count, imap_load.RARE_EVERY))
    if (warm.exists, warm.from_matches, warm.text_matches) != (
        count,
        expected_from,
        expected_text,
    ):
        results.problem(
            f"{server.name}: IMAP mailbox holds {warm.exists} of {count} messages; SEARCH FROM"
            f" found {warm.from_matches} of {expected_from}, TEXT {warm.text_matches} of"
            f" {expected_text}"
        )
    n = f"{count:,} messages"
    sessions, appends = workload.imap_sessions, workload.imap_appends
    table = (  # name, key, label, unit, higher is better
        ("login_select", f"imap.login_select@{count}", f"IMAP LOGIN+SELECT, {n}", "ms", False),
        ("select", f"imap.select@{count}", f"IMAP SELECT INBOX, {n}", "ms", False),
        ("fetch_flags", f"imap.fetch_flags@{count}",
         f"IMAP UID FETCH 1:* (UID FLAGS), {n}", "ms", False),
        ("fetch_headers", f"imap.fetch_headers@{count}",
         f"IMAP FETCH 1:{min(1000, count)} (BODY.PEEK[HEADER]), {n}", "ms", False),
        ("search_from", f"imap.search_from@{count}", f"IMAP UID SEARCH FROM, {n}", "ms", False),
        ("search_text", f"imap.search_text@{count}", f"IMAP UID SEARCH TEXT, {n}", "ms", False),
        ("append", "imap.append", f"IMAP APPEND/s ({appends} in a row, 1 session)", "/s", True),
        ("concurrent", f"imap.concurrent@{count}",
         f"IMAP {sessions} sessions at once: SELECT + UID FETCH 1:* (FLAGS), {n}", "ms", False),
    )  # fmt: skip
    figures = {
        name: Figure(key, label, unit, up, "Dovecot") for name, key, label, unit, up in table
    }
    contents = [imap_load.message(count + i, workload.size) for i in range(appends)]
    for run in range(workload.repeat):
        what = f"{server.name}: IMAP run {run + 1}"
        try:
            one = asyncio.run(imap_load.session(host, port, address, PASSWORD))
            rate = asyncio.run(
                imap_load.appends(host, port, address, PASSWORD, "Appends", contents)
            )
            together = asyncio.run(imap_load.concurrent(host, port, address, PASSWORD, sessions))
        except (OSError, TimeoutError, imap_load.ImapError) as e:
            results.problem(f"{what}: {e!r}")
            continue
        values = {
            "login_select": (one.login + one.select) * 1e3,
            "select": one.select * 1e3,
            "fetch_flags": one.fetch_flags * 1e3,
            "fetch_headers": one.fetch_headers * 1e3,
            "search_from": one.search_from * 1e3,
            "search_text": one.search_text * 1e3,
            "append": rate,
            "concurrent": together * 1e3,
        }
        for name, value in values.items():
            results.record(server.name, figures[name], value)
        say(
            f"{what}: login {one.login * 1e3:.0f} ms, SELECT {one.select * 1e3:.1f} ms, UID FETCH"
            f" {one.fetch_flags * 1e3:.1f} ms, headers {one.fetch_headers * 1e3:.1f} ms, SEARCH"
            f" FROM {one.search_from * 1e3:.1f} ms TEXT {one.search_text * 1e3:.1f} ms;"
            f" APPEND {rate:.0f}/s; {sessions} sessions {together * 1e3:.0f} ms"
        )
        yield


def _imap_idle(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Server memory (PSS) per idle session: ``imap_idle`` clients logged in and SELECTed.

    The growth of the server's PSS from just before the logins (after one warm-up session) to
    a moment after the last SELECT, divided by the number of sessions.
    Measured once, not per repeat: a thousand logins cost a thousand password hashes (over a
    minute of CPU per server) and the figure is a count of bytes, not a noisy timing. The
    sessions select a small INBOX (100 messages) of their own account so the figure is the
    cost of a connection, not of a mailbox's UID map (txmailhost keeps 4 bytes per message).
    """
    assert server.imap_port is not None and server.store_files is not None
    idle = workload.imap_idle
    address = f"imap-idle@{BENCH_DOMAIN}"
    server.add_user(address)
    server.store_files(address, (imap_load.message(i, workload.size) for i in range(100)))

    async def hold() -> tuple[int, int, float]:
        assert server.imap_port is not None
        warm = await imap_load.ImapClient.login(server.host, server.imap_port, address, PASSWORD)
        await warm.command("SELECT INBOX")  # the adoption/indexing of the 100 files
        await warm.logout()
        await asyncio.sleep(1.0)
        before = total_kib(server.pids())
        started = time.perf_counter()
        clients = await imap_load.logins(
            server.host,
            server.imap_port,
            [(address, PASSWORD)] * idle,
            then=lambda client: client.command("SELECT INBOX"),
        )
        took = time.perf_counter() - started
        try:
            await asyncio.sleep(2.0)  # let login processes exit and buffers settle
            after = total_kib(server.pids())
        finally:
            await asyncio.gather(*(c.logout() for c in clients), return_exceptions=True)
        return before, after, took

    what = f"{server.name}: {idle} idle IMAP sessions"
    say(f"{what}: logging in")
    try:
        before, after, took = asyncio.run(hold())
    except (OSError, TimeoutError, imap_load.ImapError) as e:
        results.problem(f"{what}: {e!r}")
        return
    label = f"Server memory (PSS) per idle IMAP session, {idle} logged in and SELECTed"
    figure = Figure(f"imap.idle_kib@{idle}", label, "KiB", False, "Dovecot")
    results.record(server.name, figure, (after - before) / idle)
    label = f"Server memory (PSS) with {idle} idle IMAP sessions"
    total = Figure(f"imap.idle_total@{idle}", label, "MiB", False, "Dovecot")
    results.record(server.name, total, after / 1024)
    say(
        f"{what}: PSS {before / 1024:.1f} -> {after / 1024:.1f} MiB,"
        f" {(after - before) / idle:.1f} KiB each; logins took {took:.1f}s"
    )
    yield


SUITES: dict[str, Suite] = {"smtp": smtp, "memory": memory, "pop3": pop3, "imap": imap}


def _sender_account(server: Server, workload: Workload, suite: str) -> tuple[str, str] | None:
    """With ``--auth``, an account to log in as (and send from: senders must be their own)."""
    if not workload.auth:
        return None
    sender = f"loadgen-{suite}@{BENCH_DOMAIN}"
    server.add_user(sender)
    return sender, PASSWORD


def _smtp_workload(
    server: Server,
    workload: Workload,
    local: str,
    count: int,
    conns: int,
    auth: tuple[str, str] | None,
) -> smtp_load.SmtpLoad:
    port = server.submission_port if auth else server.smtp_port
    assert port is not None
    return smtp_load.SmtpLoad(
        host=server.host,
        port=port,
        messages=count,
        size=workload.size,
        connections=conns,
        per_connection=workload.per_connection,
        recipient=f"{local}@{BENCH_DOMAIN}",
        sender=auth[0] if auth else "loadgen@client.test",
        starttls=workload.starttls,
        auth=auth,
        pipelining=workload.pipelining,
    )


def _smtp_load(
    server: Server,
    workload: Workload,
    local: str,
    count: int,
    conns: int,
    auth: tuple[str, str] | None,
) -> smtp_load.SmtpResult:
    return asyncio.run(smtp_load.run(_smtp_workload(server, workload, local, count, conns, auth)))


def _pop3_account(server: Server, local: str, count: int, size: int) -> tuple[str, str]:
    address = f"{local}@{BENCH_DOMAIN}"
    server.add_user(address)
    assert server.populate is not None
    server.populate(address, count, size)
    return address, PASSWORD


def _pop3_run(
    server: Server,
    accounts: list[tuple[str, str]],
    retrieve: bool,
    logged_in: Callable[[], None] = lambda: None,
) -> pop3_load.Pop3Result:
    assert server.pop3_port is not None
    load = pop3_load.Pop3Load(server.host, server.pop3_port, accounts, retrieve)
    return asyncio.run(pop3_load.run(load, logged_in))


def _check_pop3(server: Server, results: Results, result: pop3_load.Pop3Result, what: str) -> None:
    say(f"{server.name}: POP3 {what}: {result.summary()}")
    if result.failed:
        first = result.error_samples[0]
        results.problem(f"{server.name}: POP3 {what}: {result.failed} failed; first: {first}")
