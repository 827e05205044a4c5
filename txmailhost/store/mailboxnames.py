"""Mailbox names as the store takes them, whoever makes or files into one: IMAP's CREATE and
RENAME (``imap/names.py``, after it decoded the wire form), Sieve's ``fileinto``, the admin
CLI. One set of rules, so a name one of them refuses can't be made through another.
"""

from __future__ import annotations

from txmailhost.store.interfaces import INBOX

SEPARATOR = "/"


def with_inbox(name: str) -> str:
    """``name`` with its first level INBOX in any case as ``INBOX`` (RFC 3501 5.1: INBOX is
    case-insensitive): ``Inbox/Sub`` is ``INBOX/Sub``."""
    head, sep, rest = name.partition(SEPARATOR)
    return INBOX + sep + rest if head.upper() == INBOX else name


def creation_problem(name: str) -> str | None:
    """Why a mailbox of this name may not be made, or None: LIST wildcards, control, line and
    paragraph separator characters (RFC 6855 3 with RFC 5198 2: a name a client lists on two
    lines), an empty level. A name made before these rules still opens."""
    if "*" in name or "%" in name:
        return "mailbox names can't contain * or %"
    if any(c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029" for c in name):
        return "mailbox name contains control characters"
    if name.startswith(SEPARATOR) or name.endswith(SEPARATOR) or SEPARATOR * 2 in name:
        return "empty hierarchy level in mailbox name"
    return None
