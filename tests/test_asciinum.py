"""Numbers read from text strangers write: ASCII digits only (``asciinum.py``)."""

from __future__ import annotations

import pytest

from txmailhost.asciinum import MOST, is_number, number_or
from txmailhost.relay.client import Capabilities


@pytest.mark.parametrize("text", ["0", "7", "0042", "9" * MOST])
def test_ascii_digits_are_numbers(text: str) -> None:
    assert is_number(text) and number_or(text, -1) == int(text)


@pytest.mark.parametrize(
    "text",
    ["", "\u00b2", "1\u00b2", "\u0663", "\uff11", " 1", "1 ", "+1", "-1", "1.0", "9" * (MOST + 1)],
)
def test_other_digits_and_long_runs_are_not(text: str) -> None:
    """ "²" (which ``int()`` refuses), "٣" and "１" (which it reads as 3 and 1) are digits to
    ``str.isdigit()``; none is a number in a protocol."""
    assert not is_number(text) and number_or(text, -1) == -1


def test_a_remote_servers_size_in_other_digits_is_no_limit() -> None:
    """EHLO's ``SIZE ²`` (a remote server's text) raised ``ValueError`` in the relay."""
    assert Capabilities({"SIZE": "\u00b2"}).max_size() is None
    assert Capabilities({"SIZE": "1000"}).max_size() == 1000
