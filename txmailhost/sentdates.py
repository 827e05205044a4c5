"""A message's Date: field as SORT and SEARCH read it: ``email.utils.parsedate_tz``, its years
read as RFC 5322 4.3 says.

The standard library takes a two-digit year below 69 for 20xx (RFC 5322: below 50) and any
other year as written. RFC 5322 adds 1900 to a three-digit year (``102`` is 2002) and wants
four digits to be a year "1900 or later": ``Sat, 02 Feb 0102`` (a mailer of 2002 printing
``tm_year`` zero-padded; 70 messages of the public corpus) is no date, as Dovecot reads it
too. It was year 102, which SORT (DATE) put before everything and SENTBEFORE found before
any day; now SORT uses the INTERNALDATE instead (RFC 5256) and SENT* don't match it.
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
    digits = len(written.group(1)) if written is not None else 0
    if digits == 2 and 2050 <= year <= 2068:
        year -= 100  # two digits, 50 to 99: 19xx (the standard library: 20xx below 69)
    elif digits == 3:
        year += 1900  # three digits: 102 is 2002
    elif 100 <= year < 1900:
        return None  # four digits before 1900 (0102), or a form the pattern doesn't know
    else:
        return parsed
    return (year, *parsed[1:])
