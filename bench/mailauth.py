"""Cost of mail authentication per message: ``python -m bench.mailauth [--repeat N]``.

Issue 16's "Measure" (the per-message part): DKIM signing (Ed25519, RSA-2048, and the two
together as the server signs) and verification of 1 and 3 signatures, with DNS answered from
the resolver's cache (a resolver whose answers are in memory: the lookups cost what a cache
hit costs), for a 4 KiB message and a 1 MiB one; and the whole inbound check (SPF + DKIM +
DMARC + the Authentication-Results field) as the filter runs it. Medians of ``--repeat`` runs,
in milliseconds of one core. Keys are made afresh in a temporary directory.

``--smtp``: SMTP msgs/s (4 KiB messages, 1 and 50 connections), p99 DATA-to-250 and the
server's CPU time per message of the real server with the inbound checks on and off (after
200 messages of warm-up), runs alternating (``bench/targets.py``
starts it; the sender's domain is special-use, so its DNS answers cost nothing, as cached
ones nearly do).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.mailauth.checks import InboundChecks
from txmailhost.mailauth.keys import KeyStore
from txmailhost.mailauth.signing import Signer
from txmailhost.mailauth.verify import verify_stream


class CachedResolver:
    """The resolver's interface over answers held in memory (what a cache hit costs)."""

    timeout = 5.0

    def __init__(self, records: dict[str, list[bytes]]) -> None:
        self.records = records

    def txt(self, name: str) -> list[bytes]:
        return self.records.get(name.rstrip(".").lower(), [])

    def dkim_txt(self, name: Any, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        found = self.txt(text)
        return found[0] if found else None

    def spf_lookup(self, name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30):
        if qtype != "TXT":
            return []
        return [((name, qtype), (value,)) for value in self.txt(name)]


def _message(size: int) -> bytes:
    head = (
        b"From: Alice <alice@bench.test>\r\nTo: bob@remote.test\r\nSubject: bench\r\n"
        b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <b@bench.test>\r\n\r\n"
    )
    line = b"The quick brown fox jumps over the lazy dog, again and again.  \r\n"
    return head + line * max(1, size // len(line))


def _median_ms(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def smtp(rounds: int, messages: int) -> None:
    """msgs/s and p99 DATA-to-250 with the checks on and off, ``rounds`` alternating runs."""
    import asyncio
    from pathlib import Path

    from bench import smtp_load, targets

    found: dict[tuple[bool, int], list[tuple[float, float, float]]] = {}

    def one_run(checks: bool) -> None:
        with (
            tempfile.TemporaryDirectory() as directory,
            targets.running(Path(directory), mailauth=checks) as server,
        ):
            server.add_user("u1@bench.test")
            warm = smtp_load.SmtpLoad("127.0.0.1", server.smtp_port, 200, 4096, 10, 100,
                                      recipient="u1@bench.test")  # fmt: skip
            asyncio.run(smtp_load.run(warm))  # imports, caches, SQLite pages: not measured
            for connections in (1, 50):
                load = smtp_load.SmtpLoad("127.0.0.1", server.smtp_port, messages, 4096,
                                          connections, 100, recipient="u1@bench.test")  # fmt: skip
                before = _cpu_seconds(server.pids())
                result = asyncio.run(smtp_load.run(load))
                cpu = (_cpu_seconds(server.pids()) - before) / max(1, result.accepted)
                if result.failed:
                    raise SystemExit(f"SMTP load failed: {result.summary()}")
                found.setdefault((checks, connections), []).append(
                    (result.rate, _p99(result), cpu * 1000)
                )

    for round_number in range(rounds):
        # alternating which goes first, so a trend in the machine's load favours neither
        for checks in (True, False) if round_number % 2 == 0 else (False, True):
            for attempt in range(3):
                try:
                    one_run(checks)
                    break
                except RuntimeError as e:  # a free port taken before the server bound it
                    if "already in use" not in str(e) or attempt == 2:
                        raise
    print(f"{'SMTP, 4 KiB messages':<34} {'msgs/s':>8} {'p99 DATA-250 ms':>16}"
          f" {'server CPU ms/msg':>18}")  # fmt: skip
    for (checks, connections), runs in sorted(
        found.items(), key=lambda kv: (kv[0][1], not kv[0][0])
    ):
        rate = statistics.median(r for r, _, _ in runs)
        p99 = statistics.median(p for _, p, _ in runs)
        cpu = statistics.median(c for _, _, c in runs)
        label = f"checks {'on' if checks else 'off'}, {connections} connection(s)"
        print(f"{label:<34} {rate:>8.0f} {p99:>16.1f} {cpu:>18.2f}")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the server's processes (Linux ``/proc``; 0 elsewhere): on a shared
    machine msgs/s moves with other jobs' load, the CPU a message costs much less."""
    import os

    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _p99(result: Any) -> float:
    from bench.smtp_load import percentile

    return percentile(result.data_latency, 99) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mailauth")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--smtp", action="store_true", help="SMTP msgs/s, checks on vs off")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.smtp:
        smtp(args.rounds, args.messages)
        return 0
    with tempfile.TemporaryDirectory() as directory:
        keys = KeyStore(directory)
        keys.create("bench.test", "one")
        keys.create("bench.test", "two")  # active: "two"; "one" signs the third signature
        records = {f"{k.selector}._domainkey.bench.test": [k.txt_record().encode()]
                   for k in keys.published("bench.test")}  # fmt: skip
        records["bench.test"] = [b"v=spf1 ip4:127.0.0.1 -all"]
        records["_dmarc.bench.test"] = [b"v=DMARC1; p=reject"]
        resolver = CachedResolver(records)
        signer = Signer(keys)
        ed, rsa = keys.keys("bench.test")
        old_ed, _old_rsa = keys.keys("bench.test", "one")
        rows = []
        for label, size in (("4 KiB", 4096), ("1 MiB", 1 << 20)):
            message = _message(size)
            for name, chosen in (("Ed25519", [ed]), ("RSA-2048", [rsa]), ("both", [ed, rsa])):
                signer.keys.keys = lambda domain, selector=None, chosen=chosen: chosen  # type: ignore[method-assign]
                ms = _median_ms(lambda m=message: signer.sign_bytes(m), args.repeat)
                rows.append((f"sign {name}", label, ms))
            signer.keys.keys = lambda domain, selector=None: [ed, rsa, old_ed]  # type: ignore[method-assign]
            three = signer.sign_bytes(message)  # Ed25519, RSA, Ed25519 (older key) on top
            second = three.index(b"DKIM-Signature:", 1)
            one_sig = three[three.index(b"DKIM-Signature:", second + 1) :]  # the last only
            rows.append(("verify 1 signature", label,
                         _median_ms(lambda m=one_sig: verify_stream(io.BytesIO(m), resolver),
                                    args.repeat)))  # fmt: skip
            rows.append(("verify 3 signatures", label,
                         _median_ms(lambda m=three: verify_stream(io.BytesIO(m), resolver),
                                    args.repeat)))  # fmt: skip
            signer.keys.keys = lambda domain, selector=None: [ed, rsa]  # type: ignore[method-assign]
            dual = signer.sign_bytes(message)
            checks = InboundChecks(resolver, "mx.bench.test")  # type: ignore[arg-type]
            client = Client("127.0.0.1", helo="mx.bench.test")
            transaction = Transaction("alice@bench.test", ("bob@remote.test",))

            def check(m: bytes = dual, c: Any = checks, who: Any = client, t: Any = transaction):
                return c.end_of_data(who, t, io.BytesIO(m))

            rows.append(("inbound check (SPF+2 DKIM+DMARC+AR)", label,
                         _median_ms(check, args.repeat)))  # fmt: skip
    print(f"{'operation':<40} {'message':>8} {'ms (median)':>12}")
    for operation, label, ms in rows:
        print(f"{operation:<40} {label:>8} {ms:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
