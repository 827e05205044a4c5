"""How many keywords (a client's own flags, RFC 9051 2.3.2) a mailbox may carry, and how long.

Without a bound one session could grow a message's flags without end: 5 STOREs of 5,000
new keywords each made FETCH FLAGS answer 700 KB for three messages, and every session that
selects the mailbox holds all of them (``store/image.py``). Dovecot caps a keyword at 50
octets (``mail_max_keyword_length``), Cyrus a mailbox at 128 keywords. Past either limit
the command is ``NO [LIMIT]`` (RFC 5530, whose own example is "the number of flags used in
a mailbox") and changes nothing; keywords already there stay usable.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from txmailhost.imap import replies
from txmailhost.store.interfaces import MAX_KEYWORD_LENGTH, MAX_MAILBOX_KEYWORDS


def check_keywords(flags: Iterable[str], known: Set[str] | None = None) -> None:
    """Raise ``replies.Limit`` when ``flags`` hold a keyword longer than the limit, or would
    take the keywords of a mailbox that has ``known`` past ``MAX_MAILBOX_KEYWORDS`` (with
    ``known`` None, the ones given alone are counted)."""
    words = {flag for flag in flags if not flag.startswith("\\")}
    if any(len(word) > MAX_KEYWORD_LENGTH for word in words):
        raise replies.Limit(f"a keyword is at most {MAX_KEYWORD_LENGTH} characters long")
    added = words - known if known is not None else words
    if added and len(added) + (len(known) if known is not None else 0) > MAX_MAILBOX_KEYWORDS:
        raise replies.Limit(f"a mailbox may have at most {MAX_MAILBOX_KEYWORDS} keywords")
