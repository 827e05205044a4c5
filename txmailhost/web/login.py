"""Logging in and out of the webmail, through the same Portal as IMAP, POP3 and SMTP AUTH.

A login is a ``PasswordLogin`` (``session/auth.py``) against the server's ``ThrottledPortal``
with the browser's address as the peer: the same accounts, the same per-address and
per-account failure counts (a failure here slows IMAP logins from that address and the
other way round), the same growing delays and temporary refusals, the same log lines
(``web login failed for USER from ADDRESS``, which fail2ban's patterns match). The page never
says whether the account exists.

Only the HTTPS listener serves these pages, so the password always travels over TLS.
"""

from __future__ import annotations

from twisted.cred.error import LoginFailed
from twisted.logger import Logger

from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.peer import printable
from txmailhost.session.auth import Credentials, PasswordLogin
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response, redirect
from txmailhost.web.sessions import COOKIE, LOGIN_COOKIE, cookie_header

log = Logger(namespace="txmailhost.web")

FAILURE_DELAY = 1.0  # seconds, on top of the throttle's growing delay, as IMAP and POP3
MAX_FIELD = 320  # an address can't be longer (RFC 5321 §4.5.3.1); passwords get 1024


def _peer_text(ctx: WebContext) -> str:
    peer = ctx.request.getClientAddress()
    return printable(getattr(peer, "host", "?"))


def _login_form(
    ctx: WebContext, status: int = 200, error: str = "", username: str = ""
) -> Response:
    nonce, token = ctx.services.login_tokens.issue()
    response = ctx.render(
        "login.html", status, login_token=token, error=error, username=username[:MAX_FIELD]
    )
    response.cookies.append(cookie_header(LOGIN_COOKIE, nonce, max_age=3600))
    return response


async def login_page(ctx: WebContext) -> Response:
    if ctx.session is not None:
        return redirect("/mail")
    return _login_form(ctx)


async def login_submit(ctx: WebContext) -> Response:
    nonce = ctx.request.getCookie(LOGIN_COOKIE.encode())
    nonce_text = nonce.decode("ascii", "replace") if nonce else None
    if not ctx.services.login_tokens.check(nonce_text, ctx.arg("csrf") or None):
        # An expired form, or a login another site tried to make this browser do.
        return _login_form(ctx, 403, "The login form expired. Please try again.")
    username, password = ctx.arg("username"), ctx.arg("password")
    if not username or not password or len(username) > MAX_FIELD or len(password) > 1024:
        return _login_form(ctx, 400, "Enter your address and password.", username)
    peer, peer_text = ctx.request.getClientAddress(), _peer_text(ctx)
    services = ctx.services
    logins = PasswordLogin(
        services.portal,
        services.reactor,
        "web",
        failure_delay=FAILURE_DELAY,
        account_password_only=True,  # never an app password: those are for mail clients
    )
    try:
        account, logout = await logins.login(
            Credentials(username.encode(), password.encode(), "form"),
            peer,
            peer_text,
            printable(username),
        )
    except LoginThrottled:
        return _login_form(ctx, 429, "Too many failed logins. Try again later.", username)
    except LoginFailed:
        return _login_form(ctx, 401, "Wrong address or password.", username)
    stamp = await services.account_stamp(account.address)  # after any rehash at login
    token, session = services.sessions.create(
        account.address, account, logout, peer_text, ctx.header("User-Agent")
    )
    session.stamp = stamp
    log.info("web login {user} from {peer}", user=printable(account.address), peer=peer_text)
    response = redirect("/mail")
    response.cookies.append(cookie_header(COOKIE, token))
    response.cookies.append(cookie_header(LOGIN_COOKIE, "", max_age=0))
    return response


async def logout(ctx: WebContext) -> Response:
    assert ctx.session is not None
    sessions = ctx.services.sessions
    if ctx.arg("everywhere"):
        count = sessions.end_all(ctx.session.user)
        log.info("web logout of {user} everywhere ({count} sessions)",
                 user=ctx.session.user, count=count)  # fmt: skip
    else:
        sessions.end(ctx.session)
    response = redirect("/login")
    response.cookies.append(cookie_header(COOKIE, "", max_age=0))
    return response


ROUTES = [
    Route("GET", "/login", login_page, login=False),
    Route("POST", "/login", login_submit, login=False),
    Route("POST", "/logout", logout),
]
