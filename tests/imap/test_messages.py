"""Selected-state commands at the byte level: FETCH (every item), STORE, SEARCH, COPY, MOVE,
EXPUNGE, CLOSE/UNSELECT, CONDSTORE/QRESYNC, ESEARCH, and the untagged updates other sessions
and deliveries cause (IDLE included)."""

from __future__ import annotations

import re

import pytest

from tests.imap.support import ALICE, Session, deliver, make_factory
from tests.support.fixtures import result
from txmailhost.imap import messages

SIMPLE = (
    b"From: Bob Example <bob@example.test>\r\nTo: alice@example.test\r\n"
    b"Subject: hello\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nfirst body line\r\nsecond\r\n"
)
NESTED = (
    b"From: a@x.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\n"
    b"hello\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n"
    b"Content-Type: text/plain\r\n\r\nalt\r\n--i\r\nContent-Type: text/html\r\n\r\n<b>alt</b>\r\n"
    b"--i--\r\n--o--\r\n"
)
ATTACHED = (
    b"Subject: fwd\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nFrom: c@y.test\r\n\r\ninner body\r\n--b--\r\n"
)


def open_session(world, mailbox: str = "INBOX") -> Session:
    s = Session(make_factory(world))
    s.login()
    s.cmd(f"s SELECT {mailbox}")
    return s


@pytest.fixture
def alice(world):
    deliver(world, ALICE, SIMPLE)
    deliver(world, ALICE, NESTED)
    deliver(world, ALICE, ATTACHED)
    s = open_session(world)
    yield s
    s.close()


def test_fetch_flags_uid_and_size_come_from_the_index(alice):
    assert alice.cmd("b FETCH 1:2 (UID FLAGS RFC822.SIZE)") == (
        b"* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE %d)\r\n"
        b"* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE %d)\r\n"
        b"b OK FETCH completed\r\n" % (len(SIMPLE), len(NESTED))
    )


def test_uid_fetch_always_includes_uid(alice):
    assert alice.cmd("b UID FETCH 2 FLAGS") == (
        b"* 2 FETCH (UID 2 FLAGS (\\Recent))\r\nb OK FETCH completed\r\n"
    )


def test_uid_fetch_star_beyond_the_last_uid_names_the_last_message(alice):
    assert alice.cmd("b UID FETCH 99:* UID") == b"* 3 FETCH (UID 3)\r\nb OK FETCH completed\r\n"


def test_fetch_sequence_number_out_of_range_is_bad(alice):
    assert alice.cmd("b FETCH 7 FLAGS") == b"b BAD message sequence number out of range\r\n"


def test_fetch_envelope(alice):
    assert alice.cmd("b FETCH 1 ENVELOPE") == (
        b'* 1 FETCH (ENVELOPE ("Mon, 2 Feb 2026 10:00:00 +0000" "hello"'
        b' (("Bob Example" NIL "bob" "example.test")) (("Bob Example" NIL "bob" "example.test"))'
        b' (("Bob Example" NIL "bob" "example.test")) ((NIL NIL "alice" "example.test"))'
        b' NIL NIL NIL "<m1@example.test>"))\r\nb OK FETCH completed\r\n'
    )


def test_fetch_bodystructure_of_nested_multipart(alice):
    assert alice.cmd("b FETCH 2 BODYSTRUCTURE") == (
        b'* 2 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 5 1'
        b' NIL NIL NIL NIL)(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 3 1 NIL NIL'
        b' NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "i") NIL NIL NIL) "mixed" ("boundary" "o") NIL NIL NIL))\r\n'
        b"b OK FETCH completed\r\n"
    )


