"""Browser sessions: expiry on idle and on age, logout, logout everywhere, the table's bound,
and the login form's token."""

from __future__ import annotations

from twisted.internet.task import Clock

from txmailhost.web.sessions import COOKIE, LoginTokens, SessionStore, cookie_header


def _store(**kwargs) -> tuple[Clock, SessionStore, list[str]]:
    clock = Clock()
    clock.advance(1_000_000)
    return clock, SessionStore(clock, **kwargs), []


def _login(store: SessionStore, ended: list[str], user: str = "alice@example.test"):
    return store.create(user, object(), lambda: ended.append(user), "127.0.0.1", "test")


def test_a_session_is_found_by_its_token_and_not_by_anything_else():
    _clock, store, ended = _store()
    token, session = _login(store, ended)
    assert store.get(token) is session
    assert store.get(session.key) is None  # the stored key is the token's digest, not a token
    assert store.get(token + "x") is None and store.get(None) is None


def test_each_login_gets_new_tokens():
    _clock, store, ended = _store()
    (t1, s1), (t2, s2) = _login(store, ended), _login(store, ended)
    assert t1 != t2 and s1.csrf != s2.csrf and len(t1) >= 43


def test_an_idle_session_ends_and_its_portal_logout_runs():
    clock, store, ended = _store(idle_timeout=60, lifetime=3600)
    token, _ = _login(store, ended)
    clock.advance(59)
    assert store.get(token) is not None  # use keeps it alive
    clock.advance(59)
    assert store.get(token) is not None
    clock.advance(60)
    assert store.get(token) is None and ended == ["alice@example.test"]


def test_a_busy_session_still_ends_at_its_lifetime():
    clock, store, ended = _store(idle_timeout=60, lifetime=300)
    token, _ = _login(store, ended)
    for _ in range(10):
        clock.advance(30)
        store.get(token)
    assert store.get(token) is None


def test_sweep_ends_expired_sessions_nobody_asks_for():
    clock, store, ended = _store(idle_timeout=60)
    _login(store, ended)
    clock.advance(61)
    assert store.sweep() == 1 and len(store) == 0 and ended


def test_logout_everywhere_ends_only_that_users_sessions():
    _clock, store, ended = _store()
    a1, _ = _login(store, ended)
    a2, _ = _login(store, ended)
    b, _ = _login(store, ended, "bob@example.test")
    assert store.end_all("alice@example.test") == 2
    assert store.get(a1) is None and store.get(a2) is None and store.get(b) is not None


def test_a_full_table_drops_the_least_recently_used_session():
    _clock, store, ended = _store(max_sessions=2)
    old, _ = _login(store, ended, "old@example.test")
    used, _ = _login(store, ended, "used@example.test")
    store.get(old)  # now "used" is the least recently used
    _login(store, ended, "new@example.test")
    assert store.get(used) is None and store.get(old) is not None
    assert ended == ["used@example.test"]


def test_csrf_check_compares_the_whole_token():
    _clock, store, ended = _store()
    _token, session = _login(store, ended)
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(session.csrf[:-1]) and not session.csrf_ok(None)
    assert not session.csrf_ok("")


def test_login_tokens_match_only_their_own_cookie_and_key():
    tokens = LoginTokens()
    nonce, token = tokens.issue()
    other_nonce, _ = tokens.issue()
    assert tokens.check(nonce, token)
    assert not tokens.check(other_nonce, token)
    assert not tokens.check(nonce, None) and not tokens.check(None, token)
    assert not LoginTokens().check(nonce, token)  # a restart draws a new key


def test_the_cookie_is_secure_httponly_and_same_site_strict():
    header = cookie_header(COOKIE, "abc")
    assert header == "__Host-txm_session=abc; Path=/; Secure; HttpOnly; SameSite=Strict"


def test_ending_a_session_tells_whoever_waits_on_it():
    _clock, store, ended = _store()
    token, session = _login(store, ended)
    told: list[str] = []
    session.on_end.append(lambda: told.append("stream closed"))
    assert store.alive(session)
    store.end(session)
    assert told == ["stream closed"] and not store.alive(session)


def test_live_lists_the_sessions_not_yet_expired():
    clock, store, ended = _store(idle_timeout=60)
    _, old = _login(store, ended, "old@example.test")
    clock.advance(30)
    _, new = _login(store, ended, "new@example.test")
    assert store.live() == [old, new]
    clock.advance(31)
    assert store.live() == [new]
