"""Whether a message nests MIME deeper than mail does, told before the standard library's
parser reads it.

``email``'s feed parser tries every enclosing boundary on every line it reads, so its time
grows with the nesting depth times the length: 300 levels around 20,000 short lines (80
KiB) took 0.8 s, and a message of a few MiB nested a thousand levels would take minutes of
one thread. Mail nests a few levels (at most 2 in the SpamAssassin corpus; a forward of a
forward with attachments, a handful), so a message that declares ``MAX_BOUNDARIES``
multipart boundaries or more is read as one text part by the readers that use that parser
(the spam sample, Sieve's ``body`` test). The IMAP server's own splitter
(``imap/mime.py``) needs no such guard: it stops at ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

import itertools
import re

MAX_BOUNDARIES = 16
_BOUNDARY_PARAMETER = re.compile(rb"(?i)\bboundary[ \t]*=")


def too_nested(octets: bytes) -> bool:
    """Whether ``octets`` declare ``MAX_BOUNDARIES`` boundary parameters or more (counting
    stops there: a body of a million of them costs no list of a million)."""
    found = _BOUNDARY_PARAMETER.finditer(octets)
    return sum(1 for _ in itertools.islice(found, MAX_BOUNDARIES)) >= MAX_BOUNDARIES
