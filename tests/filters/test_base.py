"""``fields_named``: the sender's copies of a filter's own fields, counted as delivery counts
them, found as the line-by-line reading finds them and without it when there are none."""

from __future__ import annotations

import random
import sys

from txmailhost.filters.base import fields_named

NAMES = ("X-Spam-Status", "X-Spam-Score", "X-Virus-Scanned")


def line_by_line(header: bytes, names: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """What ``fields_named`` gave before it first looked for the names in the section."""
    wanted = {name.lower(): name for name in names}
    seen: dict[str, int] = {}
    found = []
    end = header.find(b"\r\n\r\n")
    for line in (header if end < 0 else header[: end + 2]).split(b"\r\n"):
        if not line or line[:1] in (b" ", b"\t"):
            continue
        name = line.partition(b":")[0].strip().decode("ascii", "replace").lower()
        if name in wanted:
            seen[name] = seen.get(name, 0) + 1
            found.append((wanted[name], seen[name]))
    return tuple(found)


_LINES = [
    b"From: a@example.org",
    b"X-Spam-Status: No",
    b"x-spam-status : Yes",
    b"  X-SPAM-SCORE:9",
    b" X-Spam-Status: folded, not a field",
    b"\tx-virus-scanned: continued",
    b"X-Virus-Scanned: clamd",
    b"X-Spam-Statuses: another name",
    b"X-Sp\xe4m-Status: 8-bit",
    b"Subject: X-Spam-Status: in a value",
    b"",
    b"X-Spam-Score: after the empty line",
]


def test_the_fields_found_are_those_the_line_by_line_reading_finds():
    rng = random.Random(5)
    for _ in range(3000):
        header = b"\r\n".join(rng.choice(_LINES) for _ in range(rng.randint(0, 9)))
        header += rng.choice([b"", b"\r\n", b"\r\n\r\nX-Spam-Status: body\r\n"])
        names = tuple(rng.sample(NAMES, rng.randint(1, 3)))
        assert fields_named(header, names) == line_by_line(header, names), header


def test_a_header_without_the_names_is_not_read_line_by_line():
    header = b"".join(f"X-Field-{i}: value {i}\r\n".encode() for i in range(10)) + b"\r\nbody"
    partitions = []

    def count(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == "partition":
            partitions.append(arg)

    sys.setprofile(count)
    try:
        found = fields_named(header, NAMES)
    finally:
        sys.setprofile(None)
    assert found == ()
    assert partitions == []
