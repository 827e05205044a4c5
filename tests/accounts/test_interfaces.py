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


def test_postgres_backend_provides_accounts_and_keeps_them_across_nodes() -> None:
    """Two ``PostgresAccounts`` on one database, as two nodes: what one adds, the other sees;
    the transactions of ``db.py`` (domain removal, login origins, aliases, forwards) run."""
    import pytest

    from tests.support.postgres import fresh_database
    from txmailhost.accounts.interfaces import AccountError
    from txmailhost.accounts.postgres import PostgresAccounts

    dsn = fresh_database()
    node_a, node_b = PostgresAccounts(dsn), PostgresAccounts(dsn)
    assert verifyObject(IAccounts, node_a)
    assert verifyObject(IAddressRules, node_a.address_rules())
    node_a.add_domain("example.test")
    node_a.add_user("alice@example.test", "correct horse battery")
    assert node_b.lookup("alice@example.test") == (True, True)
    with pytest.raises(AccountError, match="already exists"):
        node_b.add_user("Alice@example.test", "correct horse battery")
    rules_a, rules_b = node_a.address_rules(), node_b.address_rules()
    rules_a.add_alias("team@example.test", ["alice@example.test", "x@remote.test"])
    rules_a.add_alias("team@example.test", ["alice@example.test"])  # kept once
    assert rules_b.alias_targets("team@example.test") == ["alice@example.test", "x@remote.test"]
    rules_b.set_forward("alice@example.test", ["y@remote.test"], keep_copy=False)
    assert rules_a.forward_of("alice@example.test") == (["y@remote.test"], False)
    rules_a.set_domain_quota("example.test", 1000)
    assert rules_b.quota_of("alice@example.test") == 1000
    node_a.remember_login_origin("alice@example.test", "192.0.2.1", 100.0, 0.0, 5)
    node_a.remember_login_origin("alice@example.test", "192.0.2.1", 200.0, 0.0, 5)
    assert node_b.login_origin_seen("alice@example.test", "192.0.2.1", 150.0)
    assert node_b.remove_domain("example.test", force=True) == ["alice@example.test"]
    assert node_a.list_users() == [] and rules_a.alias_targets("team@example.test") == []
    node_a.close()
    node_b.close()


def test_postgres_backend_keeps_the_admin_flag_across_nodes() -> None:
    from tests.support.postgres import fresh_database
    from txmailhost.accounts.postgres import PostgresAccounts

    dsn = fresh_database()
    node_a, node_b = PostgresAccounts(dsn), PostgresAccounts(dsn)
    node_a.add_domain("example.test")
    node_a.add_user("alice@example.test", "correct horse battery")
    assert not node_b.is_admin("alice@example.test")
    node_a.set_admin("alice@example.test", True)
    node_a.set_admin("alice@example.test", True)  # twice: still one row
    assert node_b.is_admin("alice@example.test")
    node_b.set_admin("alice@example.test", False)
    assert not node_a.is_admin("alice@example.test")
    node_a.close()
    node_b.close()
