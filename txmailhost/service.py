"""Wires the server together from a ``Config``: thread pools, store, accounts, listeners.

This is the only module that turns configuration into objects. Each protocol factory receives
its collaborators (portal, store, policy, TLS context, limits) as arguments, which is what lets
another Twisted application embed ``SMTPFactory`` or ``POP3Factory`` with its own realm.

Two thread pools keep slow work off the reactor (DESIGN invariant 3) and away from each other:
``storage`` for fsyncs, Maildir and index work; ``accounts`` for SQLite lookups and scrypt
password checks, so a burst of logins can't delay an fsync and vice versa.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.threadpool import ThreadPool

log = Logger()


class ThreadPoolService(Service):
    """Starts and stops a ``ThreadPool`` with the application."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


class Listener(Service):
    """Listens on one endpoint description and says so in the log; a failure stops startup."""

    def __init__(self, reactor: Any, label: str, description: str, factory: Any) -> None:
        self.reactor = reactor
        self.label = label
        self.description = description
        self.factory = factory
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        endpoint = serverFromString(self.reactor, self.description)
        d: Deferred = endpoint.listen(self.factory)

        def listening(port: Any) -> None:
            self.port = port
            host = port.getHost()
            log.info(
                "txmailhost {label} listening on {host}:{port} ({description})",
                label=self.label,
                host=host.host,
                port=host.port,
                description=self.description,
            )

        def failed(failure: Any) -> None:
            log.critical(
                "txmailhost can't listen for {label} on {description}: {error}",
                label=self.label,
                description=self.description,
                error=failure.getErrorMessage(),
            )
            if self.reactor.running:
                self.reactor.stop()

        d.addCallbacks(listening, failed)

    def stopService(self) -> Deferred | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def make_service(
    data_dir: str, config_file: str | None = None, reactor: Any = None
) -> MultiService:
    """Build the whole server; exits with a clear message if the config is wrong."""
    import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 codec mailbox names use

    from txmailhost.config import ConfigError, ensure_data_dir, load_config

    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        created = ensure_data_dir(data_dir, config_file)
        config = load_config(data_dir, config_file)
    except ConfigError as e:
        for problem in e.problems:
            print(f"txmailhost: {problem}", file=sys.stderr)
        raise SystemExit(1) from None
    except (OSError, ValueError) as e:
        print(f"txmailhost: can't prepare data directory {data_dir}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    for line in created:
        log.info("txmailhost first start: {line}", line=line)
    return build(config, reactor)


def build(config: Any, reactor: Any) -> MultiService:
    """The MultiService for ``config``: pools, store, accounts, spool and every listener."""
    from txmailhost.accounts.checker import AccountsChecker
    from txmailhost.accounts.db import AccountsDB
    from txmailhost.accounts.realm import MailRealm
    from txmailhost.pop3.server import POP3Factory
    from txmailhost.routing import Router
    from txmailhost.smtp.incoming import IncomingSpool
    from txmailhost.smtp.policy import InboundPolicy
    from txmailhost.smtp.server import SMTPFactory
    from txmailhost.store.maildir import MaildirStore
    from txmailhost.tls import load_certificate_options

    top = MultiService()
    storage_pool = ThreadPool(
        minthreads=1, maxthreads=config.store.threads, name="txmailhost-storage"
    )
    accounts_pool = ThreadPool(minthreads=1, maxthreads=4, name="txmailhost-accounts")
    ThreadPoolService(storage_pool).setServiceParent(top)
    ThreadPoolService(accounts_pool).setServiceParent(top)

    accounts = AccountsDB(config.accounts_path)
    store = MaildirStore(config.mail_root, reactor, storage_pool)
    portal = Portal(MailRealm(store), [AccountsChecker(accounts, reactor, accounts_pool)])
    router = Router(accounts, reactor, accounts_pool)
    spool = IncomingSpool(os.path.join(config.queue_dir, "tmp"), reactor, storage_pool)
    swept = spool.sweep()
    if swept:
        log.info("removed {n} unacknowledged partial message(s) left by a crash", n=swept)

    try:
        tls = load_certificate_options(config.tls.certificate, config.tls.key)
    except ValueError as e:
        print(f"txmailhost: TLS: {e}", file=sys.stderr)
        raise SystemExit(1) from None

    smtp_limits = {
        "max_message_size": config.smtp.max_message_size,
        "max_recipients": config.smtp.max_recipients,
        "max_line_length": config.smtp.max_line_length,
        "idle_timeout": config.smtp.idle_timeout,
        "session_timeout": config.smtp.session_timeout,
        "max_errors": config.smtp.max_errors,
    }
    inbound = SMTPFactory(
        InboundPolicy(router, store),
        spool,
        hostname=config.hostname,
        reactor=reactor,
        tls_creator=tls,
        **smtp_limits,
    )

    def pop3(implicit_tls: bool) -> POP3Factory:
        return POP3Factory(
            portal,
            reactor=reactor,
            hostname=config.hostname,
            tls_creator=tls,
            implicit_tls=implicit_tls,
            idle_timeout=config.pop3.idle_timeout,
        )

    listeners = [
        ("smtp", config.listen.smtp, inbound),
        ("pop3", config.listen.pop3, pop3(False)),
        ("pop3s", config.listen.pop3s, TLSMemoryBIOFactory(tls, False, pop3(True))),
    ]
    for label, description, factory in listeners:
        if description:
            Listener(reactor, label, description, factory).setServiceParent(top)
    for label in ("submission", "submissions", "imap", "imaps"):
        if getattr(config.listen, label):
            log.info(
                "txmailhost {label}: not implemented in this version; listener not started",
                label=label,
            )
    top.portal = portal  # type: ignore[attr-defined] - for embedding and tests
    top.store = store  # type: ignore[attr-defined]
    return top
