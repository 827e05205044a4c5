"""Serve SMTP and IMAP from your own Twisted application with txmailhost's factories.

    python docs/examples/embed.py DIR [SMTP-ENDPOINT IMAP-ENDPOINT]

Mail for the application's users arrives over SMTP (default: port 8025 on loopback), is
stored in Maildirs under DIR/mail and is read over IMAP (default: port 8143). The users,
the checker and the realm belong to the application; txmailhost brings the protocols, the
spool and the store. No config file, no accounts database, no twistd plugin.
"""

import hmac
import os
import sys

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react
from zope.interface import implementer

from txmailhost.accounts.interfaces import IMailAccount
from txmailhost.accounts.realm import MailAccount
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.imap.server import IMAPFactory
from txmailhost.routing import Outcome, Resolution, Route, RouteKind
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory
from txmailhost.store.maildir import MaildirStore

HOSTNAME = "mail.example.test"
DOMAIN = "example.test"
# Stands for the application's own user database (which would keep password hashes).
USERS = {"alice@example.test": "correct horse battery staple"}


@implementer(ICredentialsChecker)
class AppChecker:
    """The application's checker: the avatar id is the user's address."""

    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials):
        address = credentials.username.decode("utf-8", "replace").lower()
        expected = USERS.get(address, "").encode()
        if expected and hmac.compare_digest(credentials.password, expected):
            return succeed(address)
        return fail(UnauthorizedLogin())


@implementer(IRealm)
class AppRealm:
    """The application's realm: every mail protocol asks for an ``IMailAccount``."""

    def __init__(self, store):
        self.store = store

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if IMailAccount not in interfaces:
            raise NotImplementedError("only mail accounts here")
        return IMailAccount, MailAccount(avatar_id, self.store), lambda: None


class AppRecipients:
    """What SMTP accepts: the users' INBOXes. Anyone else in DOMAIN is unknown (550 5.1.1),
    other domains aren't ours (550 5.7.1, no open relay)."""

    def resolve(self, local, domain):
        address = f"{local}@{domain}".lower()
        if address in USERS:
            route = Route(RouteKind.LOCAL, address, user=address)
            return succeed(Resolution(Outcome.OK, address, [route]))
        outcome = Outcome.UNKNOWN_USER if domain.lower() == DOMAIN else Outcome.NOT_OURS
        return succeed(Resolution(outcome, address))


async def main(
    reactor, directory, smtp="tcp:8025:interface=127.0.0.1", imap="tcp:8143:interface=127.0.0.1"
):
    pool = reactor.getThreadPool()  # fsync and Maildir work run here, off the reactor thread
    store = MaildirStore(os.path.join(directory, "mail"), reactor, pool)
    spool = IncomingSpool(os.path.join(directory, "incoming"), reactor, pool)
    delivery = Submission(store, spool)  # the durable hand-off: fsync, then 250
    portal = Portal(AppRealm(store), [AppChecker()])
    inbound = InboundPolicy(AppRecipients(), store)
    listeners = [
        ("smtp", smtp, SMTPFactory(inbound, delivery, hostname=HOSTNAME, reactor=reactor)),
        ("imap", imap, IMAPFactory(portal, hostname=HOSTNAME, reactor=reactor)),
    ]
    for name, description, factory in listeners:
        port = await serverFromString(reactor, description).listen(factory)
        print(f"{name} listening on port {port.getHost().port}", flush=True)
    await Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
