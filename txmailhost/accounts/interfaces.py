"""The avatar every protocol asks the Portal for, and where accounts log in from."""

from typing import Any

from zope.interface import Attribute, Interface


class IMailAccount(Interface):
    """A logged-in mail user: their canonical address and the store holding their mail."""

    address = Attribute("Canonical lower-case address, e.g. 'alice@example.test'.")
    store = Attribute("The IMailStore holding this user's mailboxes.")


class ILoginOrigins(Interface):
    """The client addresses (IPv4, or IPv6 /64) each account logged in from successfully lately.

    The login throttle asks it before refusing an address for an account under attack, so an
    address the owner uses is never locked out by someone else's failures.
    """

    def seen(account: str, client: str) -> Any:
        """A Deferred firing True when ``account`` logged in from ``client`` recently."""

    def remember(account: str, client: str) -> None:
        """``account`` just logged in from ``client``; returns at once (storing is deferred)."""
