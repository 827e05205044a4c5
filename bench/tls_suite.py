"""The TLS suite, issue 4's "Measure": IMAPS handshakes/s, and SMTP msgs/s over STARTTLS+AUTH.

Two phases, and the runner alternates servers run by run within each:

- ``imaps``: txmailhost's implicit-TLS IMAP listener against Dovecot's imaps, the same thread
  client (``tls_load``: connect, full TLS handshake, greeting, LOGOUT, close; no LOGOUT with
  ``imaps_logout`` off) at each client count of ``tls_clients``, for ``tls_seconds`` per run.
  Besides the rate and latencies, the CPU the server's processes used per handshake (from
  /proc, children included): unlike the rate, it does not depend on how much of the two cores
  the client took.
- ``submission``: txmailhost's submission port (587's role) against Postfix's submission smtpd,
  with ``smtp_load`` doing STARTTLS then AUTH PLAIN once per connection, then 4 KiB messages
  until ``tls_connections`` x ``per_connection`` are sent: each connection keeps its session
  for the whole run (taking the next message as soon as its last is accepted), so each logs in
  exactly once. The sessions log in first and start sending together once all are open, so
  two rates are clean: over the whole run (the logins included), and from that moment (C
  open TLS sessions sending).
  The connect-to-235 time of each session is kept (it queues behind the others' password
  hashing when all open at once), and after each run ``tls_setups`` sessions are opened one
  after another to price a connection alone: the whole setup (greeting, EHLO, STARTTLS,
  handshake, EHLO, AUTH) and the AUTH step by itself.

Every server offers the same kind of self-signed certificate (ECDSA P-256) and, with this
client, negotiates the same TLS 1.3 suite (the notes record which), so handshakes differ by
server only. A login costs a memory-hard hash on each side: txmailhost's scrypt (N=2^15, r=8,
32 MiB), Dovecot's Argon2id (64 MiB, t=3), which is also Postfix's SASL server here; both take
about 0.1 s on one core, neither caches. They differ in parallelism: txmailhost hashes in its
thread pool (both cores), Dovecot's single auth process one login after another.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

from bench import smtp_load, tls_load
from bench.anchors import dovecot
from bench.maildirs import MaildirWatch
from bench.results import Figure, Results
from bench.server import BENCH_DOMAIN, PASSWORD, Server, cpu_seconds
from bench.stats import median, percentile
from bench.suites import say
from bench.workload import Workload

KEY_PREFIX = "tls."  # the report puts these figures in their own section
_SENDER = f"loadgen-tls@{BENCH_DOMAIN}"  # submission refuses senders other than the login


def imaps(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """IMAPS handshakes/s and their latency at each client count."""
    if server.imaps_port is None:
        return
    others = (dovecot.NAME_REUSED,)  # the same Dovecot in its high-performance login mode
    most = max(workload.tls_clients)
    warm = tls_load.run(_handshakes(server, workload, most, min(1.0, workload.tls_seconds)))
    say(f"{server.name}: IMAPS warm-up: {warm.summary()}")
    if warm.negotiated:
        results.note(f"{server.name}: IMAPS negotiated {warm.negotiated} with the bench client.")
    for clients in workload.tls_clients:
        at = f"{clients} client{'s' if clients > 1 else ''}"
        steps = (
            "connect, TLS, greeting, LOGOUT" if workload.imaps_logout else "connect, TLS, greeting"
        )
        table = (  # name, label, unit, higher is better
            ("rate", f"IMAPS handshakes/s ({steps}), {at}", "/s", True),
            ("cpu", f"IMAPS server CPU per handshake, {at}", "ms", False),
            ("p50", f"IMAPS handshake p50, {at}", "ms", False),
            ("p99", f"IMAPS handshake p99, {at}", "ms", False),
            ("failed", f"IMAPS handshakes failed, {at}", "count", False),
        )
        figures = {
            name: Figure(
                f"{KEY_PREFIX}imaps_{name}@{clients}", label, unit, up, dovecot.NAME, others
            )
            for name, label, unit, up in table
        }
        for run in range(workload.repeat):
            what = f"{server.name}: IMAPS {at}, run {run + 1}"
            cpu_before = cpu_seconds(server.pids())
            result = tls_load.run(_handshakes(server, workload, clients, workload.tls_seconds))
            cpu = cpu_seconds(server.pids()) - cpu_before
            if result.failed:
                results.problem(f"{what}: {result.failed} failed; first: {result.error_samples[0]}")
            values = {
                "rate": result.rate,
                "cpu": cpu / result.completed * 1e3 if result.completed else math.nan,
                "p50": percentile(result.latency, 50) * 1e3,
                "p99": percentile(result.latency, 99) * 1e3,
                "failed": result.failed,
            }
            for name, value in values.items():
                results.record(server.name, figures[name], value)
            say(f"{what}: {result.summary()}; server CPU {values['cpu']:.2f} ms each")
            yield


def submission(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Msgs/s over STARTTLS+AUTH at ``tls_connections``, and what opening a session costs.

    Every account is made before the warm-up: adding one reloads Postfix, whose fresh smtpd
    processes would then each redo their handshake with the SASL server during the measured
    run (and give up after 10 s if it is busy hashing, see ``anchors/sasl``).
    """
    if server.submission_port is None:
        return
    conns = workload.tls_connections
    count = conns * workload.per_connection
    server.add_user(_SENDER)
    runs = [f"tls-r{run}" for run in range(workload.repeat)]
    inboxes = {local: server.add_user(f"{local}@{BENCH_DOMAIN}") for local in ["tls-warmup", *runs]}
    # One message per connection: processes spawned, imports done, before anything is timed.
    warm = asyncio.run(smtp_load.run(_submissions(server, workload, "tls-warmup", conns, conns)))
    say(f"{server.name}: STARTTLS+AUTH warm-up: {warm.summary()}")
    at = f"{conns} connections"
    table = (  # key, label, unit, higher is better
        (f"smtp_ready@{conns}",
         f"SMTP msgs/s accepted over STARTTLS+AUTH, {at}, once all logged in", "/s", True),
        (f"smtp_accepted@{conns}",
         f"SMTP msgs/s accepted over STARTTLS+AUTH, {at}, their logins included", "/s", True),
        (f"smtp_delivered@{conns}",
         f"SMTP msgs/s delivered into the Maildir, STARTTLS+AUTH, {at}, logins included", "/s",
         True),
        (f"smtp_setup_p50@{conns}",
         f"SMTP connect to 235 (STARTTLS+AUTH) p50, {at} opening together", "ms", False),
        (f"smtp_setup_max@{conns}",
         f"SMTP connect to 235 (STARTTLS+AUTH), the last of {at} opening together", "ms",
         False),
        ("smtp_setup@1", "SMTP connect to 235 (STARTTLS+AUTH), one session alone", "ms", False),
        ("smtp_auth@1", "SMTP AUTH PLAIN to 235 (password check), one session alone", "ms", False),
        (f"smtp_failed@{conns}", f"SMTP over STARTTLS+AUTH refused or failed, {at}", "count",
         False),
    )  # fmt: skip
    figures = [
        Figure(KEY_PREFIX + key, label, unit, up, "Postfix") for key, label, unit, up in table
    ]
    for run in range(workload.repeat):
        what = f"{server.name}: STARTTLS+AUTH {at}, run {run + 1}"
        load = _submissions(server, workload, f"tls-r{run}", count, conns)
        with MaildirWatch(inboxes[f"tls-r{run}"]) as watch:
            started = time.perf_counter()
            result = asyncio.run(smtp_load.run(load))
            landed = watch.wait_for(result.accepted, workload.delivery_timeout)
        if landed is None:
            results.problem(f"{what}: accepted messages missing from the Maildir")
        if result.failed:
            results.problem(f"{what}: {result.failed} failed; first: {result.error_samples[0]}")
        alone = asyncio.run(smtp_load.setups(load, workload.tls_setups))
        values = (
            result.rate_once_ready,
            result.rate,
            result.accepted / (landed - started) if landed else math.nan,
            percentile(result.setup_latency, 50) * 1e3,
            max(result.setup_latency, default=math.nan) * 1e3,
            median([setup for setup, _ in alone]) * 1e3,
            median([auth for _, auth in alone]) * 1e3,
            result.failed,
        )
        for figure, value in zip(figures, values, strict=True):
            results.record(server.name, figure, value)
        say(
            f"{what}: {result.summary()}; {values[0]:.0f} msgs/s once all logged in; setup p50"
            f" {values[3]:.0f} ms, last {values[4]:.0f} ms; alone {values[5]:.1f} ms of which"
            f" AUTH {values[6]:.1f} ms"
        )
        yield


def _handshakes(
    server: Server, workload: Workload, clients: int, seconds: float
) -> tls_load.HandshakeLoad:
    assert server.imaps_port is not None
    return tls_load.HandshakeLoad(
        server.host, server.imaps_port, clients, seconds, logout=workload.imaps_logout
    )


def _submissions(
    server: Server, workload: Workload, local: str, count: int, conns: int
) -> smtp_load.SmtpLoad:
    assert server.submission_port is not None
    return smtp_load.SmtpLoad(
        host=server.host,
        port=server.submission_port,
        messages=count,
        size=workload.size,
        connections=conns,
        per_connection=count,  # one session per connection for the whole run
        start_together=True,
        recipient=f"{local}@{BENCH_DOMAIN}",
        sender=_SENDER,
        starttls=True,
        auth=(_SENDER, PASSWORD),
        pipelining=workload.pipelining,
    )
