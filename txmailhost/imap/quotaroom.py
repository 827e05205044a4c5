"""What an IMAP session last saw of the room left under each mailbox owner's quota, so that
the look before an APPEND literal (``commands._append_refused_early``) need not read the
usage again when the session saw, moments ago, room enough for the literal.

That look is an early refusal only: the check once the message is read, and the store's
under the owner's lock, decide. So skipping it can't let a message past the quota; it can only
let a client send a literal that is then refused, as before the look existed. What makes the
room smaller without this session seeing it (deliveries, other sessions, an administrator
lowering the quota) is noticed within ``KEEP`` seconds; the room is only believed for a
literal it fits, never to refuse one. Reading the usage costs a Maildir a directory scan of
every folder (2.5 ms for 25 folders): twice per APPEND made small APPENDs of a user with a
quota about half again as slow.
"""

from __future__ import annotations

from typing import Any

KEEP = 30.0  # seconds a room seen is believed
OWNERS = 64  # owners remembered by one session (it appends to a few: its own, some shared)


class QuotaRoom:
    """Per owner: the octets that were left under the quota (None: no limit) and until when
    that is believed. ``clock`` is the session's ``IReactorTime``."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[float, int | None]] = {}

    def saw(self, owner: str, room: int | None) -> None:
        """``owner`` had ``room`` octets left (None: unlimited), as just read."""
        if len(self._seen) >= OWNERS and owner not in self._seen:
            self._seen.clear()
        self._seen[owner] = (self._clock.seconds() + KEEP, room)

    def fits(self, owner: str, octets: int) -> bool:
        """Whether ``octets`` fitted in the room seen for ``owner`` within ``KEEP`` seconds."""
        seen = self._seen.get(owner)
        if seen is None or seen[0] <= self._clock.seconds():
            return False
        room = seen[1]
        return room is None or octets <= room
