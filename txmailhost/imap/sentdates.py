"""A message's Date: field as SORT and SEARCH read it: ``email.utils.parsedate_tz``, its years
read as RFC 5322 4.3 says.

The standard library takes a two-digit year below 69 for 20xx (RFC 5322: below 50), and a
three- or zero-padded four-digit year as written: ``Sat, 02 Feb 0102`` (a mailer of 2002
printing ``tm_year``, 70 messages of the public corpus) was year 102, so SORT (DATE) put them
before everything and SENTBEFORE found them before any date. RFC 5322 4.3 adds 1900 to a
three-digit year; ``0102`` is the same number zero-padded, and Dovecot reads it so too.
"""

from __future__ import annotations

import email.utils
import re
from typing import Any

_YEAR = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3}\s+(\d{2,4})\b")


def parse(value: str) -> Any:
    """``parsedate_tz`` of ``value`` (a 10-tuple, or None), the year as RFC 5322 reads it."""
    parsed = email.utils.parsedate_tz(value)
    if not parsed:
        return parsed
    year = parsed[0]
    written = _YEAR.search(value)
    if written is not None and len(written.group(1)) == 2 and 2050 <= year <= 2068:
        year -= 100  # two digits, 50 to 99: 19xx (the standard library: 20xx below 69)
    elif 100 <= year <= 999:
        year += 1900  # three digits, or 0102: 2002
    else:
        return parsed
    return (year, *parsed[1:])