def test_a_structure_kept_by_an_older_reading_of_mime_is_read_again_and_replaced(world):
    """BODYSTRUCTURE is kept in the store once made; one kept before the reading of MIME
    changed (``messages.STRUCTURE_VERSION``: a multipart with its parent's boundary) would
    disagree with BODY[n], which is always read anew. It is made again, and replaced."""
    same = (
        b"Subject: hidden\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: multipart/alternative; boundary=B\r\n\r\n--B\r\n\r\nplain\r\n"
        b"--B--\r\n--B\r\nContent-Type: application/zip\r\n\r\nUEsDBA==\r\n--B--\r\n"
    )
    uid = deliver(world, ALICE, same)
    box = result(world.store.open(ALICE, "INBOX"))
    old = b'("text" "plain" NIL NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'  # as an older one kept it
    result(box.remember(messages.STRUCTURE_KEY, {uid: old}))
    result(box.remember(messages.BODY_KEY, {uid: old}))
    s = open_session(world)
    answer = s.cmd(b"b FETCH 1 (BODYSTRUCTURE BODY[2])")
    assert b'"application" "zip"' in answer and b"UEsDBA==" in answer
    assert old not in answer
    kept = result(box.derived([uid], messages.STRUCTURE_KEY))[uid]
    assert kept.startswith(messages.STRUCTURE_VERSION) and b'"zip"' in kept
    again = s.cmd(b"c FETCH 1 BODYSTRUCTURE")  # now from what was kept
    assert again.split(b"BODYSTRUCTURE ")[1].startswith(kept[1:])
    s.close()


def test_fetch_body_without_extension_data(alice):
    assert alice.cmd("b FETCH 1 BODY") == (
        b'* 1 FETCH (BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 25 2))\r\n'
        b"b OK FETCH completed\r\n"
    )


def test_fetch_nested_part_by_section_number(alice):
    assert alice.cmd("b FETCH 2 BODY.PEEK[2.2]") == (
        b"* 2 FETCH (BODY[2.2] {10}\r\n<b>alt</b>)\r\nb OK FETCH completed\r\n"
    )


def test_fetch_part_mime_header(alice):
    assert alice.cmd("b FETCH 2 BODY.PEEK[2.1.MIME]") == (
        b"* 2 FETCH (BODY[2.1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n)\r\n"
        b"b OK FETCH completed\r\n"
    )


def test_fetch_header_of_an_encapsulated_message(alice):
    assert alice.cmd("b FETCH 3 BODY.PEEK[2.HEADER]") == (
        b"* 3 FETCH (BODY[2.HEADER] {34}\r\nSubject: inner\r\nFrom: c@y.test\r\n\r\n)\r\n"
        b"b OK FETCH completed\r\n"
    )


def test_fetch_header_fields_and_not(alice):
    assert alice.cmd("b FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject TO)])") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT TO)] {42}\r\n"
        b"To: alice@example.test\r\nSubject: hello\r\n\r\n)\r\nb OK FETCH completed\r\n"
    )
    reply = alice.cmd("c FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (From Date Message-ID)])")
    assert b"To: alice@example.test\r\nSubject: hello\r\n\r\n)" in reply
    assert b"From:" not in reply


def test_a_section_label_is_made_of_the_names_not_the_commands_text(alice):
    """A field name sent as a literal came back as "{7}" with no octets after it (a reply no
    client can parse); quoted or 8-bit ones as written. The label is rebuilt: atoms, and
    strings where a name isn't one."""
    assert alice.send(b"b FETCH 1 (BODY.PEEK[1.HEADER.FIELDS ({7}\r\n") == (
        b"+ Ready for literal data\r\n"
    )
    reply = alice.send(b'Subject "x y" \xc3\xa9)])\r\n')
    assert reply.startswith(b'* 1 FETCH (BODY[1.HEADER.FIELDS (SUBJECT "X Y" {2}\r\n\xc3\xa9)] ')


def test_fetch_partial_returns_the_origin(alice):
    assert alice.cmd("b FETCH 1 BODY.PEEK[TEXT]<6.4>") == (
        b"* 1 FETCH (BODY[TEXT]<6> {4}\r\nbody)\r\nb OK FETCH completed\r\n"
    )


def test_fetch_rfc822_header_and_text(alice):
    reply = alice.cmd("b FETCH 1 (RFC822.HEADER RFC822.TEXT)")
    assert b"RFC822.HEADER {%d}\r\n" % (len(SIMPLE) - 25) in reply
    assert b"RFC822.TEXT {25}\r\nfirst body line\r\nsecond\r\n" in reply


def test_fetch_body_sets_seen_and_reports_flags(alice):
    reply = alice.cmd("b FETCH 1 BODY[TEXT]")
    assert reply == (
        b"* 1 FETCH (BODY[TEXT] {25}\r\nfirst body line\r\nsecond\r\n FLAGS (\\Recent \\Seen))\r\n"
        b"b OK FETCH completed\r\n"
    )
    assert alice.cmd("c FETCH 1 FLAGS") == (
        b"* 1 FETCH (FLAGS (\\Recent \\Seen))\r\nc OK FETCH completed\r\n"
    )


