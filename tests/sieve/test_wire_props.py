"""Property tests of the ManageSieve command parser (wire.py): any bytes give a command, a
request for more, or a WireError, never anything else; what ``string`` writes reads back;
a command fed in pieces parses as it does whole."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.sieve.wire import WireError, string, take_command

pytestmark = pytest.mark.fuzz

_SPECIAL = b'{}+"\\ \r\nPUTSCRIPT0123456789'
wire_bytes = st.lists(
    st.one_of(st.sampled_from([bytes((b,)) for b in _SPECIAL]), st.binary(max_size=4)),
    max_size=60,
).map(b"".join)


@given(wire_bytes)
def test_any_input_parses_asks_for_more_or_raises_wire_error(data):
    try:
        found = take_command(data, max_line=200, max_literal=100)
    except WireError as e:
        assert 0 <= e.consumed <= len(data)
        return
    if found is not None:
        command, consumed = found
        assert 0 < consumed <= len(data)
        assert command.verb == command.verb.upper()


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
def test_strings_written_by_string_read_back(values):
    line = b"VERB " + b" ".join(string(v) for v in values) + b"\r\n"
    command, consumed = take_command(line, max_line=10_000, max_literal=10_000)
    assert consumed == len(line)
    assert command.arguments == values


@given(st.binary(max_size=80), st.integers(1, 20))
def test_a_command_in_pieces_parses_as_whole(script, step):
    line = b'PUTSCRIPT "x" {%d+}\r\n%s\r\n' % (len(script), script)
    whole = take_command(line, max_line=200, max_literal=1000)
    for end in range(0, len(line), step):
        assert take_command(line[:end], max_line=200, max_literal=1000) is None
    assert whole is not None and whole[0].arguments == [b"x", script]
