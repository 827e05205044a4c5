"""The admin console, for users flagged admin (``txmailhost user add --admin``, ``txmailhost
user admin ADDR on|off``): domains, users, aliases and the relay queue here; DKIM keys and
DNS records (``admin_dns.py``), the event log (``admin_log.py``) and the server's health
(``admin_health.py``) beside it, all behind ``admin_access.admin_only``.

Every page and action goes through the code the CLI runs, so both say and do the same:
``IAccounts`` for domains and users (and ``IMailStore.provision`` for a new user's folders,
as ``user add``), ``IAddressRules`` for aliases and quotas (sizes as ``user quota`` reads
them: ``500M``, ``2G``, ``none``), and the queue's own request files for retry,
bounce, delete, hold and release (``Spool.request``: what ``txmailhost queue retry ID``
writes, applied by the running queue within a second). Listing the queue reads the spool's
envelopes as ``queue list`` does.

Each form posts an ``action``; the route's table of actions (:data:`DOMAIN_ACTIONS` ...)
maps it to a coroutine that does it and says what was done, and :func:`_act` runs it the
same way for all: an ``AccountError`` or ``ValueError`` (a bad size, a weak password) shows
the page again with the error and a 400, success is logged and redirected (See Other).

To anyone not flagged admin every ``/admin`` route is a 404, like a page that doesn't exist.
An admin can't remove themselves or withdraw their own flag here (so nobody locks the last
admin out by a click); the CLI still can. Each action is logged with the admin's address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.logger import Logger

from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.db import parse_size
from txmailhost.accounts.interfaces import AccountError
from txmailhost.web.admin_access import accounts_call, admin_only
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response, text

log = Logger(namespace="txmailhost.web")

QUEUE_ACTIONS = ("retry", "bounce", "delete", "hold", "release")
MAX_LISTED = 500

Action = Callable[[WebContext], Awaitable[str]]  # does it; says what was done


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
    rules = await accounts_call(ctx, accounts.address_rules)

    def everything() -> tuple[Any, Any, Any]:
        users = accounts.list_users(None)
        return (accounts.domain_table(), [(u, accounts.is_admin(u)) for u in users],
                rules.list_aliases(None))  # fmt: skip

    domains, users, aliases = await accounts_call(ctx, everything)
    return ctx.render("admin.html", status, error=error, done=ctx.notice(),
                      domains=domains, users=users, aliases=aliases)  # fmt: skip


def _size_text(limit: int | None) -> str:
    return "none" if limit is None else f"{limit} bytes"


def _done(ctx: WebContext, what: str, where: str = "/admin") -> Response:
    return ctx.done(where, what)


async def _act(ctx: WebContext, actions: Mapping[str, Action]) -> Response:
    """Run the form's ``action`` from ``actions``: its refusal is the page with the error
    (400), its success is logged with the admin's address and redirected to the page."""
    action = actions.get(ctx.arg("action"))
    if action is None:
        return text(400, "unknown action")
    try:
        done = await action(ctx)
    except (AccountError, ValueError) as e:
        return await _page(ctx, 400, str(e))
    log.info("web admin {admin}: {done}", admin=ctx.user, done=done)
    return _done(ctx, done)


def _actions(table: Mapping[str, Action]) -> Callable[[WebContext], Awaitable[Response]]:
    async def run(ctx: WebContext) -> Response:
        return await _act(ctx, table)

    return run


async def _rules(ctx: WebContext) -> Any:
    return await accounts_call(ctx, ctx.services.accounts.address_rules)


def _quota(ctx: WebContext) -> int | None:
    return parse_size(ctx.arg("quota") or "none")  # ValueError: the page says why


# -- domains ------------------------------------------------------------------------------


async def _add_domain(ctx: WebContext) -> str:
    name = await accounts_call(ctx, ctx.services.accounts.add_domain, ctx.arg("domain"))
    return f"Domain {name} added"


async def _domain_quota(ctx: WebContext) -> str:
    limit = _quota(ctx)
    name = await accounts_call(ctx, (await _rules(ctx)).set_domain_quota, ctx.arg("domain"), limit)
    return f"Default quota of {name}: {_size_text(limit)}"


async def _remove_domain(ctx: WebContext) -> str:
    domain = ctx.arg("domain")
    removed = await accounts_call(ctx, ctx.services.accounts.remove_domain, domain, False)
    return f"Domain {domain} removed" + (f" with {len(removed)} users" if removed else "")


DOMAIN_ACTIONS: dict[str, Action] = {
    "add": _add_domain,
    "quota": _domain_quota,
    "remove": _remove_domain,
}


# -- users --------------------------------------------------------------------------------


def _address(ctx: WebContext) -> str:
    return ctx.arg("address").strip()


async def _add_user(ctx: WebContext) -> str:
    accounts = ctx.services.accounts
    address = await accounts_call(ctx, accounts.add_user, _address(ctx), ctx.arg("password"))
    try:
        await ctx.store.provision(address)
    except BaseException:
        await accounts_call(ctx, accounts.remove_user, address)  # no account without mail
        raise
    if ctx.arg("admin") == "1":
        await accounts_call(ctx, accounts.set_admin, address, True)
    return f"User {address} added"


