"""The node curve: 1, 2 and 3 txmailhost nodes on one PostgreSQL database, on this machine.

For each node count a fresh database of one durable PostgreSQL server (fsync and
synchronous_commit on: a ``250`` means the commit is on disk), that many server processes
(``twistd txmailhost``, one worker each, mail store, accounts and relay queue in the
database), and two loads spread evenly over the nodes:

- SMTP: ``--messages`` 4 KiB messages to one local user over ``--connections`` connections
  (bench/smtp_load.py), counted when their ``250`` arrives; msgs/s is the sum of what the
  nodes accepted over the longest node's wall time.
- IMAP: ``--sessions`` logged-in sessions each doing SELECT INBOX + UID FETCH 1:* (FLAGS) of
  that mailbox at once (bench/imap_load.py ``concurrent``), the best of three rounds.

CPU seconds of the nodes and of PostgreSQL (its whole process tree) are sampled around the
SMTP load, giving CPU milliseconds per message on each side (what a separate machine per node
would have to supply); also the transactions the database committed per message
(``pg_stat_database``, read-only ones included) and its WAL flushes per message
(``pg_stat_wal``: the fsyncs a target volume needs; PostgreSQL flushes concurrent commits
together). On one 2-core box every node and the database share the same two cores, so more
nodes cannot add throughput here; the curve shows that the nodes work together and what the
database costs, not how separate machines would scale.

Run by hand: ``python -m bench.pg_nodes [--nodes 1 2 3] [--messages 1000] [--connections 50]
[--sessions 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time

from bench.imap_load import concurrent
from bench.server import cpu_seconds, process_tree
from bench.smtp_load import SmtpLoad, SmtpResult
from bench.smtp_load import run as smtp_run

USER = "u1@bench.test"
PASSWORD = "bench-password-1"


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split over ``parts`` as evenly as integers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _smtp(nodes: list, messages: int, connections: int) -> tuple[int, int, float]:
    """(accepted, failed, seconds): every node's share at once, timed to the last ``250``."""
    loads = [
        SmtpLoad(
            "127.0.0.1",
            node.ports["smtp"],
            messages=m,
            connections=c,
            per_connection=max(1, m // max(1, c)),
            recipient=USER,
        )
        for node, m, c in zip(
            nodes, _spread(messages, len(nodes)), _spread(connections, len(nodes)), strict=True
        )
    ]
    started = time.perf_counter()
    results: list[SmtpResult] = await asyncio.gather(*(smtp_run(load) for load in loads))
    ended = max((max(r.done_at) for r in results if r.done_at), default=time.perf_counter())
    return sum(r.accepted for r in results), sum(r.failed for r in results), ended - started


async def _imap(nodes: list, sessions: int) -> float:
    """Seconds for ``sessions`` sessions, spread over the nodes, to SELECT + UID FETCH."""
    shares = _spread(sessions, len(nodes))
    times = await asyncio.gather(
        *(
            concurrent("127.0.0.1", node.ports["imap"], USER, PASSWORD, share)
            for node, share in zip(nodes, shares, strict=True)
            if share
        )
    )
    return max(times)


def _postgres_pids(server) -> list[int]:
    with open(os.path.join(server.data, "postmaster.pid")) as f:
        return process_tree(int(f.readline()))


def _commits(dsn: str) -> tuple[int, int]:
    """(transactions committed in the database, read-only ones included; WAL flushes of the
    whole server) so far, from PostgreSQL's statistics, which a backend reports within a
    second of committing."""
    import psycopg

    time.sleep(1.5)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, (SELECT wal_sync FROM pg_stat_wal) FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def measure(server, count: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    """One point of the curve: ``count`` nodes on a fresh database."""
    from tests.support.server import ServerProcess

    dsn = server.database()
    extra = (
        f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{dsn}"\n'
        '[queue]\nbackend = "postgres"\n'
        f"[security]\nmax_connections_per_ip = {args.connections + args.sessions}\n"
    )
    nodes = [ServerProcess(f"{workdir}/n{count}-{i}", extra_config=extra) for i in range(count)]
    try:
        for node in nodes:
            node.start()
        nodes[0].add_user(USER, PASSWORD)  # once: the accounts are in the database
        asyncio.run(_smtp(nodes, 20 * count, count))  # warm up every node and the pool
        node_pids = [p for node in nodes for p in process_tree(node.process.pid)]
        db_pids = _postgres_pids(server)
        commits = _commits(dsn)
        node_cpu, db_cpu = cpu_seconds(node_pids), cpu_seconds(_postgres_pids(server))
        accepted, failed, took = asyncio.run(_smtp(nodes, args.messages, args.connections))
        node_cpu = cpu_seconds(node_pids) - node_cpu
        db_cpu = cpu_seconds(set(db_pids) | set(_postgres_pids(server))) - db_cpu
        after = _commits(dsn)
        commits, flushes = after[0] - commits[0] - 1, after[1] - commits[1]  # less our query
        if failed:
            raise RuntimeError(f"{failed} messages refused with {count} nodes")
        rounds = [asyncio.run(_imap(nodes, args.sessions)) for _ in range(3)]
        return {
            "smtp_msgs_per_s": accepted / took,
            "node_cpu_ms_per_msg": 1000 * node_cpu / accepted,
            "db_cpu_ms_per_msg": 1000 * db_cpu / accepted,
            "commits_per_msg": commits / accepted,
            "flushes_per_msg": flushes / accepted,
            "imap_seconds": min(rounds),
            "imap_median_seconds": statistics.median(rounds),
        }
    finally:
        for node in nodes:
            node.stop()
        server.drop(dsn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_nodes", description=__doc__)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args(argv)
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    server.start(durable=True)
    workdir = tempfile.mkdtemp(prefix="bench-pg-nodes-")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"{args.messages} msgs over {args.connections} SMTP connections, "
        f"{args.sessions} IMAP sessions on the {args.messages}-message INBOX"
    )
    print(
        f"{'nodes':>5} {'SMTP msgs/s':>12} {'node CPU ms/msg':>16} {'PG CPU ms/msg':>14}"
        f" {'xacts/msg':>10} {'WAL flushes/msg':>16} {'IMAP s (best)':>14} {'IMAP s (median)':>16}"
    )
    try:
        for count in args.nodes:
            f = measure(server, count, args, workdir)
            print(
                f"{count:>5} {f['smtp_msgs_per_s']:>12.1f} {f['node_cpu_ms_per_msg']:>16.2f}"
                f" {f['db_cpu_ms_per_msg']:>14.2f} {f['commits_per_msg']:>10.2f}"
                f" {f['flushes_per_msg']:>16.2f}"
                f" {f['imap_seconds']:>14.3f}"
                f" {f['imap_median_seconds']:>16.3f}",
                flush=True,
            )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
