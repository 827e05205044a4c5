"""Self-service settings: password, forwarding, away reply, Sieve rules, storage used, and the
browsers logged in.

Each setting goes through the code the admin CLI and the other protocols use, never a copy:

- the password: the old one is checked by a login through the server's ``ThrottledPortal``
  (a wrong old password counts as a failed login, slowed and logged like one), the new one is
  set with ``IAccounts.set_password`` (its strength rules and hash), and every other web
  session of the user ends;
- forwarding: ``IAddressRules.set_forward``, what ``txmailhost user forward`` sets; routing
  sees it within its two-second cache;
- the away reply: ``sieve.admin.vacation_on``/``vacation_off``, the functions behind
  ``txmailhost user vacation``, writing the ``vacation`` script into the same script store
  ManageSieve uses (``DATA/sieve/``), and giving back the script that was active before;
- Sieve rules: ``ScriptStore.put``/``set_active``/``delete`` as ManageSieve's PUTSCRIPT,
  SETACTIVE and DELETESCRIPT, with its syntax check (an error is shown with its line);
- app passwords: ``IAccounts.add_app_password``/``remove_app_password``
  (``accounts/apppasswords.py``), checked by the same cred checker every protocol uses;
- storage: ``IMailStore.usage`` against the quota routing enforces;
- sessions: the user's own, from the session table; ending one ends it on the server.

The accounts backend is called in its own pool, the script store in the site's.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from txmailhost.accounts.interfaces import AccountError
from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.peer import printable
from txmailhost.session.auth import Credentials, PasswordLogin
from txmailhost.sieve import admin as vacation
from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.scripts import ScriptError, check_name
from txmailhost.web.context import Route, WebContext, ascii_number
from txmailhost.web.login import FAILURE_DELAY, _peer_text
from txmailhost.web.responses import Response, redirect, text

log = Logger(namespace="txmailhost.web")

MAX_PASSWORD = 1024
MAX_SCRIPT = 256 * 1024


def _accounts(ctx: WebContext, function: Any, *args: Any) -> Any:
    services = ctx.services
    return deferToThreadPool(services.reactor, services.accounts_pool, function, *args)


def session_id(session: Any) -> str:
    """A name for a session in the page: part of a hash of its (already hashed) key, which
    can't be turned back into a cookie."""
    return hashlib.sha256(b"web-session\0" + session.key.encode()).hexdigest()[:20]


async def _vacation_state(ctx: WebContext) -> tuple[bool, str]:
    scripts = ctx.services.scripts

    def read() -> tuple[bool, str]:
        on = scripts.active_name(ctx.user) == vacation.NAME
        return on, scripts.get(ctx.user, vacation.NAME) if on else ""

    return await ctx.services.in_thread(read)


async def settings_page(
    ctx: WebContext, status: int = 200, error: str = "", new_app: tuple[str, str] | None = None
) -> Response:
    assert ctx.session is not None
    services = ctx.services
    accounts = services.accounts
    used = await ctx.store.usage(ctx.user)
    rules = await _accounts(ctx, accounts.address_rules)
    quota = await _accounts(ctx, rules.quota_of, ctx.user)
    targets, keep = await _accounts(ctx, rules.forward_of, ctx.user)
    on, _script = await _vacation_state(ctx) if services.scripts else (False, "")
    sessions = sorted(services.sessions.of_user(ctx.user), key=lambda s: -s.last_used)
    apps = await _accounts(ctx, accounts.list_app_passwords, ctx.user)
    is_admin = await _accounts(ctx, accounts.is_admin, ctx.user)
    return ctx.render(
        "settings.html",
        status,
        error=error,
        done=ctx.notice(),
        used=used,
        quota=quota,
        percent=min(100, round(100 * used / quota)) if quota else None,
        forward=", ".join(targets),
        keep_copy=keep,
        vacation_on=on,
        sieve=services.scripts is not None,
        sessions=[(session_id(s), s, s is ctx.session) for s in sessions],
        apps=apps,
        new_app=new_app,
        is_admin=is_admin,
        when=lambda t: datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M"),
    )


async def show(ctx: WebContext) -> Response:
    return await settings_page(ctx)


def _done(ctx: WebContext, what: str) -> Response:
    return ctx.done("/settings", what)


