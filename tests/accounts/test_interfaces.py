"""The accounts seam: the SQLite backend provides the interfaces, and routing needs no more."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.interfaces import IAccounts, IAddressRules
from txmailhost.routing import Outcome, Route, RouteKind, Router


def test_sqlite_backend_provides_accounts_and_address_rules(tmp_path: Path) -> None:
    accounts = AccountsDB(str(tmp_path / "accounts.sqlite"))
    assert verifyObject(IAccounts, accounts)
    assert verifyObject(IAddressRules, accounts.address_rules())


@implementer(IAddressRules)
class _Rules:
    def __init__(self, aliases: dict[str, list[str]]) -> None:
        self.aliases = aliases

    def alias_targets(self, address: str) -> list[str]:
        return self.aliases.get(address, [])

    def forward_of(self, user: str) -> tuple[list[str], bool]:
        return [], True

    def quota_of(self, user: str) -> int | None:
        return None

    def first_user(self, domain: str | None) -> str | None:
        return None


@implementer(IAccounts)
class _DictAccounts:
    """Just what a router reads, kept in dictionaries: another backend."""

    def __init__(self, users: set[str], aliases: dict[str, list[str]]) -> None:
        self.users = users
        self.rules = _Rules(aliases)

    def has_domain(self, domain: str) -> bool:
        return domain == "example.test"

    def domain_alias_of(self, domain: str) -> str | None:
        return None

    def has_user(self, address: str) -> bool:
        return address in self.users

    def address_rules(self) -> IAddressRules:
        return self.rules


def test_router_resolves_through_any_accounts_backend() -> None:
    accounts = _DictAccounts({"alice@example.test"}, {"team@example.test": ["alice@example.test"]})
    router = Router(accounts, Clock(), None)

    team = router.resolve_sync("team", "example.test")
    stranger = router.resolve_sync("nobody", "example.test")

    assert team.outcome is Outcome.OK
    assert team.routes == [Route(RouteKind.LOCAL, "alice@example.test", user="alice@example.test")]
    assert stranger.outcome is Outcome.UNKNOWN_USER
