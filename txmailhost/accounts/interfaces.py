"""The avatar every protocol asks the Portal for."""

from zope.interface import Attribute, Interface


class IMailAccount(Interface):
    """A logged-in mail user: their canonical address and the store holding their mail."""

    address = Attribute("Canonical lower-case address, e.g. 'alice@example.test'.")
    store = Attribute("The IMailStore holding this user's mailboxes.")
