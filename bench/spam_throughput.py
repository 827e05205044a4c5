"""``python -m bench.spam_throughput``: SMTP messages/s with the default filters on and off.

Two txmailhost servers (``bench.targets.running``): one as configured by default
(``[filters] chain = ["greylist", "spam"]``; the load comes from 127.0.0.1, which greylisting
exempts, so what is measured is the spam filter's cost: a thread hop, a bounded read and
parse, the rules, two SQLite look-ups) and one with ``chain = []``. Runs alternate between
them (``--repeat``), the load being ``bench.smtp_load`` (``--connections`` at once, 4 KiB
messages). Reported: msgs/s of each run, and how much lower "on" is than the "off"
run before it (median and range of the pairs). Issue 17's target: filtering
costs at most 20%.

``--trained N`` (default 500) first trains the "on" server's global classifier with N spam
and N ham of the SpamAssassin public corpus (``bench.spam_corpus`` fetches it into its cache)
through ``txmailhost spam train``: an untrained classifier stays silent (``bayes_min_messages``)
and makes no tokens, so without training the figure would leave out the classifier's cost,
which every real installation pays. ``--trained 0`` measures the untrained server.

``--corpus`` sends real mail instead of ``bench.messages``' 4 KiB of one line repeated: the
SpamAssassin corpus's easy ham 2 and spam 2 in turn (those not used for ``--trained``; the
few with bare CRs, which the server refuses, left out; dot-stuffed), the same messages to
both servers, whose mail authentication is off (the corpus's senders are real domains, which
the bench must not look up). The filter's cost per message is real mail's: a repeated line is cheap to
tokenize and rule, a newsletter with HTML parts is not.

``--workers N`` runs both servers with ``[server] workers = N`` (the default, 1, is one
process; a server's own default is one worker per core). Each run also prints the CPU a
message took: the whole machine's (``/proc/stat``: the server, its scoring processes, the
load generator) and the scoring processes' alone, so filtering's cost is seen in CPU as well
as in messages a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import smtp_load, spam_corpus, targets
from bench.server import cpu_seconds
from bench.smtp_floor import machine_busy

RECIPIENT = "u1@bench.test"


@contextlib.contextmanager
def _server(workdir: Path, filters: bool, workers: int = 1, **options: Any):
    """A server with the default filters, or with none (``chain = []``). The config goes in
    as ``extra_config``: the bench once swapped ``targets._CONFIG`` for the "off" server and
    restored it only when that server stopped, so the "on" server, started next, was given
    the "off" config too and both ran without filters (it measured 2-11% for filtering that
    never ran)."""
    extra = "" if filters else "\n[filters]\nchain = []\n"
    name = "filters on" if filters else "filters off"
    with targets.running(
        workdir, name=name, extra_config=extra, workers=workers, **options
    ) as server:
        server.add_user(RECIPIENT)
        yield server


def training_messages(cache: Path, count: int) -> dict[str, list[bytes]]:
    """The first ``count`` of spam 2 and of easy ham 2 (``"spam"``, ``"ham"``): what the "on"
    server is trained on, and what ``corpus_bodies`` leaves out (``bench.spam_anchor`` trains
    rspamd on the same)."""
    data = spam_corpus.fetch(cache)
    return {
        kind: spam_corpus.load(data, group)[:count]
        for kind, group in (("spam", "spam-2"), ("ham", "easy-ham-2"))
    }


def _train(workdir: Path, count: int, cache: Path) -> None:
    """``txmailhost spam train`` of the global classifier on ``count`` spam and ``count`` ham."""
    for kind, messages in training_messages(cache, count).items():
        folder = workdir / f"train-{kind}"
        folder.mkdir()
        for i, message in enumerate(messages):
            (folder / f"{i}.eml").write_bytes(message)
    subprocess.run(
        [sys.executable, "-c", targets._ADMIN, "--data", str(workdir / "data"), "spam", "train",
         "--spam", str(workdir / "train-spam"), "--ham", str(workdir / "train-ham")],
        check=True, capture_output=True,
    )  # fmt: skip


def scoring_children(data_dir: str) -> list[int]:
    """Pids of the scoring processes whose token store is under ``data_dir`` (the e2e tests
    look for them too)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"txmailhost.spam.scorechild" not in argv:
            continue
        if any(a.decode(errors="replace").startswith(data_dir) for a in argv):
            found.append(int(entry))
    return found


