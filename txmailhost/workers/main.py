"""One worker process, as the supervisor starts it: ``python -m txmailhost.workers.main``.

It builds the whole server (``service.build``) with a :class:`~txmailhost.workers.role.
WorkerRole`: its listeners adopt the sockets inherited from the supervisor (passed as
``--socket label:fd:family``), and its events go to standard output as JSON lines, which the
supervisor writes to the event log and twistd's log, so there is one log however many workers
run. The data directory was prepared and the config checked by the supervisor before any
worker starts; a worker only reads them.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="txmailhost-worker", description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--socket", action="append", default=[], metavar="LABEL:FD:FAMILY")
    parser.add_argument("--parent", type=int, default=0, help="the supervisor's pid")
    return parser.parse_args(argv)


def read_key(fd: int = 0) -> bytes | None:
    """The credential cache's shared key, which the supervisor writes to our stdin and then
    closes (``supervisor.py``); None when there is none (a worker started by hand)."""
    from txmailhost.accounts.credcache import KEY_SIZE

    key = b""
    try:
        if os.isatty(fd):
            return None
        while len(key) < KEY_SIZE:
            chunk = os.read(fd, KEY_SIZE - len(key))
            if not chunk:
                break
            key += chunk
    except OSError:
        return None
    return key if len(key) == KEY_SIZE else None


def _die_with_parent() -> None:
    """A supervisor killed with SIGKILL can't stop its workers: the kernel does (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _die_with_parent()
    key = read_key()
    # A supervisor that died before the line above sent no signal: its pid, given on the
    # command line, is no longer our parent's.
    parent = args.parent or os.getppid()
    if os.getppid() != parent:
        return 1
    from twisted.internet import reactor
    from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver

    from txmailhost.ops.eventlog import install_octet_escaping

    out = open(1, "w", encoding="utf-8", closefd=False, buffering=1)  # noqa: SIM115 - lives on
    install_octet_escaping()  # first, as in the supervisor (tap.py)
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(out)], redirectStandardIO=False)
    log = Logger(namespace="txmailhost.workers")

    from txmailhost.config import ConfigError, load_config
    from txmailhost.service import build, freeze_startup_heap, load_tls
    from txmailhost.workers.role import READY, WorkerRole

    sockets = {}
    for item in args.socket:
        label, fd, family = item.split(":")
        sockets[label] = (int(fd), int(family))
    try:
        config = load_config(args.data, args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(f"txmailhost worker {args.slot}: {problem}", file=sys.stderr)
        return 1
    role = WorkerRole(args.slot, args.workers, sockets, credential_key=key)
    top = build(config, reactor, load_tls(config), worker=role)
    try:
        top.startService()
    except Exception:
        # The pools started so far are threads that would keep this process alive, neither
        # serving nor ended, and the supervisor restarts only a worker that ends.
        log.failure("txmailhost worker {slot} could not start", slot=args.slot)
        out.flush()
        os._exit(1)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)

    def ready() -> None:
        if os.getppid() != parent:  # the supervisor died while this one started
            reactor.stop()
            return
        log.info("txmailhost worker {slot} of {count} ready (pid {pid})", slot=role.slot,
                 count=role.count, pid=os.getpid(), **{READY: True})  # fmt: skip

    reactor.callWhenRunning(ready)
    reactor.callWhenRunning(freeze_startup_heap)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
