"""``dmarc report list`` reads every message of the reports account: one nested deeper than
the standard library's MIME parser goes (RecursionError) is skipped with a reason, and the
reports after it are still read."""

from __future__ import annotations

import io
from types import SimpleNamespace

from twisted.internet.defer import succeed

from tests.spam.test_sample import _nested
from txmailhost.mailauth.received import reports_in_mailbox


class Box:
    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    def snapshot(self):
        infos = [SimpleNamespace(uid=n + 1, size=len(m)) for n, m in enumerate(self.messages)]
        return succeed(SimpleNamespace(messages=infos))

    def open_message(self, uid: int):
        return succeed(io.BytesIO(self.messages[uid - 1]))


def _wait(deferred):
    found = []
    deferred.addBoth(found.append)
    return found[0]


def test_a_message_nested_too_deeply_is_skipped_with_its_reason():
    plain = b"Subject: not a report\r\n\r\nhello\r\n"
    found = list(reports_in_mailbox(Box([_nested(1500), plain]), _wait))
    assert found == [("UID 1", "MIME nested too deeply to read")]
