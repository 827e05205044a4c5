"""``ServerProcess.add_user`` (tests/support/server.py), which hundreds of tests run: each CLI
call it makes is a process of its own, so it makes as few as stay correct. No server is
started: the CLI works on the data directory alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import ServerProcess

PASSWORD = "a-long-Enough-passw0rd-x"


class Counted(ServerProcess):
    """A ServerProcess that records the CLI commands it runs."""

    def __init__(self, data_dir: str) -> None:
        super().__init__(data_dir)
        self.calls: list[tuple[str, ...]] = []

    def cli(self, *args: str, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append(args[:2])
        return super().cli(*args, **kwargs)


@pytest.fixture
def server(tmp_path: Path) -> Counted:
    proc = Counted(str(tmp_path / "data"))
    proc.write_config()
    proc.cli("init")
    proc.calls.clear()
    return proc


def _users(server: ServerProcess) -> list[str]:
    return server.cli("user", "list").stdout.split()


def test_users_of_one_domain_cost_one_call_each_and_one_for_the_domain(server: Counted) -> None:
    for name in ("ann", "bob", "cy"):
        server.add_user(f"{name}@example.test", PASSWORD)

    assert server.calls == [("domain", "add")] + [("user", "add")] * 3
    assert _users(server) == ["ann@example.test", "bob@example.test", "cy@example.test"]


def test_a_domain_the_test_added_itself_is_found(server: Counted) -> None:
    server.cli("domain", "add", "example.test")
    server.add_user("ann@example.test", PASSWORD)
    server.add_user("bob@example.test", PASSWORD)

    assert _users(server) == ["ann@example.test", "bob@example.test"]


def test_a_domain_removed_since_is_added_again(server: Counted) -> None:
    server.add_user("ann@example.test", PASSWORD)
    server.cli("domain", "del", "example.test", "--force")
    server.add_user("bob@example.test", PASSWORD)

    assert _users(server) == ["bob@example.test"]


def test_a_user_that_cannot_be_added_fails_the_test(server: Counted) -> None:
    server.add_user("ann@example.test", PASSWORD)
    with pytest.raises(AssertionError, match="user ann@example.test already exists"):
        server.add_user("ann@example.test", PASSWORD)
