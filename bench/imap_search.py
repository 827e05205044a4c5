"""SEARCH, SORT and THREAD on a large mailbox, txmailhost with and without its full-text index
beside Dovecot; the index's size beside the mail's; SMTP delivery with the index on and off.

Each server gets the same INBOX, written straight into its Maildir (``Server.store_files``),
then two warm-up sessions run every measured command (txmailhost indexes the mail on the first
SEARCH, Dovecot builds its dovecot.index.cache), so the figures are a client coming back to its
mailbox. Each measured run is a new session: SELECT INBOX, then ``UID SEARCH TEXT`` (a word
in one message in a hundred), ``UID SEARCH FROM`` (one sender in fifty), ``UID SORT (DATE)``
and ``UID THREAD REFERENCES``, each timed alone; the figure is the median over the runs.

Two corpora: ``bench`` is the harness's IMAP mailbox (``imap_load.message``: a few distinct
lines repeated, so its trigram index is small), ``varied`` fills the bodies with words drawn
from a 20,000-word vocabulary (Zipf-distributed, seeded), closer to real text for the index's
size. ``--smtp`` measures instead the SMTP delivery rate (``smtp_load``, 1 and 50
connections) of txmailhost with ``[store] text_index`` on and off, runs alternating.

``python -m bench.imap_search --messages 10000 --repeat 5 [--corpus varied] [--smtp]``
(as root, like the harness: Dovecot runs as its own users).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import imap_load, smtp_load, targets
from bench.server import BENCH_DOMAIN, PASSWORD, Server, run_quietly

COMMANDS = (
    ("UID SEARCH TEXT", f"UID SEARCH TEXT {imap_load.SEARCH_WORD}"),
    ("UID SEARCH FROM", f"UID SEARCH FROM {imap_load.SEARCH_FROM}"),
    ("UID SORT (DATE)", "UID SORT (DATE) UTF-8 ALL"),
    ("UID THREAD REFERENCES", "UID THREAD REFERENCES UTF-8 ALL"),
)
TEXT_INDEX_OFF = "\n[store]\ntext_index = false\n"


def _vocabulary(count: int = 20000) -> list[str]:
    rng = random.Random(15)
    onsets = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v",
              "w", "z", "br", "ch", "cl", "dr", "fl", "gr", "pl", "sh", "st", "th", "tr")  # fmt: skip
    vowels = ("a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oo", "ou")
    words: set[str] = set()
    while len(words) < count:
        syllables = rng.choice((1, 2, 2, 3, 3, 4))
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def varied_message(index: int, size: int, _vocab: list[str] = _vocabulary()) -> bytes:  # noqa: B008
    """Like ``imap_load.message`` (same senders, same rare word) with a body of varied words."""
    rng = random.Random(index)
    head = imap_load.message(index, 0)  # its header (and rare line), no filler
    lines, length = [], len(head)
    while length < size:
        words = rng.choices(_vocab, cum_weights=_ZIPF, k=11)
        line = (" ".join(words).capitalize() + ".\r\n").encode()
        lines.append(line)
        length += len(line)
    return head + b"".join(lines)


_ZIPF = list(itertools.accumulate(1.0 / rank for rank in range(1, 20001)))  # cumulative


def _mailbox_bytes(maildir: Path) -> int:
    return sum(
        os.path.getsize(maildir / sub / name)
        for sub in ("cur", "new")
        for name in os.listdir(maildir / sub)
    )


def _index_bytes(maildir: Path) -> int:
    return sum(
        os.path.getsize(maildir / name)
        for name in os.listdir(maildir)
        if name.startswith("txmailhost-text.sqlite")
    )


async def _session(server: Server, user: str) -> dict[str, tuple[float, int]]:
    """One session: each command's seconds and the size of its answer (untagged octets)."""
    assert server.imap_port is not None
    client = await imap_load.ImapClient.login(server.host, server.imap_port, user, PASSWORD)
    try:
        await client.command("SELECT INBOX")
        out = {}
        for label, command in COMMANDS:
            seconds, reply = await imap_load.timed(client.command(command, keep=True))
            out[label] = (seconds, len(re.findall(rb"\d+", reply.text)))
        return out
    finally:
        await client.logout()


def measure(
    server: Server,
    messages: Callable[[int], bytes],
    count: int,
    repeat: int,
    prepare: Callable[[str], None] | None = None,
) -> dict:
    """Fill, ``prepare`` (build the text index), warm up, measure; medians in ms, answer
    sizes, and the index's size."""
    user = f"imap-search@{BENCH_DOMAIN}"
    maildir = server.add_user(user)
    assert server.store_files is not None
    server.store_files(user, (messages(i) for i in range(count)))
    started = time.perf_counter()
    if prepare is not None:
        prepare(user)
    build_seconds = time.perf_counter() - started
    first = asyncio.run(_session(server, user))
    warm_seconds = time.perf_counter() - started
    time.sleep(2.0)  # Dovecot rescans a cur/ changed within the last seconds (bench/suites.py)
    asyncio.run(_session(server, user))
    runs = [asyncio.run(_session(server, user)) for _ in range(repeat)]
    figures = {
        label: statistics.median(run[label][0] for run in runs) * 1e3 for label, _c in COMMANDS
    }
    answers = {label: first[label][1] for label, _c in COMMANDS}
    mail = _mailbox_bytes(maildir) if maildir.exists() else 0
    index = _index_bytes(maildir) if maildir.exists() else 0
    return {
        "figures": figures,
        "answers": answers,
        "first_text_search_ms": first["UID SEARCH TEXT"][0] * 1e3,
        "index_build_s": build_seconds,
        "first_session_s": warm_seconds - build_seconds,
        "mail_bytes": mail,
        "index_bytes": index,
    }


