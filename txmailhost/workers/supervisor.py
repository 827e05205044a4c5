"""The supervising process of ``[server] workers = N``: binds the sockets, runs N workers.

Why sockets passed down rather than ``SO_REUSEPORT`` in each worker:

- A connection waiting in the accept queue belongs to the socket, not to a worker. With
  ``SO_REUSEPORT`` each worker has its own queue, and the connections queued on a worker
  that dies are reset; with one shared socket the surviving workers accept them.
- The ports are bound once, as root when twistd starts as root (ports below 1024), before
  dropping privileges; a port that can't be bound stops the start with one clear line,
  exactly as with one process. Workers never need to bind anything.
- No other process (a second server started by mistake, another user's program) can join
  the port group and take a share of the connections, as ``SO_REUSEPORT`` allows.

The cost is the accept "thundering herd": every idle worker wakes for a new connection and
one wins. With a handful of workers that is a few wasted wake-ups per connection.

Worker 0 starts first and the others only once it is ready: whatever is created on first
start (spool directories, SRS keys, databases) is created by one process. A worker that
exits is started again (after 1 s, doubling up to 30 s while it keeps dying young); its
slot's incoming files are recovered by its successor. SIGTERM stops the workers (each
drains its sessions like a single-process server) and then the supervisor; SIGHUP and the
``reload-tls`` request file are passed on to every worker as SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger, eventFromJSON, globalLogPublisher

from txmailhost.accounts.credcache import KEY_SIZE
from txmailhost.service import Listener, ServerService
from txmailhost.workers.role import PRIMARY_ONLY, READY

log = Logger(namespace="txmailhost.workers")

RESTART_MIN = 1.0
RESTART_MAX = 30.0
YOUNG = 10.0  # a worker that dies sooner than this after starting is restarted later each time
LINE_LIMIT = 1024 * 1024  # a worker's log line longer than this is cut (bounded memory)


class HeldListener(Listener):
    """Binds like any listener, but never accepts: the workers do, on inherited copies."""

    def _listening(self, port: Any) -> None:
        super()._listening(port)
        port.stopReading()

    def socket(self) -> tuple[int, int] | None:
        if self.port is None:
            return None
        return self.port.fileno(), self.port.socket.family


class _WorkerProtocol(ProcessProtocol):
    """One worker's pipes: its JSON events re-published here, its stderr logged as errors."""

    def __init__(self, pool: WorkerPool, slot: int) -> None:
        self.pool = pool
        self.slot = slot
        self.started = pool.reactor.seconds()
        self._buffers = {1: b"", 2: b""}
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buffer = self._buffers.get(fd, b"") + data
        *lines, rest = buffer.split(b"\n")
        if len(rest) > LINE_LIMIT:
            lines.append(rest[:LINE_LIMIT])
            rest = b""
        self._buffers[fd] = rest
        for line in lines:
            if fd == 1:
                self._event(line)
            elif line.strip():
                log.error("worker {slot}: {line}", slot=self.slot,
                          line=line.decode("utf-8", "replace"))  # fmt: skip

    def _event(self, line: bytes) -> None:
        text = line.lstrip(b"\x1e").decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = eventFromJSON(text)
        except (ValueError, TypeError):
            log.info("worker {slot}: {line}", slot=self.slot, line=text)
            return
        event["txmailhost_worker"] = self.slot
        globalLogPublisher(event)
        if event.get(READY):
            self.pool.ready(self.slot)

    def processEnded(self, reason: Any) -> None:
        self.pool.ended(self.slot, self, reason)


