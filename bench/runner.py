"""``python -m bench``: txmailhost and each anchor on the same workload; one table at the end.

All servers are started first, each from a fresh temp directory, then every suite alternates
them run by run: only one is ever under load while the others sit idle, and a noisy spell of a
shared machine is spread over both columns. They are stopped whatever happens: an ExitStack of
their context managers, and SIGTERM turned into SystemExit so that path also runs when CI kills
us. An anchor that is not installed, or a server that fails to start, is skipped with its reason
in the table and notes; a suite that crashes is reported and the others still run. ``--smoke``
exits non-zero on any such problem, since keeping the harness (and the server's start-up)
working is its whole purpose.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import re
import resource
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import login_suite, report, suites, targets, tls_suite
from bench.anchors import dovecot, postfix
from bench.results import Results
from bench.server import Server
from bench.workload import SUITES, MiB, Workload

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.rst"


@dataclass(frozen=True)
class Target:
    """A server the harness can start: how to tell it can't, how to run it, what to measure."""

    name: str
    unavailable: Callable[[], str | None]
    running: Callable[..., contextlib.AbstractContextManager[Server]]  # (workdir, *, tls)
    suites: tuple[str, ...]
    anchor: bool


# In this order: txmailhost first, then the anchors; each measures the suites it serves.
TARGETS = (
    Target(
        targets.NAME,
        targets.unavailable,
        targets.running,
        suites=("smtp", "memory", "pop3", "imap", "tls", "logins"),
        anchor=False,
    ),
    Target(  # what logins cost before the credential cache: every one hashes
        login_suite.NO_CACHE,
        targets.unavailable,
        functools.partial(targets.running, name=login_suite.NO_CACHE, credential_cache=False),
        ("logins",),
        anchor=False,
    ),
    Target(  # issue 22: [server] workers = 2, beside workers = 1 in the same run
        targets.NAME_WORKERS,
        targets.unavailable,
        functools.partial(targets.running, name=targets.NAME_WORKERS, workers=2),
        ("smtp", "pop3", "imap"),
        anchor=False,
    ),
    Target(
        postfix.NAME, postfix.unavailable, postfix.running, ("smtp", "memory", "tls"), anchor=True
    ),
    Target(
        dovecot.NAME,
        dovecot.unavailable,
        dovecot.running,
        ("pop3", "imap", "tls", "logins"),
        anchor=True,
    ),
    Target(
        dovecot.NAME_REUSED,
        dovecot.unavailable,
        functools.partial(dovecot.running, login_reuse=True),
        ("tls",),
        anchor=True,
    ),
)

# A suite runs as one or more phases; servers alternate run by run within each phase, so the
# TLS suite's Postfix runs sit between txmailhost's SMTP runs, not between its IMAPS ones.
PHASES: dict[str, tuple[suites.Suite, ...]] = {
    **{name: (suite,) for name, suite in suites.SUITES.items()},
    "tls": (tls_suite.imaps, tls_suite.submission),
    "logins": login_suite.PHASES,
}


