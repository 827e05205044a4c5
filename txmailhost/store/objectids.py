"""Object identifiers (RFC 8474 OBJECTID) as every store makes them.

Why random and stored, not derived from the content: two messages with the same octets (a
client appending one draft twice) are still two messages, and a mailbox's id must outlive its
name (RENAME) and never be reused after DELETE; and ids that can't be guessed are what RFC 8474's
security considerations advise, since clients may use them as file names. 96 random bits with a letter before them
(a valid ``objectid``: 1*255 of ALPHA / DIGIT / "_" / "-") are unique for all practical
purposes without a central counter, which matters when several nodes share a database.

A message a Maildir index held before EMAILIDs were kept has no stored one; ``legacy_emailid``
names it from its mailbox's UIDVALIDITY and its UID, which no other message of the user ever
has (UIDVALIDITY is never given twice in a user's directory), so nothing has to be written
to answer a FETCH; a COPY stores that value with the copy like any other EMAILID.
"""

from __future__ import annotations

import hashlib
import re
import secrets

MAILBOX_PREFIX = "F"  # as in RFC 8474's examples: F... for mailboxes, M... for messages
EMAIL_PREFIX = "M"
_OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # RFC 8474's objectid


def is_objectid(text: object) -> bool:
    """Whether ``text`` may be served as an id (one read from an export file, say): anything
    else could break the response it is written into."""
    return isinstance(text, str) and _OBJECTID.fullmatch(text) is not None


def new_mailboxid() -> str:
    return MAILBOX_PREFIX + secrets.token_hex(12)


def new_emailid() -> str:
    return EMAIL_PREFIX + secrets.token_hex(12)


def stable_emailid(name: str) -> str:
    """An EMAILID made from a name given to one message only (the spool's file stem), so that
    delivering it again after a crash gives the copies it adds the same EMAILID."""
    return EMAIL_PREFIX + hashlib.blake2b(name.encode("utf-8"), digest_size=12).hexdigest()


def legacy_emailid(uidvalidity: int, uid: int) -> str:
    """The EMAILID of a message indexed before EMAILIDs were stored (see the module text)."""
    digest = hashlib.blake2b(b"%d.%d" % (uidvalidity, uid), digest_size=12).hexdigest()
    return EMAIL_PREFIX + digest
