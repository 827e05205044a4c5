"""The logins suite (issue 13): re-logins/s, memory of first logins at once, and an attacker.

Mail clients reconnect all day; each login used to cost txmailhost a scrypt hash (32 MiB, about
90 ms of a core), now skipped for a password verified within the credential cache's TTL. The
same loads run on Dovecot with its defaults (no auth cache: every login verifies its Argon2id
hash) and on txmailhost with ``credential_cache_ttl = 0`` (every login hashes, as before the
cache). First logins can't be cached: their memory shows what hashing costs with many at once.

The attack phase runs on txmailhost only (it needs submission): an attacker guessing one
account's password from a few addresses, and the account's owner logging in meanwhile from
another. Measured once, on an account of its own, after the other phases.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

from bench import login_load
from bench.memory import MemorySampler
from bench.results import Figure, Results
from bench.server import BENCH_DOMAIN, PASSWORD, Server
from bench.stats import percentile
from bench.workload import Workload

PREFIX = "logins."
NO_CACHE = "txmailhost, no credential cache"
ATTACK = "attack"  # the "anchor" of the attack figures: none, shown in a table of their own


def say(text: str) -> None:
    from bench.suites import say as _say

    _say(text)


def relogins(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Logins/s with ``login_clients`` clients logging in and out with the right password."""
    if server.imap_port is None:
        return
    clients = workload.login_clients
    address = f"relogin@{BENCH_DOMAIN}"
    server.add_user(address)
    load = login_load.relogins(server.host, server.imap_port, address, PASSWORD, 2, 0.5)
    asyncio.run(load)  # warm-up: first login, processes forked, caches filled
    label = f"IMAP logins/s, {clients} clients logging in and out with the right password"
    rate = Figure(f"{PREFIX}relogin@{clients}", label, "/s", True, "Dovecot", (NO_CACHE,))
    label = f"IMAP connect-to-LOGIN-OK p50, {clients} clients re-logging"
    p50 = Figure(f"{PREFIX}relogin_p50@{clients}", label, "ms", False, "Dovecot", (NO_CACHE,))
    for run in range(workload.repeat):
        result = asyncio.run(
            login_load.relogins(
                server.host, server.imap_port, address, PASSWORD, clients, workload.login_seconds
            )
        )
        what = f"{server.name}: {clients} clients re-logging, run {run + 1}"
        if result.failed:
            results.problem(f"{what}: {result.failed} failed; first: {result.errors[0]}")
        results.record(server.name, rate, result.rate)
        results.record(server.name, p50, percentile(result.latency, 50) * 1e3)
        say(f"{what}: {result.summary()}")
        yield


def first_logins(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Peak memory while ``login_first`` accounts log in at once, each for the first time."""
    if server.imap_port is None:
        return
    count = workload.login_first
    accounts = [(f"first{i}@{BENCH_DOMAIN}", PASSWORD) for i in range(count)]
    say(f"{server.name}: making {count} accounts for first logins")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(server.add_user, [user for user, _ in accounts]))
    with MemorySampler(server.pids) as sampler:
        took, failures = asyncio.run(
            login_load.first_logins(server.host, server.imap_port, accounts)
        )
    if failures:  # the memory figure stands: it is what the server held while trying
        results.problem(
            f"{server.name}: {len(failures)} of {count} first logins at once failed;"
            f" first: {failures[0]}"
        )
    label = f"Peak server memory (PSS) while {count} log in at once, first logins"
    peak = Figure(f"{PREFIX}first_memory@{count}", label, "MiB", False, "Dovecot", (NO_CACHE,))
    label = f"{count} first IMAP logins at once, all logged in"
    seconds = Figure(f"{PREFIX}first_s@{count}", label, "s", False, "Dovecot", (NO_CACHE,))
    results.record(server.name, peak, sampler.peak / 1024)
    results.record(server.name, seconds, took)
    say(
        f"{server.name}: {count} first logins at once in {took:.1f}s; PSS"
        f" {sampler.before / 1024:.1f} -> peak {sampler.peak / 1024:.1f} MiB"
    )
    yield


def attack(server: Server, workload: Workload, results: Results) -> Iterator[None]:
    """Guesses/s an attacker gets against one account, and whether its owner still gets in."""
    if server.submission_port is None or server.imap_port is None or server.name == NO_CACHE:
        return
    victim = f"victim@{BENCH_DOMAIN}"
    server.add_user(victim)
    threads, addresses = workload.attack_threads, workload.attack_addresses
    what = f"{server.name}: {threads} attacker threads from {addresses} addresses"
    say(f"{what}: {workload.attack_seconds:g}s")
    result = login_load.attack(
        server.host,
        server.submission_port,
        server.imap_port,
        victim,
        PASSWORD,
        threads=threads,
        addresses=addresses,
        seconds=workload.attack_seconds,
    )
    say(f"{what}: {result.summary()}")
    if result.owner_errors:
        results.note(f"{server.name}: the owner's refused logins during the attack: "
                     f"{result.owner_errors[0]}")  # fmt: skip
    at = f"{threads} threads from {addresses} addresses, {result.seconds:.0f} s"
    table = (
        ("guesses", f"Wrong passwords checked per second ({at})", "/s", False,
         result.guesses_per_second),
        ("refused", f"Attempts refused unchecked ({at})", "count", True, result.refused),
        ("owner", "Owner's IMAP logins that got in meanwhile (from 127.0.0.1)", "%", True,
         100.0 * result.owner_ok / result.owner_tries if result.owner_tries else 0.0),
        ("owner_p50", "Owner's IMAP login time meanwhile, p50", "ms", False,
         percentile(result.owner_latency, 50) * 1e3),
    )  # fmt: skip
    for name, label, unit, higher, value in table:
        results.record(server.name, Figure(f"{PREFIX}attack.{name}", label, unit, higher, ATTACK),
                       value)  # fmt: skip
    yield


PHASES = (relogins, first_logins, attack)
