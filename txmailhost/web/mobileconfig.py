"""An Apple configuration profile (``.mobileconfig``) that sets up the logged-in user's mail on
an iPhone, iPad or Mac.

The profile holds one ``com.apple.mail.managed`` payload (Apple's "Mail" payload of the
Configuration Profile reference): IMAP (over TLS when the IMAPS listener is on, else with
STARTTLS) and submission (TLS, else STARTTLS) on this server's host name and ports, the whole
address as the login name, password authentication. The password is *not* in the profile:
the device asks for it when the profile is installed (an app password from the settings
page is the one to give it). The profile's identifiers are derived from the host and the
address, so installing a newer download replaces the older profile instead of adding a second
account. It is unsigned: the device says "Not Verified" when installing it.

Only for the logged-in user (``/settings/mobileconfig`` needs a session), because it names
their address; the answer is an attachment the browser downloads, never a page.
"""

from __future__ import annotations

import plistlib
import uuid

from txmailhost.web.context import ClientSettings, Route, WebContext
from txmailhost.web.responses import Response, text

CONTENT_TYPE = "application/x-apple-aspen-config"


def profile(settings: ClientSettings, address: str) -> bytes:
    """The profile for ``address`` (XML property list); ValueError if no IMAP or no
    submission listener has a port to name."""
    incoming = settings.imaps or settings.imap
    outgoing = settings.submissions or settings.submission
    if not incoming or not outgoing:
        raise ValueError("no IMAP or submission listener to configure")
    host = settings.hostname
    reverse = ".".join(reversed(host.split(".")))
    ident = f"{reverse}.txmailhost.mail.{uuid.uuid5(uuid.NAMESPACE_URL, address)}"
    mail = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident + ".account",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"txmailhost:{host}:{address}:mail")),
        "PayloadDisplayName": f"Mail for {address}",
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerHostName": host,
        "IncomingMailServerPortNumber": incoming,
        "IncomingMailServerUseSSL": bool(settings.imaps),
        "IncomingMailServerUsername": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": host,
        "OutgoingMailServerPortNumber": outgoing,
        "OutgoingMailServerUseSSL": bool(settings.submissions),
        "OutgoingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    document = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"txmailhost:{host}:{address}")),
        "PayloadDisplayName": f"Mail ({address})",
        "PayloadDescription": f"Sets up {address} on {host}.",
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [mail],
    }
    return plistlib.dumps(document, fmt=plistlib.FMT_XML)


async def download(ctx: WebContext) -> Response:
    try:
        body = profile(ctx.services.clients, ctx.user)
    except ValueError:
        return text(404, "this server has no IMAP or submission listener to configure")
    domain = ctx.user.rpartition("@")[2]
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in domain)
    return Response(
        200,
        body,
        content_type=CONTENT_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{safe}.mobileconfig"'},
        csp="default-src 'none'; sandbox",
        cache="private, no-store",
    )


ROUTES = [Route("GET", "/settings/mobileconfig", download)]
