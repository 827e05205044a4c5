"""``python -m bench.spam_anchor``: issue 17's throughput floor for the field's best, Postfix + rspamd.

``bench.spam_throughput --corpus`` says what filtering costs txmailhost in SMTP msgs/s at 50
connections. This is the same measurement of what it costs the setup issue 17 names as the
best in the field: Debian's Postfix (``bench.anchors.postfix``) with Debian's rspamd as its
milter, the way rspamd's documentation integrates the two (``smtpd_milters`` pointing at
rspamd's proxy worker, which is in milter mode in the stock config and hands each message to
the normal worker to scan; ``milter_default_action = accept``).

Two Postfix instances run side by side, one plain ("off") and one with the milter ("on"); the
runs alternate between them (``--repeat``), each the same corpus mail as
``bench.spam_throughput --corpus`` (``corpus_bodies``: easy ham 2 and spam 2 in turn, past
the 500 + 500 trained, dot-stuffed) at ``--connections`` through ``bench.smtp_load``. Printed
like spam_throughput's: msgs/s of each run, "on" lower by (median and range of the pairs),
and per message the machine's CPU (``/proc/stat``), then that of each part: Postfix (its
master and every child), the load generator (this process), rspamd (every rspamd process),
Redis and the loopback DNS server, all sampled before the run and at its last ``250`` (as
spam_throughput does; Postfix delivers after it). On a shared machine the machine's figure
holds other people's work too; the parts are the run's own. A message rspamd rejects
(stock: score 15 or more) gets Postfix's 554 after its DATA; it was scanned and answered, so
it counts as handled, and the run says how many.

rspamd runs as an operator runs it: its stock configuration (a copy of /etc/rspamd) as its
own user, Bayes in a Redis of its own (a free loopback port, nothing saved), trained before
the runs with ``rspamc learn_spam``/``learn_ham`` on the same 500 + 500 messages as
txmailhost's classifier (``spam_throughput.training_messages``). Nothing may leave the
machine, so the copy differs from the stock config in only these:

- DNS goes to a loopback server (``bench.nxdomain_server``) that answers NXDOMAIN at once
  for every name: the RBL, SURBL, SPF, DMARC, ASN and phishtank look-ups are all made and
  all come back empty, none waits on a timeout. (So the symbols that want a name to resolve
  fire: ``HFILTER_HOSTNAME_UNKNOWN``, ``RDNS_NONE``, ``HFILTER_FROMHOST_NORES_A_OR_MX``.)
  Its CPU is printed apart; it is in the machine's.
- ``fuzzy_check`` is off (its only servers are rspamd.com's).
- The maps rspamd would download from maps.rspamd.com are an empty file instead. Where the
  stock config lists a packaged fallback (``fallback+file://``) after the URL, the module
  uses that, as it does when a download fails: rbl's URL whitelist, whitelist's SPF+DKIM
  and DMARC domains, phishing's redirectors, ``mime_types``, ``mid``. Left empty, having
  none: multimap's freemail and disposable-domain maps, phishing's whitelist.

Checked on every run, so the bench cannot time a milter that was skipped: rspamd's scanned
count (``rspamc stat``) grows by every message the "on" Postfix was sent, and every accepted
message of both lands in the Maildir (counted before the next run). Needs root (Postfix's
master; rspamd then drops to ``_rspamd``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench import smtp_load, spam_corpus
from bench.anchors import postfix
from bench.server import cpu_seconds, free_port, listens, process_tree, stop, wait_for_port
from bench.smtp_floor import machine_busy, own_cpu
from bench.spam_throughput import RECIPIENT, corpus_bodies, print_cost, training_messages

STOCK_CONFIG = Path("/etc/rspamd")
RSPAMD_USER = "_rspamd"
REPO = Path(__file__).resolve().parent.parent
_QUIET = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
# A map rspamd would download; the optional "glob;" prefix kept (module doc).
_MAP_URL = re.compile(r'"(glob;)?https?://maps\.rspamd\.com/[^"]*"')


def unavailable() -> str | None:
    """Why this bench can't run here, or None."""
    if why := postfix.unavailable():
        return why
    for program in ("rspamd", "rspamc", "redis-server"):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian: rspamd, redis-server)"
    if not STOCK_CONFIG.is_dir():
        return f"no stock rspamd config in {STOCK_CONFIG}"
    return None


