"""RCPT latency against the size of the address book: 10 users vs 10,000 users + 10,000 aliases.

Issue 6's measure: what recipient resolution costs once a server holds many accounts. The
accounts database is filled directly (one shared password hash, so 10,000 scrypt runs don't
dominate the set-up), the server is started with ``twistd`` as an administrator would, and one
connection sends RCPTs in lock-step for a mix of users, plus-addresses, aliases and unknown
addresses, timing each reply. Unknown addresses are answered at once for the first few and
then deliberately slowed (anti-enumeration), so they are reported apart and kept few.

    python -m bench.rcpt_latency [--users 10000 --aliases 10000 --rcpts 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.server import free_port, kill_tree, wait_for_port
from bench.stats import percentile

DOMAIN = "bench.test"
_TWISTD = "from twisted.scripts.twistd import run; run()"


def populate(data: Path, users: int, aliases: int) -> None:
    from txmailhost.accounts.db import AccountsDB
    from txmailhost.accounts.passwords import hash_password
    from txmailhost.datadir import ensure_data_dir

    ensure_data_dir(str(data))
    db = AccountsDB(str(data / "accounts.sqlite"))
    db.add_domain(DOMAIN)
    encoded = hash_password("bench-password")
    conn = db._db
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO users (address, domain, password_hash, created) VALUES (?, ?, ?, ?)",
        ((f"u{i}@{DOMAIN}", DOMAIN, encoded, float(i)) for i in range(users)),
    )
    conn.executemany(
        "INSERT INTO aliases VALUES (?, ?, 0)",
        ((f"a{i}@{DOMAIN}", f"u{i % users}@{DOMAIN}") for i in range(aliases)),
    )
    conn.execute("COMMIT")


async def measure(port: int, addresses: list[str]) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.client\r\nMAIL FROM:<load@client.test>\r\n")
    await reply()
    await reply()
    timings = []
    for i, address in enumerate(addresses):
        if i and i % 90 == 0:  # stay under max_recipients: start a new transaction
            writer.write(b"RSET\r\nMAIL FROM:<load@client.test>\r\n")
            await reply()
            await reply()
        started = time.perf_counter()
        writer.write(f"RCPT TO:<{address}>\r\n".encode())
        line = await reply()
        timings.append((time.perf_counter() - started) * 1000)
        if not line.startswith((b"250", b"550")):
            raise RuntimeError(f"RCPT {address}: {line!r}")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return timings


def run(users: int, aliases: int, rcpts: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="txm-rcpt-") as tmp:
        data = Path(tmp) / "data"
        populate(data, users, aliases)
        port = free_port()
        (data / "txmailhost.toml").write_text(
            f'[listen]\nsmtp = "tcp:{port}:interface=127.0.0.1"\n'
            'submission = ""\nsubmissions = ""\nimap = ""\nimaps = ""\npop3 = ""\npop3s = ""\n'
            'metrics = ""\n'
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _TWISTD,
                "-n",
                "--pidfile=",
                f"--logfile={tmp}/log",
                "txmailhost",
                "--data",
                str(data),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", port, 30, lambda: server.poll() is None)
            rng = random.Random(1)
            known = []
            for _ in range(rcpts):
                kind = rng.random()
                if kind < 0.5:
                    known.append(f"u{rng.randrange(users)}@{DOMAIN}")
                elif kind < 0.7:
                    known.append(f"u{rng.randrange(users)}+tag@{DOMAIN}")
                else:
                    known.append(
                        f"a{rng.randrange(max(aliases, 1))}@{DOMAIN}"
                        if aliases
                        else f"u{rng.randrange(users)}@{DOMAIN}"
                    )
            asyncio.run(measure(port, known[:200]))  # warm-up
            timings = asyncio.run(measure(port, known))
            unknown = asyncio.run(measure(port, [f"nobody{i}@{DOMAIN}" for i in range(5)]))
        finally:
            kill_tree(server.pid)
    return {
        "p50": percentile(timings, 50),
        "p99": percentile(timings, 99),
        "per_s": len(timings) / (sum(timings) / 1000),
        "unknown_p50": percentile(unknown, 50),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rcpt_latency", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--aliases", type=int, default=10_000)
    parser.add_argument("--rcpts", type=int, default=4000)
    args = parser.parse_args(argv)
    small = run(10, 10, args.rcpts)
    big = run(args.users, args.aliases, args.rcpts)
    print(f"{'address book':<34}{'RCPT p50 ms':>12}{'p99 ms':>10}{'RCPT/s':>10}{'unknown p50':>13}")
    for label, r in (
        ("10 users, 10 aliases", small),
        (f"{args.users} users, {args.aliases} aliases", big),
    ):
        print(
            f"{label:<34}{r['p50']:>12.3f}{r['p99']:>10.3f}{r['per_s']:>10.0f}{r['unknown_p50']:>13.3f}"
        )
    print(f"ratio p50 big/small: {big['p50'] / small['p50']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
