"""The states of an IMAP session (RFC 3501 §3) and the sets of them a command may run in.

Its own module so that the pieces of a session (``server.py``, ``login.py``, ``updates.py``)
can all name the states without importing each other.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """RFC 3501 §3."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
UNAUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
