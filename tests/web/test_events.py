"""The webmail's event stream (``events.MailEvents``): its heartbeat ends it with the session,
and ends the session when the account is gone or its password changed (where ``user del``
or ``user passwd`` couldn't reach this server's control socket)."""

from __future__ import annotations

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from txmailhost.web.events import HEARTBEAT, MailEvents
from txmailhost.web.sessions import SessionStore


class Request:
    channel = None

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.finished = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True

    def notifyFinish(self):
        from twisted.internet.defer import Deferred

        return Deferred()


def _stream(stamps: list):
    clock = Clock()
    sessions = SessionStore(clock)
    _token, session = sessions.create("alice@example.test", object(), lambda: None, "::1", "t")
    session.stamp = "at-login"

    def stamp_of(user: str):
        answer = stamps.pop(0)
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)

    stream = MailEvents(clock, sessions, session, {}, stamp_of)
    request = Request()
    stream.start(request)
    return clock, sessions, session, request


def test_the_stream_and_session_end_at_the_heartbeat_after_the_account_goes():
    clock, sessions, session, request = _stream(["at-login", None])
    clock.advance(HEARTBEAT)
    assert not request.finished and sessions.alive(session)
    clock.advance(HEARTBEAT)  # the account is gone (user del on another node)
    assert request.finished and not sessions.alive(session)


def test_a_changed_password_ends_them_and_a_database_error_does_not():
    clock, sessions, session, request = _stream([RuntimeError("db down"), "new-password"])
    clock.advance(HEARTBEAT)
    assert not request.finished and sessions.alive(session)  # asked again next time
    clock.advance(HEARTBEAT)
    assert request.finished and not sessions.alive(session)
