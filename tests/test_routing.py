"""Recipient resolution: aliases, catch-alls, plus-addressing, forwards, domain aliases, roles."""

from __future__ import annotations

import pytest

from tests.support.fixtures import make_world
from txmailhost.accounts.db import AccountError, AddressRules, parse_size
from txmailhost.routing import Outcome, Route, RouteKind, Router


@pytest.fixture(params=["sqlite", "postgres"])
def world(tmp_path, request):
    """Over both accounts backends: the rules are the same SQL on each."""
    w = make_world(tmp_path, accounts_in=request.param)
    w.accounts.add_domain("example.test")
    for user in ("alice", "bob"):
        w.accounts._db.execute(
            "INSERT INTO users (address, domain, password_hash, created) VALUES (?, ?, 'x', ?)",
            (f"{user}@example.test", "example.test", 1.0 if user == "alice" else 2.0),
        )
    return w


@pytest.fixture
def rules(world):
    return AddressRules(world.accounts)


def resolve(world, address, **kw):
    router = Router(world.accounts, world.reactor, world.pool, **kw) if kw else world.router
    local, _, domain = address.rpartition("@")
    return router.resolve_sync(local, domain)


def local(user):
    return Route(RouteKind.LOCAL, user, user=user)


def test_user_resolves_to_their_inbox(world):
    result = resolve(world, "Alice@Example.TEST")
    assert result.outcome is Outcome.OK and result.routes == [local("alice@example.test")]


def test_a_local_part_that_lower_cases_out_of_nfc_finds_its_user(world):
    """An SMTPUTF8 RCPT of ``J`` + U+030C (NFC, no precomposed capital) lower-cases to
    ``j`` + U+030C, which NFC composes to U+01F0: the form the account is kept in."""
    world.accounts.add_user_with_hash("\u01f0@example.test", "x")
    result = resolve(world, "J\u030c@example.test")
    assert result.outcome is Outcome.OK and result.routes == [local("\u01f0@example.test")]


def test_unknown_user_and_foreign_domain(world):
    assert resolve(world, "nobody@example.test").outcome is Outcome.UNKNOWN_USER
    assert resolve(world, "x@elsewhere.test").outcome is Outcome.NOT_OURS
    assert resolve(world, "x@[192.0.2.1]").outcome is Outcome.NOT_OURS


def test_plus_address_goes_to_the_user_and_delimiter_is_configurable(world):
    assert resolve(world, "alice+news@example.test").routes == [local("alice@example.test")]
    assert resolve(world, "alice-news@example.test", delimiter="-").routes == [
        local("alice@example.test")
    ]
    assert resolve(world, "alice+news@example.test", delimiter="").outcome is Outcome.UNKNOWN_USER


def test_an_account_whose_name_holds_the_delimiter_gets_its_own_mail(world):
    """An exact match wins over splitting off a tag, as in Postfix: ``a+b@`` is the account
    of that name when there is one, and ``alice+b@`` stays alice's plus-address."""
    world.accounts.add_user_with_hash("a+b@example.test", "x")
    assert resolve(world, "A+B@example.test").routes == [local("a+b@example.test")]
    assert resolve(world, "alice+b@example.test").routes == [local("alice@example.test")]
    assert resolve(world, "a+b+c@example.test").outcome is Outcome.UNKNOWN_USER  # a@: none


def test_alias_to_many_local_and_remote_targets(world, rules):
    rules.add_alias("team@example.test", ["alice@example.test", "bob@example.test", "c@far.test"])
    result = resolve(world, "team@example.test")
    assert set(result.routes) == {
        local("alice@example.test"),
        local("bob@example.test"),
        Route(RouteKind.REMOTE, "c@far.test"),
    }


def test_nested_aliases_are_expanded_once_per_target(world, rules):
    rules.add_alias("all@example.test", ["team@example.test", "alice@example.test"])
    rules.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    routes = resolve(world, "all@example.test").routes
    assert sorted(r.user for r in routes) == ["alice@example.test", "bob@example.test"]


