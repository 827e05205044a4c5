"""RFC 2045's media type, ``type "/" subtype`` (two tokens), for the readers of MIME parts.

One definition for the IMAP server's BODYSTRUCTURE (bytes) and the spam sample (text): a
``Content-Type`` whose type isn't this shape, such as ``TEXT/PLAIN charset=US-ASCII`` with
no ``;``, is "syntactically invalid" and read as ``text/plain`` (RFC 2045 5.2), as mail
readers and Dovecot read it; the two readers must agree on which values those are.
"""

from __future__ import annotations

import re

# RFC 2045 5.1's token: any visible ASCII but tspecials; matched against a lower-cased value.
_PATTERN = r"[!#$%&'*+\-.^_`|~0-9a-z]+/[!#$%&'*+\-.^_`|~0-9a-z]+"

MEDIA_TYPE = re.compile(_PATTERN)
MEDIA_TYPE_BYTES = re.compile(_PATTERN.encode("ascii"))
