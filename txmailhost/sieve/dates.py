"""The date extension (RFC 5260 section 4-5): ``date`` reads a date from a header field,
``currentdate`` is the time of delivery; both compare one *date-part* of it.

Date parts (5.1 table): ``year``, ``month``, ``day``, ``date`` (yyyy-mm-dd), ``julian``
(Modified Julian Day), ``hour``, ``minute``, ``second``, ``time`` (hh:mm:ss), ``iso8601``,
``std11`` (RFC 5322 form), ``zone`` (+hhmm) and ``weekday`` (0 is Sunday). Dates are taken
to ``:zone`` when given, kept in their own zone with ``:originalzone`` (``date`` only), and in
the server's local zone otherwise (4.1). A header without a parseable date, or with one that
can't be taken to the zone asked for, matches nothing.
"""

from __future__ import annotations

import datetime
import email.utils
import re

from txmailhost import sentdates

DATE_PARTS = (
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601",
    "std11", "zone", "weekday",
)  # fmt: skip
_ZONE = re.compile(r"([+-])([0-9]{2})([0-9]{2})\Z")
_MJD_EPOCH = datetime.date(1858, 11, 17)


def zone_of(text: str) -> datetime.timezone | None:
    """``+hhmm``/``-hhmm`` as a time zone; None when it isn't one (RFC 5260 4.1)."""
    found = _ZONE.match(text)
    if not found:
        return None
    sign, hours, minutes = found.groups()
    offset = datetime.timedelta(hours=int(hours), minutes=int(minutes))
    if offset >= datetime.timedelta(hours=24):
        return None
    return datetime.timezone(-offset if sign == "-" else offset)


def header_date(value: str) -> datetime.datetime | None:
    """The date of a Date: field, its year read as RFC 5322 4.3 says (``sentdates.py``:
    ``0102`` is no date, as Pigeonhole has it); None for none."""
    try:
        parsed = sentdates.parse(value)
        if not parsed:
            return None
        *fields, offset = parsed
        zone = (
            datetime.UTC
            if offset is None
            else datetime.timezone(datetime.timedelta(seconds=offset))
        )  # no zone, or "-0000": unknown, UTC is as good as any
        return datetime.datetime(*fields[:6], tzinfo=zone)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year of 25 digits...
        return None


def in_zone(
    moment: datetime.datetime, zone: str | None, original: bool
) -> datetime.datetime | None:
    """``moment`` in ``zone``, its own zone (``original``) or the server's; None when that
    falls outside the years 1-9999 Python can hold ("Sun, 31 Dec 9999 23:59:59 -1200" is
    in 10000 in UTC): RFC 5260 4 makes a date that can't be used match nothing."""
    if original:
        return moment
    tz = zone_of(zone) if zone is not None else None
    try:
        return moment.astimezone(tz)
    except (OverflowError, ValueError, OSError):  # OSError: the C library's localtime
        return None


def part(moment: datetime.datetime, name: str) -> str:
    """One date-part of ``moment`` as RFC 5260 5.1 writes it."""
    if name == "year":
        return f"{moment.year:04d}"
    if name == "month":
        return f"{moment.month:02d}"
    if name == "day":
        return f"{moment.day:02d}"
    if name == "date":
        return moment.strftime("%Y-%m-%d")
    if name == "julian":
        return str((moment.date() - _MJD_EPOCH).days)
    if name == "hour":
        return f"{moment.hour:02d}"
    if name == "minute":
        return f"{moment.minute:02d}"
    if name == "second":
        return f"{moment.second:02d}"
    if name == "time":
        return moment.strftime("%H:%M:%S")
    if name == "iso8601":
        return moment.isoformat()
    if name == "std11":
        return email.utils.format_datetime(moment)
    if name == "zone":
        return moment.strftime("%z")
    return str((moment.weekday() + 1) % 7)  # weekday: Python's Monday 0, Sieve's Sunday 0