def test_fetch_peek_does_not_set_seen(alice):
    alice.cmd("b FETCH 1 BODY.PEEK[]")
    assert (
        alice.cmd("c FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS (\\Recent))\r\nc OK FETCH completed\r\n"
    )


def test_fetch_macro_fast(alice):
    assert alice.cmd("b FETCH 1 FAST").startswith(b'* 1 FETCH (FLAGS (\\Recent) INTERNALDATE "')


def test_fetch_unknown_attribute_is_bad(alice):
    assert alice.cmd("b FETCH 1 (FLAGS BOGUS)") == b"b BAD unknown fetch attribute BOGUS\r\n"


def test_store_plus_flags_answers_with_the_new_flags(alice):
    assert alice.cmd("b STORE 1:2 +FLAGS (\\Flagged $Label)") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Label)\r\n"
        b"* 1 FETCH (FLAGS (\\Recent \\Flagged $Label))\r\n"
        b"* 2 FETCH (FLAGS (\\Recent \\Flagged $Label))\r\n"
        b"b OK STORE completed\r\n"
    )


def test_keywords_past_the_limits_are_no_limit_and_change_nothing(alice, world):
    """A keyword longer than 100 octets, or one that takes the mailbox past 1,000, is ``NO
    [LIMIT]``; the keywords already there stay usable. Unbounded, 5 STOREs of 5,000 new
    keywords made FETCH FLAGS answer 700 KB for three messages."""
    long = "k" * 101
    assert alice.cmd(f"b STORE 1 +FLAGS ({long})") == (
        b"b NO [LIMIT] a keyword is at most 100 characters long\r\n"
    )
    assert alice.cmd(f"b APPEND INBOX ({long}) {{1+}}\r\nx") == (
        b"b NO [LIMIT] a keyword is at most 100 characters long\r\n"
    )
    at_most = alice.cmd("b STORE 1 +FLAGS.SILENT (" + "k" * 100 + ")")
    assert at_most.endswith(b"b OK STORE completed\r\n")
    words = " ".join(f"kw{n}" for n in range(999))  # 1,000 with the one above
    assert alice.cmd(f"c STORE 2 +FLAGS.SILENT ({words})").endswith(b"c OK STORE completed\r\n")
    assert alice.cmd("d STORE 3 +FLAGS.SILENT (kw999 one-too-many)") == (
        b"d NO [LIMIT] a mailbox may have at most 1000 keywords\r\n"
    )
    assert alice.cmd("d2 APPEND INBOX (one-too-many) {1+}\r\nx") == (  # the selected one
        b"d2 NO [LIMIT] a mailbox may have at most 1000 keywords\r\n"
    )
    assert b"OK [APPENDUID" in alice.cmd("d4 APPEND INBOX (kw5) {1+}\r\nx")  # one it has
    words = " ".join(f"w{n}" for n in range(1001))
    assert alice.cmd(f"d3 APPEND Trash ({words}) {{1+}}\r\nx") == (  # one APPEND alone
        b"d3 NO [LIMIT] a mailbox may have at most 1000 keywords\r\n"
    )
    assert alice.cmd("e STORE 3 +FLAGS.SILENT (kw5 \\Seen)") == b"e OK STORE completed\r\n"
    # removing a keyword no message has doesn't announce it (it did: "* FLAGS (... never-there)")
    assert alice.cmd("f STORE 1 -FLAGS.SILENT (kw1 never-there)") == b"f OK STORE completed\r\n"
    assert alice.cmd("g FETCH 3 FLAGS") == (
        b"* 3 FETCH (FLAGS (\\Recent \\Seen kw5))\r\ng OK FETCH completed\r\n"
    )
    assert alice.cmd("h STATUS INBOX (MESSAGES)").startswith(b'* STATUS "INBOX" (MESSAGES 4)')


def test_store_silent_answers_only_ok(alice):
    assert alice.cmd("b STORE 1 +FLAGS.SILENT (\\Seen)") == b"b OK STORE completed\r\n"


def test_uid_store_minus_flags(alice):
    alice.cmd("b STORE 3 FLAGS (\\Seen \\Answered)")
    assert alice.cmd("c UID STORE 3 -FLAGS (\\Seen)") == (
        b"* 3 FETCH (UID 3 FLAGS (\\Recent \\Answered))\r\nc OK STORE completed\r\n"
    )