def test_alias_loop_is_detected(world, rules):
    rules.add_alias("loop1@example.test", ["loop2@example.test"])
    rules.add_alias("loop2@example.test", ["loop1@example.test"])
    assert resolve(world, "loop1@example.test").outcome is Outcome.LOOP


def test_forward_loop_between_users_is_detected(world, rules):
    rules.set_forward("alice@example.test", ["bob@example.test"], keep_copy=False)
    rules.set_forward("bob@example.test", ["alice@example.test"], keep_copy=False)
    assert resolve(world, "alice@example.test").outcome is Outcome.LOOP


def test_loop_at_names_the_addresses_mail_goes_round(world, rules):
    """What ``alias add`` and ``user forward`` ask before they commit (accounts/admin.py)."""
    rules.add_alias("loop1@example.test", ["loop2@example.test"])
    assert world.router.loop_at("loop1@example.test") is None
    rules.add_alias("loop2@example.test", ["loop1@example.test"])
    assert world.router.loop_at("loop2@example.test") == (
        "loop2@example.test -> loop1@example.test -> loop2@example.test"
    )
    rules.add_alias("@example.test", ["ghost@example.test"])  # nobody: back to the catch-all
    assert world.router.loop_at("@example.test") == (
        "ghost@example.test -> @example.test -> ghost@example.test"
    )
    rules.set_forward("alice@example.test", ["alice+x@example.test"], keep_copy=True)
    assert world.router.loop_at("alice@example.test") == (
        "alice+x@example.test -> alice@example.test -> alice+x@example.test"
    )


def test_loop_at_reports_a_chain_deeper_than_the_limit(world, rules):
    for n in range(12):
        rules.add_alias(f"c{n}@example.test", [f"c{n + 1}@example.test"])
    rules.add_alias("c12@example.test", ["bob@example.test"])
    found = world.router.loop_at("c0@example.test")
    assert found is not None and found.startswith("more than 10 levels: c0@example.test -> ")
    assert world.router.loop_at("c3@example.test") is None


def test_alias_expanding_to_1000_recipients(world, rules):
    targets = [f"member{i}@far.test" for i in range(1000)]
    rules.add_alias("big@example.test", targets)
    result = resolve(world, "big@example.test")
    assert result.outcome is Outcome.OK and len(result.routes) == 1000
    assert resolve(world, "big@example.test", max_expansion=999).outcome is Outcome.TOO_BIG


def test_catch_all_takes_only_unknown_addresses(world, rules):
    rules.add_alias("@example.test", ["bob@example.test"])
    assert resolve(world, "anything@example.test").routes == [local("bob@example.test")]
    assert resolve(world, "alice@example.test").routes == [local("alice@example.test")]


def test_forwarding_with_and_without_a_copy(world, rules):
    rules.set_forward("alice@example.test", ["a@far.test"], keep_copy=True)
    assert set(resolve(world, "alice@example.test").routes) == {
        local("alice@example.test"),
        Route(RouteKind.REMOTE, "a@far.test"),
    }
    rules.set_forward("alice@example.test", ["a@far.test"], keep_copy=False)
    assert resolve(world, "alice@example.test").routes == [Route(RouteKind.REMOTE, "a@far.test")]
    rules.set_forward("alice@example.test", [], keep_copy=True)
    assert resolve(world, "alice@example.test").routes == [local("alice@example.test")]


def test_domain_alias_maps_every_address_to_the_target_domain(world):
    world.accounts.add_domain("old.test", alias_of="example.test")
    assert resolve(world, "bob@old.test").routes == [local("bob@example.test")]
    assert resolve(world, "nobody@old.test").outcome is Outcome.UNKNOWN_USER
    with pytest.raises(AccountError, match="alias of example.test"):
        world.accounts.add_user("carol@old.test", "long-enough")


