"""The twisted.cred realm shared by POP3, IMAP, submission and webmail.

Each protocol asks for ``IMailAccount``; the avatar is the same for all of them (address plus
store), so a protocol needs nothing beyond the Portal to reach a user's mail. Embedding
applications may pass their own realm to our factories as long as it hands out ``IMailAccount``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.cred.portal import IRealm
from zope.interface import implementer

from txmailhost.accounts.interfaces import IMailAccount


@implementer(IMailAccount)
@dataclass(frozen=True)
class MailAccount:
    address: str
    store: Any


@implementer(IRealm)
class MailRealm:
    """Turns an authenticated address into a ``MailAccount`` over ``store``."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple:
        if IMailAccount not in interfaces:
            raise NotImplementedError("txmailhost's realm only provides IMailAccount")
        address = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        return IMailAccount, MailAccount(address, self._store), lambda: None
