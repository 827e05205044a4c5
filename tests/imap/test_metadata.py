"""METADATA (RFC 5464) at the byte level, on every backend that keeps entries: server and
mailbox entries, DEPTH and MAXSIZE, the limits' response codes, entry names, and entries that
follow their mailbox through RENAME, go with it at DELETE and outlast the session."""

from __future__ import annotations

import pytest

from tests.imap.support import ALICE, BOB, Session, make_factory
from txmailhost.imap.metadata import MAX_ENTRIES, MAX_VALUE_SIZE


def login(world, user: str = ALICE) -> Session:
    s = Session(make_factory(world))
    assert b"METADATA" in s.login(user)
    return s


def test_server_entry_set_get_and_removed_with_nil(world):
    s = login(world)
    assert s.cmd('b SETMETADATA "" (/private/comment "my server note")') == (
        b"b OK SETMETADATA completed\r\n"
    )
    assert s.cmd('c GETMETADATA "" /private/comment') == (
        b'* METADATA "" (/private/comment "my server note")\r\nc OK GETMETADATA completed\r\n'
    )
    s.cmd('d SETMETADATA "" (/private/comment NIL)')
    assert s.cmd('e GETMETADATA "" /private/comment') == (
        b'* METADATA "" (/private/comment NIL)\r\ne OK GETMETADATA completed\r\n'
    )


def test_mailbox_entries_are_kept_across_sessions_and_per_user(world):
    s = login(world)
    s.cmd('b SETMETADATA INBOX (/shared/Comment "Inbox" /private/vendor/x/color "red")')
    s.close()
    again = login(world)
    reply = again.cmd("c GETMETADATA INBOX (/shared/comment /private/vendor/x/color)")
    assert reply == (
        b'* METADATA "INBOX" (/shared/comment "Inbox" /private/vendor/x/color "red")\r\n'
        b"c OK GETMETADATA completed\r\n"
    )
    bob = login(world, BOB)
    assert b"/shared/comment NIL" in bob.cmd("d GETMETADATA INBOX /shared/comment")


def test_depth_one_and_infinity(world):
    s = login(world)
    s.cmd('b SETMETADATA Sent (/private/a "1" /private/a/b "2" /private/a/b/c "3")')
    assert s.cmd("c GETMETADATA (DEPTH 1) Sent /private/a") == (
        b'* METADATA "Sent" (/private/a "1" /private/a/b "2")\r\nc OK GETMETADATA completed\r\n'
    )
    assert s.cmd("d GETMETADATA (DEPTH infinity) Sent /private") == (
        b'* METADATA "Sent" (/private/a "1" /private/a/b "2" /private/a/b/c "3")\r\n'
        b"d OK GETMETADATA completed\r\n"
    )


def test_maxsize_leaves_out_larger_values_with_longentries(world):
    s = login(world)
    s.cmd('b SETMETADATA "" (/private/short "abc" /private/long "%s")' % ("x" * 40))
    assert s.cmd('c GETMETADATA (MAXSIZE 10) "" (/private/short /private/long)') == (
        b'* METADATA "" (/private/short "abc")\r\n'
        b"c OK [METADATA LONGENTRIES 40] GETMETADATA completed\r\n"
    )


def test_binary_value_as_literal8_round_trips(world):
    s = login(world)
    assert s.send(b'b SETMETADATA "" (/private/blob ~{4}\r\n').startswith(b"+ ")
    assert s.send(b"\x00\x01\xff\n)\r\n") == b"b OK SETMETADATA completed\r\n"
    assert s.cmd('c GETMETADATA "" /private/blob') == (
        b'* METADATA "" (/private/blob ~{4}\r\n\x00\x01\xff\n)\r\nc OK GETMETADATA completed\r\n'
    )


def test_a_value_over_the_limit_is_no_maxsize_and_nothing_is_stored(world):
    s = login(world)
    big = MAX_VALUE_SIZE + 1
    assert s.send(b'b SETMETADATA "" (/private/a "x" /private/big {%d}\r\n' % big).startswith(b"+ ")
    reply = s.send(b"y" * big + b")\r\n")
    assert reply == b"b NO [METADATA MAXSIZE %d] metadata value too large\r\n" % MAX_VALUE_SIZE
    assert b"/private/a NIL" in s.cmd('c GETMETADATA "" /private/a')


def test_too_many_entries_is_no_toomany(world):
    s = login(world)
    entries = " ".join(f'/private/e{i} "v"' for i in range(MAX_ENTRIES))
    assert s.cmd(f"b SETMETADATA INBOX ({entries})") == b"b OK SETMETADATA completed\r\n"
    assert s.cmd('c SETMETADATA INBOX (/private/one-more "v")') == (
        b"c NO [METADATA TOOMANY] too many metadata entries\r\n"
    )
    assert s.cmd('d SETMETADATA INBOX (/private/e1 NIL /private/one-more "v")').startswith(b"d OK")


@pytest.mark.parametrize(
    "entry", ["/private", "/other/x", "/private//x", "/private/x/", "/private/a*", "comment"]
)
def test_invalid_entry_names_are_bad(world, entry):
    s = login(world)
    assert s.cmd(f'b SETMETADATA "" ({entry} "v")').startswith(b"b BAD ")


def test_missing_mailbox_is_nonexistent(world):
    s = login(world)
    assert s.cmd("b GETMETADATA Nope /private/x") == b"b NO [NONEXISTENT] no such mailbox\r\n"
    assert s.cmd('c SETMETADATA Nope (/private/x "v")').startswith(b"c NO [NONEXISTENT]")


def test_entries_follow_rename_and_go_with_delete(world):
    s = login(world)
    s.cmd("b CREATE Projects")
    s.cmd('c SETMETADATA Projects (/private/comment "work")')
    s.cmd("d RENAME Projects Archive2")
    assert b'/private/comment "work"' in s.cmd("e GETMETADATA Archive2 /private/comment")
    s.cmd("f DELETE Archive2")
    s.cmd("g CREATE Archive2")
    assert b"/private/comment NIL" in s.cmd("h GETMETADATA Archive2 /private/comment")


def test_entry_names_with_specials_are_quoted_as_astrings(world):
    """RFC 5464 §5: ``entry`` is an astring. A name holding ``"``, ``(`` or ``)`` written
    bare ended the client's list or string early."""
    s = login(world)
    s.cmd(r'b SETMETADATA INBOX ("/private/a\"b" "v1" "/private/c)d" "v2" "/private/e(f" "v3")')
    assert s.cmd("c GETMETADATA (DEPTH infinity) INBOX /private") == (
        b'* METADATA "INBOX" ("/private/a\\"b" "v1" "/private/c)d" "v2" "/private/e(f" "v3")\r\n'
        b"c OK GETMETADATA completed\r\n"
    )


def test_a_value_holding_nul_comes_back_as_a_literal8(world):
    """§4.3: a value may hold any octet; a ``{n}`` literal may not hold NUL (RFC 3501 §9)."""
    s = login(world)
    s.cmd(b"b SETMETADATA INBOX (/private/bin ~{3}\r\na\x00b)")
    assert s.cmd("c GETMETADATA INBOX /private/bin") == (
        b'* METADATA "INBOX" (/private/bin ~{3}\r\na\x00b)\r\nc OK GETMETADATA completed\r\n'
    )