async def change_password(ctx: WebContext) -> Response:
    assert ctx.session is not None
    old, new, again = ctx.arg("old"), ctx.arg("new"), ctx.arg("again")
    if not old or not new or max(len(old), len(new)) > MAX_PASSWORD:
        return await settings_page(ctx, 400, "Enter your current and your new password.")
    if new != again:
        return await settings_page(ctx, 400, "The new password and its repetition differ.")
    services = ctx.services
    logins = PasswordLogin(
        services.portal,
        services.reactor,
        "web",
        failure_delay=FAILURE_DELAY,
        account_password_only=True,  # never an app password: those are for mail clients
    )
    try:
        _account, logout = await logins.login(
            Credentials(ctx.user.encode(), old.encode(), "form"),
            ctx.request.getClientAddress(),
            _peer_text(ctx),
            printable(ctx.user),
        )
    except LoginThrottled:
        return await settings_page(ctx, 429, "Too many failed logins. Try again later.")
    except LoginFailed:
        return await settings_page(ctx, 403, "The current password is not right.")
    logout()
    try:
        await _accounts(ctx, services.accounts.set_password, ctx.user, new)
    except (AccountError, ValueError) as e:
        return await settings_page(ctx, 400, f"The new password can't be used: {e}")
    ctx.session.stamp = await services.account_stamp(ctx.user)  # this browser stays in
    ended = 0
    for session in services.sessions.of_user(ctx.user):
        if session is not ctx.session:
            services.sessions.end(session, "password changed")
            ended += 1
    log.info("web {user} changed their password ({ended} other sessions ended)",
             user=ctx.user, ended=ended)  # fmt: skip
    return _done(ctx, "Password changed")


async def set_forward(ctx: WebContext) -> Response:
    targets = [t.strip() for t in ctx.arg("targets").replace(";", ",").split(",") if t.strip()]
    if len(targets) > 20 or any(any(c in t for c in "\r\n\0 ") or "@" not in t for t in targets):
        return await settings_page(ctx, 400, "Forward to at most 20 addresses, comma-separated.")
    keep = ctx.arg("keep_copy") == "1" or not targets
    accounts = ctx.services.accounts
    rules = await _accounts(ctx, accounts.address_rules)
    try:
        await _accounts(ctx, rules.set_forward, ctx.user, targets, keep, ctx.services.rule_check)
    except (AccountError, ValueError) as e:
        return await settings_page(ctx, 400, f"Forwarding not changed: {e}")
    log.info("web {user} set forwarding to {targets}", user=ctx.user, targets=",".join(targets))
    return _done(ctx, "Forwarding saved" if targets else "Forwarding off")


async def set_vacation(ctx: WebContext) -> Response:
    scripts = ctx.services.scripts
    if scripts is None:
        return text(404, "not found")
    if ctx.arg("state") == "off":
        await ctx.services.in_thread(vacation.vacation_off, scripts, ctx.user)
        return _done(ctx, "Away reply off")
    body, subject = ctx.arg("body").strip(), ctx.arg("subject").strip()
    if not body or any(c in subject for c in "\r\n") or len(body) > 10000 or len(subject) > 200:
        return await settings_page(ctx, 400, "Write the away message (and a one-line subject).")
    try:
        until = datetime.date.fromisoformat(ctx.arg("until")) if ctx.arg("until") else None
        if until is not None and until < datetime.date.today():  # as the CLI refuses it
            raise ValueError(f"the last day, {until.isoformat()}, is past: no reply would be sent")
        given = ctx.arg("days").strip() or "7"
        days = ascii_number(given) if len(given) <= 3 else None
        if days is None or not 1 <= days <= 365:  # "abc" made int()'s own message the page's
            raise ValueError("answer each sender once in 1 to 365 days")
        await ctx.services.in_thread(
            vacation.vacation_on, scripts, ctx.user, body, subject or None, until, days
        )
    except (ValueError, ScriptError, SieveSyntaxError) as e:
        return await settings_page(ctx, 400, f"The away reply was not saved: {e}")
    log.info("web {user} turned the away reply on", user=ctx.user)
    return _done(ctx, "Away reply on")


