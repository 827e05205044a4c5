"""Wires the server together from a ``Config``: thread pools, store, accounts, listeners.

This is the only module that turns configuration into objects. Each protocol factory receives
its collaborators (portal, store, policy, TLS context, limits) as arguments, which is what lets
another Twisted application embed ``SMTPFactory`` or ``POP3Factory`` with its own realm.
Which listeners exist, and how each one's factory is built, is the table in ``listeners.py``;
``build`` wires the shared pieces once and starts one listener per entry with an endpoint.

Two thread pools keep slow work off the reactor (DESIGN invariant 3) and away from each other:
``storage`` for fsyncs, Maildir and index work; ``accounts`` for SQLite lookups and scrypt
password checks, so a burst of logins can't delay an fsync and vice versa.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from txmailhost.config import FILTER_THREADS
from txmailhost.pools import Lane, ThreadPoolService

if TYPE_CHECKING:
    from txmailhost.listeners import ListenerKind
    from txmailhost.workers.role import WorkerRole

log = Logger()

# How long a stopping server waits for the filter threads' running checks (their sessions are
# already closed, their verdicts unwanted) before leaving them to end on their own.
FILTER_ABANDON_AFTER = 2.0


class StartupError(Exception):
    """The server can't start, for a reason that fits on one line (and names what to fix).

    Raised from ``privilegedStartService``, where twistd reports it: a daemonising twistd
    passes it to the waiting parent, which prints it and exits 1; in the foreground
    ``tap.makeService`` prints it as one line (no traceback) and the process exits 1.
    """


class Listener(Service):
    """Binds one endpoint description, and says so in the log.

    The port is bound in ``privilegedStartService``: twistd calls that while the process may
    still be root, before it drops to ``--uid``/``--gid``, so ports below 1024 work; and
    before the reactor runs, so a port that can't be bound stops the start with
    :class:`StartupError` (exit status 1) instead of a server running without it. Endpoints
    that bind later than ``listen`` returns (none of the stream types we accept) are handled
    when they fire: a failure then stops the reactor.
    """

    def __init__(
        self,
        reactor: Any,
        label: str,
        description: str,
        factory: Any,
        adopt: tuple[int, int] | None = None,
    ) -> None:
        self.reactor = reactor
        self.label = label
        self.description = description
        self.factory = factory
        self.adopt = adopt  # (fd, family) of a socket a supervisor bound (workers/)
        self.port: Any = None
        self._binding: Deferred | None = None
        self._binding_now = False
        self._failure: Failure | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._binding is not None:
            return
        if self.adopt is not None:
            fd, family = self.adopt
            self._binding = maybeDeferred(self.reactor.adoptStreamPort, fd, family, self.factory)
        else:
            endpoint = serverFromString(self.reactor, self.description)
            self._binding = endpoint.listen(self.factory)
        self._failure = None
        self._binding_now = True
        self._binding.addCallbacks(self._listening, self._failed)
        self._binding_now = False
        if self._failure is not None:
            raise StartupError(self._failure_line(self._failure))

    def startService(self) -> None:
        super().startService()
        self.privilegedStartService()  # when started without twistd (embedding, tests)

    def _listening(self, port: Any) -> None:
        if self.adopt is not None:  # a worker among several on one socket
            from txmailhost.workers.accepting import take_turns

            port = take_turns(port)
        self.port = port
        host = port.getHost()
        log.info(
            "txmailhost {label} listening on {host}:{port} ({description})",
            label=self.label,
            host=host.host,
            port=host.port,
            description=self.description,
        )

    def _failure_line(self, failure: Failure) -> str:
        """``can't listen for imap on 127.0.0.1:143: Permission denied``, also logged."""
        error = failure.value
        if isinstance(error, CannotListenError):
            interface = error.interface or "0.0.0.0"  # tcp:25 binds every IPv4 address
            host = f"[{interface}]" if ":" in interface else interface
            address = f"{host}:{error.port}"
            reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        else:
            address, reason = self.description, failure.getErrorMessage()
        line = f"can't listen for {self.label} on {address}: {reason}"
        log.critical("txmailhost {line} ({description})", line=line, description=self.description)
        return line

    def _failed(self, failure: Failure) -> None:
        if self._binding_now:
            self._failure = failure  # privilegedStartService raises it
            return
        self._failure_line(failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Deferred | None:
        super().stopService()
        self._binding = None
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def freeze_startup_heap() -> None:
    """Move what the server holds once started (Twisted, the modules, config, listeners:
    some 90,000 objects) out of the cyclic garbage collector's sight.

    Why: they live as long as the process, but each full collection walked them all again,
    and a command that makes many objects at once (THREAD or SORT of 10,000 messages, a
    large FETCH) set one off: 55-65 ms added to every second THREAD of 10,000 messages
    (docs/benchmarks-search.rst). Objects made later are collected as before. One made
    before that later becomes cyclic garbage is never freed; what exists at start lives as
    long as the process, so that is at most what a reload replaces, once per reload.
    Called when the reactor runs, by twistd's plugin (``tap.py``) and each worker process
    (``workers/main.py``): a process embedding the factories owns its heap."""
    gc.collect()
    gc.freeze()


class ServerService(MultiService):
    """The whole server. Stopping it (SIGTERM) stops accepting first, then lets the sessions
    finish within ``[server] shutdown_grace`` (``ops/control.py``, ``Sessions.drain``), and only
    then stops the rest: the queue and delivery thread (which finish what is in flight), the
    thread pools. So an SMTP transaction in progress gets its 250, and no fsync is left
    waiting on a stopped pool."""

    def __init__(self, reactor: Any, grace: float) -> None:
        super().__init__()
        self.reactor = reactor
        self.grace = grace
        self.sessions: Any = None  # ops.control.Sessions, set by ``build``

    def startService(self) -> None:
        super().startService()
        when_running = getattr(self.reactor, "callWhenRunning", None)
        if when_running is not None:
            when_running(self._handle_sigterm)

    def _handle_sigterm(self) -> None:
        """SIGTERM is the normal way to stop a service (systemd, docker, init scripts): after
        the orderly stop below the process exits 0. The reactor's own handler would make
        twistd end by re-raising the signal (exit status 143), which reads as a failure.
        Only where signals can be handled: the reactor runs in the main thread."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.reactor.callFromThread(self._stop_once))

    def _stop_once(self) -> None:
        """A second SIGTERM while stopping (a supervisor and an init system both asking) is
        not an error."""
        with contextlib.suppress(ReactorNotRunning):
            self.reactor.stop()

    def stopService(self) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        for child in list(self):
            if isinstance(child, Listener) and child.running:
                await maybeDeferred(child.stopService)
        if self.sessions is not None:
            log.info("txmailhost stopping: letting sessions finish (at most {grace:.0f} s)",
                     grace=self.grace)  # fmt: skip
            try:
                await self.sessions.drain(self.reactor, self.grace)
            except Exception:  # the rest must still stop: queue, delivery, thread pools
                log.failure("txmailhost stopping: closing the sessions failed")
        await maybeDeferred(super().stopService)


class StartupSweep(Service):
    """Once at start, in the store's pool: ``sweep()`` of what a killed process left in the
    Maildirs' ``tmp/`` (``store/staging.py``). A service of its own, started after the pool's."""

    def __init__(self, sweep: Callable[[], Deferred[Any]]) -> None:
        self.sweep = sweep

    def startService(self) -> None:
        super().startService()
        self.sweep().addErrback(lambda f: log.failure("txmailhost start: sweeping tmp/", f))


class TLSReloadService(Service):
    """Picks up a renewed certificate without a restart.

    Three triggers: SIGHUP; a request file ``DATA/run/reload-tls`` (what ``txmailhost
    reload-tls`` writes, so no pidfile is needed); and a certificate or key file changing on
    disk (certbot's renewal; the default pair's or a ``[tls] sni`` one's), checked every few
    seconds with a stat. A broken new pair is logged and its old one kept.
    """

    interval = 5.0

    def __init__(self, reactor: Any, tls: Any, run_dir: str, watch_request: bool = True) -> None:
        self.reactor = reactor
        self.tls = tls
        # A worker process leaves the request file to its supervisor, which signals every
        # worker (the first to see the file would otherwise take it from the others).
        self.request = os.path.join(run_dir, "reload-tls") if watch_request else None
        self._call: Any = None

    def startService(self) -> None:
        super().startService()
        if threading.current_thread() is threading.main_thread():
            signal.signal(
                signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload, "SIGHUP")
            )
        self._schedule()

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _schedule(self) -> None:
        self._call = self.reactor.callLater(self.interval, self._check)

    def _check(self) -> None:
        try:
            if self.request is not None and os.path.exists(self.request):
                os.unlink(self.request)
                self.reload("reload-tls request")
            elif self.tls.reload_if_changed():
                log.info("txmailhost TLS certificate reloaded: files changed on disk")
        except ValueError as e:
            log.error("txmailhost TLS reload failed, keeping the old certificate: {error}", error=e)
        finally:
            if self.running:
                self._schedule()

    def reload(self, why: str) -> None:
        try:
            self.tls.reload()
        except ValueError as e:
            log.error(
                "txmailhost TLS reload ({why}) failed, keeping the old certificate: {error}",
                why=why,
                error=e,
            )
            return
        log.info("txmailhost TLS certificate reloaded ({why})", why=why)


def make_service(
    data_dir: str,
    config_file: str | None = None,
    reactor: Any = None,
    run_as: tuple[int | None, int | None] = (None, None),
    supervise: Callable[[Any, Any], MultiService] | None = None,
) -> MultiService:
    """Build the whole server; exits with a clear message if the config or data directory is
    wrong. ``supervise(config, reactor)`` builds the supervisor of ``[server] workers`` above
    1 (``workers/supervisor.py``; twistd's plugin passes it).

    ``run_as`` is the (uid, gid) twistd drops to after binding the ports: the data directory is
    prepared and checked as that user, so what the server creates stays its own after the drop.
    """
    import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 codec mailbox names use

    from txmailhost import dataformat, datalock, fdlimit
    from txmailhost.config import ConfigError, load_config
    from txmailhost.datadir import acting_as, ensure_data_dir, writable_problem

    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        with acting_as(*run_as):
            if os.path.isdir(data_dir):
                dataformat.check(data_dir)  # a newer release's directory: touch nothing
            created = ensure_data_dir(data_dir, config_file)
            # Before anything changes or is swept there (datalock.py): one server a directory.
            datalock.hold(data_dir)
            config = load_config(data_dir, config_file)
            problem = writable_problem(config)
            if not problem:
                created += dataformat.upgrade(data_dir)
    except (dataformat.DataFormatError, datalock.DataDirInUse) as e:
        problem = str(e)
    except ConfigError as e:
        for problem in e.problems:
            print(f"txmailhost: {problem}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        reason = f"{where}{e.strerror or e}"
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            problem = f"data directory {os.path.abspath(data_dir)} is not writable ({reason})"
        else:
            problem = f"can't prepare data directory {os.path.abspath(data_dir)}: {reason}"
    except ValueError as e:
        problem = f"can't prepare data directory {os.path.abspath(data_dir)}: {e}"
    if problem:
        print(f"txmailhost: {problem}", file=sys.stderr)
        raise SystemExit(1) from None
    for line in created:
        log.info("txmailhost start: {line}", line=line)
    # Here, not only in build(): with [server] workers the supervisor would otherwise start
    # and restart workers that each die of it. check-config asks the same.
    with acting_as(*run_as):
        problems = start_problems(config)
    for problem in problems:
        print(f"txmailhost: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    # Before the privilege drop (root may raise the hard limit); workers inherit it.
    fdlimit.prepare(config)
    # The certificate's key may be readable by root only (certbot's privkey.pem): load it as
    # the invoking user. Everything else that touches the data directory (the accounts
    # database, crash recovery into Maildirs, the spool's probes and sweeps) happens as the
    # user twistd drops to, so no file there ends up owned by root.
    tls = load_tls(config)
    if config.workers > 1 and supervise is not None:
        return supervise(config, reactor)  # bind here, serve in worker processes (tap.py)
    if config.workers > 1:
        log.warn("[server] workers = {n}: this embedding runs one process", n=config.workers)
    with acting_as(*run_as):
        return build(config, reactor, tls)


def load_tls(config: Any) -> Any:
    """The server's ``ReloadableTLS``; a broken certificate or key ends the start in one line."""
    from txmailhost.tls import ReloadableTLS

    try:
        return ReloadableTLS(config.tls.certificate, config.tls.key, config.tls.sni)
    except ValueError as e:
        for problem in str(e).splitlines():  # CertificateProblems: one line a broken pair
            print(f"txmailhost: TLS: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def _build_filters(
    config: Any, reactor: Any, top: MultiService, leading: Any = (), resolver: Any = None
) -> tuple[Any, Any]:
    """The content filter chain of ``[filters]`` after ``leading`` (mail authentication's),
    None when empty, with a thread pool of its own for filters that block: a slow spam
    scanner then never holds up an fsync; and the clients' reverse DNS lookups, which use
    those threads ([smtp] reverse_dns; None without a chain)."""
    from txmailhost.filters.fairness import ClientSlots
    from txmailhost.filters.registry import FilterConfigError, FilterHost

    settings = config.filters
    pool = Lane(reactor, FILTER_THREADS, name="txmailhost-filters")  # a cheap hand-off each
    shared = config.store.dsn if config.store.backend == "postgres" else ""
    host = FilterHost(
        config.data_dir,
        config.hostname,
        resolver,
        shared_dsn=shared,
        reactor=reactor,
        pool=pool,
        slots=ClientSlots(settings.threads_per_client),  # the chain's and the spam score's
    )
    for candidate in leading:  # mail authentication's checks: on the reactor when cached
        attach = getattr(candidate, "attach", None)
        if attach is not None:
            attach(host)
    try:
        chain = _filter_chain(config, reactor, pool, host, leading)
    except FilterConfigError as e:
        print(f"txmailhost: {_filters_problem(e)}", file=sys.stderr)
        raise SystemExit(1) from None
    if chain is not None:
        # At stop the sessions are gone (the grace is over): their queued checks are dropped
        # and a check still running (DNS held for its budget) doesn't hold up the exit.
        service = ThreadPoolService(pool, abandon_after=FILTER_ABANDON_AFTER)
        service.after_stop.extend(_closers(chain))
        service.setServiceParent(top)
        names = [f.name for f in leading] + list(settings.chain)
        log.info("txmailhost filters: {names}", names=", ".join(names))
    if chain is None or resolver is None or not config.smtp.reverse_dns:
        return chain, None
    from txmailhost.reversedns import ReverseDNS

    return chain, ReverseDNS(resolver, reactor, pool, host.slots)


def _filters_problem(error: Exception) -> str:
    """A filter chain's error as the start and check-config say it: named after
    ``filters.chain`` unless it names its own key (``filters.settings.NAME.KEY: ...``)."""
    text = str(error)
    return text if text.startswith("filters.") else f"filters.chain: {text}"


def _filter_chain(config: Any, reactor: Any, pool: Any, host: Any, leading: Any = ()) -> Any:
    """``build_chain`` for ``[filters]``; raises ``FilterConfigError``."""
    from txmailhost.filters.registry import build_chain

    settings = config.filters
    return build_chain(
        settings.chain,
        settings.settings,
        reactor,
        pool,
        settings.timeout,
        settings.on_error,
        leading=tuple(leading),
        host=host,
        per_client=settings.threads_per_client,
    )


def _closers(chain: Any) -> list[Callable[[], Any]]:
    """What the chain's filters hold open (the spam scoring process), to close at stop."""
    found = (getattr(made, "close", None) for made in chain.filters)
    return [close for close in found if callable(close)]


def start_problems(config: Any) -> list[str]:
    """What ``make_service`` and ``build`` would refuse to start with, found without starting
    anything, for ``txmailhost check-config``: its "ok" should mean the server starts.

    The filter chain is built as a server builds it but without a reactor, so that nothing
    long-lived starts (the spam filter then scores inline, with no scoring process), and
    closed again; the secret files the server reads at start are read, and so are the CA
    files and DKIM keys it would otherwise read only when it first needs them. Each problem
    is one line naming its key (or DKIM domain), as the server's own refusal would."""
    from txmailhost.filters.registry import FilterConfigError, FilterHost
    from txmailhost.mailauth.keys import KeyStore
    from txmailhost.queue.service import smarthost_password
    from txmailhost.store import s3blobs
    from txmailhost.store.interfaces import StoreError

    problems = []
    shared = config.store.dsn if config.store.backend == "postgres" else ""
    host = FilterHost(config.data_dir, config.hostname, shared_dsn=shared)
    try:
        chain = _filter_chain(config, None, None, host)
    except FilterConfigError as e:
        problems.append(_filters_problem(e))
    else:
        for close in _closers(chain) if chain is not None else ():
            close()
    try:
        smarthost_password(config.relay)
    except ValueError as e:
        problems.append(str(e))
    try:
        s3blobs.settings_from(config.store)
    except StoreError as e:
        problems.append(str(e))
    problems += _ca_file_problems(config)
    if config.mailauth.sign and config.store.backend != "postgres":  # else keys in the database
        problems += KeyStore(os.path.join(config.data_dir, "dkim")).signing_problems()
    return problems


def _ca_file_problems(config: Any) -> list[str]:
    """The CA files the relay ("verify", MTA-STS policy fetches) and the ACME client trust,
    read and parsed now: otherwise a missing or garbled one shows only when the first
    delivery or renewal needs it."""
    from txmailhost.tls import check_ca_file

    files = [("relay.tls_ca_file", config.relay.tls_ca_file)]
    if config.tls.acme:
        files.append(("tls.acme_ca_file", config.tls.acme_ca_file))
    problems = []
    for key, path in files:
        if not path:
            continue
        try:
            check_ca_file(path)
        except ValueError as e:
            problems.append(f"{key}: {e}")
    return problems


def _build_training(config: Any, reactor: Any, top: MultiService) -> tuple[Any, ...]:
    """The IMAP observers that train the spam classifier from users' moves in and out of
    Junk, when the spam filter is in the chain (``txmailhost.spam.training``)."""
    if "spam" not in config.filters.chain:
        return ()
    from txmailhost.spam.training import build_trainer

    trainer = build_trainer(config.data_dir, config.filters.settings.get("spam", {}), reactor)
    if trainer is None:
        return ()
    ThreadPoolService(trainer.pool).setServiceParent(top)
    return (trainer,)


def build_accounts(
    config: Any, store: Any, reactor: Any, pool: ThreadPool, credential_key: bytes | None = None
) -> tuple[Any, Any]:
    """(portal, router): the one Portal every protocol logs in through, so failures count
    across all of them, and the one Router that SMTP and the queue's DSNs resolve with.

    Both read the accounts backend (``IAccounts``, SQLite in ``DATA/accounts.sqlite``) from
    ``pool``, the accounts thread pool, never on the reactor. ``credential_key`` is the
    workers' shared key for the cache of verified passwords (``accounts/credcache.py``)."""
    from txmailhost.accounts.backends import open_accounts
    from txmailhost.accounts.checker import AccountsChecker
    from txmailhost.accounts.credcache import CredentialCache
    from txmailhost.accounts.origins import LoginOrigins
    from txmailhost.accounts.realm import MailRealm
    from txmailhost.accounts.throttle import LoginThrottle, ThrottledPortal
    from txmailhost.routing import Router

    accounts = open_accounts(config)
    security = config.security
    throttle = LoginThrottle(
        reactor,
        window=security.login_failure_window,
        ip_limit=security.login_failures_per_ip,
        account_limit=security.login_failures_per_account,
    )
    credentials = CredentialCache(
        reactor,
        ttl=security.credential_cache_ttl,
        max_entries=security.credential_cache_size,
        key=credential_key,
    )
    checker = AccountsChecker(accounts, reactor, pool, credentials)
    portal = ThrottledPortal(
        Portal(MailRealm(store), [checker]),
        throttle,
        LoginOrigins(reactor, accounts, reactor, pool),
    )
    portal.credentials = credentials  # type: ignore[attr-defined] - workers share it
    router = Router(
        accounts,
        reactor,
        pool,
        delimiter=config.routing.recipient_delimiter,
        plus_folders=config.routing.plus_folders,
        postmaster=config.routing.postmaster or None,
        srs=_build_srs(config),
    )
    return portal, router


def _build_srs(config: Any) -> Any:
    """SRS for forwarded mail when ``[srs] domain`` is set (txmailhost/srs.py); its keys are
    those of every node (``srs_keys``) when they share a PostgreSQL store, else this node's
    ``DATA/srs/keys``."""
    from txmailhost.srs import SRS, open_keys

    if not config.srs.domain:
        return None
    keys = open_keys(config)
    keys.load()  # made now, at start, not on the first forwarded message
    return SRS(config.srs.domain, keys, config.srs.max_age_days)


def _build_acme(config: Any, reactor: Any, tls: Any, top: MultiService) -> Any:
    """With ``[tls] acme``: the service that keeps the certificate (acme_renewal.py), in a
    one-thread pool of its own (an order blocks for up to two minutes); the HTTP-01
    ``Challenges`` the plain-HTTP listener serves. None without it."""
    if not config.tls.acme:
        return None
    from txmailhost.acme_renewal import ACMEService, ACMESettings, Challenges

    if not config.listen.web_redirect:
        log.warn("[tls] acme: listen.web_redirect is off; the HTTP-01 challenge can't be answered")
    from txmailhost.tls import acme_sni_warnings

    for warning in acme_sni_warnings(config.tls.acme_domains or (config.hostname,), config.tls.sni):
        log.warn("[tls] acme: {warning}", warning=warning)
    pool = ThreadPool(minthreads=0, maxthreads=1, name="txmailhost-acme")
    ThreadPoolService(pool).setServiceParent(top)
    settings = ACMESettings(
        directory=config.tls.acme_directory,
        contact=config.tls.acme_contact,
        domains=config.tls.acme_domains or (config.hostname,),
        certificate=config.tls.certificate,
        key=config.tls.key,
        state_dir=os.path.join(config.data_dir, "tls", "acme"),
        ca_file=config.tls.acme_ca_file,
    )
    challenges = Challenges()
    ACMEService(reactor, pool, settings, challenges, on_renewed=tls.reload).setServiceParent(top)
    return challenges


def build(
    config: Any,
    reactor: Any,
    tls: Any = None,
    listeners: Sequence[ListenerKind] | None = None,
    worker: WorkerRole | None = None,
) -> MultiService:
    """The MultiService for ``config``: pools, store, accounts, spool and every listener.

    ``tls`` is the server's ``ReloadableTLS``, loaded from the config when not given;
    ``listeners`` the services to listen for (``listeners.LISTENERS`` when not given), each
    started when its ``[listen]`` key is not empty. ``worker`` makes this one of several
    worker processes (``workers/``): listeners adopt the supervisor's sockets, the queue runs
    only in worker 0, and a bus to the other workers carries mailbox changes and login
    failures."""
    from txmailhost.accounts.throttle import LoginThrottle
    from txmailhost.delivery.setup import build_delivery
    from txmailhost.imap.keycache import SortKeyCache
    from txmailhost.limits import LimitedFactory
    from txmailhost.listeners import LISTENERS, ServerParts
    from txmailhost.mailauth.setup import build_mailauth
    from txmailhost.ops.control import ControlService, Sessions, socket_path
    from txmailhost.ops.eventlog import build_event_log
    from txmailhost.peer import PlaintextAuth
    from txmailhost.queue.service import DeliveryReports, ReturnToSender, build_queue
    from txmailhost.sieve.setup import build_sieve
    from txmailhost.store import backends, s3blobs

    top = ServerService(reactor, config.shutdown_grace)
    primary = worker is None or worker.primary
    if worker is None:  # a worker's events go to its supervisor, which writes the event log
        build_event_log(config).setServiceParent(top)  # first: it observes before anything listens
    storage_pool = ThreadPool(
        minthreads=1, maxthreads=config.store.threads, name="txmailhost-storage"
    )
    # Password checks are scrypt: CPU-bound (the GIL is released) and 32 MiB each. More of them
    # at once than there are cores adds memory, not speed.
    logins_at_once = max(1, min(4, os.cpu_count() or 1))
    accounts_pool = ThreadPool(minthreads=1, maxthreads=logins_at_once, name="txmailhost-accounts")
    storage_service = ThreadPoolService(storage_pool)
    storage_service.setServiceParent(top)
    ThreadPoolService(accounts_pool).setServiceParent(top)

    store = backends.build(
        config.store.backend,
        config.mail_root,
        reactor,
        storage_pool,
        dsn=config.store.dsn,
        text_index=config.store.text_index,
        blobs=s3blobs.from_config(config.store),
    )
    store.max_mailboxes = config.store.max_mailboxes  # what users do; the CLI has no limit
    if callable(getattr(store, "close", None)):  # PostgreSQL: its connections and LISTEN
        storage_service.after_stop.append(store.close)
    if primary and callable(getattr(store, "sweep_staging", None)):  # Maildir
        StartupSweep(store.sweep_staging).setServiceParent(top)
    if config.store.backend in backends.VOLATILE:
        log.critical(
            "[store] backend = {backend!r}: mail is kept in memory only and EVERY MESSAGE IS"
            " LOST when the server stops; for tests and embedding, never for real mail",
            backend=config.store.backend,
        )
    # Every protocol logs in through this one portal, so failures count across all of them.
    portal, router = build_accounts(
        config, store, reactor, accounts_pool, None if worker is None else worker.credential_key
    )
    queue, queue_service = build_queue(
        config, reactor, storage_pool, runner=primary, sweep_grace=0 if worker is None else 600
    )
    queue_service.setServiceParent(top)
    # The one durable hand-off for SMTP, the queue's bounces and the server's notices.
    # Users' Sieve scripts run in the delivery agent; what they send goes through delivery.
    sieve = build_sieve(config, router, store, reactor, storage_pool)
    delivery, delivery_services = build_delivery(
        config.queue_dir, config.hostname, store, reactor, storage_pool, queue, sieve,
        router.forward_sender,
        incoming_dir=None if worker is None else worker.incoming_dir(config.queue_dir),
        orphans=() if worker is None else worker.orphan_dirs(config.queue_dir),
    )  # fmt: skip
    for part in delivery_services:
        part.setServiceParent(top)
    # DKIM signing of submitted mail and DSNs, SPF/DKIM/DMARC checks inbound (mailauth/).
    mailauth = build_mailauth(config, reactor)
    queue.return_to_sender = ReturnToSender(router, mailauth.submission(delivery))
    # Vacation replies are DKIM-signed too; a redirect elsewhere is ARC-sealed, after signing.
    sieve.submission = mailauth.submission(mailauth.forwarding(delivery, reactor, storage_pool))
    delivery.report_delivered = DeliveryReports(config.hostname, queue.return_to_sender)
    if getattr(queue.courier, "tls_reports", None) is not None:
        queue.courier.tls_reports.deliver = queue.return_to_sender  # RFC 8460 reports
    filters, reverse_dns = _build_filters(config, reactor, top, mailauth.filters, mailauth.resolver)
    reports = mailauth.report_service(queue.return_to_sender, reactor, storage_pool)
    if reports is not None and primary:
        reports.setServiceParent(top)

    security = config.security
    if tls is None:
        tls = load_tls(config)
    tls.set_handshake_deadline(reactor, config.tls.handshake_timeout)  # stalled clients: cut off
    run_dir = os.path.join(config.data_dir, "run")
    TLSReloadService(reactor, tls, run_dir, watch_request=worker is None).setServiceParent(top)
    # One process renews the certificate (the one answering HTTP-01); the other workers pick
    # the new files up through their TLSReloadService.
    acme_challenges = _build_acme(config, reactor, tls, top) if primary else None

    parts = ServerParts(
        config=config,
        reactor=reactor,
        tls=tls,
        portal=portal,
        store=store,
        router=router,
        queue=queue,
        delivery=delivery,
        filters=filters,
        # Unknown recipients: 5 free per address and window, then growing delays (no
        # enumeration).
        rcpt_throttle=LoginThrottle(
            reactor, window=security.login_failure_window, ip_limit=10**9, free_failures=5
        ),
        plaintext_auth=PlaintextAuth(security.plaintext_auth_from),
        pools=tuple(s.pool for s in top if isinstance(s, ThreadPoolService)),
        inbound_delivery=mailauth.forwarding(delivery, reactor, storage_pool),
        mailbox_observers=_build_training(config, reactor, top),
        acme_challenges=acme_challenges,
        sort_keys=SortKeyCache(config.imap.sort_cache_messages),
        reverse_dns=reverse_dns,
    )
    open_listeners = []
    for kind in LISTENERS if listeners is None else listeners:
        description = getattr(config.listen, kind.config_key)
        adopt = None
        if worker is not None:
            adopt = worker.sockets.get(kind.label)
            description = description if adopt is not None else ""
        if description:
            limited = LimitedFactory(
                kind.build(parts),
                kind.label,
                kind.refusal,
                security.max_connections,
                security.max_connections_per_ip,
            )
            listener = Listener(reactor, kind.label, description, limited, adopt)
            listener.setServiceParent(top)
            parts.listening.append(listener)
            open_listeners.append((kind.label, limited))
    # 'txmailhost who' and 'kick' ask through DATA/run/control.sock (ops/control.py).
    sessions = top.sessions = Sessions(open_listeners, parts.browsers)
    control_path = socket_path(config, 0 if worker is None else worker.slot)
    ControlService(reactor, control_path, sessions).setServiceParent(top)
    if worker is not None and worker.count > 1:
        _join_workers(
            worker, config, reactor, store, portal, parts.rcpt_throttle, queue, top,
            [limited for _label, limited in open_listeners], parts.notify_hub,
        )  # fmt: skip
        _pause_near_file_limit(config, [limited for _label, limited in open_listeners], parts)
    if config.store.backend == "postgres":  # the nodes' failed logins count together
        from txmailhost.accounts.sharedfailures import SharedFailures, node_origin

        SharedFailures(
            config.store.dsn,
            {"login": portal.throttle, "rcpt": parts.rcpt_throttle},
            reactor,
            storage_pool,
            node_origin(config.data_dir),
        ).setServiceParent(top)
    top.portal = portal  # type: ignore[attr-defined] - for embedding and tests
    top.store = store  # type: ignore[attr-defined]
    return top


def _pause_near_file_limit(config: Any, limited: list[Any], parts: Any) -> None:
    """A worker near its open-file limit leaves new connections to the others (limits.py).
    Besides its connections a worker holds up to three descriptors (database, WAL, shared
    memory) per cached SQLite connection: two caches (folder and text index) per storage
    thread (store/threadconns.py), plus fdlimit's reserve for everything else."""
    import resource

    from txmailhost.fdlimit import RESERVE
    from txmailhost.limits import AcceptPause
    from txmailhost.store.threadconns import LIMIT

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return
    sqlite = 2 * 3 * (LIMIT + 1) * config.store.threads
    AcceptPause(limited, parts.listening, soft - RESERVE - sqlite)


def _join_workers(
    worker: WorkerRole,
    config: Any,
    reactor: Any,
    store: Any,
    portal: Any,
    rcpt_throttle: Any,
    queue: Any,
    top: MultiService,
    limited: list[Any],
    notify_hub: Any = None,
) -> None:
    """Connect this worker to the others (``workers/bus.py``): mailbox changes, so IDLE and
    NOTIFY see deliveries made by any worker; login and unknown-recipient failures, so the
    throttles count across workers; and spooled mail, which the queue runner adopts at once."""
    from txmailhost.workers.bus import PeerBus, bus_dir
    from txmailhost.workers.role import BusService

    bus = PeerBus(reactor, bus_dir(config.data_dir), worker.slot, worker.count)
    changes = getattr(store, "changes", None)
    if changes is not None:
        changes.forward = lambda directory: bus.send("change", directory)
        bus.on("change", changes.publish_local)
    for kind, throttle in (("login-failed", portal.throttle), ("rcpt-failed", rcpt_throttle)):
        throttle.forward = lambda client, account, kind=kind: bus.send(
            kind, client or "", "" if account is None else account
        )
        bus.on(kind, lambda client, account, t=throttle: t.record(client or None, account))
    # Passwords verified here need no scrypt on the others (accounts/credcache.py). The
    # checker remembers from the accounts pool: the bus is the reactor's.
    credentials = portal.credentials
    credentials.forward = lambda account, fingerprint, stored: reactor.callFromThread(
        bus.send, "credential", account, fingerprint.hex(), stored
    )
    bus.on(
        "credential",
        lambda account, fingerprint, stored: credentials.adopt(
            account, bytes.fromhex(fingerprint), stored
        ),
    )
    if notify_hub is not None:  # NOTIFY: mailboxes created, renamed, (un)subscribed elsewhere
        notify_hub.forward = lambda user, event, name, old: bus.send(
            "mailbox-name", user, event, name, old or ""
        )
        bus.on(
            "mailbox-name",
            lambda user, event, name, old: notify_hub.tell(user, None, event, name, old or None),
        )
    if queue.runner:
        bus.on("queued", queue.adopt)
    else:
        queue.spooled_elsewhere = lambda queue_id: bus.send("queued", queue_id)
    # Connection limits: each worker's counts per listener, absolute (limits.py).
    factories = {factory.label: factory for factory in limited}
    slot = str(worker.slot)
    for label, factory in factories.items():
        factory.forward = lambda key, mine, total, label=label: bus.send(
            "connections", slot, label, key, str(mine), str(total)
        )

    def counts(peer: str, label: str, key: str, mine: str, total: str) -> None:
        if label in factories:
            factories[label].peer_counts(int(peer), key, int(mine), int(total))

    def hello(peer: str) -> None:
        for factory in factories.values():
            factory.peer_restarted(int(peer))

    bus.on("connections", counts)
    bus.on("hello", hello)
    service = BusService(bus)
    service.setServiceParent(top)
    top.bus = bus  # type: ignore[attr-defined] - for tests
