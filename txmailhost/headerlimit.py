"""The longest header section the server takes, in one place for every reader of headers.

1 MiB, Exim's default ``header_maxsize`` (sendmail refuses past 32 KiB). SMTP refuses a
longer header section with ``552 5.6.0`` (``delivery/incoming.py``), so every check that
reads header fields can read all of them: the submission From: check, the forged
``Authentication-Results:`` removal, DKIM and DMARC (``mailauth/bodyhash.py``), Sieve
(``sieve/message.py``) and the spam score (``spam/sample.py``). Each once read only a
first part (64 or 256 KiB), and fields padded past it escaped the check.

The readers of stored mail allow ``OUR_FIELDS`` more: the trace and verdict fields the
server writes above the client's (``Received:``, ``Authentication-Results:``,
``X-Spam-*``, a filled-in ``Date:``) come on top of the client's 1 MiB.
"""

from __future__ import annotations

HEADER_LIMIT = 1024 * 1024
OUR_FIELDS = 64 * 1024
STORED_HEADER_LIMIT = HEADER_LIMIT + OUR_FIELDS