@pytest.mark.parametrize("source", ["x@old.test", "@old.test"])
def test_an_alias_in_an_alias_domain_is_refused_as_a_user_there_is(world, rules, source):
    """Rule 1 maps every address of an alias domain to its target first: such an alias was
    accepted and never used (RCPT got 550 5.1.1)."""
    world.accounts.add_domain("old.test", alias_of="example.test")
    with pytest.raises(AccountError, match="old.test is an alias of example.test; add the alias"):
        rules.add_alias(source, ["alice@example.test"])
    assert rules.list_aliases() == []
    rules.add_alias("x@example.test", ["alice@example.test"])  # where it works
    assert resolve(world, "x@old.test").routes == [local("alice@example.test")]


def test_postmaster_and_abuse_exist_in_every_domain(world):
    assert resolve(world, "postmaster@example.test").routes == [local("alice@example.test")]
    assert resolve(world, "abuse@example.test").routes == [local("alice@example.test")]
    assert resolve(world, "postmaster@example.test", postmaster="bob@example.test").routes == [
        local("bob@example.test")
    ]
    router = world.router
    assert router.resolve_sync("postmaster", "").routes == [local("alice@example.test")]


def test_alias_to_a_deleted_user_is_unknown(world, rules):
    rules.add_alias("old@example.test", ["bob@example.test"])
    world.accounts.remove_user("bob@example.test")
    assert resolve(world, "old@example.test").outcome is Outcome.UNKNOWN_USER


@pytest.mark.parametrize(
    "address, targets, message",
    [
        ("team@unknown.test", ["alice@example.test"], "not served here"),
        ("alice@example.test", ["bob@example.test"], "is a user account"),
        ("team@example.test", ["not an address"], "not an address"),
        ("team@example.test", ["team@example.test"], "itself"),
        ("bad address@example.test", ["alice@example.test"], "unsupported local part"),
    ],
)
def test_bad_alias_requests_are_refused_with_a_reason(rules, address, targets, message):
    with pytest.raises(AccountError, match=message):
        rules.add_alias(address, targets)
    assert rules.list_aliases() == []


@pytest.mark.parametrize(
    "text, size",
    [
        ("500M", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1048576", 1048576),
        ("none", None),
        ("10kb", 10240),
    ],
)
def test_quota_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-5", "lots", "1.5G", "", "5X", "9" * 20, "\u00b2M", "\u0663"])
def test_nonsense_quota_sizes_are_refused(text):
    with pytest.raises(AccountError, match="not a size"):
        parse_size(text)


def test_user_quota_falls_back_to_the_domain_default(world, rules):
    assert rules.quota_of("alice@example.test") is None
    rules.set_domain_quota("example.test", 1024**3)
    assert rules.quota_of("alice@example.test") == 1024**3
    rules.set_quota("alice@example.test", 1024)
    assert rules.quota_of("alice@example.test") == 1024
    with pytest.raises(AccountError, match="no such user"):
        rules.set_quota("nobody@example.test", 10)


def test_plus_folders_put_the_tag_in_the_route_when_enabled(world):
    route = resolve(world, "alice+lists@example.test", plus_folders=True).routes[0]
    assert (route.user, route.mailbox) == ("alice@example.test", "lists")
    assert resolve(world, "alice+lists@example.test").routes[0].mailbox == "INBOX"


def test_positive_answers_are_cached_briefly_and_negative_ones_never(world):
    router = Router(world.accounts, world.reactor, world.pool, cache_seconds=2)
    answers = []
    router.resolve("carol", "example.test").addCallback(answers.append)
    assert answers[-1].outcome is Outcome.UNKNOWN_USER
    world.accounts._db.execute(
        "INSERT INTO users (address, domain, password_hash, created) VALUES (?, ?, 'x', 3)",
        ("carol@example.test", "example.test"),
    )
    router.resolve("carol", "example.test").addCallback(answers.append)
    assert answers[-1].outcome is Outcome.OK  # a new user works at once
    world.accounts.remove_user("carol@example.test")
    router.resolve("Carol", "example.test").addCallback(answers.append)
    assert answers[-1].outcome is Outcome.OK  # within the cache time
    world.reactor.advance(2.5)
    router.resolve("carol", "example.test").addCallback(answers.append)
    assert answers[-1].outcome is Outcome.UNKNOWN_USER
