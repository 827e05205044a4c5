"""Property tests of the interpreter: any checked script on any message ends in an outcome or
a SieveRuntimeError (which delivery turns into INBOX), never another exception, and its
outcome stores each mailbox once, with flags IMAP accepts (imap4flags)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.sieve import flags
from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.interpreter import Interpreter, SieveRuntimeError
from txmailhost.sieve.language import compile_script
from txmailhost.sieve.message import MessageView
from txmailhost.store.interfaces import SYSTEM_FLAGS

pytestmark = pytest.mark.fuzz

REQUIRE = (
    'require ["fileinto", "copy", "variables", "envelope", "relational", "body", "subaddress",'
    ' "comparator-i;ascii-numeric", "mailbox", "date", "reject", "vacation", "include",'
    ' "encoded-character", "imap4flags"];\n'
)
_TESTS = [
    'header :matches "subject" "*${1}?*"',
    'header :value "gt" :comparator "i;ascii-numeric" "x-n" "5"',
    'address :detail :is ["from", "to"] ""',
    'address :count "ge" :comparator "i;ascii-numeric" "to" "1"',
    'envelope :domain :contains "from" "."',
    'body :contains "x"',
    'body :content "text" :matches "*"',
    'date :zone "+0130" :value "lt" "date" "weekday" "3"',
    'currentdate :is "year" "2026"',
    'exists ["from", "x-missing"]',
    "size :over 10",
    'string :matches "${0}${a}" "*"',
    'mailboxexists "${1}"',
    "not true",
    'hasflag :matches "${1}*"',
    'hasflag :count "ge" :comparator "i;ascii-numeric" ["a", "f"] "2"',
]
_ACTIONS = [
    'fileinto "${1}";',
    'fileinto :copy :create "F${a}";',
    'set :upper "a" "${0}";',
    'redirect "r@example.net";',
    'reject "no ${a}";',
    'vacation :days 1 "away";',
    "discard;",
    "keep;",
    "stop;",
    'include :optional "x";',
    'addflag "${0} \\\\Seen";',
    'setflag "f" ["${a}", "\\\\flagged $X"];',
    'removeflag "${1}";',
    'fileinto :flags "${f} ${0}" "F";',
    'keep :flags ["\\\\Recent", "${a}"];',
]
script_text = st.lists(
    st.tuples(st.sampled_from(_TESTS), st.lists(st.sampled_from(_ACTIONS), max_size=3)),
    max_size=6,
).map(lambda rules: REQUIRE + "".join(f"if {t} {{ {' '.join(a)} }}\n" for t, a in rules))
header_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)
message = st.builds(
    lambda subject, sender, n, body: (
        f"Return-Path: <{sender}>\r\nFrom: {sender}\r\nTo: a+b@x.y, {sender}\r\n"
        f"Subject: {subject}\r\nX-N: {n}\r\nDate: {subject}\r\n\r\n{body}\r\n"
    ).encode("utf-8", "surrogateescape"),
    header_value,
    st.sampled_from(["b@x.y", "", "=?utf-8?q?=C3=A9?= <c@d.e>", "bad<<", "a+b@x.y"]),
    header_value,
    header_value,
)


@given(script_text, message)
def test_runs_end_in_an_outcome_or_a_runtime_error(text, data):
    try:
        script = compile_script(text)
    except SieveSyntaxError:
        return  # e.g. reject together with keep in one block: checked elsewhere
    view = MessageView.from_bytes(data, "a@x.y")
    try:
        outcome = Interpreter(script, view, loader=lambda location, name: None).run()
    except SieveRuntimeError:
        return
    names = [name for name, _create in outcome.targets]
    assert len(names) == len(set(names))
    # Only copies that are stored have flags, and only flags IMAP accepts, spelt as IMAP does.
    assert set(outcome.flags) <= set(names)
    for stored in outcome.flags.values():
        assert stored and all(flags.valid(flag) for flag in stored)
        assert all(flag in SYSTEM_FLAGS for flag in stored if flag.startswith("\\"))
