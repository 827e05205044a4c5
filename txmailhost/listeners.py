"""The listeners the server runs: one table entry per service, built by one loop in ``service.py``.

Each :class:`ListenerKind` names a listener (``label``, used in log lines and connection
limits), the ``[listen]`` key that holds its endpoint, how it starts TLS, what a connection over
the limits is told, and a function building its protocol factory from the :class:`ServerParts`
``service.build`` wires once (portal, store, router, queue, spool, TLS context). A new service
(ManageSieve, HTTP) is a factory builder and one entry in :data:`LISTENERS`, plus its key in
``ListenConfig``; ``service.build`` doesn't change.

TLS styles (RFC 8314): ``STARTTLS`` listeners accept plain text and offer STARTTLS/STLS when a
certificate is configured; ``IMPLICIT`` ones (465, 993, 995) are TLS from the first byte, so
their factory is wrapped in Twisted's TLS layer and told so (``implicit_tls``) for log lines and
the plain-text password rule. ``PLAIN`` listeners (the metrics page, the HTTP redirect) never speak TLS.

Only wiring lives here, like ``service.py``: the protocol packages take objects and know
nothing of the config file.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.protocols.tls import TLSMemoryBIOFactory

from txmailhost.asciinum import number_or
from txmailhost.config import Config
from txmailhost.imap.keycache import SortKeyCache
from txmailhost.imap.notify import NotifyHub
from txmailhost.imap.server import IMAPFactory
from txmailhost.mailauth import dnsrecords
from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.mailauth.sharedkeys import open_key_store
from txmailhost.ops import control
from txmailhost.ops.eventlog import log_path
from txmailhost.ops.exposition import MetricsSite
from txmailhost.ops.log_grep import rotations
from txmailhost.peer import PlaintextAuth
from txmailhost.pop3.server import POP3Factory
from txmailhost.queue.service import open_records
from txmailhost.sieve.managesieve import ManageSieveFactory
from txmailhost.sieve.setup import script_store
from txmailhost.smtp import replies as smtp_replies
from txmailhost.smtp.outbox import Outbox
from txmailhost.smtp.policy import InboundPolicy, SubmissionPolicy
from txmailhost.smtp.server import SMTPFactory
from txmailhost.web.admin_access import AdminSources
from txmailhost.web.context import ClientSettings
from txmailhost.web.redirect import RedirectSite

if TYPE_CHECKING:
    from txmailhost.web.site import WebSite


class TLSStyle(enum.Enum):
    STARTTLS = "starttls"  # plain text first; STARTTLS/STLS when a certificate is configured
    IMPLICIT = "implicit"  # TLS from the first byte
    PLAIN = "plain"  # never TLS (the loopback metrics page; the HTTP listener that only redirects)


@dataclass(frozen=True)
class ServerParts:
    """What every listener's factory is built from; made once by ``service.build``."""

    config: Config
    reactor: Any
    tls: Any  # the ReloadableTLS, an IOpenSSLServerConnectionCreator
    portal: Any  # ThrottledPortal handing out IMailAccount
    store: Any  # IMailStore
    router: Any  # routing.Router
    queue: Any  # the relay queue
    delivery: Any  # delivery.interfaces.ISubmission: the one durable hand-off
    filters: Any  # filters.chain.FilterChain of [filters], or None
    rcpt_throttle: Any  # accounts.throttle.LoginThrottle for unknown recipients
    plaintext_auth: PlaintextAuth
    pools: tuple[Any, ...] = ()  # the server's ThreadPools, for the metrics page
    # the Listener services, appended by service.build as it makes them (the admin's health)
    listening: list[Any] = field(default_factory=list)
    # The inbound listener's hand-off when it differs (mail forwarded elsewhere is ARC-sealed).
    inbound_delivery: Any = None
    mailbox_observers: tuple[Any, ...] = ()  # imap.observers.IMailboxObserver (spam training)
    acme_challenges: Any = None  # acme_renewal.Challenges with [tls] acme: HTTP-01 answers
    # NOTIFY's mailbox-name and subscription events, shared by every IMAP listener
    notify_hub: NotifyHub = field(default_factory=NotifyHub)
    # reversedns.ReverseDNS for the smtp listener's clients ([smtp] reverse_dns), or None
    reverse_dns: Any = None
    # sort keys kept for the next session of a mailbox (imap/keycache.py), shared likewise
    sort_keys: SortKeyCache = field(default_factory=SortKeyCache)
    # (label, web.sessions.SessionStore) of the webmail, appended by ``web``: the logins
    # ``txmailhost who`` lists and ``kick`` ends (ops/control.py)
    browsers: list[tuple[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ListenerKind:
    """One service the server can listen for."""

    label: str  # "imaps": log lines and connection limits
    config_key: str  # the field of ListenConfig ([listen] key) holding the endpoint
    factory: Callable[[ServerParts, bool], Any]  # (parts, implicit_tls) -> protocol factory
    tls: TLSStyle
    busy: bytes  # sent to a connection over the limits before it is closed (see refusal)

    @property
    def refusal(self) -> bytes:
        """What a connection over the limits is sent before it is closed: ``busy``, except on
        an implicit-TLS listener, where it is nothing. There the client's first read expects a
        TLS record: a line in clear text reads as a broken handshake ("wrong version number"),
        and a handshake only to refuse would spend the CPU a connection flood aims at."""
        return b"" if self.tls is TLSStyle.IMPLICIT else self.busy

    def build(self, parts: ServerParts) -> Any:
        """The factory to listen with, inside the TLS layer for an implicit-TLS listener."""
        implicit = self.tls is TLSStyle.IMPLICIT
        factory = self.factory(parts, implicit)
        return TLSMemoryBIOFactory(parts.tls, False, factory) if implicit else factory


# -- the factory builders ----------------------------------------------------------------------


def _smtp_limits(parts: ServerParts) -> dict[str, Any]:
    """Limits and the content filter chain, the same for every SMTP listener."""
    config = parts.config
    return {
        "filters": parts.filters,
        "max_message_size": config.smtp.max_message_size,
        "max_recipients": config.smtp.max_recipients,
        "max_line_length": config.smtp.max_line_length,
        "idle_timeout": config.smtp.idle_timeout,
        "session_timeout": config.smtp.session_timeout,
        "max_errors": config.smtp.max_errors,
        "max_junk_commands": config.smtp.max_junk_commands,
    }


def _session(parts: ServerParts, implicit_tls: bool, label: str) -> dict[str, Any]:
    """What every protocol factory takes alike: the clock, our name, TLS (with how it starts)
    and the plain-text password rule; ``label`` names the listener in log lines, with an
    "s" for its implicit-TLS twin ("imap", "imaps")."""
    return {
        "reactor": parts.reactor,
        "hostname": parts.config.hostname,
        "tls_creator": parts.tls,
        "implicit_tls": implicit_tls,
        "plaintext_auth": parts.plaintext_auth,
        "name": label + "s" if implicit_tls else label,
    }


def _quota_full(config: Config) -> smtp_replies.SMTPReply:
    if config.routing.quota_full == "permanent":
        return smtp_replies.QUOTA_FULL_PERMANENT
    return smtp_replies.QUOTA_FULL_TEMPORARY


def inbound_smtp(parts: ServerParts, implicit_tls: bool) -> SMTPFactory:
    """Port 25: mail for our domains from anywhere, never relayed onwards for the client."""
    config = parts.config
    return SMTPFactory(
        InboundPolicy(
            parts.router,
            parts.store,
            queue=parts.queue,  # alias and forward targets elsewhere are relayed
            rcpt_throttle=parts.rcpt_throttle,
            quota_full=_quota_full(config),
        ),
        parts.inbound_delivery or parts.delivery,
        **_session(parts, implicit_tls, "smtp"),
        **_smtp_limits(parts),
        greeting_delay=config.smtp.greeting_delay,
        client_message_rate=config.smtp.client_message_rate,
        client_recipient_rate=config.smtp.client_recipient_rate,
        rate_window=config.smtp.rate_window,
        reverse_dns=parts.reverse_dns,
    )


def _submission_policy(parts: ServerParts) -> SubmissionPolicy:
    return SubmissionPolicy(
        parts.router,
        parts.store,
        queue=parts.queue,
        rcpt_throttle=parts.rcpt_throttle,
        quota_full=_quota_full(parts.config),
    )


def submission(parts: ServerParts, implicit_tls: bool) -> SMTPFactory:
    """Ports 587 and 465 (RFC 6409, RFC 8314): our users' mail, after AUTH."""
    config = parts.config
    return SMTPFactory(
        _submission_policy(parts),
        parts.delivery,
        **_session(parts, implicit_tls, "submission"),
        portal=parts.portal,
        hide_client_ip=config.security.hide_client_ip_on_submission,
        **_smtp_limits(parts),
    )


def pop3(parts: ServerParts, implicit_tls: bool) -> POP3Factory:
    config = parts.config
    return POP3Factory(
        parts.portal,
        **_session(parts, implicit_tls, "pop3"),
        idle_timeout=config.pop3.idle_timeout,
        session_timeout=config.pop3.session_timeout,
    )


def imap(parts: ServerParts, implicit_tls: bool) -> IMAPFactory:
    config = parts.config
    factory = IMAPFactory(
        parts.portal,
        **_session(parts, implicit_tls, "imap"),
        idle_timeout=config.imap.idle_timeout,
        max_literal_size=config.imap.max_literal_size,
        quota_of=parts.router.quota_of,
        observers=parts.mailbox_observers,
        sort_keys=parts.sort_keys,
    )
    factory.notify_hub = parts.notify_hub  # imap/notify.hub_of: one for 143 and 993
    return factory


def metrics_page(parts: ServerParts, implicit_tls: bool) -> MetricsSite:
    """``GET /metrics`` for Prometheus (ops/exposition.py), loopback by default."""
    return MetricsSite(parts.reactor, parts.queue, parts.pools)


def managesieve(parts: ServerParts, implicit_tls: bool) -> ManageSieveFactory:
    """RFC 5804 (port 4190): users' Sieve scripts, with IMAP's login and TLS rules."""
    return ManageSieveFactory(
        parts.portal,
        script_store(parts.config),
        **_session(parts, implicit_tls, "managesieve"),
        max_redirects=parts.config.sieve.max_redirects,
    )


def endpoint_port(description: str) -> int:
    """The TCP port of an endpoint description ("tcp:993:interface=::"), 0 if it has none:
    what the autoconfiguration files and the HTTP redirect tell clients."""
    kind, _, rest = description.partition(":")
    if kind.strip().lower() not in ("tcp", "tcp6"):
        return 0
    first = rest.split(":", 1)[0].strip().removeprefix("port=")
    return number_or(first, 0)


def web(parts: ServerParts, implicit_tls: bool) -> WebSite:
    """Webmail and autoconfiguration over HTTPS (txmailhost/web/). Imported here, when the
    listener is on: the webmail's modules and theirs (Jinja2, the HTML sanitizer, the
    multipart parser; 54 modules) were 4.6 MiB of a server that doesn't serve it."""
    from txmailhost.web.site import build_site

    config = parts.config
    listen = config.listen
    settings = config.web
    site = build_site(
        reactor=parts.reactor,
        portal=parts.portal,
        clients=ClientSettings(
            hostname=config.hostname,
            imaps=endpoint_port(listen.imaps),
            imap=endpoint_port(listen.imap),
            submissions=endpoint_port(listen.submissions),
            submission=endpoint_port(listen.submission),
            pop3s=endpoint_port(listen.pop3s),
            mta_sts_mode=settings.mta_sts_mode,
            mta_sts_mx=settings.mta_sts_mx,
            mta_sts_max_age=settings.mta_sts_max_age,
        ),
        public_url=settings.public_url,
        web_port=endpoint_port(listen.web),
        session_idle_timeout=settings.session_idle_timeout,
        session_lifetime=settings.session_lifetime,
        max_sessions=settings.max_sessions,
        # Send goes through what port 587 runs: its policy, filters (DKIM) and hand-off.
        outbox=functools.partial(
            Outbox,
            _submission_policy(parts),
            parts.delivery,
            parts.filters,
            reactor=parts.reactor,
            hostname=config.hostname,
            max_message_size=config.smtp.max_message_size,
            max_recipients=config.smtp.max_recipients,
            hide_client_ip=config.security.hide_client_ip_on_submission,
        ),
        mailbox_observers=parts.mailbox_observers,
        accounts=parts.router.accounts,
        accounts_pool=parts.router.accounts_pool,
        rule_check=parts.router.refuse_loops,
        scripts=script_store(config),  # the store ManageSieve and delivery use
        spool=open_records(config),  # what `txmailhost queue` reads and writes requests to
        admin_sources=_admin_sources(parts),
    )
    parts.browsers.append(("web", site.app.services.sessions))
    return site


def _admin_sources(parts: ServerParts) -> AdminSources:
    """The admin console's DKIM/DNS, event log and health pages read what the CLI's
    ``dkim list``, ``dns --check``, ``log grep`` and ``who`` read."""
    config = parts.config
    keys = open_key_store(config)
    logged = log_path(config)
    workers = max(1, config.workers)
    return AdminSources(
        data_dir=config.data_dir,
        certificate=config.tls.certificate,
        sni_certificates=tuple((name, cert) for name, (cert, _key) in config.tls.sni.items()),
        dkim=keys,
        dns_records=lambda domain: dnsrecords.records_for(domain, config, keys),
        new_resolver=functools.partial(
            MailAuthResolver, config.relay.nameservers, timeout=config.mailauth.dns_timeout
        ),
        dns_timeout=max(3.0, 2 * config.mailauth.dns_timeout),
        dns_lookup_timeout=config.mailauth.dns_timeout,
        other_storage=(("mail", config.mail_root), ("relay queue", config.queue_dir)),
        log_files=lambda: rotations(logged) if logged else [],
        listeners=parts.listening,
        control_sockets=[control.socket_path(config, slot) for slot in range(workers)],
        ask_control=control.ask,
        workers=workers,
    )


def web_redirect(parts: ServerParts, implicit_tls: bool) -> RedirectSite:
    """Plain HTTP that only redirects to the HTTPS listener."""
    config = parts.config
    return RedirectSite(
        config.web.public_url, endpoint_port(config.listen.web), parts.acme_challenges
    )


# What a connection over the limits is told before it is closed, per protocol.
SMTP_BUSY = b"421 4.7.0 too many connections, try again later\r\n"
POP3_BUSY = b"-ERR [SYS/TEMP] too many connections, try again later\r\n"
IMAP_BUSY = b"* BYE [UNAVAILABLE] too many connections, try again later\r\n"
HTTP_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MANAGESIEVE_BUSY = b'BYE (TRYLATER) "too many connections, try again later"\r\n'

STARTTLS, IMPLICIT, PLAIN = TLSStyle.STARTTLS, TLSStyle.IMPLICIT, TLSStyle.PLAIN

LISTENERS: list[ListenerKind] = [
    ListenerKind("smtp", "smtp", inbound_smtp, STARTTLS, SMTP_BUSY),
    ListenerKind("submission", "submission", submission, STARTTLS, SMTP_BUSY),
    ListenerKind("submissions", "submissions", submission, IMPLICIT, SMTP_BUSY),
    ListenerKind("pop3", "pop3", pop3, STARTTLS, POP3_BUSY),
    ListenerKind("pop3s", "pop3s", pop3, IMPLICIT, POP3_BUSY),
    ListenerKind("imap", "imap", imap, STARTTLS, IMAP_BUSY),
    ListenerKind("imaps", "imaps", imap, IMPLICIT, IMAP_BUSY),
    ListenerKind("metrics", "metrics", metrics_page, PLAIN, HTTP_BUSY),
    ListenerKind("managesieve", "managesieve", managesieve, STARTTLS, MANAGESIEVE_BUSY),
    ListenerKind("web", "web", web, IMPLICIT, HTTP_BUSY),
    ListenerKind("web_redirect", "web_redirect", web_redirect, PLAIN, HTTP_BUSY),
]
