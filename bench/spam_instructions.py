"""``python -m bench.spam_instructions``: what the default filters cost, in instructions.

``bench.spam_throughput`` measures messages a second, which on a shared machine of two cores
moves by 20% from one run to the next (the load of other work, the CPU's clock): too much to
see a change of a few percent in the filters' cost. This bench counts the instructions the
server spends per message instead, under valgrind's callgrind, which no other load changes:
the same code gives the same count to within about 0.5%.

Two servers are run one after the other, as ``bench.spam_throughput`` runs them (filters
on: ``greylist`` + ``spam`` with a trained classifier; off: ``chain = []``; mail
authentication on in both), each under callgrind with instrumentation off until the load
starts (Python's start-up and imports are not counted), then ``--messages`` 4 KiB messages
at ``--connections``. Reported: the server process's instructions per message, and how
many more the "on" server takes than the "off" one. The scoring process is not traced: under
callgrind it would run some fifty times slower, fall behind, and the server would score in
its own threads instead (``spam/offload.py``), which is not what is measured; its own cost
is ``_answer``'s, counted in-process (docs/benchmarks-spam.rst). Needs valgrind
(``apt-get install valgrind``); about a minute a server.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import smtp_load, spam_corpus, spam_throughput

CALLGRIND = (
    "valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
    "--trace-children=no",
)  # fmt: skip


def _load(server, messages: int, connections: int) -> None:  # noqa: ANN001 - a bench Server
    load = smtp_load.SmtpLoad(
        "127.0.0.1", server.smtp_port, messages, 4096, connections, 100,
        recipient=spam_throughput.RECIPIENT,
    )  # fmt: skip
    result = asyncio.run(smtp_load.run(load))
    if result.failed:
        raise RuntimeError(result.summary())


def _control(pid: int, *args: str) -> None:
    """``callgrind_control`` for the server's process only (``--trace-children=no``: its
    children aren't under callgrind). Without the pid it reached every process under
    callgrind on the machine: another bench's (a helper's, a second CI's) turned this one's
    counting off, and the test of this bench found 0 instructions."""
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def measure(on: bool, messages: int, connections: int, trained: int, cache: Path) -> float:
    """The server process's instructions per message."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind"
        out.mkdir()
        wrapper = (*CALLGRIND, f"--callgrind-out-file={out}/%p")
        workdir = Path(work) / "server"
        with spam_throughput._server(workdir, on, wrapper=wrapper, start_timeout=600) as server:
            if on and trained:
                spam_throughput._train(workdir, trained, cache)
            _load(server, 60, min(connections, 10))  # imports, SQLite files, the scoring child
            pid = server.pids()[0]  # valgrind's, which runs the server in its own process
            _control(pid, "-i", "on")
            _load(server, messages, connections)
            _control(pid, "-d")
            _control(pid, "-i", "off")
        return sum(_total(dump) for dump in glob.glob(f"{out}/*.1")) / messages


def _total(dump: str) -> int:
    with open(dump) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_instructions", description=__doc__)
    parser.add_argument("--messages", "-n", type=int, default=300)
    parser.add_argument("--connections", "-c", type=int, default=5)
    parser.add_argument("--trained", type=int, default=500)
    parser.add_argument(
        "--cache",
        type=Path,
        default=spam_corpus.default_cache(),
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    found = {}
    for on in (False, True):
        found[on] = measure(on, args.messages, args.connections, args.trained, args.cache)
        name = "filters on " if on else "filters off"
        print(f"{name}: server {found[on] / 1e6:.3f} M instructions a message", flush=True)
    print(f"filtering: +{100 * (found[True] - found[False]) / found[False]:.1f}% in the server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
