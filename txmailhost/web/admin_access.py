"""Who reaches the admin console, and what its pages read beyond the accounts and the queue.

Every ``/admin`` handler is wrapped in :func:`admin_only`: the session's user must be flagged
admin in the accounts database (asked at each request, so ``txmailhost user admin ADDR off``
takes effect at the next click); to anyone else the route is a 404, like a page that doesn't
exist. :class:`AdminSources` is what ``listeners.py`` hands the console from the config, as
objects and paths, so these pages read no config file: the DKIM keys, the DNS records to
publish and a resolver configured as the server's (``[relay] nameservers``), the event log's
files, the listeners, the worker processes' control sockets, the data directory and the TLS
certificate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.threads import deferToThreadPool

from txmailhost.web.context import Handler, WebContext
from txmailhost.web.responses import Response, text


@dataclass
class AdminSources:
    """What the console's DKIM/DNS, event log and health pages read (blocking calls: each is
    run in the site's pool)."""

    data_dir: str
    certificate: str  # the TLS certificate's path ([tls] certificate)
    dkim: Any  # mailauth.keys.KeyStore of DATA/dkim, the CLI's `dkim` commands' store
    dns_records: Callable[[str], list[Any]]  # domain -> mailauth.dnsrecords.Record list
    # a new mailauth.resolver.MailAuthResolver as `txmailhost dns --check` makes it: fresh
    # for each check, so a record just published isn't hidden by a cached "missing"
    new_resolver: Callable[[], Any]
    dns_timeout: float  # the whole check of one domain's records gives up after this
    dns_lookup_timeout: float  # one lookup's limit ([mailauth] dns_timeout)
    log_files: Callable[[], list[str]]  # [log] file and its rotations, oldest first
    listeners: Sequence[Any] = ()  # service.Listener services: label, description, port
    control_sockets: Sequence[str] = ()  # each worker's control socket, worker 0 first
    ask_control: Callable[[str, str, float], Any] | None = None  # ops.control.ask
    workers: int = 1  # [server] workers
    free_space_warning: float = 0.1  # a data directory with less free is flagged
    other_storage: Sequence[tuple[str, str]] = ()  # ("mail", path), ("relay queue", path)
    # (host name, certificate path) of each [tls] sni pair, for the health page
    sni_certificates: Sequence[tuple[str, str]] = ()


class NotAdmin(Exception):
    pass


def accounts_call(ctx: WebContext, function: Callable[..., Any], *args: Any) -> Any:
    """Deferred of ``function(*args)`` in the accounts backend's pool (SQLite lives there)."""
    services = ctx.services
    return deferToThreadPool(services.reactor, services.accounts_pool, function, *args)


async def require_admin(ctx: WebContext) -> None:
    accounts = ctx.services.accounts
    if accounts is None or not await accounts_call(ctx, accounts.is_admin, ctx.user):
        raise NotAdmin()


def admin_only(handler: Callable[[WebContext], Awaitable[Response]]) -> Handler:
    """``handler`` for admins; a 404 for anyone else, whichever route they tried."""

    async def run(ctx: WebContext) -> Response:
        try:
            await require_admin(ctx)
            return await handler(ctx)
        except NotAdmin:
            return text(404, "not found")

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def sources(ctx: WebContext) -> AdminSources:
    """The console's sources; a server built without them (embedding) shows a 404 page."""
    found = ctx.services.admin_sources
    if found is None:
        raise NotAdmin()
    return found
