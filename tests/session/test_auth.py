"""session/auth.py: the SASL exchange and the login every protocol shares."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.sasl import SASLError
from txmailhost.session.auth import Challenge, Credentials, PasswordExchange, PasswordLogin


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def reason(call: Any, *args: Any) -> str:
    with pytest.raises(SASLError) as raised:
        call(*args)
    return raised.value.reason


def test_plain_without_initial_response_sends_an_empty_challenge_then_reads_credentials():
    exchange = PasswordExchange("plain")
    assert exchange.begin(None) == Challenge(b"")
    assert exchange.respond(b64(b"\0alice\0pw")) == Credentials(b"alice", b"pw", "PLAIN")


def test_plain_initial_response_gives_credentials_at_once():
    assert PasswordExchange(b"PLAIN").begin(b64(b"alice\0alice\0pw")) == Credentials(
        b"alice", b"pw", "PLAIN"
    )


def test_login_asks_for_user_name_then_password():
    exchange = PasswordExchange("LOGIN", offered=("PLAIN", "LOGIN"))
    first = exchange.begin(None)
    assert first.encoded() == b"VXNlcm5hbWU6"  # "Username:"
    assert exchange.respond(b64(b"alice")).encoded() == b"UGFzc3dvcmQ6"  # "Password:"
    assert exchange.respond(b64(b"pw")) == Credentials(b"alice", b"pw", "LOGIN")


def test_login_initial_response_is_the_user_name():
    exchange = PasswordExchange("LOGIN", offered=("LOGIN",))
    assert exchange.begin(b64(b"alice")) == Challenge(b"Password:")


def test_a_mechanism_not_offered_is_refused():
    assert reason(PasswordExchange, "LOGIN") == "mechanism"  # PLAIN only by default
    assert reason(PasswordExchange, "CRAM-MD5", ("CRAM-MD5",)) == "mechanism"


def test_star_cancels_a_response_but_is_bad_base64_as_an_initial_response():
    assert reason(PasswordExchange("PLAIN").respond, b"*") == "cancelled"
    assert reason(PasswordExchange("PLAIN").begin, b"*") == "base64"


def test_bad_responses_name_their_reason():
    assert reason(PasswordExchange("PLAIN").respond, b"not base64!") == "base64"
    assert reason(PasswordExchange("PLAIN").respond, b64(b"no-nuls")) == "malformed"
    assert reason(PasswordExchange("PLAIN").respond, b64(b"bob\0alice\0pw")) == "authzid"


class _Portal:
    def __init__(self, result: Any) -> None:
        self.result = result

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Deferred:
        return self.result()


def _login(logins: PasswordLogin) -> Deferred:
    return Deferred.fromCoroutine(
        logins.login(Credentials(b"alice", b"pw", "PLAIN"), None, "192.0.2.1", "alice")
    )


def test_a_wrong_password_is_counted_and_refused_after_the_pause():
    clock = Clock()
    logins = PasswordLogin(
        _Portal(lambda: fail(UnauthorizedLogin())), clock, "imap", failure_delay=1.0
    )
    outcome = _login(logins)
    failures: list[Any] = []
    outcome.addErrback(failures.append)

    assert logins.failures == 1 and not failures
    clock.advance(1)
    assert failures and failures[0].check(UnauthorizedLogin)


def test_a_throttled_login_is_refused_without_counting_a_failure():
    logins = PasswordLogin(_Portal(lambda: fail(LoginThrottled())), Clock(), "pop3")
    failures: list[Any] = []
    _login(logins).addErrback(failures.append)
    assert failures[0].check(LoginThrottled) and logins.failures == 0


def test_a_good_password_gives_the_account_and_its_logout():
    account, logout = object(), lambda: None
    logins = PasswordLogin(_Portal(lambda: succeed((None, account, logout))), Clock(), "smtp")
    results: list[Any] = []
    _login(logins).addCallback(results.append)
    assert results == [(account, logout)]


def test_cancel_ends_the_pause_of_a_lost_connection():
    clock = Clock()
    logins = PasswordLogin(
        _Portal(lambda: fail(UnauthorizedLogin())), clock, "imap", failure_delay=1.0
    )
    failures: list[Any] = []
    _login(logins).addErrback(failures.append)
    logins.cancel()
    assert failures and not clock.getDelayedCalls()
