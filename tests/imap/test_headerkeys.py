"""The values SORT and THREAD take from a header (RFC 5256 §2.2 and §3, RFC 5957)."""

from __future__ import annotations

from txmailhost.imap import headerkeys
from txmailhost.imap.basesubject import base_subject
from txmailhost.imap.headerkeys import HeaderKeys, derive, header_text


def test_sent_date_is_the_date_field_in_utc():
    keys = derive(b"Date: Fri, 22 Feb 2008 02:00:00 +0200\r\n\r\n")
    assert keys.sent == 1203638400.0  # 2008-02-22 00:00:00 UTC


def test_missing_or_broken_date_leaves_the_sent_date_to_internaldate():
    assert derive(b"Subject: x\r\n\r\n").sent is None
    assert derive(b"Date: yesterday-ish\r\n\r\n").sent is None


def test_address_keys_are_the_first_mailbox_upper_cased():
    keys = derive(b"From: Bob <bob@example.test>, carol@example.test\r\nTo: d@x\r\n\r\n")
    assert (keys.from_, keys.to, keys.cc) == ("BOB", "D", "")


def test_a_group_counts_as_its_name():
    # as the ENVELOPE shows it: (NIL NIL "user2" NIL) comes first (imaptest sort-addresses)
    assert derive(b"Cc: user2: blah@domain1.org;\r\n\r\n").cc == "USER2"
    assert derive(b"To: empty:;\r\n\r\n").display_to == "EMPTY"


def test_display_is_the_decoded_name_else_the_address():
    assert derive(b"From: =?iso-8859-1?q?foo_aar?= <e@f.g>\r\n\r\n").display_from == "FOO AAR"
    assert derive(b"From: b@c.d\r\n\r\n").display_from == "B@C.D"
    assert derive(b"From: d\r\n\r\n").display_from == "D"


def test_references_fall_back_to_the_first_in_reply_to_id():
    keys = derive(b"Message-ID: <m@x>\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\n")
    assert (keys.message_id, keys.references) == ("m@x", ("p@x",))
    keys = derive(b"References: <a@x>\r\n <b@x> junk <c@x>\r\nIn-Reply-To: <z@x>\r\n\r\n")
    assert keys.references == ("a@x", "b@x", "c@x")


def test_keys_round_trip_through_their_stored_form():
    keys = derive(b"Subject: Re: caf\xc3\xa9\r\nReferences: <a@x>\r\n\r\n")
    assert HeaderKeys.decode(keys.encode()) == keys
    assert HeaderKeys.decode(b"not json") is None


def test_a_megabyte_crafted_subject_reaches_base_subject_cut_to_its_first_8_kb(monkeypatch):
    # 1 MB of folded "(fwd)" lines: the first base subject took 11 s of the reactor for 80 KB,
    # quadratic; the cut bounds the work whatever the sender wrote (the stdlib's RFC 2047
    # decoder, before base_subject, is quadratic too).
    given = []
    monkeypatch.setattr(headerkeys, "base_subject", lambda text: given.append(text) or ("", 0))
    derive(b"Subject: x" + b"\r\n (fwd)" * 150_000 + b"\r\n\r\n")
    (text,) = given
    assert len(text) <= headerkeys.FIELD_OCTETS
    assert base_subject(text) == ("x", True)


def test_a_field_counts_by_its_first_8_kb():
    assert header_text(b"a" * 10_000) == "a" * headerkeys.FIELD_OCTETS
    long_tail = derive(b"Subject: Re: " + b"b" * 8188 + b"c" * 100 + b"\r\n\r\n")
    assert (long_tail.subject, long_tail.reply) == ("B" * 8188, True)
    assert derive(b"Subject: Re: =?utf-8?q?caf=C3=A9?=\r\n\r\n").subject == "CAFÉ"


def test_the_thread_root_is_what_derive_finds():
    for header in (
        b"Message-ID: <m@x>\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\n",
        b"Message-ID: <m@x>\r\nMessage-ID: <n@x>\r\n\r\n",
        b"References: <a@x>\r\n <b@x>\r\nIn-Reply-To: <b@x>\r\n\r\n",
    ):
        keys = derive(header)
        root = keys.references[0] if keys.references else keys.message_id
        assert headerkeys.thread_root(header) == root
    assert headerkeys.thread_root(b"Subject: none\r\n\r\n") == ""
