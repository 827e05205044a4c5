"""THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256 §3) on header blocks, and the THREAD
response syntax. Several cases are Dovecot's imaptest thread files, whose expectations follow
the RFC's steps to the letter."""

from __future__ import annotations

from txmailhost.imap import thread
from txmailhost.imap.headerkeys import derive


def messages(*headers: bytes, dates: list[float] | None = None) -> list[thread.ThreadMessage]:
    dates = dates or [100.0] * len(headers)
    return [
        thread.ThreadMessage(seq, seq, date, derive(header + b"\r\n"))
        for seq, (header, date) in enumerate(zip(headers, dates, strict=True), 1)
    ]


def references(*headers: bytes, dates: list[float] | None = None) -> bytes:
    return thread.render(thread.references(messages(*headers, dates=dates)))


def test_replies_hang_under_their_parents_sorted_by_date():
    assert (
        references(
            b"Message-ID: <1@x>\r\n",
            b"Message-ID: <2@x>\r\nIn-Reply-To: <1@x>\r\n",
            b"Message-ID: <3@x>\r\nIn-Reply-To: <1@x>\r\n",
            b"Message-ID: <4@x>\r\nIn-Reply-To: <2@x>\r\n",
            dates=[400.0, 100.0, 100.0, 100.0],
        )
        == b"(1 (2 4)(3))"
    )


def test_a_parent_that_would_make_a_loop_is_refused_and_the_old_one_dropped():
    # imaptest "thread": b references a then c; c references b. Step 1.B breaks a->c, then
    # refuses b->c (a loop): c becomes a root with b under it.
    assert (
        references(
            b"Message-ID: <a@b>\r\n",
            b"Message-ID: <b@b>\r\nReferences: <a@b> <c@b>\r\n",
            b"Message-ID: <c@b>\r\nReferences: <b@b>\r\n",
            dates=[300.0, 100.0, 200.0],
        )
        == b"(3 2)(1)"
    )


def test_a_duplicate_message_id_belongs_to_the_first_message():
    headers = (
        b"Message-Id: <a@b>\r\n",
        b"Message-Id: <b@b>\r\nReferences: <a@b>\r\n",
        b"Message-Id: <c@b>\r\nReferences: <b@b>\r\n",
        b"Message-Id: <b@b>\r\nReferences: <a@b>\r\n",
    )
    assert references(*headers) == b"(1 (2 3)(4))"
    # with the first <b@b> gone, the duplicate takes its place (imaptest thread7)
    assert references(headers[0], headers[2], headers[3]) == b"(1 3 2)"


def test_a_missing_parent_of_one_reply_is_pruned():
    assert references(b"References: <gone@x>\r\n") == b"(1)"


def test_a_missing_parent_of_several_replies_stays_as_an_empty_root():
    assert references(b"References: <a@b>\r\n", b"References: <a@b>\r\n") == b"((1)(2))"


def test_roots_with_the_same_base_subject_are_merged():
    assert references(b"Subject: foo\r\n", b"Subject: Re: foo\r\n") == b"(1 2)"
    # two originals with one subject go under a new empty parent
    assert references(b"Subject: foo\r\n", b"Subject: foo\r\n") == b"((1)(2))"
    # an empty base subject never groups
    assert references(b"Subject: Re:\r\n", b"Subject: \r\n") == b"(1)(2)"


def test_a_reply_chain_deeper_than_the_recursion_limit_is_threaded():
    depth = 5000
    headers = [b"Message-ID: <0@x>\r\n"] + [
        b"Message-ID: <%d@x>\r\nIn-Reply-To: <%d@x>\r\n" % (i, i - 1) for i in range(1, depth)
    ]
    rendered = references(*headers, dates=[float(i) for i in range(depth)])
    assert rendered == b"(" + b" ".join(b"%d" % i for i in range(1, depth + 1)) + b")"


def test_ordered_subject_groups_by_base_subject_under_the_first_message():
    found = thread.ordered_subject(
        messages(
            b"Subject: a\r\n",
            b"Subject: b\r\n",
            b"Subject: Re: a\r\n",
            b"Subject: b\r\n",
            b"Subject: a\r\n",
            b"Subject: c\r\n",
            dates=[10.0, 5.0, 1.0, 2.0, 3.0, 4.0],
        )
    )
    # a: 3 (date 1), 5, 1; b: 4 (date 2), 2; c: 6 (date 4)
    assert thread.render(found) == b"(3 (5)(1))(4 2)(6)"


def test_render_of_nothing_is_empty():
    assert thread.render([]) == b""


def test_a_chain_delivered_newest_first_threads_the_same():
    depth = 3000
    headers = [b"Message-ID: <0@x>\r\n"] + [
        b"Message-ID: <%d@x>\r\nIn-Reply-To: <%d@x>\r\n" % (i, i - 1) for i in range(1, depth)
    ]
    newest_first = list(reversed(headers))
    dates = [float(depth - i) for i in range(depth)]
    rendered = references(*newest_first, dates=dates)
    assert rendered == b"(" + b" ".join(b"%d" % i for i in range(depth, 0, -1)) + b")"
