"""``txmailhost alias add`` and ``user forward``: a change that makes mail loop is refused
before it is committed, and a target of ours nobody receives at is warned about."""

from __future__ import annotations

import pytest

from tests.test_cli import PASSWORD, Run, data, make_run, run  # noqa: F401 - fixtures

WARNING = "warning: nobody receives mail at {} here yet"


@pytest.fixture
def users(run: Run) -> Run:  # noqa: F811 - the fixture
    """alice and bob of example.org."""
    assert run("domain", "add", "example.org").status == 0
    for user in ("alice", "bob"):
        assert run("user", "add", f"{user}@example.org", stdin=PASSWORD + "\n").status == 0
    return run


def test_an_alias_that_closes_a_loop_is_refused_and_changes_nothing(users: Run) -> None:
    first = users("alias", "add", "l1@example.org", "l2@example.org")
    assert first.status == 0 and WARNING.format("l2@example.org") in first.err
    result = users("alias", "add", "l2@example.org", "l1@example.org")
    assert result.status == 1
    assert result.err == (
        "txmailhost: error: mail for l2@example.org would loop (l2@example.org -> "
        "l1@example.org -> l2@example.org); nothing was changed\n"
    )
    assert users("alias", "list").out == "l1@example.org -> l2@example.org\n"


def test_a_catch_all_to_an_address_nobody_has_is_a_loop(users: Run) -> None:
    result = users("alias", "add", "@example.org", "ghost@example.org")
    assert result.status == 1 and "ghost@example.org -> @example.org ->" in result.err
    assert users("alias", "list").out == ""


def test_forwards_that_close_a_loop_are_refused_and_the_old_setting_stays(users: Run) -> None:
    assert users("user", "forward", "alice@example.org", "bob@example.org").status == 0
    result = users("user", "forward", "bob@example.org", "far@remote.test", "alice@example.org")
    assert result.status == 1
    assert "bob@example.org -> alice@example.org -> bob@example.org" in result.err
    assert users("user", "forward", "bob@example.org").out == "no forwarding\n"


def test_a_target_of_ours_that_nobody_has_is_added_with_a_warning(users: Run) -> None:
    result = users("alias", "add", "y@example.org", "nobody@example.org", "bob@example.org")
    assert result.status == 0
    assert result.out == "alias y@example.org -> nobody@example.org, bob@example.org\n"
    assert result.err == (
        f"txmailhost: {WARNING.format('nobody@example.org')}: it is refused (550 5.1.1) "
        "until a user or alias has that address\n"
    )
    forward = users("user", "forward", "alice@example.org", "typo@example.org", "a@far.test")
    assert forward.status == 0 and forward.err.count("warning") == 1
    assert WARNING.format("typo@example.org") in forward.err
    plus = users("alias", "add", "z@example.org", "bob+tag@example.org")
    assert (plus.status, plus.err) == (0, "")
