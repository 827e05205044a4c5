"""Header fields read from a raw header section the way a mail reader may read them.

Why not the standard library's parser: it ends the header at the first line without a
colon and takes a later ``From ...`` line for an mbox separator. Checks that must hold for
whatever a reader shows (DMARC's author domains, the submission server's "the From is
yours") read every field here instead: a field written ``From :`` (RFC 5322 4.5.3's
obsolete space before the colon) or after a stray line is a field all the same.
"""

from __future__ import annotations

import re


def fields(header: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of each field of a header section, the name stripped."""
    text = header.decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]", " ", text)
    found = []
    for line in re.split(r"\r?\n", unfolded):
        name, sep, value = line.partition(":")
        if sep and name and not name[0].isspace():
            found.append((name.strip(), value.strip()))
    return found


def values(header: bytes, name: str) -> list[str]:
    """The values of every field named ``name`` (any case) in ``header``."""
    wanted = name.lower()
    return [value for found, value in fields(header) if found.lower() == wanted]