class WorkerPool(Service):
    """Starts, watches and stops the worker processes."""

    def __init__(
        self, reactor: Any, config: Any, listeners: list[HeldListener], grace: float
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.listeners = listeners
        self.grace = grace
        self.count = config.workers
        self.workers: dict[int, _WorkerProtocol] = {}
        self._delays = dict.fromkeys(range(self.count), RESTART_MIN)
        self._pending: dict[int, Any] = {}
        self._others_started = False
        self._stopping = False
        self._all_ended: list[Deferred[None]] = []
        self._reload_call: Any = None
        self.request = os.path.join(config.data_dir, "run", "reload-tls")
        # prometheus_client's multiprocess mode: each worker counts in files here, and
        # worker 0's /metrics page adds them up (ops/exposition.py).
        self.metrics_dir = os.path.join(config.data_dir, "run", "metrics")
        # The workers' shared key for verified passwords (accounts/credcache.py): drawn once,
        # so a restarted worker still shares the others' entries, and written to each
        # worker's stdin at its start, never to a file, an argument or the environment.
        self.credential_key = os.urandom(KEY_SIZE)

    # -- starting ------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        shutil.rmtree(self.metrics_dir, ignore_errors=True)  # counts start again with the server
        os.makedirs(self.metrics_dir, mode=0o700)
        if threading.current_thread() is threading.main_thread():
            signal.signal(
                signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.signal_all, "SIGHUP")
            )
        self._spawn(0)
        self._reload_call = self.reactor.callLater(5.0, self._check_reload)

    def _spawn(self, slot: int) -> None:
        self._pending.pop(slot, None)
        if self._stopping:
            return
        args = [sys.executable, "-m", "txmailhost.workers.main", "--data", self.config.data_dir,
                "--config", self.config.config_file, "--slot", str(slot),
                "--workers", str(self.count), "--parent", str(os.getpid())]  # fmt: skip
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        for listener in self.listeners:
            held = listener.socket()
            if held is None or (slot != 0 and listener.label in PRIMARY_ONLY):
                continue
            fd, family = held
            child_fds[fd] = fd
            args += ["--socket", f"{listener.label}:{fd}:{int(family)}"]
        protocol = _WorkerProtocol(self, slot)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        transport = self.reactor.spawnProcess(
            protocol, sys.executable, args, env=env, childFDs=child_fds
        )
        transport.write(self.credential_key)
        transport.closeStdin()  # after the key is written: the worker reads up to end of file
        self.workers[slot] = protocol
        log.info("txmailhost worker {slot} started (pid {pid})", slot=slot, pid=protocol.pid)

    def ready(self, slot: int) -> None:
        """Worker 0 is up: what it creates on first start exists, the others may start."""
        if slot == 0 and not self._others_started:
            self._others_started = True
            for other in range(1, self.count):
                self._spawn(other)

    def ended(self, slot: int, protocol: _WorkerProtocol, reason: Any) -> None:
        if self.workers.get(slot) is protocol:
            del self.workers[slot]
        if protocol.pid is not None:  # its open-connection gauge is no longer "live"
            from prometheus_client import multiprocess

            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(protocol.pid, self.metrics_dir)
        code = getattr(reason.value, "exitCode", None)
        signo = getattr(reason.value, "signal", None)
        how = f"signal {signo}" if signo else f"status {code}"
        if self._stopping:
            log.info("txmailhost worker {slot} stopped ({how})", slot=slot, how=how)
            if not self.workers:
                waiters, self._all_ended = self._all_ended, []
                for waiter in waiters:
                    waiter.callback(None)
            return
        lived = self.reactor.seconds() - protocol.started
        delay = self._delays[slot] if lived < YOUNG else RESTART_MIN
        self._delays[slot] = min(delay * 2, RESTART_MAX)
        log.error("txmailhost worker {slot} (pid {pid}) ended ({how}) after {lived:.0f} s;"
                  " starting it again in {delay:.0f} s", slot=slot, pid=protocol.pid, how=how,
                  lived=lived, delay=delay)  # fmt: skip
        if slot == 0 and not self._others_started:
            # Worker 0 never got ready: start the others anyway, or nothing serves at all.
            self._others_started = True
            for other in range(1, self.count):
                self._spawn(other)
        self._pending[slot] = self.reactor.callLater(delay, self._spawn, slot)

    # -- signals -------------------------------------------------------------------------------

    def signal_all(self, name: str) -> None:
        for protocol in list(self.workers.values()):
            with contextlib.suppress(Exception):  # ended meanwhile
                protocol.transport.signalProcess(name.removeprefix("SIG"))
        if name == "SIGHUP":
            log.info("txmailhost: SIGHUP passed on to {n} worker(s)", n=len(self.workers))

    def _check_reload(self) -> None:
        try:
            if os.path.exists(self.request):
                os.unlink(self.request)
                self.signal_all("SIGHUP")
        except OSError as e:
            log.warn("txmailhost: reload-tls request: {why}", why=e)
        if self.running:
            self._reload_call = self.reactor.callLater(5.0, self._check_reload)

    # -- stopping ------------------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        for call in [*self._pending.values(), self._reload_call]:
            if call is not None and call.active():
                call.cancel()
        self._pending.clear()
        if not self.workers:
            return Deferred.fromCoroutine(_nothing())
        done: Deferred[None] = Deferred()
        self._all_ended.append(done)
        self.signal_all("SIGTERM")
        kill = self.reactor.callLater(self.grace + 10.0, self.signal_all, "SIGKILL")
        done.addBoth(lambda result: (kill.cancel() if kill.active() else None, result)[1])
        return done


async def _nothing() -> None:
    return None


def build_supervisor(config: Any, reactor: Any, listeners: Any = None) -> ServerService:
    """The supervising service for ``config.workers`` > 1 (``tap.py`` through make_service)."""
    from txmailhost.listeners import LISTENERS
    from txmailhost.ops.eventlog import build_event_log

    top = ServerService(reactor, config.shutdown_grace)
    build_event_log(config).setServiceParent(top)
    held = []
    for kind in LISTENERS if listeners is None else listeners:
        description = getattr(config.listen, kind.config_key)
        if description:
            listener = HeldListener(reactor, kind.label, description, Factory())
            listener.setServiceParent(top)
            held.append(listener)
    pool = WorkerPool(reactor, config, held, config.shutdown_grace)
    pool.setServiceParent(top)
    top.workers = pool  # type: ignore[attr-defined] - for tests
    return top
