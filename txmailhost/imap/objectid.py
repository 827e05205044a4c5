"""THREADID (RFC 8474): which thread a message belongs to.

The other object ids are the store's (``IMailbox.origins`` gives EMAILID and the RFC 8514 save
date; ``MailboxSelection`` and ``MailboxStatus`` the MAILBOXID). THREADID is computed, not
stored: it names the *root* of the message's thread as RFC 5256's REFERENCES algorithm sees it
(``headerkeys``: the first id of References, else of In-Reply-To, else the message's own
Message-ID), hashed into an ``objectid``. A message's header never changes, so neither does its
THREADID (RFC 8474 wants ids that don't change); every copy of it has the same one, and it
survives restarts with nothing written. A reply whose References was cut down to its parent
alone starts a thread of its own: the price of ids that never change (a table that merges
threads as replies arrive would have to renumber messages already reported). A message with
no Message-ID, References or In-Reply-To has no known thread: ``THREADID NIL``, which RFC 8474
allows.
"""

from __future__ import annotations

import hashlib

from txmailhost.imap import headerkeys

THREAD_PREFIX = "T"  # as EMAILIDs start with M and MAILBOXIDs with F (store/objectids.py)


def threadid(header: bytes) -> str | None:
    """The THREADID of a message with this header block, None when it has none."""
    root = headerkeys.thread_root(header)
    if not root:
        return None
    return THREAD_PREFIX + hashlib.blake2b(root.encode("utf-8"), digest_size=12).hexdigest()