@pytest.mark.backends("maildir")
def test_store_mirrors_flags_into_the_maildir_file_name(alice, world):
    import os

    alice.cmd("b STORE 1 +FLAGS.SILENT (\\Seen \\Flagged)")
    directory = world.store.staging_directory(ALICE).rsplit("/", 1)[0]
    names = os.listdir(os.path.join(directory, "cur"))
    assert any(n.endswith(":2,FS") for n in names)


def test_store_unchangedsince_reports_modified(alice):
    alice.cmd("b ENABLE CONDSTORE")
    reply = alice.cmd("c STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)")
    assert reply == b"c OK [MODIFIED 1] conditional STORE failed\r\n"


def test_store_in_examine_is_refused(world):
    deliver(world, ALICE, SIMPLE)
    s = Session(make_factory(world))
    s.login()
    s.cmd("s EXAMINE INBOX")
    assert s.cmd("b STORE 1 +FLAGS (\\Seen)") == b"b NO mailbox is read-only (EXAMINE)\r\n"


def test_search_by_header_flag_and_size(alice):
    alice.cmd("b STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert alice.cmd("c SEARCH FROM bob") == b"* SEARCH 1\r\nc OK SEARCH completed\r\n"
    assert alice.cmd("d SEARCH FLAGGED") == b"* SEARCH 2\r\nd OK SEARCH completed\r\n"
    assert alice.cmd("e SEARCH OR SUBJECT fwd LARGER 250") == (
        b"* SEARCH 2 3\r\ne OK SEARCH completed\r\n"
    )
    assert alice.cmd("f UID SEARCH NOT FLAGGED") == b"* SEARCH 1 3\r\nf OK SEARCH completed\r\n"


def test_search_text_and_body(alice):
    assert alice.cmd("b SEARCH BODY inner") == b"* SEARCH 3\r\nb OK SEARCH completed\r\n"
    assert alice.cmd('c SEARCH TEXT "second"') == b"* SEARCH 1\r\nc OK SEARCH completed\r\n"


def test_search_finds_words_in_base64_text(world):
    import base64

    body = base64.b64encode("Grüße aus Köln".encode())
    deliver(
        world,
        ALICE,
        b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n",
    )
    s = open_session(world)
    assert s.cmd("b SEARCH BODY Koln") == (b"* SEARCH\r\nb OK SEARCH completed\r\n")
    assert s.send("c SEARCH CHARSET UTF-8 BODY {5+}\r\nKöln\r\n".encode()) == (
        b"* SEARCH 1\r\nc OK SEARCH completed\r\n"
    )


def test_search_looks_in_decoded_text_parts_not_in_their_encoding(world):
    """What a reader sees is searched, not the transfer encoding: "=20" (a quoted-printable
    space) and letters of a base64 run match nothing; the words they encode do. A part that
    isn't encoded (the epilogue here) is still searched as written."""
    import base64

    encoded = base64.b64encode(b"zebra crossing\r\n")  # "emVicmEgY3Jvc3NpbmcNCg=="
    deliver(
        world,
        ALICE,
        b"Subject: enc\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9 au lait=20\r\n"
        b"--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"\r\n--b--\r\nepilogue words\r\n",
    )
    s = open_session(world)
    assert s.cmd('b SEARCH BODY "=20"') == b"* SEARCH\r\nb OK SEARCH completed\r\n"
    assert s.cmd('c SEARCH BODY "=C3"') == b"* SEARCH\r\nc OK SEARCH completed\r\n"
    assert s.cmd("d SEARCH BODY VicmEg") == b"* SEARCH\r\nd OK SEARCH completed\r\n"
    assert s.cmd('e SEARCH BODY "au lait"') == b"* SEARCH 1\r\ne OK SEARCH completed\r\n"
    assert s.cmd("f SEARCH BODY zebra") == b"* SEARCH 1\r\nf OK SEARCH completed\r\n"
    assert s.cmd("g SEARCH TEXT epilogue") == b"* SEARCH 1\r\ng OK SEARCH completed\r\n"
    assert s.send("h SEARCH CHARSET UTF-8 BODY {5+}\r\ncafé\r\n".encode()) == (
        b"* SEARCH 1\r\nh OK SEARCH completed\r\n"
    )


def test_search_sentsince_uses_the_date_header(alice):
    assert alice.cmd("b SEARCH SENTSINCE 1-Feb-2026 SENTBEFORE 3-Feb-2026") == (
        b"* SEARCH 1\r\nb OK SEARCH completed\r\n"
    )


def test_search_with_a_date_that_does_not_exist_is_bad(alice):
    assert alice.cmd("b SEARCH BEFORE 32-Jan-2020") == b"b BAD invalid date\r\n"
    assert alice.cmd("c SEARCH SINCE 29-Feb-2023") == b"c BAD invalid date\r\n"
    assert alice.cmd("d SEARCH SINCE 29-Feb-2024").endswith(b"d OK SEARCH completed\r\n")


def test_search_unknown_charset_is_badcharset(alice):
    assert alice.cmd("b SEARCH CHARSET KOI8-R ALL") == (
        b"b NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n"
    )


def test_esearch_return_min_max_count_all(alice):
    assert alice.cmd("b UID SEARCH RETURN (MIN MAX COUNT ALL) ALL") == (
        b'* ESEARCH (TAG "b") UID MIN 1 MAX 3 ALL 1:3 COUNT 3\r\nb OK SEARCH completed\r\n'
    )


def test_search_modseq(alice):
    alice.cmd("b STORE 2 +FLAGS.SILENT (\\Seen)")
    assert alice.cmd("c SEARCH MODSEQ 5") == (
        b"* OK [HIGHESTMODSEQ 5] highest modseq\r\n"  # the first CONDSTORE-enabling command
        b"* SEARCH 2 (MODSEQ 5)\r\nc OK SEARCH completed\r\n"
    )


def test_copy_answers_copyuid(alice):
    reply = alice.cmd("b COPY 1:2 Trash")
    assert re.fullmatch(rb"b OK \[COPYUID \d+ 1:2 1:2\] COPY completed\r\n", reply)
    assert b"MESSAGES 2" in alice.cmd("c STATUS Trash (MESSAGES)")


def test_copy_of_messages_another_session_expunged_is_no_expungeissued(alice, world):
    """Another session expunged them before this one was told: the copy copied nothing and
    said OK, the client believing them safe in Trash (RFC 2180 §4.4.1; Dovecot says NO)."""
    other = open_session(world)
    other.cmd("o1 STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    other.cmd("o2 EXPUNGE")
    reply = alice.cmd("b COPY 1:2 Trash")
    assert reply.endswith(
        b"b NO [EXPUNGEISSUED] some of the requested messages no longer exist\r\n"
    )
    assert b"MESSAGES 0" in alice.cmd("c STATUS Trash (MESSAGES)")
    assert re.fullmatch(
        rb"d OK \[COPYUID \d+ 3 1\] COPY completed\r\n", alice.cmd("d COPY 1 Trash")
    )
    other.close()


def test_copy_to_missing_mailbox_is_trycreate(alice):
    assert alice.cmd("b COPY 1 Nope") == b"b NO [TRYCREATE] no such mailbox\r\n"


def test_move_sends_copyuid_then_expunges(alice):
    reply = alice.cmd("b UID MOVE 2 Trash")
    assert re.fullmatch(
        rb"\* OK \[COPYUID \d+ 2 1\] moved\r\n\* 2 EXPUNGE\r\nb OK MOVE completed\r\n", reply
    )
    assert alice.cmd("c FETCH 2 UID") == b"* 2 FETCH (UID 3)\r\nc OK FETCH completed\r\n"


def test_expunge_removes_deleted_messages(alice, world):
    alice.cmd("b STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    assert alice.cmd("c EXPUNGE") == b"* 3 EXPUNGE\r\n* 1 EXPUNGE\r\nc OK EXPUNGE completed\r\n"
    assert world.inbox_files(ALICE) == [NESTED]


def test_uid_expunge_only_touches_the_given_uids(alice):
    alice.cmd("b STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    assert alice.cmd("c UID EXPUNGE 2") == b"* 2 EXPUNGE\r\nc OK EXPUNGE completed\r\n"


def test_close_expunges_silently_and_unselects(alice):
    alice.cmd("b STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert alice.cmd("c CLOSE") == b"c OK CLOSE completed\r\n"
    assert b"MESSAGES 2" in alice.cmd("d STATUS INBOX (MESSAGES)")


def test_unselect_does_not_expunge(alice):
    alice.cmd("b STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert alice.cmd("c UNSELECT") == b"c OK UNSELECT completed\r\n"
    assert b"MESSAGES 3" in alice.cmd("d STATUS INBOX (MESSAGES)")


# -- updates from elsewhere ---------------------------------------------------------------------


def test_delivery_is_announced_at_the_next_command(alice, world):
    deliver(world, ALICE, SIMPLE)
    assert alice.cmd("b NOOP") == b"* 4 EXISTS\r\n* 4 RECENT\r\nb OK NOOP completed\r\n"


def test_idle_sees_a_delivery_at_once(alice, world):
    assert alice.cmd("b IDLE") == b"+ idling\r\n"
    deliver(world, ALICE, SIMPLE)
    assert alice.take() == b"* 4 EXISTS\r\n* 4 RECENT\r\n"
    assert alice.cmd("DONE") == b"b OK IDLE terminated\r\n"


def test_idle_ends_with_bad_on_anything_but_done(alice):
    alice.cmd("b IDLE")
    assert alice.cmd("NOOP") == b"b BAD expected DONE\r\n"


def test_other_sessions_flag_change_is_sent_as_fetch(alice, world):
    other = open_session(world)
    other.cmd("b STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert alice.cmd("c NOOP") == (
        b"* 2 FETCH (FLAGS (\\Recent \\Flagged))\r\nc OK NOOP completed\r\n"
    )


def test_other_sessions_expunge_is_not_sent_during_fetch(alice, world):
    other = open_session(world)
    other.cmd("b STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd("c EXPUNGE")
    reply = alice.cmd("d FETCH 2:3 UID")
    assert b"EXPUNGE" not in reply
    assert reply.endswith(b"d OK FETCH completed\r\n")
    assert alice.cmd("e NOOP") == b"* 1 EXPUNGE\r\ne OK NOOP completed\r\n"
    assert alice.cmd("f FETCH 1 UID") == b"* 1 FETCH (UID 2)\r\nf OK FETCH completed\r\n"


def test_other_sessions_expunge_is_vanished_with_qresync(world):
    deliver(world, ALICE, SIMPLE)
    deliver(world, ALICE, SIMPLE)
    s = Session(make_factory(world))
    s.login()
    s.cmd("e ENABLE QRESYNC")
    s.cmd("s SELECT INBOX")
    other = open_session(world)
    other.cmd("b UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd("c UID EXPUNGE 1")
    assert s.cmd("d NOOP") == b"* VANISHED 1\r\nd OK NOOP completed\r\n"


def test_qresync_select_reports_vanished_and_changed(world):
    for _ in range(3):
        deliver(world, ALICE, SIMPLE)
    first = open_session(world)
    validity = int(re.search(rb"UIDVALIDITY (\d+)", first.cmd("x SELECT INBOX"))[1])
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", first.cmd("y SELECT INBOX"))[1])
    first.cmd("b UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    first.cmd("c UID EXPUNGE 1")
    first.cmd("d UID STORE 3 +FLAGS.SILENT (\\Seen)")
    s = Session(make_factory(world))
    s.login()
    s.cmd("e ENABLE QRESYNC")
    reply = s.cmd(f"f SELECT INBOX (QRESYNC ({validity} {modseq} 1:3))")
    assert b"* VANISHED (EARLIER) 1\r\n" in reply
    assert re.search(rb"\* 2 FETCH \(UID 3 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)\r\n", reply)


def test_fetch_changedsince_returns_only_changed_messages(alice):
    alice.cmd("b ENABLE CONDSTORE")
    alice.cmd("c STORE 2 +FLAGS.SILENT (\\Answered)")
    reply = alice.cmd("d FETCH 1:* (FLAGS) (CHANGEDSINCE 4)")
    assert re.fullmatch(
        rb"\* 2 FETCH \(FLAGS \(\\Recent \\Answered\) MODSEQ \(5\)\)\r\nd OK FETCH completed\r\n",
        reply,
    )


def test_large_message_is_streamed_exactly(world):
    big = b"Subject: big\r\n\r\n" + b"".join(b"line %07d\r\n" % i for i in range(60000))
    deliver(world, ALICE, big)
    s = open_session(world)
    reply = s.cmd("b FETCH 1 (UID BODY.PEEK[] RFC822.SIZE)")
    assert reply == (
        b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(big)
        + big
        + b" RFC822.SIZE %d)\r\nb OK FETCH completed\r\n" % len(big)
    )
    text = s.cmd("c FETCH 1 BODY.PEEK[TEXT]<100.20>")
    assert (
        text
        == b"* 1 FETCH (BODY[TEXT]<100> {20}\r\n" + big[116:136] + b")\r\nc OK FETCH completed\r\n"
    )


def test_large_message_body_fetch_sets_seen(world):
    big = b"Subject: big\r\n\r\n" + b"x" * 400000 + b"\r\n"
    deliver(world, ALICE, big)
    s = open_session(world)
    reply = s.cmd("b FETCH 1 RFC822.TEXT")
    assert reply.endswith(b" FLAGS (\\Recent \\Seen))\r\nb OK FETCH completed\r\n")
    assert len(reply) > 400000


def test_command_pipelined_after_done_is_answered_after_idle(alice):
    reply = alice.send(b"b IDLE\r\nDONE\r\nc NOOP\r\n")
    assert reply == b"+ idling\r\nb OK IDLE terminated\r\nc OK NOOP completed\r\n"


def test_expunge_with_condstore_reports_highestmodseq(alice):
    alice.cmd("b ENABLE CONDSTORE")
    alice.cmd("c STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert alice.cmd("d EXPUNGE") == (
        b"* 1 EXPUNGE\r\nd OK [HIGHESTMODSEQ 6] EXPUNGE completed\r\n"
    )


def test_keyword_on_a_delivered_message_updates_flags(alice, world):
    other = open_session(world)
    other.send(b"b APPEND INBOX ($Work) {3+}\r\nabc\r\n")
    reply = alice.cmd("c NOOP")
    assert reply.startswith(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Work)\r\n"
    )
    assert b"* 4 EXISTS\r\n" in reply


@pytest.mark.backends("maildir")  # empties the files behind the store's back
def test_bodystructure_is_cached_after_the_first_fetch(alice, world):
    import os

    first = alice.cmd("b FETCH 2 BODYSTRUCTURE")
    directory = os.path.dirname(world.store.staging_directory(ALICE))
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(directory, sub)):
            os.truncate(os.path.join(directory, sub, name), 0)  # the files can't answer now
    assert alice.cmd("c FETCH 2 BODYSTRUCTURE") == first.replace(b"b OK", b"c OK")


def test_large_message_with_bodystructure_and_body(world):
    big = (
        b"Subject: big\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\n"
        + b"y" * 300000
        + b"\r\n--z--\r\n"
    )
    deliver(world, ALICE, big)
    s = open_session(world)
    first = s.cmd("b FETCH 1 (BODYSTRUCTURE BODY.PEEK[])")
    assert b'"mixed" ("boundary" "z")' in first and big in first
    again = s.cmd("c FETCH 1 (BODYSTRUCTURE BODY.PEEK[])")
    assert again == first.replace(b"b OK", b"c OK")


def test_selected_mailbox_deleted_by_another_session_ends_the_session(world):
    s = Session(make_factory(world))
    s.login()
    s.cmd("b CREATE Temp")
    s.cmd("c SELECT Temp")
    other = open_session(world)
    other.cmd("d DELETE Temp")
    reply = s.cmd("e NOOP")
    assert reply.startswith(b"* BYE selected mailbox was deleted or renamed\r\n")
    assert s.transport.disconnecting


def test_an_empty_string_matches_the_messages_that_have_the_field(world):
    """RFC 3501 6.4.4: SUBJECT and FROM search the envelope's field; a message without one
    has nothing to contain even "" (as HEADER name "" says outright). Every message matched."""
    deliver(world, ALICE, SIMPLE)
    deliver(world, ALICE, b"To: alice@example.test\r\n\r\nno subject, no sender\r\n")
    s = open_session(world)
    assert s.cmd('b SEARCH SUBJECT ""').startswith(b"* SEARCH 1\r\n")
    assert s.cmd('c SEARCH FROM ""').startswith(b"* SEARCH 1\r\n")
    assert s.cmd('d SEARCH TO ""').startswith(b"* SEARCH 1 2\r\n")
    assert s.cmd('e SEARCH HEADER SUBJECT ""').startswith(b"* SEARCH 1\r\n")
    assert s.cmd('f SEARCH NOT SUBJECT ""').startswith(b"* SEARCH 2\r\n")
