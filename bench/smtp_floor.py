"""``python -m bench.smtp_floor``: where the ceiling of SMTP msgs/s is on this box, and why.

Issue 22 asks for accepted SMTP msgs/s (each message fsync'd before its ``250``) at 50
connections of at least twice Postfix's. This puts side by side, in one run, on the same load
(``bench.smtp_load``: 4 KiB messages, 100 per connection, commands in lock-step, at 1 and at 50
connections) and alternating run by run so a noisy spell hits every column:

- Debian's Postfix (``bench.anchors.postfix``, as ``python -m bench --only smtp`` starts it);
- txmailhost (``bench.targets``) with its defaults, workers = 1 and = 2; with
  ``[filters] chain = []``; and with no filters and no mail authentication either;
- the floor (``bench.floor_server``): the least SMTP server Twisted can be, protocol and the
  fsync before the ``250`` and nothing else; with one fsync per message into files made
  ahead (txmailhost's way), with create + two fsyncs per message, with no fsync at all, and
  in two processes sharing the port (``SO_REUSEPORT``).

For every run: msgs/s (first connect to last ``250``); the server's CPU per message (user +
system from ``/proc`` of all its processes, Postfix's master and every child, read before the
run, at the last ``250``, and once every message is in the Maildir, so a server that delivers
after the ``250`` is charged for it); the load generator's CPU per message (this process:
nothing else runs in it meanwhile); what the rest of the machine used meanwhile (busy time
from ``/proc/stat`` less those two: other users of a shared box); the load average. The
disk's fsync ceiling (``bench.fsync_ceiling``) is measured before and after.

Reported as an rst page (``--output``): per connection count, the median of each figure over
the runs, its range, and msgs/s relative to Postfix. Needs root (Postfix's master); without
Postfix installed its column is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import fsync_ceiling, maildirs, smtp_load, targets
from bench.anchors import postfix
from bench.server import BENCH_DOMAIN, Server, cpu_seconds, free_port, kill_tree, wait_for_port

MESSAGE_SIZE = 4096
PER_CONNECTION = 100
POSTFIX = postfix.NAME


@dataclass(frozen=True)
class Contender:
    """A server of the comparison: its name in the table, how to start it, and whether it
    delivers into a Maildir after the ``250`` (then CPU is counted until the Maildir is full)."""

    name: str
    start: Callable[[Path], contextlib.AbstractContextManager[Server]]
    delivers: bool
    about: str


@contextlib.contextmanager
def floor(workdir: Path, durability: str = "spare", processes: int = 1) -> Iterator[Server]:
    """Start ``processes`` floor servers on one port (``SO_REUSEPORT`` when more than one)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.floor_server", "--port", str(port)]
    argv += ["--durability", durability] + (["--reuseport"] if processes > 1 else [])
    children: list[subprocess.Popen[bytes]] = []
    try:
        with open(workdir / "floor.out", "wb") as out:
            for number in range(processes):
                spool = ["--spool", str(workdir / f"spool{number}")]
                children.append(
                    subprocess.Popen(argv + spool, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
                )
        wait_for_port("127.0.0.1", port, 30, alive=lambda: all(c.poll() is None for c in children))
        yield Server(
            name="floor",
            version="",
            host="127.0.0.1",
            add_user=lambda address: workdir,
            pids=lambda: [c.pid for c in children],
            smtp_port=port,
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_tree(child.pid)
                child.wait()


NO_FILTERS = "\n[filters]\nchain = []\n"
CONTENDERS = (
    Contender(POSTFIX, postfix.running, True, "Debian's Postfix, the harness's anchor"),
    Contender(
        "txmailhost",
        functools.partial(targets.running, workers=1),
        True,
        "defaults (filters greylist + spam, SPF/DKIM/DMARC), workers = 1",
    ),
    Contender(
        "txmailhost w2",
        functools.partial(targets.running, workers=2),
        True,
        "defaults, workers = 2",
    ),
    Contender(
        "txmailhost nofilter",
        functools.partial(targets.running, extra_config=NO_FILTERS),
        True,
        "[filters] chain = [], workers = 1 (mail authentication still on)",
    ),
    Contender(
        "txmailhost bare",
        functools.partial(targets.running, extra_config=NO_FILTERS, mailauth=False),
        True,
        "chain = [] and [mailauth] check_inbound = false, workers = 1",
    ),
    Contender(
        "floor",
        functools.partial(floor, durability="spare"),
        False,
        "floor server, one fsync per message into files made ahead",
    ),
    Contender(
        "floor create",
        functools.partial(floor, durability="create"),
        False,
        "floor server, create + fsync file + fsync directory per message",
    ),
    Contender(
        "floor nofsync",
        functools.partial(floor, durability="none"),
        False,
        "floor server, writes but fsyncs nothing",
    ),
    Contender(
        "floor x2",
        functools.partial(floor, durability="spare", processes=2),
        False,
        "two floor processes on one port (SO_REUSEPORT), one fsync per message",
    ),
)


def machine_busy() -> float:
    """Seconds of CPU the whole machine has been busy (all cores, ``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """This process's CPU seconds (user + system, all threads): the load generator's."""
    times = os.times()
    return times.user + times.system


@dataclass
class Run:
    """One measured run of one server."""

    rate: float
    server_ms: float  # server CPU per message, until every message was delivered
    accept_ms: float  # server CPU per message until the last 250
    client_ms: float  # load generator CPU per message
    others: float  # cores the rest of the machine kept busy meanwhile (of os.cpu_count())
    load: float  # one-minute load average at the end of the run
    failed: int


@dataclass
class Figures:
    """Every run of every server, per connection count."""

    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)
    fsync: list[tuple[int, float]] = field(default_factory=list)  # (writers, creates/s)
    problems: list[str] = field(default_factory=list)
    load_at_start: tuple[float, float, float] = (0.0, 0.0, 0.0)  # os.getloadavg()

    def add(self, name: str, connections: int, run: Run) -> None:
        self.runs.setdefault((name, connections), []).append(run)


def measure(
    server: Server, maildir: Path | None, messages: int, connections: int, recipient: str
) -> Run:
    """One load against ``server``; CPU sampled around it (module doc)."""
    load = smtp_load.SmtpLoad(
        "127.0.0.1",
        server.smtp_port or 0,
        messages,
        MESSAGE_SIZE,
        connections,
        PER_CONNECTION,
        recipient=recipient,
    )
    server_before, client_before = cpu_seconds(server.pids()), own_cpu()
    busy_before, started = machine_busy(), time.perf_counter()
    result = asyncio.run(smtp_load.run(load))
    client_after, server_accepted = own_cpu(), cpu_seconds(server.pids())
    if maildir is not None:
        deadline = time.monotonic() + 120
        while maildirs.count(maildir) < result.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
    server_after, busy_after = cpu_seconds(server.pids()), machine_busy()
    wall = time.perf_counter() - started
    per = 1000 / max(1, result.accepted)
    server_cpu, client_cpu = server_after - server_before, client_after - client_before
    return Run(
        rate=result.rate,
        server_ms=server_cpu * per,
        accept_ms=(server_accepted - server_before) * per,
        client_ms=client_cpu * per,
        others=max(0.0, busy_after - busy_before - server_cpu - client_cpu) / wall,
        load=os.getloadavg()[0],
        failed=result.failed,
    )


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_all(
    contenders: list[Contender],
    connection_counts: list[int],
    messages: int,
    repeat: int,
    workdir: Path,
    fsync_seconds: float = 2.0,
) -> Figures:
    """Start every contender, then alternate them run by run at each connection count.

    The disk's fsync ceiling is measured for ``fsync_seconds`` before and after.
    """
    figures = Figures(load_at_start=os.getloadavg())
    for writers in (1, 8):
        figures.fsync.append((writers, fsync_ceiling.measure(workdir, fsync_seconds, writers)))
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[Contender, Server]] = {}
        for contender in contenders:
            say(f"starting {contender.name}")
            folder = workdir / contender.name.replace(" ", "-")
            servers[contender.name] = (contender, stack.enter_context(contender.start(folder)))
        # Every mailbox made first: Postfix reloads for each, which must not fall in a run.
        boxes: dict[tuple[str, str], Path | None] = {}
        for name, (contender, server) in servers.items():
            for local in ["warmup"] + [
                f"c{conns}r{run}" for conns in connection_counts for run in range(repeat)
            ]:
                address = f"{local}@{BENCH_DOMAIN}"
                boxes[name, local] = server.add_user(address) if contender.delivers else None
        for name, (_, server) in servers.items():
            measure(server, boxes[name, "warmup"], 200, 10, f"warmup@{BENCH_DOMAIN}")
        for conns in connection_counts:
            for run in range(repeat):
                for name, (_, server) in servers.items():
                    local = f"c{conns}r{run}"
                    result = measure(
                        server, boxes[name, local], messages, conns, f"{local}@{BENCH_DOMAIN}"
                    )
                    figures.add(name, conns, result)
                    if result.failed:
                        figures.problems.append(f"{name}, {conns} conn, run {run + 1}: failed")
                    say(
                        f"{name:22} c={conns:<3} run {run + 1}: {result.rate:7.1f} msgs/s, "
                        f"server {result.server_ms:.3f} ms/msg (at 250: {result.accept_ms:.3f})"
                        f", client {result.client_ms:.3f}, others {result.others:.2f} cores, "
                        f"load {result.load:.1f}"
                    )
    for writers in (1, 8):
        figures.fsync.append((writers, fsync_ceiling.measure(workdir, fsync_seconds, writers)))
    return figures


def _median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(r, attribute) for r in runs)


def _range(runs: list[Run], attribute: str, digits: int) -> str:
    values = [getattr(r, attribute) for r in runs]
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def _ratio(runs: list[Run], anchor: list[Run]) -> str:
    """msgs/s over Postfix's in the same round (they ran one after the other), median of the
    rounds: a busy spell on a shared box then lowers both sides of a ratio, not one median."""
    pairs = [r.rate / a.rate for r, a in zip(runs, anchor, strict=False) if a.rate > 0]
    return f"{statistics.median(pairs):.2f}" if pairs else "—"


def table(figures: Figures, contenders: list[Contender], connections: int) -> list[str]:
    """The rst table of one connection count: medians, ranges, and the ratio to Postfix."""
    anchor = figures.runs.get((POSTFIX, connections), [])
    rows = [
        ("Server", "msgs/s", "range", "x Postfix", "server ms/msg", "at 250",
         "client ms/msg", "server + client", "others (cores)", "load"),
    ]  # fmt: skip
    for contender in contenders:
        runs = figures.runs.get((contender.name, connections))
        if not runs:
            continue
        rate = _median(runs, "rate")
        server, client = _median(runs, "server_ms"), _median(runs, "client_ms")
        rows.append(
            (
                contender.name,
                f"{rate:.0f}",
                _range(runs, "rate", 0),
                _ratio(runs, anchor),
                f"{server:.3f}",
                f"{_median(runs, 'accept_ms'):.3f}",
                f"{client:.3f}",
                f"{server + client:.3f}",
                f"{_median(runs, 'others'):.2f}",
                _range(runs, "load", 1),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [
        rule,
        "  ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)).rstrip(),
        rule,
    ]
    for row in rows[1:]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return [*lines, rule]


def report(
    figures: Figures,
    contenders: list[Contender],
    connection_counts: list[int],
    command: str,
    messages: int,
    repeat: int,
    started: datetime.datetime,
) -> str:
    """One run as rst: the run, the servers, a table per connection count, the fsync ceiling.

    Its subsections are underlined with ``~``: it goes under a ``-`` heading (one per run) of
    docs/benchmarks-smtp-floor.rst.
    """
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = [
        ":Date: " + started.strftime("%Y-%m-%d %H:%M UTC"),
        f":Command: ``{command}`` (from the project root)",
        f":Machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}",
        f":Software: Python {platform.python_version()}, txmailhost {targets.version()}, "
        f"Postfix {postfix.version() if postfix.unavailable() is None else '(not run)'}",
        f":Revision: {revision or 'unknown'}",
        ":Load average: at the start {:.2f}, {:.2f}, {:.2f} (1, 5, 15 min); ".format(
            *figures.load_at_start
        )
        + "after each server's runs: see *load* in the tables",
        f":Workload: {messages} messages of {MESSAGE_SIZE} bytes per run, {PER_CONNECTION} per "
        f"connection, commands in lock-step (``bench.smtp_load``); {repeat} runs of each "
        "server, alternating; medians, with the range of msgs/s and of the load average; *x Postfix* is the median of each round's ratio to Postfix's run in that round.",
        "",
        "Servers:",
        "",
        *(f"- **{c.name}**: {c.about}" for c in contenders),
        "",
        "Columns: *server ms/msg* is the server's CPU (user + system, every process) per "
        "message until all were delivered into the Maildir (the floor delivers nothing); "
        "*at 250* the same until the last ``250``; *client* the load generator's; *others* "
        "how many cores the rest of the machine kept busy meanwhile (other users of a shared "
        "box, and kernel work no process is charged for: journal commits, softirqs); "
        "*load* the one-minute load average at the end of the runs.",
        "",
    ]
    for conns in connection_counts:
        title = f"{conns} connection{'s' if conns > 1 else ''}"
        out += [title, "~" * len(title), "", *table(figures, contenders, conns), ""]
    out += ["Disk", "~~~~", ""]
    for when, pair in (("before", figures.fsync[:2]), ("after", figures.fsync[2:])):
        text = ", ".join(f"{rate:.0f}/s with {writers} writer(s)" for writers, rate in pair)
        out.append(f"- fsync'd 4 KiB creates (``bench.fsync_ceiling``), {when}: {text}")
    out.append("")
    if figures.problems:
        out += ["Problems", "~~~~~~~~", "", *(f"- {p}" for p in figures.problems), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_floor", description=__doc__)
    parser.add_argument("--messages", "-n", type=int, default=2000)
    parser.add_argument("--connections", default="1,50", help="comma-separated counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", help="comma-separated server names (default: all)", default="")
    parser.add_argument("--output", type=Path, help="write the rst section here")
    args = parser.parse_args(argv)
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    contenders = [c for c in CONTENDERS if not wanted or c.name in wanted]
    if reason := postfix.unavailable():
        say(f"Postfix left out: {reason}")
        contenders = [c for c in contenders if c.name != POSTFIX]
    counts = [int(c) for c in args.connections.split(",")]
    started = datetime.datetime.now(datetime.UTC)
    # Killed (CI, a timeout): unwind, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python -m bench.smtp_floor " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="smtp-floor-") as work:
        Path(work).chmod(0o755)  # Postfix's unprivileged daemons must traverse it
        figures = run_all(contenders, counts, args.messages, args.repeat, Path(work))
        # Written before the temp directory goes: removing ~10^5 spooled files takes minutes.
        text = report(
            figures, contenders, counts, command.strip(), args.messages, args.repeat, started
        )
        if args.output:
            args.output.write_text(text + "\n")
        print(text, flush=True)
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
