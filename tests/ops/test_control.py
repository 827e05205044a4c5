"""The control socket's ``Sessions``: what ``who`` lists and ``kick`` ends of the webmail's
logins (the connections are tested against the real server, tests/e2e/test_control.py)."""

from __future__ import annotations

from twisted.internet.task import Clock

from txmailhost.ops.control import Sessions
from txmailhost.web.sessions import SessionStore

ALICE, BOB = "alice@example.test", "bob@example.test"


def _web(*users: str) -> tuple[SessionStore, list[str], dict[str, str]]:
    """A session store with one login per user: (store, logged-out users, user -> token)."""
    store = SessionStore(Clock())
    ended: list[str] = []
    tokens = {}
    for user in users:
        tokens[user], _ = store.create(
            user, object(), lambda user=user: ended.append(user), "192.0.2.7", "test"
        )
    return store, ended, tokens


def test_who_lists_each_webmail_login_as_a_session():
    store, _ended, _tokens = _web(ALICE, BOB)
    sessions = Sessions([], [("web", store)])
    assert sessions.who() == [
        {"listener": "web", "protocol": "web", "user": user, "client": "192.0.2.7", "tls": True}
        for user in (ALICE, BOB)
    ]


def test_kick_ends_the_users_webmail_sessions_and_counts_them():
    store, ended, tokens = _web(ALICE, BOB)
    sessions = Sessions([], [("web", store)])
    assert sessions.kick("Alice@Example.Test") == 1  # as the connections: case-insensitive
    assert store.get(tokens[ALICE]) is None and ended == [ALICE]
    assert store.get(tokens[BOB]) is not None
    assert sessions.kick(ALICE) == 0
