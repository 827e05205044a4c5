"""Files that let mail clients set themselves up, and the MTA-STS policy.

- Thunderbird's autoconfig (``/.well-known/autoconfig/mail/config-v1.1.xml`` and
  ``/mail/config-v1.1.xml``, fetched from ``autoconfig.DOMAIN``; format: the Mozilla
  "Autoconfiguration" wiki's config-v1.1): IMAP over TLS, then IMAP with STARTTLS, then
  POP3 over TLS; submission over TLS, then with STARTTLS (RFC 8314 prefers implicit TLS).
- Outlook's autodiscover, the "POX" XML (``/autodiscover/autodiscover.xml``, POSTed an XML
  request naming ``EMailAddress``): the same servers.
- MTA-STS (RFC 8461 §3.2): ``/.well-known/mta-sts.txt`` at ``mta-sts.DOMAIN``, from
  ``[web] mta_sts_mode``; 404 while that is empty.

The host name and ports are this server's, from ``[server] hostname`` and the ``[listen]``
endpoints; a listener that is off is left out. The login name is always the whole address.
No account is looked up: the answer is the same for every address, so it tells nothing of who
has one.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from txmailhost.web.context import ClientSettings, Route, WebContext
from txmailhost.web.responses import TEXT, Response, text

XML = "application/xml; charset=utf-8"
_ADDRESS = re.compile(r"^[^@\s<>&\"']{1,64}@([A-Za-z0-9.-]{1,253})$")
_EMAIL_ELEMENT = re.compile(rb"<EMailAddress>\s*([^<]{1,320}?)\s*</EMailAddress>", re.I)


def _domain(address: str, fallback: str) -> str:
    match = _ADDRESS.match(address.strip())
    return match.group(1).lower() if match else fallback


def thunderbird_xml(settings: ClientSettings, domain: str) -> str:
    host = escape(settings.hostname)
    servers = []
    for kind, port, socket in (
        ("imap", settings.imaps, "SSL"),
        ("imap", settings.imap, "STARTTLS"),
        ("pop3", settings.pop3s, "SSL"),
    ):
        if port:
            servers.append(_server("incomingServer", kind, host, port, socket))
    for port, socket in ((settings.submissions, "SSL"), (settings.submission, "STARTTLS")):
        if port:
            servers.append(_server("outgoingServer", "smtp", host, port, socket))
    name = escape(domain, {'"': "&quot;"})  # also used inside an attribute
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<clientConfig version="1.1">\n'
        f'  <emailProvider id="{name}">\n'
        f"    <domain>{name}</domain>\n"
        f"    <displayName>{name} mail</displayName>\n"
        f"    <displayShortName>{name}</displayShortName>\n"
        + "".join(servers)
        + "  </emailProvider>\n"
        "</clientConfig>\n"
    )


def _server(element: str, kind: str, host: str, port: int, socket: str) -> str:
    return (
        f'    <{element} type="{kind}">\n'
        f"      <hostname>{host}</hostname>\n"
        f"      <port>{port}</port>\n"
        f"      <socketType>{socket}</socketType>\n"
        "      <authentication>password-cleartext</authentication>\n"
        "      <username>%EMAILADDRESS%</username>\n"
        f"    </{element}>\n"
    )


def autodiscover_xml(settings: ClientSettings, address: str) -> str:
    host, login = escape(settings.hostname), escape(address)
    protocols = []
    for kind, port in (("IMAP", settings.imaps), ("SMTP", settings.submissions)):
        if port:
            protocols.append(
                "      <Protocol>\n"
                f"        <Type>{kind}</Type>\n"
                f"        <Server>{host}</Server>\n"
                f"        <Port>{port}</Port>\n"
                f"        <LoginName>{login}</LoginName>\n"
                "        <DomainRequired>off</DomainRequired>\n"
                "        <SPA>off</SPA>\n"
                "        <SSL>on</SSL>\n"
                "        <AuthRequired>on</AuthRequired>\n"
                "      </Protocol>\n"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">\n'
        '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">\n'
        "    <Account>\n"
        "      <AccountType>email</AccountType>\n"
        "      <Action>settings</Action>\n" + "".join(protocols) + "    </Account>\n"
        "  </Response>\n"
        "</Autodiscover>\n"
    )


def mta_sts_policy(settings: ClientSettings) -> str:
    """RFC 8461 §3.2: CRLF-separated key: value lines."""
    lines = ["version: STSv1", f"mode: {settings.mta_sts_mode}"]
    lines += [f"mx: {mx}" for mx in settings.mta_sts_mx or (settings.hostname,)]
    lines.append(f"max_age: {settings.mta_sts_max_age}")
    return "\r\n".join(lines) + "\r\n"


def _host_domain(ctx: WebContext) -> str:
    host = ctx.header("Host").rpartition(":")[0] or ctx.header("Host")
    for prefix in ("autoconfig.", "autodiscover.", "mta-sts."):
        if host.startswith(prefix):
            return host[len(prefix) :]
    return ctx.services.clients.hostname.partition(".")[2] or ctx.services.clients.hostname


async def thunderbird(ctx: WebContext) -> Response:
    domain = _domain(ctx.arg("emailaddress"), _host_domain(ctx))
    body = thunderbird_xml(ctx.services.clients, domain)
    return Response(200, body.encode(), XML, cache="public, max-age=3600")


async def autodiscover(ctx: WebContext) -> Response:
    request = ctx.request
    request.content.seek(0)
    match = _EMAIL_ELEMENT.search(request.content.read(65536))
    address = match.group(1).decode("utf-8", "replace") if match else ""
    if not _ADDRESS.match(address):
        return text(400, "expected an Autodiscover request with an EMailAddress")
    body = autodiscover_xml(ctx.services.clients, address)
    return Response(200, body.encode(), XML)


async def mta_sts(ctx: WebContext) -> Response:
    settings = ctx.services.clients
    if not settings.mta_sts_mode:
        return text(404, "no MTA-STS policy is published here")
    return Response(200, mta_sts_policy(settings).encode(), TEXT, cache="public, max-age=3600")


ROUTES = [
    Route("GET", "/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird, login=False),
    Route("GET", "/mail/config-v1.1.xml", thunderbird, login=False),
    Route("POST", "/autodiscover/autodiscover.xml", autodiscover, login=False),
    Route("POST", "/Autodiscover/Autodiscover.xml", autodiscover, login=False),
    Route("GET", "/.well-known/mta-sts.txt", mta_sts, login=False),
]
