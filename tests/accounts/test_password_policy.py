"""The passwords ``user add`` and ``user passwd`` refuse: the first ones an attacker tries."""

from __future__ import annotations

import pytest

from tests.support.fixtures import make_world
from txmailhost.accounts.db import AccountError
from txmailhost.accounts.passwords import verify_password, weakness


@pytest.mark.parametrize(
    "password, reason",
    [
        ("Alice.Smith@Example.test", "the address"),
        ("ALICE.SMITH", "local part"),
        ("password1", "most common"),
        ("Iloveyou1", "most common"),
        ("qwertyuiop", "most common"),
    ],
)
def test_weak_passwords_are_refused_for_a_new_user_with_the_reason(tmp_path, password, reason):
    world = make_world(tmp_path)
    world.accounts.add_domain("example.test")
    with pytest.raises(AccountError, match=reason):
        world.accounts.add_user("alice.smith@example.test", password)
    assert world.accounts.list_users() == []


def test_a_password_change_to_a_common_password_is_refused_and_keeps_the_old_one(tmp_path):
    world = make_world(tmp_path)
    user = world.add_user("robert.jones@example.test")
    with pytest.raises(AccountError, match="most common"):
        world.accounts.set_password(user, "sunshine1")
    with pytest.raises(AccountError, match="local part"):
        world.accounts.set_password(user, "Robert.Jones")
    assert verify_password("secret-pw", world.accounts.password_hash(user) or "")


@pytest.mark.parametrize(
    "password", ["secret-pw", "correct horse", "long-enough", "imaptest-Pw-5k8", "bench-password"]
)
def test_passwords_the_tests_and_benchmarks_use_are_accepted(password):
    assert weakness(password, "alice@example.test") is None