def wire_form(message: bytes) -> bytes | None:
    """``message`` (CRLF lines) as DATA carries it: dot-stuffed, ending in CRLF; None for one
    the server would refuse for its bare CRs (RFC 5321 2.3.8, the smuggling defence)."""
    if b"\r" in message.replace(b"\r\n", b""):
        return None
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def corpus_bodies(cache: Path, skip: int) -> tuple[bytes, ...]:
    """Easy ham 2 and spam 2 in turn, past the first ``skip`` of each (``_train``'s)."""
    data = spam_corpus.fetch(cache)
    ham, spam = (spam_corpus.load(data, group)[skip:] for group in ("easy-ham-2", "spam-2"))
    mixed = [m for pair in zip(ham, spam, strict=False) for m in pair]
    return tuple(w for w in map(wire_form, mixed) if w is not None)


def _rate(
    server,
    messages: int,
    connections: int,
    workdir: Path | None = None,
    bodies: tuple[bytes, ...] = (),
) -> float:
    load = smtp_load.SmtpLoad(
        "127.0.0.1", server.smtp_port, messages, 4096, connections, 100, recipient=RECIPIENT,
        bodies=bodies,
    )  # fmt: skip

    def scoring() -> float:  # the running scoring processes' CPU (they end after minutes idle)
        return cpu_seconds(scoring_children(str(workdir))) if workdir else 0.0

    busy, scored = machine_busy(), scoring()
    result = asyncio.run(smtp_load.run(load))
    if result.failed:
        raise RuntimeError(result.summary())
    if workdir is not None:
        machine = 1000 * (machine_busy() - busy) / result.accepted
        child = 1000 * (scoring() - scored) / result.accepted
        print(f"  CPU a message: {machine:.2f} ms (the machine), scoring processes {child:.2f} ms")
    return result.accepted / result.elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_throughput", description=__doc__)
    parser.add_argument("--messages", "-n", type=int, default=2000)
    parser.add_argument("--connections", "-c", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="[server] workers of both")
    parser.add_argument(
        "--trained", type=int, default=500, help="spam and ham each to train the 'on' server with"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=spam_corpus.default_cache(),
        help="where the corpus is kept (bench.spam_corpus's cache)",
    )
    parser.add_argument(
        "--corpus", action="store_true", help="send the corpus's mail, not a repeated line"
    )
    args = parser.parse_args(argv)
    bodies = corpus_bodies(args.cache, args.trained) if args.corpus else ()
    if bodies:
        mean = sum(map(len, bodies)) / len(bodies)
        print(f"sending {len(bodies)} corpus messages in turn ({mean / 1024:.1f} KiB on average)")
    rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        servers = {
            # Mail authentication off for the corpus (both servers): its senders' domains
            # are real ones, which must not be looked up from here.
            on: stack.enter_context(
                _server(
                    Path(work) / ("on" if on else "off"), on, args.workers, mailauth=not args.corpus
                )
            )  # fmt: skip
            for on in (False, True)
        }
        if args.trained:
            _train(Path(work) / "on", args.trained, args.cache)
            print(f"filters on: classifier trained on {args.trained} spam + {args.trained} ham")
        _rate(servers[True], 200, 10)  # warm-up: imports, SQLite files
        for _ in range(args.repeat):
            for on in (False, True):
                workdir = Path(work) / ("on" if on else "off")
                rate = _rate(servers[on], args.messages, args.connections, workdir, bodies)
                rates[on].append(rate)
                print(f"filters {'on ' if on else 'off'}: {rates[on][-1]:8.1f} msgs/s", flush=True)
    print_cost(rates)
    return 0


def print_cost(rates: dict[bool, list[float]]) -> None:
    """The medians of the "off" (False) and "on" (True) runs' msgs/s, and how much lower
    "on" is: each "on" run against the "off" run just before it, since a busy spell of the
    machine hits both alike (``bench.spam_anchor`` prints Postfix's the same way)."""
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    costs = [100 * (1 - b / a) for a, b in zip(rates[False], rates[True], strict=True)]
    print(
        f"median: off {off:.1f} msgs/s, on {on:.1f} msgs/s; on is lower by "
        f"{statistics.median(costs):.1f}% (median of pairs; {min(costs):.1f} to {max(costs):.1f})"
    )


if __name__ == "__main__":
    sys.exit(main())
