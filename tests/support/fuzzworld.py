"""A data directory for the protocol fuzz tests: one per test module, with a Portal whose
checker remembers verified passwords, so each Hypothesis example can log in without paying
for a password hash (the protocols see the same Portal interface as in production)."""

from __future__ import annotations

import os

from twisted.cred.portal import Portal

from tests.support.fixtures import MailWorld, make_world
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.credcache import CredentialCache
from txmailhost.accounts.realm import MailRealm

ALICE = "alice@example.test"


def fuzz_world(root: os.PathLike) -> tuple[MailWorld, Portal]:
    world = make_world(root)
    world.add_user(ALICE)
    cache = CredentialCache(world.reactor)
    checker = AccountsChecker(world.accounts, world.reactor, world.pool, cache=cache)
    return world, Portal(MailRealm(world.store), [checker])