@contextlib.contextmanager
def _dovecot(workdir: Path) -> Iterator[Server]:
    from bench.anchors import dovecot

    with dovecot.running(workdir) as server:
        yield server


def search_suite(count: int, size: int, repeat: int, corpus: str) -> None:
    from bench.anchors import dovecot

    make = (
        (lambda i: imap_load.message(i, size))
        if corpus == "bench"
        else (lambda i: varied_message(i, size))
    )
    results = {}
    servers = [
        ("txmailhost (index)", lambda w: targets.running(w, mailauth=False)),
        (
            "txmailhost (no index)",
            lambda w: targets.running(w, mailauth=False, extra_config=TEXT_INDEX_OFF),
        ),
    ]
    if dovecot.unavailable() is None:
        servers.append((f"Dovecot {dovecot.version()}", _dovecot))
    for name, start in servers:
        with tempfile.TemporaryDirectory(prefix="imap-search-") as tmp, start(Path(tmp)) as server:
            print(f"{name}: filling {count:,} messages ({corpus})", flush=True)
            prepare = _rebuild(Path(tmp)) if name == "txmailhost (index)" else None
            results[name] = measure(server, make, count, repeat, prepare)
            print(f"{name}: {results[name]}", flush=True)
    _print_search(results, count, corpus)


def _rebuild(workdir: Path) -> Callable[[str], None]:
    """``txmailhost index rebuild USER INBOX``: what an administrator runs after importing
    mail (the bench writes it straight into the Maildir), so the figures are of a complete
    index rather than of the background job still filling it."""

    def run(user: str) -> None:
        run_quietly([sys.executable, "-c", targets._ADMIN, "--data", workdir / "data",
                     "index", "rebuild", user, "INBOX"], timeout=3600)  # fmt: skip

    return run


def _print_search(results: dict, count: int, corpus: str) -> None:
    names = list(results)
    print(f"\n{count:,} messages, corpus {corpus}; medians (ms)")
    print(f"{'':28s}" + "".join(f"{n:>24s}" for n in names))
    for label, _c in COMMANDS:
        row = "".join(f"{results[n]['figures'][label]:24.1f}" for n in names)
        print(f"{label:28s}{row}")
    for n in names:
        r = results[n]
        if r["mail_bytes"]:
            share = r["index_bytes"] / r["mail_bytes"] * 100
            print(
                f"{n}: mail {r['mail_bytes'] / 1e6:.1f} MB, text index"
                f" {r['index_bytes'] / 1e6:.2f} MB ({share:.1f}%) built in"
                f" {r['index_build_s']:.1f} s; first SEARCH TEXT"
                f" {r['first_text_search_ms']:.0f} ms; answer sizes {r['answers']}"
            )


def smtp_suite(messages: int, repeat: int) -> None:
    """Accepted msgs/s at 1 and 50 connections, index on and off, runs alternating."""
    rates: dict[tuple[str, int], list[float]] = {}
    for run in range(repeat):
        for name, extra in (("index on", ""), ("index off", TEXT_INDEX_OFF)):
            with (
                tempfile.TemporaryDirectory(prefix="smtp-index-") as tmp,
                targets.running(Path(tmp), mailauth=False, extra_config=extra) as server,
            ):
                user = f"u1@{BENCH_DOMAIN}"
                server.add_user(user)
                assert server.smtp_port is not None
                for connections in (1, 50):
                    load = smtp_load.SmtpLoad(
                        server.host, server.smtp_port, messages, 4096, connections, 100,
                        recipient=user,
                    )  # fmt: skip
                    result = asyncio.run(smtp_load.run(load))
                    rates.setdefault((name, connections), []).append(result.rate)
                    print(f"run {run + 1} {name} c={connections}: {result.summary()}", flush=True)
    print("\nSMTP accepted msgs/s (median of runs)")
    for connections in (1, 50):
        on = statistics.median(rates[("index on", connections)])
        off = statistics.median(rates[("index off", connections)])
        print(
            f"{connections:3d} connections: on {on:.1f}, off {off:.1f} ({(on / off - 1) * 100:+.1f}%)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imap_search", description=__doc__)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--corpus", choices=("bench", "varied"), default="bench")
    parser.add_argument("--smtp", action="store_true", help="SMTP delivery rate, index on/off")
    parser.add_argument("--smtp-messages", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.smtp:
        smtp_suite(args.smtp_messages, args.repeat)
    else:
        search_suite(args.messages, args.size, args.repeat, args.corpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