async def _set_password(ctx: WebContext) -> str:
    """A new password also ends the user's web sessions (but the admin's own, when it is
    theirs): a reset after a break-in must lock the intruder out, as the user's own change
    of password does."""
    accounts = ctx.services.accounts
    address = await accounts_call(ctx, accounts.set_password, _address(ctx), ctx.arg("password"))
    ended = 0
    for session in list(ctx.services.sessions.of_user(address)):
        if session is not ctx.session:
            ctx.services.sessions.end(session, "password set by an administrator")
            ended += 1
    if ctx.session is not None and ctx.session.user == address:  # the admin's own: kept
        ctx.session.stamp = await ctx.services.account_stamp(address)
    return f"Password of {address} set; {ended} web session(s) ended"


async def _user_quota(ctx: WebContext) -> str:
    limit = _quota(ctx)
    address = await accounts_call(ctx, (await _rules(ctx)).set_quota, _address(ctx), limit)
    return f"Quota of {address}: {_size_text(limit)}"


def _set_admin(flag: bool) -> Action:
    async def run(ctx: WebContext) -> str:
        accounts = ctx.services.accounts
        address = await accounts_call(ctx, accounts.set_admin, _address(ctx), flag)
        return f"{address}: admin {'on' if flag else 'off'}"

    return run


async def _remove_user(ctx: WebContext) -> str:
    address = await accounts_call(ctx, ctx.services.accounts.remove_user, _address(ctx))
    for session in list(ctx.services.sessions.of_user(address)):
        ctx.services.sessions.end(session, "account removed")
    return f"User {address} removed (mail kept)"


USER_ACTIONS: dict[str, Action] = {
    "add": _add_user,
    "password": _set_password,
    "quota": _user_quota,
    "admin": _set_admin(True),
    "unadmin": _set_admin(False),
    "remove": _remove_user,
}


def _is_own(ctx: WebContext) -> bool:
    """The form names the admin's own account, however written (``Root@ Example.TEST.``
    is the account the accounts database acts on, so it is the comparison's too)."""
    try:
        return canonical_address(_address(ctx)) == canonical_address(ctx.user)
    except AccountError:
        return _address(ctx).lower() == ctx.user.lower()


async def users(ctx: WebContext) -> Response:
    if ctx.arg("action") in ("remove", "unadmin") and _is_own(ctx):
        return await _page(ctx, 400, "You can't do that to your own account here.")
    return await _act(ctx, USER_ACTIONS)


# -- aliases ------------------------------------------------------------------------------


def _targets(ctx: WebContext) -> list[str]:
    return [t.strip() for t in ctx.arg("targets").split(",") if t.strip()]


async def _add_alias(ctx: WebContext) -> str:
    rules = await _rules(ctx)
    source, added = await accounts_call(
        ctx, rules.add_alias, _address(ctx), _targets(ctx), ctx.services.rule_check
    )
    return f"Alias {source} -> {', '.join(added)}"


async def _remove_alias(ctx: WebContext) -> str:
    rules = await _rules(ctx)
    address = _address(ctx)
    count = await accounts_call(ctx, rules.remove_alias, address, _targets(ctx) or None)
    return f"Alias {address} removed ({count})"


ALIAS_ACTIONS: dict[str, Action] = {"add": _add_alias, "remove": _remove_alias}


# -- pages and the queue ------------------------------------------------------------------


async def overview(ctx: WebContext) -> Response:
    return await _page(ctx)


async def queue_page(ctx: WebContext) -> Response:
    spool = ctx.services.spool
    envelopes = await ctx.services.in_thread(_load_queue, spool) if spool else []
    return ctx.render("admin_queue.html", envelopes=envelopes, done=ctx.notice(),
                      actions=QUEUE_ACTIONS)  # fmt: skip


async def queue_action(ctx: WebContext) -> Response:
    spool, action, queue_id = ctx.services.spool, ctx.arg("action"), ctx.arg("id")
    if spool is None or action not in QUEUE_ACTIONS:
        return text(400, "unknown action")
    if not queue_id.isalnum() or queue_id not in await ctx.services.in_thread(spool.ids):
        return text(404, "no such message in the queue")
    await ctx.services.in_thread(spool.request, action, queue_id)
    log.info("web admin {admin}: queue {action} {queue_id}", admin=ctx.user, action=action,
             queue_id=queue_id)  # fmt: skip
    return _done(ctx, f"{action} of {queue_id} requested", "/admin/queue")


ROUTES = [
    Route("GET", "/admin", admin_only(overview)),
    Route("POST", "/admin/domains", admin_only(_actions(DOMAIN_ACTIONS))),
    Route("POST", "/admin/users", admin_only(users)),
    Route("POST", "/admin/aliases", admin_only(_actions(ALIAS_ACTIONS))),
    Route("GET", "/admin/queue", admin_only(queue_page)),
    Route("POST", "/admin/queue", admin_only(queue_action)),
]
