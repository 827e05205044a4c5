"""The MIME splitter behind BODYSTRUCTURE and BODY[section]: exact byte ranges, and plausible
answers for broken messages instead of exceptions."""

from __future__ import annotations

from txmailhost.imap import mime


def test_trailing_semicolon_in_content_type_is_harmless():
    part = mime.parse(b"Content-Type: text/plain;\r\n\r\nhi\r\n")
    assert (part.maintype, part.subtype) == (b"text", b"plain")


def test_quoted_semicolon_stays_inside_the_parameter():
    _type, params = mime.parse_content_value(b'multipart/mixed; boundary="a;b"; x=1')
    assert params == [(b"boundary", b"a;b"), (b"x", b"1")]


def test_parameter_values_keep_their_case():
    part = mime.parse(b'Content-Type: application/pdf; name="Report-Q1.PDF"\r\n\r\nx')
    assert part.params == [(b"name", b"Report-Q1.PDF")]


def test_parts_are_exact_byte_ranges():
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\none\r\n--b\r\nX: y\r\n\r\ntwo\r\n--b--\r\nepilogue"
    root = mime.parse(raw)
    assert [c.body for c in root.children] == [b"one", b"two"]
    assert root.children[1].header == b"X: y\r\n\r\n"


def test_longer_boundary_starting_with_ours_is_not_a_delimiter():
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--bb\r\ny\r\n--b--\r\n"
    assert [c.body for c in mime.parse(raw).children] == [b"x\r\n--bb\r\ny"]


def test_multipart_without_boundary_is_served_as_text():
    root = mime.parse(b"Content-Type: multipart/mixed\r\n\r\nno parts\r\n")
    assert (root.maintype, root.children) == (b"text", [])


def test_missing_close_delimiter_ends_the_last_part_at_the_end():
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nunfinished"
    assert [c.body for c in mime.parse(raw).children] == [b"unfinished"]


def test_part_count_is_bounded():
    raw = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n" + b"--q\r\n\r\nx\r\n" * 5000
    assert len(mime.parse(raw).children) < mime.MAX_PARTS


def test_message_rfc822_part_numbers_index_the_inner_message():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner\r\n--b--\r\n"
    )
    root = mime.parse(raw)
    assert mime.find_part(root, [2]).message.header == b"Subject: in\r\n\r\n"
    assert mime.find_part(root, [2, 1]).body == b"inner"
    assert mime.find_part(root, [3]) is None


def test_envelope_of_group_and_missing_fields_does_not_fail():
    fields = mime.parse_header_fields(b"To: undisclosed-recipients:;\r\nSubject: x\r\n\r\n")
    assert mime.envelope(fields).startswith(b'(NIL "x" NIL NIL NIL ')


def test_a_syntactically_invalid_content_type_is_text_plain_us_ascii():
    """RFC 2045 5.2 (as Dovecot and mail readers do): "TEXT/PLAIN charset=US-ASCII" has no
    ";", so it is no type/subtype; it was served as the subtype "plain charset=us-ascii"."""
    for value in (b"TEXT/PLAIN charset=US-ASCII", b"text/ plain", b"text/plain/x", b"a b/c"):
        part = mime.parse(b"Content-Type: " + value + b"\r\n\r\nhello\r\n")
        assert (part.maintype, part.subtype, part.params) == (
            b"text",
            b"plain",
            [(b"charset", b"us-ascii")],
        ), value
    assert mime.bodystructure(mime.parse(b"Content-Type: TEXT/PLAIN charset=X\r\n\r\nhi\r\n")) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 4 1 NIL NIL NIL NIL)'
    )


def test_a_multipart_whose_boundary_never_comes_is_text_plain_us_ascii():
    raw = b'Content-Type: multipart/mixed; boundary="=A"\r\n\r\n--= A\r\n\r\nbody\r\n--= A--\r\n'
    part = mime.parse(raw)
    assert (part.maintype, part.subtype, part.params) == (
        b"text",
        b"plain",
        [(b"charset", b"us-ascii")],
    )
    assert part.body == raw.split(b"\r\n\r\n", 1)[1]  # the whole body, for the reader to see


# A multipart inside one with the same boundary (Outlook Express for the Mac wrote it; malware
# uses it so that some readers don't see the attachment): the inner one takes the delimiters
# up to its own close, and the attachment after it is the outer one's second part.
SAME_BOUNDARY = (
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
    b"Content-Type: multipart/alternative; boundary=B\r\n\r\n\r\n"
    b"--B\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    b"--B\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--B--\r\n\r\n"
    b"--B\r\nContent-Type: application/zip; name=x.zip\r\n\r\nUEsDBA==\r\n--B--\r\n"
)


def test_a_multipart_with_its_parents_boundary_takes_the_delimiters_up_to_its_close():
    root = mime.parse(SAME_BOUNDARY)
    kinds = [(c.maintype, c.subtype) for c in root.children]
    assert kinds == [(b"multipart", b"alternative"), (b"application", b"zip")]
    inner = root.children[0].children
    assert [(c.subtype, c.body) for c in inner] == [(b"plain", b"plain"), (b"html", b"<p>html</p>")]
    assert mime.find_part(root, [2]).body == b"UEsDBA=="
    assert mime.find_part(root, [1, 2]).body == b"<p>html</p>"


def test_same_boundary_nesting_two_deep_and_unclosed():
    deep = (
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: multipart/alternative; boundary=B\r\n\r\n--B\r\n\r\na\r\n--B\r\n\r\nb\r\n"
        b"--B--\r\n--B\r\n\r\nc\r\n--B--\r\n--B\r\n\r\nd\r\n--B--\r\n"
    )
    root = mime.parse(deep)
    assert [c.body for c in root.children[0].children[0].children] == [b"a", b"b"]
    assert root.children[0].children[1].body == b"c"
    assert root.children[1].body == b"d"
    unclosed = SAME_BOUNDARY.replace(b"<p>html</p>\r\n--B--", b"<p>html</p>")
    root = mime.parse(unclosed)  # the inner one never closes: it keeps the rest
    assert len(root.children) == 1
    assert [c.subtype for c in root.children[0].children] == [b"plain", b"html", b"zip"]


def test_repeated_recipient_fields_all_reach_the_envelope():
    fields = mime.parse_header_fields(
        b"From: a@example.test\r\nTo: b@example.test\r\nCc: c@example.test\r\n"
        b"CC: d@example.test, e@example.test\r\ncc: \r\nTo: f@example.test\r\n\r\n"
    )
    envelope = mime.envelope(fields)
    for who in (b'"b"', b'"c"', b'"d"', b'"e"', b'"f"'):
        assert who in envelope
    assert envelope.count(b'"a"') == 3  # From, and Sender and Reply-To from it