def parse(argv: list[str]) -> tuple[argparse.Namespace, Workload]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark txmailhost side by side with Postfix and Dovecot (run as root).",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny workload, seconds (CI)")
    parser.add_argument("--only", help=f"comma-separated suites among {','.join(SUITES)}")
    parser.add_argument("--no-anchors", action="store_true", help="measure txmailhost only")
    parser.add_argument("--messages", "-n", type=int, help="SMTP messages per run (2000)")
    parser.add_argument("--size", "-s", type=int, help="message size in bytes (4096)")
    parser.add_argument("--connections", "-c", help="SMTP connection counts, e.g. 1,50 (default)")
    parser.add_argument("--per-connection", "-k", type=int, help="messages per connection (100)")
    parser.add_argument("--pop3-messages", type=int, help="messages in the POP3 mailbox (2000)")
    parser.add_argument("--pop3-sessions", type=int, help="concurrent POP3 sessions (10)")
    parser.add_argument(
        "--imap-messages", type=int, help="messages in the IMAP INBOX (10000; the issue: 100000)"
    )
    parser.add_argument("--imap-sessions", type=int, help="concurrent IMAP sessions (50)")
    parser.add_argument("--imap-idle", type=int, help="idle IMAP sessions for memory (1000)")
    parser.add_argument("--large-size", type=float, help="memory probe message, MiB (50)")
    parser.add_argument("--tls-clients", help="IMAPS handshake client counts, e.g. 1,50 (default)")
    parser.add_argument("--tls-seconds", type=float, help="seconds per IMAPS handshake run (5)")
    parser.add_argument(
        "--tls-connections", type=int, help="SMTP connections over STARTTLS+AUTH (50)"
    )
    parser.add_argument(
        "--imaps-no-logout", action="store_true", help="IMAPS clients close after the greeting"
    )
    parser.add_argument(
        "--lf-maildir",
        action="store_true",
        help="IMAP suite: every server's INBOX files end lines with LF (as Dovecot, mutt write)",
    )
    parser.add_argument("--login-clients", type=int, help="IMAP clients re-logging (50)")
    parser.add_argument("--login-first", type=int, help="first logins at once, memory (200)")
    parser.add_argument("--attack-seconds", type=float, help="seconds of the login attack (60)")
    parser.add_argument("--repeat", "-r", type=int, help="runs per figure; medians reported (3)")
    parser.add_argument("--starttls", action="store_true", help="SMTP load uses STARTTLS")
    parser.add_argument("--auth", action="store_true", help="SMTP load uses AUTH PLAIN")
    parser.add_argument("--pipelining", action="store_true", help="pipeline MAIL/RCPT/DATA")
    parser.add_argument(
        "--output", type=Path, help="write the rst here (default: docs/benchmarks.rst on full runs)"
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line for the report's notes, e.g. what else the machine ran (repeatable)",
    )
    parser.add_argument("--workdir", type=Path, help="where the servers' temp dirs go (/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, mail)")
    parser.add_argument(
        "--postfix-set",
        action="append",
        metavar="NAME=VALUE",
        help="override a Postfix main.cf setting, e.g. in_flow_delay=0 (repeatable)",
    )
    args = parser.parse_args(argv)

    workload = Workload().smoke() if args.smoke else Workload()
    given = {
        "messages": args.messages,
        "size": args.size,
        "per_connection": args.per_connection,
        "pop3_messages": args.pop3_messages,
        "pop3_sessions": args.pop3_sessions,
        "imap_messages": args.imap_messages,
        "imap_sessions": args.imap_sessions,
        "imap_idle": args.imap_idle,
        "repeat": args.repeat,
        "large_size": int(args.large_size * MiB) if args.large_size else None,
        "tls_clients": tuple(int(c) for c in args.tls_clients.split(","))
        if args.tls_clients
        else None,
        "tls_seconds": args.tls_seconds,
        "tls_connections": args.tls_connections,
        "connections": tuple(int(c) for c in args.connections.split(","))
        if args.connections
        else None,
        "login_clients": args.login_clients,
        "login_first": args.login_first,
        "attack_seconds": args.attack_seconds,
        "suites": tuple(s.strip() for s in args.only.split(",")) if args.only else None,
    }
    workload = dataclasses.replace(workload, **{k: v for k, v in given.items() if v is not None})
    workload = dataclasses.replace(
        workload,
        starttls=args.starttls,
        auth=args.auth,
        pipelining=args.pipelining,
        imaps_logout=not args.imaps_no_logout,
        lf_maildir=args.lf_maildir,
    )
    if any("=" not in setting for setting in args.postfix_set or []):
        parser.error("--postfix-set takes NAME=VALUE, e.g. in_flow_delay=0")
    unknown = set(workload.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(sorted(unknown))}; choose among {SUITES}")
    return args, workload


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, workload = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_file_limit(2 * workload.imap_idle + 1000)
    results = Results()
    for note in args.note:
        results.note(note)
    workdir = Path(tempfile.mkdtemp(prefix="txmailhost-bench-", dir=args.workdir))
    workdir.chmod(0o755)  # the anchors' unprivileged users must traverse it
    try:
        if "fsync" in workload.suites:
            suites.fsync(workdir, workload, results)
        with contextlib.ExitStack() as stack:
            servers = []
            for target in _targets(args):
                wanted = [s for s in target.suites if s in workload.suites]
                if args.smoke and target.name == login_suite.NO_CACHE:
                    # The same server with one setting changed: the smoke gains nothing from it
                    # but another start (credential_cache_ttl = 0 has its own unit tests).
                    continue
                if args.smoke and target.anchor:
                    # The anchors' TLS set-up (Postfix's SASL Dovecot, a second Dovecot) takes
                    # longer than the rest of the smoke run; the smoke checks our side of it.
                    wanted = [s for s in wanted if s != "tls"]
                server = wanted and _start(target, wanted, workload, results, workdir, stack, args)
                if server:
                    servers.append((server, wanted))
            for name in workload.suites:
                for phase in PHASES.get(name, ()):
                    chosen = [server for server, wanted in servers if name in wanted]
                    _alternate(name, phase, chosen, workload, results)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(report.text(results))
    output = args.output
    if output is None and not args.smoke and workload.suites == SUITES:
        output = DEFAULT_OUTPUT
    if output is None and not args.smoke and workload.suites == ("tls",):
        # The TLS section alone: it replaces its own section of the full-run page.
        report.splice(DEFAULT_OUTPUT, report.tls_section(results, workload, argv))
    elif output is None and not args.smoke and workload.suites == ("logins",):
        report.splice(DEFAULT_OUTPUT, report.logins_section(results, workload, argv))
    elif output is not None and str(output) != "-":
        report.write_page(output, report.rst(results, workload, argv))
    if args.smoke and (results.problems or targets.NAME in results.skipped):
        return 1
    return 0


