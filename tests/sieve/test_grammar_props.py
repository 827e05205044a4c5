"""Property tests of the Sieve parser: any text raises nothing but SieveSyntaxError, printed
scripts parse back to the same tree, and pathological input stays fast."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.sieve.grammar import (
    Number,
    SieveSyntaxError,
    StringList,
    Tag,
    format_commands,
    parse,
)
from txmailhost.sieve.language import compile_script

pytestmark = pytest.mark.fuzz

_PIECES = [
    "if", "elsif", "else", "keep", "fileinto", "require", "header", ":is", ":matches",
    "allof", "anyof", "not", "true", "size", ":over", "1K", "10", '"a"', '"\\"', "text:",
    "\r\n", "\n", ".", "..", "{", "}", "(", ")", "[", "]", ",", ";", " ", "#", "/*", "*/",
    '"', "\\", "${hex:41}", "${unicode:d800}", "vacation", ":days", "envelope",
]  # fmt: skip
sieve_text = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=3)), max_size=60).map(
    "".join
)


@given(sieve_text)
def test_parse_raises_only_syntax_errors(text):
    with contextlib.suppress(SieveSyntaxError):
        compile_script(text)


_strings = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=8
)
_argument = st.one_of(
    st.builds(lambda n: Tag(n), st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True)),
    st.builds(lambda v: Number(v), st.integers(0, 10**9)),
    st.builds(lambda v: StringList([v], True), _strings),
    st.builds(lambda v: StringList(v, False), st.lists(_strings, min_size=1, max_size=3)),
)


def _shape(commands):
    return [
        (c.name, [_arg(a) for a in c.arguments], [_test(t) for t in c.tests],
         None if c.block is None else _shape(c.block))
        for c in commands
    ]  # fmt: skip


def _arg(argument):
    if isinstance(argument, Tag):
        return ("tag", argument.name)
    if isinstance(argument, Number):
        return ("number", argument.value)
    return ("strings", tuple(argument.values), argument.single)


def _test(test):
    return (test.name, [_arg(a) for a in test.arguments], [_test(t) for t in test.tests])


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
            st.lists(_argument, max_size=4),
            st.booleans(),
        ),
        max_size=5,
    )
)
def test_printed_scripts_parse_back_to_the_same_tree(spec):
    from txmailhost.sieve.grammar import Command

    commands = [Command(name, args, [], [] if block else None) for name, args, block in spec]
    assert _shape(parse(format_commands(commands))) == _shape(commands)


def test_pathological_input_is_fast():
    assert parse("#" * 200_000) == []
    many = 'require "fileinto"; ' + 'fileinto "x";\n' * 20_000
    # CPU time of this process: a quadratic path costs seconds of it; other processes'
    # load (CI runs two test processes) doesn't count, as wall-clock time would.
    started = time.process_time()
    assert len(compile_script(many).commands) == 20_001
    assert time.process_time() - started < 2.0
    for text in ("[" + '"a",' * 50_000, "/*" * 50_000, "if " + "not " * 10_000):
        started = time.process_time()
        with pytest.raises(SieveSyntaxError):
            compile_script(text)
        assert time.process_time() - started < 2.0
