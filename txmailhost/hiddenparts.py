"""Parts of a message the standard library's MIME parser hides: those behind a reused boundary.

Kept apart so that both readers of a parsed message that must see every part, the spam
sample (``spam/sample.py``) and Sieve's ``body`` test (``sieve/message.py``), take them the
same way; standard library only (the scoring process imports it).
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from email.message import Message

HIDDEN_PARTS = 100  # parts read back from behind a reused boundary, at most


def behind_reused_boundary(message: Message) -> list[Message]:
    """The leaf parts a multipart inside another with the same boundary hides from the
    parser, read from where the parser put them.

    RFC 2046 5.1.1 forbids the reuse; Outlook Express for the Mac wrote it, and malware
    uses it: the parser splits the outer multipart at the inner one's delimiters, so the
    parts after the inner one's close delimiter (the attachment) are the outer one's
    epilogue, which nothing reads. Mail readers that give a delimiter to the innermost
    multipart it could close (Dovecot, our IMAP: ``imap/mime.py``) show them; so the spam
    checks score them (an executable among them is seen as one) and Sieve's ``body`` test
    searches them, as Pigeonhole's does."""
    found: list[Message] = []
    for part in message.walk():
        if not part.is_multipart() or not part.epilogue:
            continue
        boundary = part.get_boundary()
        if not boundary or not any(
            isinstance(child, Message)
            and child.get_content_maintype() == "multipart"
            and child.get_boundary() == boundary
            for child in part.get_payload()
        ):
            continue
        delimiter = re.compile(r"^--" + re.escape(boundary) + r"(--)?[ \t]*\r?$", re.M)
        parser = email.parser.Parser(policy=email.policy.compat32)
        start: int | None = None
        for line in delimiter.finditer(part.epilogue):
            if start is not None:
                piece = part.epilogue[start : line.start()]
                piece = piece[:-2] if piece.endswith("\r\n") else piece[:-1]
                found += (p for p in parser.parsestr(piece).walk() if not p.is_multipart())
                if len(found) >= HIDDEN_PARTS:
                    return found[:HIDDEN_PARTS]
            if line.group(1):  # the close delimiter
                break
            start = line.end() + 1
    return found