def raise_file_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (as far as the hard limit allows) for the idle IMAP sessions;
    returns the soft limit afterwards (``bench.idle_crowd``'s client processes use it too).

    Each idle session is a socket here and one in the server, and txmailhost inherits this
    process's limit; the common soft default of 1,024 would stop the load short of 1,000.
    The hard limit is never raised: an unprivileged process can't, and a container may deny
    even root (no CAP_SYS_RESOURCE); a load bigger than it needs more processes, not more fds.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _targets(args: argparse.Namespace) -> list[Target]:
    """TARGETS, with the command line's Postfix overrides bound into Postfix's start."""
    settings = dict(s.split("=", 1) for s in args.postfix_set or [])
    return [
        dataclasses.replace(t, running=functools.partial(postfix.running, settings=settings))
        if t.name == postfix.NAME
        else t
        for t in TARGETS
    ]


def _start(
    target: Target,
    wanted: list[str],
    workload: Workload,
    results: Results,
    workdir: Path,
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
) -> Server | None:
    """Start ``target`` inside ``stack`` (stopped when it unwinds), or say why it is skipped.

    With TLS loads (``--starttls``, or the tls suite) every server starts with its TLS
    listeners and certificate; the plaintext suites still use the plain ports.
    """
    reason = "--no-anchors" if target.anchor and args.no_anchors else target.unavailable()
    plain_auth = workload.auth and not workload.starttls
    if reason is None and target.name == postfix.NAME and plain_auth and "smtp" in wanted:
        reason = "--auth: Postfix offers AUTH only after STARTTLS; add --starttls"
    if reason:
        results.skipped[target.name] = reason
        suites.say(f"{target.name}: skipped: {reason}")
        return None
    suites.say(f"{target.name}: starting")
    directory = workdir / re.sub(r"\W+", "-", target.name.lower())
    try:
        tls = workload.starttls or "tls" in wanted
        server = stack.enter_context(target.running(directory, tls=tls))
    except Exception as e:
        results.skipped[target.name] = f"failed to start: {e}"
        results.problem(f"{target.name}: failed to start: {e}")
        traceback.print_exc()
        return None
    results.versions[target.name] = server.version
    for note in server.notes:
        results.note(note)
    return server


def _alternate(
    name: str, phase: suites.Suite, servers: list[Server], workload: Workload, results: Results
) -> None:
    """Run one phase of suite ``name`` on every server, alternating them run by run."""
    running = [(server, phase(server, workload, results)) for server in servers]
    while running:
        for entry in list(running):
            server, runs = entry
            try:
                next(runs)
            except StopIteration:
                running.remove(entry)
            except Exception as e:  # one broken suite must not hide the others' numbers
                results.problem(f"{server.name}: {name} suite crashed: {e!r}")
                traceback.print_exc()
                running.remove(entry)
