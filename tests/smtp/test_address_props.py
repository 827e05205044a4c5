"""Property tests of the MAIL FROM / RCPT TO parser (smtp/address.py): any argument raises only
``AddressError``; a mailbox or a path with parameters, printed, parses back to itself; the time
per argument is bounded (the server gives it one line of up to 64 KiB)."""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.smtp.address import (
    AddressError,
    Mailbox,
    parse_mailbox,
    parse_params,
    parse_path_argument,
)

pytestmark = pytest.mark.fuzz

_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=_ATEXT, min_size=1, max_size=8)
dot_strings = st.lists(atoms, min_size=1, max_size=4).map(".".join)
_QTEXT = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
quoted_contents = st.lists(
    st.one_of(st.text(alphabet=_QTEXT, max_size=1), st.sampled_from(['\\"', "\\\\", "\\a"])),
    max_size=10,
).map("".join)
labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
_DCONTENT = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "[\\]")
address_literals = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(lambda a: f"[IPv6:{a}]"),
    # a General-address-literal: Standardized-tag ":" 1*dcontent (RFC 5321 4.1.3)
    st.builds(
        lambda tag, t: f"[{tag}:{t}]",
        labels.filter(lambda tag: tag.upper() != "IPV6"),
        st.text(alphabet=_DCONTENT, min_size=1, max_size=10),
    ),
)
local_parts = st.one_of(dot_strings, quoted_contents.map(lambda q: f'"{q}"'))
mailboxes = st.builds(Mailbox, local_parts, st.one_of(domains, address_literals)).filter(
    lambda m: len(m.local) <= 64 and len(str(m)) <= 256
)

_KEYWORD = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,8}", fullmatch=True)
_VALUE = st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7F) if c != 0x3D), min_size=1)
params = st.dictionaries(_KEYWORD.map(str.upper), st.one_of(st.none(), _VALUE), max_size=4)

_SPECIALS = '<>@:,."\\[] =\x00\r\té'
arguments = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.one_of(st.sampled_from(list(_SPECIALS) + ["FROM:", "TO:", "SIZE=1"]), atoms),
        max_size=30,
    ).map("".join),
)


@given(arguments, st.sampled_from(["FROM", "TO"]), st.booleans())
def test_any_argument_raises_only_address_errors(argument, keyword, allow_null):
    with contextlib.suppress(AddressError):
        path = parse_path_argument(argument, keyword, allow_null)
        assert path.mailbox is not None or allow_null


_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _expected(mailbox: Mailbox) -> Mailbox:
    """What parsing gives back: a quoted local part whose content is a plain dot-string
    (RFC 5322 3.4.1: the same mailbox), unquoted; any other kept as written."""
    if mailbox.local.startswith('"'):
        content = re.sub(r"\\(.)", r"\1", mailbox.local[1:-1])
        if _PLAIN.fullmatch(content):
            return Mailbox(content, mailbox.domain)
    return mailbox


@given(mailboxes)
def test_printed_mailbox_parses_back(mailbox):
    parsed = parse_mailbox(str(mailbox))
    assert parsed == _expected(mailbox)
    assert parse_mailbox(str(parsed)) == parsed
    assert parsed.is_literal == mailbox.domain.startswith("[")


@given(mailboxes, params, st.sampled_from([": ", ":"]))
def test_printed_path_with_parameters_parses_back(mailbox, parameters, colon):
    text = " ".join(k if v is None else f"{k}={v}" for k, v in parameters.items())
    argument = f"TO{colon}<{mailbox}>" + (f" {text}" if text else "")
    path = parse_path_argument(argument, "TO", allow_null=False)
    assert path.mailbox == _expected(mailbox)
    assert path.params == parameters


@given(params)
def test_printed_parameters_parse_back(parameters):
    text = " ".join(k if v is None else f"{k}={v}" for k, v in parameters.items())
    assert parse_params(text) == parameters


@pytest.mark.parametrize(
    "argument",
    [
        "FROM:<" + '"' * 65_000 + ">",
        "FROM:<" + '"\\' * 32_000 + ">",
        "FROM:<" + "a." * 32_000 + ">",
        "FROM:<@" + "a,@" * 21_000 + "a:b@c>",
        "FROM:<a@b> " + "X=1 " * 16_000,
        "FROM:<" + "a" * 63 + "@" + "[" + "1" * 65_000 + "]>",
    ],
)
def test_a_64_kib_argument_is_answered_quickly(argument):
    start = time.perf_counter()
    with contextlib.suppress(AddressError):
        parse_path_argument(argument, "FROM", True)
    assert time.perf_counter() - start < 1.0
