"""The admin console's DKIM keys and DNS records: what ``txmailhost dkim list`` and
``txmailhost dns DOMAIN [--check]`` say, through the same code.

``/admin/dns`` lists each domain served here with its DKIM selectors (the active one signs;
older ones stay published until retired: ``mailauth.keys.KeyStore``); ``?domain=D`` adds the
records D should publish (``mailauth.dnsrecords.records_for``, in zone-file syntax, ready to
paste), and ``&check=1`` asks DNS for each one (``dnsrecords.check``) and says which are
there, missing or different. A POST to ``/admin/dns/keys`` makes a served domain's first keys,
rotates them or retires an old selector, as ``txmailhost dkim init|rotate|retire`` do.

The check asks the resolver the server itself uses (``[relay] nameservers``, the system's
otherwise) with blocking dnspython calls, so it runs in the site's pool, never on the reactor
thread, and within ``AdminSources.dns_timeout`` seconds whatever the number of records: no
lookup starts after that, so a silent nameserver costs the admin a short wait and the records
checked so far with a notice, not a hung page, and the pool's thread is soon free again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from txmailhost.mailauth import dnsrecords
from txmailhost.mailauth.keys import DKIMKeyError, check_domain
from txmailhost.web.admin_access import accounts_call, admin_only, sources
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response, text

log = Logger(namespace="txmailhost.web")


@dataclass(frozen=True)
class KeyLine:
    """One selector, as ``dkim list`` prints it."""

    domain: str
    selector: str
    active: bool
    created: str
    records: str  # the DNS names of its two keys (Ed25519 and RSA)


@dataclass(frozen=True)
class RecordLine:
    rtype: str
    name: str
    what: str
    zone_line: str
    status: str = ""  # "ok", "missing", "differs: ...", "lookup failed: ..."; "" unchecked
    good: bool | None = None


def _keys(store: Any, domains: list[str]) -> list[KeyLine]:
    lines = []
    for domain in sorted(set(domains) | set(store.domains())):
        for selector in store.selectors(domain):
            lines.append(
                KeyLine(
                    domain,
                    selector.name,
                    selector.active,
                    time.strftime("%Y-%m-%d", time.gmtime(selector.created)),
                    f"{selector.name}-ed25519, {selector.name}-rsa",
                )
            )
    return lines


def _records(records: list[Any], checked: list[tuple[Any, str, bool]] | None) -> list[RecordLine]:
    """The records as shown; those ``checked`` (the first ones, when DNS was too slow to check
    them all) with what DNS said, the others unchecked."""
    lines = [RecordLine(r.rtype, r.name, r.what, r.zone_line()) for r in records]
    for index, (_record, said, good) in enumerate(checked or []):
        lines[index] = RecordLine(**{**lines[index].__dict__, "status": said, "good": good})
    return lines


def _check(records: list[Any], new_resolver: Any, seconds: float) -> list[tuple[Any, str, bool]]:
    """``dnsrecords.check`` record by record, with a resolver of its own (made here: without
    ``[relay] nameservers`` making one reads /etc/resolv.conf), starting no lookup after
    ``seconds``: so the thread is free again soon after the page stops waiting, and a slow
    resolver yields the records checked so far."""
    resolver = new_resolver()
    stop = time.monotonic() + seconds
    results: list[tuple[Any, str, bool]] = []
    for record in records:
        if time.monotonic() >= stop:
            break
        results.extend(dnsrecords.check([record], resolver))
    return results


async def _checked(ctx: WebContext, console: Any, records: list[Any]) -> list[Any]:
    """What DNS says of ``records`` within ``console.dns_timeout`` seconds (a prefix of them
    when it is slow); the lookups run in the site's pool."""
    services = ctx.services
    budget = console.dns_timeout
    asking = services.in_thread(
        _check, records, console.new_resolver, max(0.0, budget - console.dns_lookup_timeout)
    )
    asking.addTimeout(budget + 1, services.reactor)  # the last lookup overran its own limit
    try:
        return await asking
    except DeferredTimeout:
        return []


async def dns_page(ctx: WebContext) -> Response:
    """Keys of every domain; the records of one, checked against DNS when asked."""
    console = sources(ctx)
    services = ctx.services
    table = await accounts_call(ctx, services.accounts.domain_table)
    served = [name for name, _alias_of, _quota in table]
    keys = await services.in_thread(_keys, console.dkim, served)
    values: dict[str, Any] = {"domains": served, "keys": keys, "domain": "", "records": [],
                              "checked": False, "error": "", "summary": "", "no_keys": False,
                              "done": ctx.notice()}  # fmt: skip
    wanted = ctx.arg("domain").strip()
    if not wanted:
        return ctx.render("admin_dns.html", **values)
    try:
        domain = check_domain(wanted)
    except DKIMKeyError as e:
        return ctx.render("admin_dns.html", 400, **{**values, "error": str(e)})
    values["domain"] = domain
    records = await services.in_thread(console.dns_records, domain)
    checked = None
    if ctx.arg("check") == "1":
        values["checked"] = True
        checked = await _checked(ctx, console, records)
        good = sum(1 for _r, _said, ok in checked if ok)
        if len(checked) < len(records):
            values["error"] = (
                f"DNS did not answer within {console.dns_timeout:g} seconds: "
                f"{len(records) - len(checked)} of {len(records)} records not checked; "
                "check the resolver ([relay] nameservers) and try again"
            )
            log.warn("web admin {admin}: DNS check of {domain} timed out",
                     admin=ctx.user, domain=domain)  # fmt: skip
        else:
            values["summary"] = f"{good} of {len(records)} records as they should be"
    values["records"] = _records(records, checked)
    values["no_keys"] = not any(k.domain == domain for k in keys)
    return ctx.render("admin_dns.html", **values)


def _change_keys(store: Any, action: str, domain: str, selector: str) -> str:
    """What ``txmailhost dkim init|rotate|retire`` do, with the same refusals."""
    if action == "retire":
        store.retire(domain, selector)
        return f"{domain}: selector {selector} retired; remove its DNS records"
    has_keys = bool(store.selectors(domain))
    if action == "init" and has_keys:
        raise DKIMKeyError(f"{domain} has DKIM keys already: rotate them instead")
    if action == "rotate" and not has_keys:
        raise DKIMKeyError(f"{domain} has no DKIM keys to rotate")
    name = store.create(domain, None)
    return f"{domain}: selector {name} signs from now on; publish its records"


async def keys_action(ctx: WebContext) -> Response:
    """Make, rotate or retire a served domain's DKIM keys (the running server signs with a new
    active selector at its next message: the key store is read again when it changes)."""
    console = sources(ctx)
    action = ctx.arg("action")
    if action not in ("init", "rotate", "retire"):
        return text(400, "unknown action")
    table = await accounts_call(ctx, ctx.services.accounts.domain_table)
    try:
        domain = check_domain(ctx.arg("domain").strip())
        if domain not in {name for name, _alias_of, _quota in table}:
            raise DKIMKeyError(f"{domain} is not a domain served here")
        done = await ctx.services.in_thread(
            _change_keys, console.dkim, action, domain, ctx.arg("selector")
        )
    except DKIMKeyError as e:
        return text(400, str(e))
    log.info("web admin {admin}: {done}", admin=ctx.user, done=done)
    return ctx.done("/admin/dns", done, domain=domain)


ROUTES = [
    Route("GET", "/admin/dns", admin_only(dns_page)),
    Route("POST", "/admin/dns/keys", admin_only(keys_action)),
]