@dataclass
class Rspamd:
    """A running rspamd: where Postfix's milter and ``rspamc`` reach it, and its processes."""

    milter: str  # smtpd_milters' form: inet:127.0.0.1:PORT, or unix:PATH
    controller: str  # host:port for ``rspamc -h``
    normal: str  # host:port of the normal worker: what an MTA's ``/checkv2`` asks
    log: Path
    pids: Callable[[], list[int]]
    redis_pid: int
    dns_pid: int  # the loopback DNS server: an operator's local resolver, here a Python one


@contextlib.contextmanager
def _process(argv: list[str], log: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """A child process for the length of the block, stopped (TERM, then KILL) after it."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield child
    finally:
        stop(child)


@contextlib.contextmanager
def loopback_dns() -> Iterator[tuple[int, subprocess.Popen]]:
    """``bench.nxdomain_server`` on 127.0.0.1: NXDOMAIN for every name, at once. Yields its
    UDP port and process."""
    argv = [sys.executable, "-m", "bench.nxdomain_server"]
    server = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the loopback DNS server did not start: {line!r}")
        yield int(line), server
    finally:
        stop(server)


# How often a server is started again on new ports when one of its ports was taken first.
PORT_ATTEMPTS = 5


@contextlib.contextmanager
def _listening(
    names: tuple[str, ...],
    start: Callable[[dict[str, int]], AbstractContextManager[subprocess.Popen]],
    log: Path,
    timeout: float,
) -> Iterator[tuple[dict[str, int], subprocess.Popen]]:
    """``start`` a server on a free loopback port for each of ``names`` and wait until it
    listens on all of them; yields the ports and the process.

    ``free_port`` is a probe, not a reservation: a test running beside (pytest-xdist) can
    bind the port first. Then the server exits ("Address already in use" in ``log``), or
    ``wait_for_port`` finds the stranger listening; either way the server is started again
    on new ports, up to ``PORT_ATTEMPTS`` times. Any other failure is raised with the log's
    tail."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        ports = {name: free_port() for name in names}
        seen = log.stat().st_size if log.exists() else 0
        with start(ports) as server:
            taken: list[int] = []
            try:
                for port in ports.values():
                    alive = lambda: server.poll() is None  # noqa: E731
                    wait_for_port("127.0.0.1", port, timeout, alive=alive)
                ours = process_tree(server.pid) if server.poll() is None else []
                taken = [port for port in ports.values() if not listens(ours, port)]
                if taken:
                    raise RuntimeError(f"another process listens on {taken}")
            except (RuntimeError, TimeoutError) as e:
                said = ""
                with contextlib.suppress(OSError), log.open("rb") as text:
                    text.seek(seen)
                    said = text.read().decode(errors="replace")
                if attempt < PORT_ATTEMPTS and (taken or "Address already in use" in said):
                    continue
                raise RuntimeError(f"{log.parent.name} did not start: {e}\n{said[-2000:]}") from e
            yield ports, server
            return


@contextlib.contextmanager
def redis(workdir: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A Redis of our own on a free loopback port, keeping nothing on disk."""
    workdir.mkdir(parents=True, exist_ok=True)

    def start(ports: dict[str, int]) -> AbstractContextManager[subprocess.Popen]:
        argv = ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(workdir),
                "--protected-mode", "yes"]  # fmt: skip
        return _process(argv, workdir / "redis.log")

    with _listening(("redis",), start, workdir / "redis.log", 30) as (ports, server):
        yield ports["redis"], server


def offline_config(
    home: Path,
    dns_port: int,
    redis_port: int,
    ports: dict[str, int],
    workers: int | None = None,
    milter_socket: Path | None = None,
) -> Path:
    """The stock config copied into ``home/conf``, with the module doc's few changes: local.d
    files for the loopback DNS, Redis and ports, fuzzy_check off, downloaded maps empty; and
    when asked, ``workers`` normal workers instead of the stock count (one), and the proxy
    listening on ``milter_socket`` (a Unix socket) too."""
    conf = home / "conf"
    shutil.copytree(STOCK_CONFIG, conf)
    empty_map = home / "db" / "offline.map"
    empty_map.parent.mkdir(parents=True, exist_ok=True)
    empty_map.write_text("")
    for path in conf.rglob("*"):
        if path.is_file():
            text = path.read_text()
            offline = _MAP_URL.sub(lambda m: f'"{m.group(1) or ""}{empty_map}"', text)
            if offline != text:
                path.write_text(offline)
    local = conf / "local.d"
    local.mkdir(exist_ok=True)
    (local / "options.inc").write_text(f'dns {{ nameserver = ["127.0.0.1:{dns_port}"]; }}\n')
    (local / "redis.conf").write_text(f'servers = "127.0.0.1:{redis_port}";\n')
    (local / "fuzzy_check.conf").write_text("enabled = false;\n")
    (local / "worker-normal.inc").write_text(
        f'bind_socket = "127.0.0.1:{ports["normal"]}";\n'
        + (f"count = {workers};\n" if workers else "")
    )
    (local / "worker-controller.inc").write_text(
        f'bind_socket = "127.0.0.1:{ports["controller"]}";\n'
    )
    (local / "worker-proxy.inc").write_text(
        f'bind_socket = "127.0.0.1:{ports["proxy"]}";\n'
        + (f'bind_socket = "{milter_socket} mode=0666";\n' if milter_socket else "")
        + f'upstream "local" {{ default = yes; hosts = "127.0.0.1:{ports["normal"]}"; }}\n'
    )
    return conf


@contextlib.contextmanager
def running_rspamd(
    workdir: Path,
    workers: int | None = None,
    unix_milter: bool = False,
    start_timeout: float = 120.0,
) -> Iterator[Rspamd]:
    """Redis, the loopback DNS server and rspamd (stock config, offline) for the block; with
    ``unix_milter``, Postfix is to reach the proxy by a Unix socket instead of TCP."""
    home = workdir / "rspamd"
    home.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        dns_port, dns_server = stack.enter_context(loopback_dns())
        redis_port, redis_server = stack.enter_context(redis(workdir / "redis"))
        milter_socket = home / "milter.sock" if unix_milter else None

        def start(ports: dict[str, int]) -> AbstractContextManager[subprocess.Popen]:
            shutil.rmtree(home / "conf", ignore_errors=True)
            conf = offline_config(home, dns_port, redis_port, ports, workers, milter_socket)
            subprocess.run(["chown", "-R", f"{RSPAMD_USER}:{RSPAMD_USER}", str(home)], check=True)
            argv = ["rspamd", "-f", "-u", RSPAMD_USER, "-g", RSPAMD_USER,
                    "-c", str(conf / "rspamd.conf"), f"--var=CONFDIR={conf}",
                    f"--var=LOCAL_CONFDIR={conf}", f"--var=DBDIR={home / 'db'}",
                    f"--var=RUNDIR={home}", f"--var=LOGDIR={home}"]  # fmt: skip
            return _process(argv, home / "rspamd.out")

        os.chmod(workdir, 0o755)
        names = ("normal", "controller", "proxy")
        ports, main = stack.enter_context(
            _listening(names, start, home / "rspamd.log", start_timeout)
        )
        alive = lambda: main.poll() is None  # noqa: E731
        yield Rspamd(
            milter=f"unix:{milter_socket}" if milter_socket else f"inet:127.0.0.1:{ports['proxy']}",
            controller=f"127.0.0.1:{ports['controller']}",
            normal=f"127.0.0.1:{ports['normal']}",
            log=home / "rspamd.log",
            pids=lambda: process_tree(main.pid) if alive() else [],
            redis_pid=redis_server.pid,
            dns_pid=dns_server.pid,
        )


def wait_hyperscan(rspamd: Rspamd, timeout: float = 180.0) -> bool:
    """Until every normal worker has loaded the hyperscan database its hs_helper compiles
    after the start (until then it matches with PCRE, slower): False if that never came."""
    loaded = re.compile(rb"\(normal\) .*full hyperscan database of \d+ regexps has been loaded")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if len(loaded.findall(rspamd.log.read_bytes())) >= normal_workers(rspamd):
                return True
        time.sleep(0.5)
    return False


def rspamc(rspamd: Rspamd, *args: str) -> str:
    """Run ``rspamc`` against the controller; its output."""
    done = subprocess.run(
        ["rspamc", "-h", rspamd.controller, *args], capture_output=True, text=True, timeout=600
    )
    if done.returncode:
        raise RuntimeError(f"rspamc {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def train(
    rspamd: Rspamd, workdir: Path, messages: dict[str, list[bytes]], bulk: bool = False
) -> tuple[dict[str, int], collections.Counter[str]]:
    """``rspamc learn_spam`` / ``learn_ham`` of each kind's messages (files in a folder).

    Returns, by kind, how many rspamd took (``success = true``), and why it refused the
    others (the message id taken out). The stock config's ``learn_condition`` refuses one
    the classifier already puts in that class with 95% or more once it has its 200 learns
    of each, and any message learned before (the corpus repeats a few). With ``bulk`` the
    requests carry ``Learn-Type: bulk``, which that condition (``lua_bayes_learn.can_learn``)
    lets through whatever the class: every message is learned, as ``sa-learn`` does, but
    those learned before and those with fewer than ``min_tokens``."""
    taken, refused = {}, collections.Counter[str]()
    header = ["--header", "Learn-Type: bulk"] if bulk else []
    for kind, batch in messages.items():
        folder = workdir / f"train-{kind}"
        folder.mkdir()
        for i, message in enumerate(batch):
            (folder / f"{i}.eml").write_bytes(message)
        answer = rspamc(rspamd, *header, "-n", "4", f"learn_{kind}", str(folder))
        taken[kind] = answer.count("success = true;")
        for reason in re.findall(r'^error = "(.*)";$', answer, re.MULTILINE):
            refused[re.sub(r"<[^>]*>|\d+(\.\d+)?%", "…", reason)] += 1
    return taken, refused


def bayes_applies(rspamd: Rspamd, workdir: Path, bodies: tuple[bytes, ...], count: int = 20) -> int:
    """How many of the first ``count`` ``bodies`` rspamd's scan gives a BAYES_ symbol: none
    would mean the classifier measured is not the trained one (too few learns, no Redis)."""
    folder = workdir / "probe"
    folder.mkdir()
    for i, body in enumerate(bodies[:count]):
        (folder / f"{i}.eml").write_bytes(body)
    answer = rspamc(rspamd, "-n", "4", "symbols", str(folder))
    return len(re.findall(r"^Symbol: BAYES_(?:SPAM|HAM) ", answer, re.MULTILINE))


def scanned(rspamd: Rspamd) -> int:
    """Messages rspamd has scanned since it started (``rspamc stat``)."""
    found = re.search(r"Messages scanned: (\d+)", rspamc(rspamd, "stat"))
    if found is None:
        raise RuntimeError("rspamc stat gave no scanned count")
    return int(found.group(1))


def milter_settings(rspamd: Rspamd) -> dict[str, str]:
    """Postfix's main.cf for rspamd as its milter, as rspamd's integration page has it
    (https://rspamd.com/doc/integration.html: the proxy's TCP port; ``milter_protocol = 6``
    is Postfix's default, written out as the page does)."""
    return {
        "smtpd_milters": rspamd.milter,
        "milter_default_action": "accept",
        "milter_protocol": "6",
    }


def delivered(maildir: Path) -> int:
    return sum(
        1 for sub in ("new", "cur") if (maildir / sub).is_dir() for _ in (maildir / sub).iterdir()
    )


def wait_delivered(maildir: Path, count: int, timeout: float = 120.0) -> None:
    """Until ``count`` messages are in ``maildir``: Postfix delivers after its 250."""
    deadline = time.monotonic() + timeout
    while (found := delivered(maildir)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{found} of {count} accepted messages in {maildir}")
        time.sleep(0.1)


@dataclass
class Target:
    """One Postfix of the pair: its port, its Maildir and what it has accepted so far."""

    name: str
    port: int
    maildir: Path
    pids: Callable[[], list[int]]
    accepted: int = 0


def run_once(
    target: Target,
    messages: int,
    connections: int,
    bodies: tuple[bytes, ...],
    rspamd: Rspamd | None,
) -> float:
    """One load against ``target``; prints its CPU a message and the checks; returns msgs/s
    (messages handled: accepted, or refused by rspamd after their DATA)."""
    load = smtp_load.SmtpLoad(
        "127.0.0.1", target.port, messages, 4096, connections, 100, recipient=RECIPIENT,
        bodies=bodies,
    )  # fmt: skip

    def cpu() -> dict[str, float]:  # the machine's, and that of the processes of the run
        figures = {
            "machine": machine_busy(),
            "Postfix": cpu_seconds(target.pids()),
            "load generator": own_cpu(),
        }
        if rspamd is None:
            return figures
        return figures | {
            "rspamd": cpu_seconds(rspamd.pids()),
            "Redis": cpu_seconds([rspamd.redis_pid]),
            "loopback DNS": cpu_seconds([rspamd.dns_pid]),
        }

    scanned_before = scanned(rspamd) if rspamd else 0
    before = cpu()
    result = asyncio.run(smtp_load.run(load))
    spent = {name: seconds - before[name] for name, seconds in cpu().items()}
    if result.failed != result.refused or (result.refused and rspamd is None):
        raise RuntimeError(result.summary())
    handled = result.accepted + result.refused
    target.accepted += result.accepted
    wait_delivered(target.maildir, target.accepted)
    ms = {name: 1000 * seconds / handled for name, seconds in spent.items()}
    line = f"  CPU a message: {ms.pop('machine'):.2f} ms (the machine)"
    line += "".join(f", {name} {value:.2f} ms" for name, value in ms.items())
    if rspamd is not None:
        count = scanned(rspamd) - scanned_before
        if count < messages:
            raise RuntimeError(f"rspamd scanned {count} of the {messages} messages sent")
        line += f"; rspamd scanned {count}, rejected {result.refused}"
    print(f"{line}; {target.accepted} accepted in all, all in the Maildir", flush=True)
    return handled / result.elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_anchor", description=__doc__)
    parser.add_argument("--messages", "-n", type=int, default=2000)
    parser.add_argument("--connections", "-c", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--trained", type=int, default=500, help="spam and ham each to train rspamd's Bayes with"
    )
    parser.add_argument("--warmup", type=int, default=200, help="messages sent to 'on' first")
    parser.add_argument(
        "--rspamd-workers", type=int, help="rspamd's normal workers (stock: one), as --workers"
    )
    parser.add_argument(
        "--unix-milter",
        action="store_true",
        help="Postfix reaches rspamd's proxy by a Unix socket, not the documented TCP port",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=spam_corpus.default_cache(),
        help="where the corpus is kept (bench.spam_corpus's cache)",
    )
    args = parser.parse_args(argv)
    if why := unavailable():
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    bodies = corpus_bodies(args.cache, args.trained)
    mean = sum(map(len, bodies)) / len(bodies)
    print(f"sending {len(bodies)} corpus messages in turn ({mean / 1024:.1f} KiB on average)")
    rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        root = Path(work)
        os.chmod(root, 0o755)
        rspamd = stack.enter_context(running_rspamd(root, args.rspamd_workers, args.unix_milter))
        if not wait_hyperscan(rspamd):
            print("rspamd: hyperscan not loaded after 180 s; its regexps run on PCRE")
        if args.trained:
            taken, refused = train(rspamd, root, training_messages(args.cache, args.trained))
            bayes = bayes_applies(rspamd, root, bodies)
            print(
                f"rspamd: Bayes (Redis) trained on {args.trained} spam + {args.trained} ham, "
                f"{taken['spam']} + {taken['ham']} taken; {bayes} of 20 corpus messages "
                "scanned get a BAYES_ symbol"
            )
            for reason, count in refused.most_common(3):
                print(f"  not learned ({count}): {reason}")
        targets = {}
        for on in (False, True):
            settings = milter_settings(rspamd) if on else None
            server = stack.enter_context(
                postfix.running(root / ("on" if on else "off"), settings=settings)
            )
            name = f"Postfix {'on ' if on else 'off'}"
            targets[on] = Target(name, server.smtp_port, server.add_user(RECIPIENT), server.pids)
        print(
            f"{postfix.NAME} {postfix.version()}, rspamd {rspamd_version()} "
            f"({normal_workers(rspamd)} normal worker(s), milter {rspamd.milter}); load average "
            + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        )
        if args.warmup:
            run_once(targets[True], args.warmup, 10, bodies, rspamd)
        for _ in range(args.repeat):
            for on in (False, True):
                rate = run_once(
                    targets[on], args.messages, args.connections, bodies, rspamd if on else None
                )
                rates[on].append(rate)
                print(f"{targets[on].name}: {rate:8.1f} msgs/s", flush=True)
    print("load average at the end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print_cost(rates)
    return 0


def normal_workers(rspamd: Rspamd) -> int:
    """rspamd's scanning processes (their titles say "normal process")."""
    count = 0
    for pid in rspamd.pids():
        with contextlib.suppress(OSError):
            count += b"normal process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return count


def rspamd_version() -> str:
    out = subprocess.run(["rspamd", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"version ([\w.]+)", out)
    return found.group(1) if found else "unknown"


if __name__ == "__main__":
    sys.exit(main())
