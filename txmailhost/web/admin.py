"""The admin console, for users flagged admin (``txmailhost user add --admin``, ``txmailhost
user admin ADDR on|off``): domains, users, aliases and the relay queue.

Every page and action goes through the code the CLI runs, so both say and do the same:
``IAccounts`` for domains and users (and ``IMailStore.provision`` for a new user's folders,
as ``user add``), ``IAddressRules`` for aliases and quotas (sizes as ``user quota`` reads
them: ``500M``, ``2G``, ``none``), and the queue's own request files for retry,
bounce, delete, hold and release (``Spool.request``: what ``txmailhost queue retry ID``
writes, applied by the running queue within a second). Listing the queue reads the spool's
envelopes as ``queue list`` does.

To anyone not flagged admin every ``/admin`` route is a 404, like a page that doesn't exist.
An admin can't remove themselves or withdraw their own flag here (so nobody locks the last
admin out by a click); the CLI still can. Each action is logged with the admin's address.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from txmailhost.accounts.db import parse_size
from txmailhost.accounts.interfaces import AccountError
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response, redirect, text

log = Logger(namespace="txmailhost.web")

QUEUE_ACTIONS = ("retry", "bounce", "delete", "hold", "release")
MAX_LISTED = 500


class NotAdmin(Exception):
    pass


def _accounts(ctx: WebContext, function: Any, *args: Any) -> Any:
    services = ctx.services
    return deferToThreadPool(services.reactor, services.accounts_pool, function, *args)


async def _admin(ctx: WebContext) -> None:
    accounts = ctx.services.accounts
    if accounts is None or not await _accounts(ctx, accounts.is_admin, ctx.user):
        raise NotAdmin()


def _load_queue(spool: Any) -> list[Any]:
    envelopes = []
    for queue_id in spool.ids()[:MAX_LISTED]:
        try:
            envelopes.append(spool.load(queue_id))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # delivered or replaced meanwhile: the server owns these files
    return envelopes


async def _page(ctx: WebContext, status: int = 200, error: str = "") -> Response:
    accounts = ctx.services.accounts
    rules = await _accounts(ctx, accounts.address_rules)

    def everything() -> tuple[Any, Any, Any]:
        users = accounts.list_users(None)
        return (accounts.domain_table(), [(u, accounts.is_admin(u)) for u in users],
                rules.list_aliases(None))  # fmt: skip

    domains, users, aliases = await _accounts(ctx, everything)
    return ctx.render("admin.html", status, error=error, done=ctx.arg("done")[:200],
                      domains=domains, users=users, aliases=aliases)  # fmt: skip


def _size_text(limit: int | None) -> str:
    return "none" if limit is None else f"{limit} bytes"


def _done(what: str, where: str = "/admin") -> Response:
    return redirect(f"{where}?done={quote(what)}")


async def overview(ctx: WebContext) -> Response:
    await _admin(ctx)
    return await _page(ctx)


async def domains(ctx: WebContext) -> Response:
    await _admin(ctx)
    accounts, action, domain = ctx.services.accounts, ctx.arg("action"), ctx.arg("domain")
    try:
        if action == "add":
            name = await _accounts(ctx, accounts.add_domain, domain)
            done = f"Domain {name} added"
        elif action == "quota":
            rules = await _accounts(ctx, accounts.address_rules)
            limit = parse_size(ctx.arg("quota") or "none")
            name = await _accounts(ctx, rules.set_domain_quota, domain, limit)
            done = f"Default quota of {name}: {_size_text(limit)}"
        elif action == "remove":
            removed = await _accounts(ctx, accounts.remove_domain, domain, False)
            done = f"Domain {domain} removed" + (f" with {len(removed)} users" if removed else "")
        else:
            return text(400, "unknown action")
    except (AccountError, ValueError) as e:
        return await _page(ctx, 400, str(e))
    log.info("web admin {admin}: {done}", admin=ctx.user, done=done)
    return _done(done)


async def users(ctx: WebContext) -> Response:
    await _admin(ctx)
    accounts, action = ctx.services.accounts, ctx.arg("action")
    address, password = ctx.arg("address").strip(), ctx.arg("password")
    if action in ("remove", "unadmin") and address.lower() == ctx.user:
        return await _page(ctx, 400, "You can't do that to your own account here.")
    try:
        if action == "add":
            address = await _accounts(ctx, accounts.add_user, address, password)
            try:
                await ctx.store.provision(address)
            except BaseException:
                await _accounts(ctx, accounts.remove_user, address)  # no account without mail
                raise
            if ctx.arg("admin") == "1":
                await _accounts(ctx, accounts.set_admin, address, True)
            done = f"User {address} added"
        elif action == "password":
            address = await _accounts(ctx, accounts.set_password, address, password)
            done = f"Password of {address} set"
        elif action == "quota":
            rules = await _accounts(ctx, accounts.address_rules)
            limit = parse_size(ctx.arg("quota") or "none")
            address = await _accounts(ctx, rules.set_quota, address, limit)
            done = f"Quota of {address}: {_size_text(limit)}"
        elif action in ("admin", "unadmin"):
            address = await _accounts(ctx, accounts.set_admin, address, action == "admin")
            done = f"{address}: admin {'on' if action == 'admin' else 'off'}"
        elif action == "remove":
            address = await _accounts(ctx, accounts.remove_user, address)
            for session in list(ctx.services.sessions.of_user(address)):
                ctx.services.sessions.end(session, "account removed")
            done = f"User {address} removed (mail kept)"
        else:
            return text(400, "unknown action")
    except (AccountError, ValueError) as e:
        return await _page(ctx, 400, str(e))
    log.info("web admin {admin}: {done}", admin=ctx.user, done=done)
    return _done(done)


async def aliases(ctx: WebContext) -> Response:
    await _admin(ctx)
    rules = await _accounts(ctx, ctx.services.accounts.address_rules)
    action, address = ctx.arg("action"), ctx.arg("address").strip()
    targets = [t.strip() for t in ctx.arg("targets").split(",") if t.strip()]
    try:
        if action == "add":
            source, added = await _accounts(ctx, rules.add_alias, address, targets)
            done = f"Alias {source} -> {', '.join(added)}"
        elif action == "remove":
            count = await _accounts(ctx, rules.remove_alias, address, targets or None)
            done = f"Alias {address} removed ({count})"
        else:
            return text(400, "unknown action")
    except (AccountError, ValueError) as e:
        return await _page(ctx, 400, str(e))
    log.info("web admin {admin}: {done}", admin=ctx.user, done=done)
    return _done(done)


async def queue_page(ctx: WebContext) -> Response:
    await _admin(ctx)
    spool = ctx.services.spool
    envelopes = await ctx.services.in_thread(_load_queue, spool) if spool else []
    return ctx.render("admin_queue.html", envelopes=envelopes, done=ctx.arg("done")[:200],
                      actions=QUEUE_ACTIONS)  # fmt: skip


async def queue_action(ctx: WebContext) -> Response:
    await _admin(ctx)
    spool, action, queue_id = ctx.services.spool, ctx.arg("action"), ctx.arg("id")
    if spool is None or action not in QUEUE_ACTIONS:
        return text(400, "unknown action")
    if not queue_id.isalnum() or queue_id not in await ctx.services.in_thread(spool.ids):
        return text(404, "no such message in the queue")
    await ctx.services.in_thread(spool.request, action, queue_id)
    log.info("web admin {admin}: queue {action} {queue_id}", admin=ctx.user, action=action,
             queue_id=queue_id)  # fmt: skip
    return _done(f"{action} of {queue_id} requested", "/admin/queue")


def guarded(handler: Any) -> Any:
    """A 404 for anyone not admin, from whichever route they tried."""

    async def run(ctx: WebContext) -> Response:
        try:
            return await handler(ctx)
        except NotAdmin:
            return text(404, "not found")

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


ROUTES = [
    Route("GET", "/admin", guarded(overview)),
    Route("POST", "/admin/domains", guarded(domains)),
    Route("POST", "/admin/users", guarded(users)),
    Route("POST", "/admin/aliases", guarded(aliases)),
    Route("GET", "/admin/queue", guarded(queue_page)),
    Route("POST", "/admin/queue", guarded(queue_action)),
]