async def add_app_password(ctx: WebContext) -> Response:
    """A new app password, shown once on the page this POST answers (never stored in clear,
    never in a URL)."""
    name = " ".join(ctx.arg("name").split())
    if not name or len(name) > 100:
        return await settings_page(ctx, 400, "Name the app password (at most 100 characters).")
    try:
        _id, password = await _accounts(ctx, ctx.services.accounts.add_app_password,
                                        ctx.user, name)  # fmt: skip
    except AccountError as e:
        return await settings_page(ctx, 400, f"No app password made: {e}")
    log.info("web {user} made app password {name!r}", user=ctx.user, name=name)
    return await settings_page(ctx, new_app=(name, password))


async def revoke_app_password(ctx: WebContext) -> Response:
    given = ctx.arg("id")
    app_id = (ascii_number(given) or 0) if len(given) < 12 else 0
    removed = await _accounts(ctx, ctx.services.accounts.remove_app_password, ctx.user, app_id)
    if not removed:
        return text(404, "no such app password")
    log.info("web {user} revoked app password {id}", user=ctx.user, id=app_id)
    return _done(ctx, "App password revoked")


async def end_session(ctx: WebContext) -> Response:
    wanted = ctx.arg("session")
    sessions = ctx.services.sessions
    for session in sessions.of_user(ctx.user):  # only the user's own can be named
        if session_id(session) == wanted:
            sessions.end(session, "ended from settings")
            if session is ctx.session:
                return redirect("/login")
            return _done(ctx, "Session ended")
    return text(404, "no such session")


# -- Sieve rules -------------------------------------------------------------------------------


async def sieve_page(ctx: WebContext, status: int = 200, error: str = "", **values: Any):
    scripts = ctx.services.scripts
    if scripts is None:
        return text(404, "not found")
    name = values.pop("name", None) or ctx.arg("name")
    if name and "script" not in values:
        try:
            values["script"] = await ctx.services.in_thread(scripts.get, ctx.user, name)
        except ScriptError:
            return text(404, "no such script")
    infos = await ctx.services.in_thread(scripts.list, ctx.user)
    values.setdefault("script", "")
    return ctx.render("sieve.html", status, error=error, scripts=infos, script_name=name or "",
                      done=ctx.notice(), **values)  # fmt: skip


async def sieve_show(ctx: WebContext) -> Response:
    return await sieve_page(ctx)


async def sieve_save(ctx: WebContext) -> Response:
    scripts = ctx.services.scripts
    if scripts is None:
        return text(404, "not found")
    name, script = ctx.arg("name").strip(), ctx.arg("script")
    if len(script) > MAX_SCRIPT:
        return await sieve_page(ctx, 400, "The script is too long.", name=name, script=script)
    try:
        check_name(name)
        await ctx.services.in_thread(scripts.put, ctx.user, name, script.replace("\r\n", "\n"))
        if ctx.arg("activate") == "1":
            await ctx.services.in_thread(scripts.set_active, ctx.user, name)
    except (ScriptError, SieveSyntaxError, ValueError) as e:
        return await sieve_page(ctx, 400, f"Not saved: {e}", name=name, script=script)
    log.info("web {user} saved Sieve script {name}", user=ctx.user, name=name)
    return ctx.done("/settings/sieve", "Saved", name=name)


async def sieve_action(ctx: WebContext) -> Response:
    scripts = ctx.services.scripts
    if scripts is None:
        return text(404, "not found")
    name, action = ctx.arg("name"), ctx.arg("action")
    try:
        if action == "activate":
            await ctx.services.in_thread(scripts.set_active, ctx.user, name)
        elif action == "deactivate":
            await ctx.services.in_thread(scripts.set_active, ctx.user, None)
        elif action == "delete":
            await ctx.services.in_thread(scripts.delete, ctx.user, name)
        else:
            return text(400, "unknown action")
    except ScriptError as e:
        return await sieve_page(ctx, 400, str(e))
    return ctx.done("/settings/sieve", f"{action.capitalize()}d")


ROUTES = [
    Route("GET", "/settings", show),
    Route("POST", "/settings/password", change_password),
    Route("POST", "/settings/forward", set_forward),
    Route("POST", "/settings/vacation", set_vacation),
    Route("POST", "/settings/sessions/end", end_session),
    Route("POST", "/settings/apps", add_app_password),
    Route("POST", "/settings/apps/revoke", revoke_app_password),
    Route("GET", "/settings/sieve", sieve_show),
    Route("POST", "/settings/sieve", sieve_save),
    Route("POST", "/settings/sieve/action", sieve_action),
]
