"""The standard library's MIME parser, stopped where a message nests deeper than mail does.

``email``'s feed parser tries every enclosing boundary on every line it reads, so its time
grows with the nesting depth times the length: 300 levels around 20,000 short lines (80
KiB) took 0.8 s, and a message of a few MiB nested a thousand levels would take minutes of
one thread. Mail nests a few levels (at most 2 in the SpamAssassin corpus; a forward of a
forward with attachments, a handful). ``parse_bytes`` is ``email.message_from_bytes`` that
raises ``TooNested`` when the parser opens its ``MAX_DEPTH + 1``-th enclosing boundary, so
its time stays linear in the length; the readers that use that parser (the spam sample,
Sieve's ``body`` test) then read the body as one text part. The depth is the parser's own,
not a count of ``boundary=`` in the text: words a sender writes can't make a message of
one level read as text (which would hide its attachments and HTML from the spam rules).
The IMAP server's own splitter (``imap/mime.py``) needs none of this: it stops at its
``MAX_DEPTH`` levels.
"""

from __future__ import annotations

import email.feedparser
import email.policy
from email.message import Message
from typing import Any

MAX_DEPTH = 16


class TooNested(ValueError):
    """The message nests multiparts deeper than ``MAX_DEPTH``."""


class _BoundedInput(email.feedparser.BufferedSubFile):
    """The feed parser's input, refusing a boundary past ``MAX_DEPTH`` enclosing ones."""

    def push_eof_matcher(self, pred: Any) -> None:
        if len(self._eofstack) >= MAX_DEPTH:
            raise TooNested(f"MIME nested deeper than {MAX_DEPTH} levels")
        super().push_eof_matcher(pred)


def parse_bytes(octets: bytes, policy: Any = email.policy.compat32) -> Message:
    """``email.message_from_bytes(octets)`` (``BytesParser(policy=policy).parsebytes``):
    the same message, or ``TooNested``."""
    parser = email.feedparser.BytesFeedParser(policy=policy)
    parser._input = _BoundedInput()  # type: ignore[attr-defined]
    parser.feed(octets)
    return parser.close()  # type: ignore[no-any-return]
