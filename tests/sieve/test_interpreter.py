"""Running scripts: actions, tests, comparators, match types, variables and limits, with the
examples of RFC 5228, 5229, 5231, 5233 and 5230."""

from __future__ import annotations

import email

import pytest

from txmailhost.mimenesting import MAX_DEPTH
from txmailhost.sieve.interpreter import INBOX, Interpreter, SieveRuntimeError
from txmailhost.sieve.language import compile_script
from txmailhost.sieve.message import MessageView

MESSAGE = (
    b"Return-Path: <bob+news@example.com>\r\n"
    b"From: Bob <bob+news@example.com>\r\n"
    b'To: alice@example.test, "Carol" <carol@Example.ORG>\r\n'
    b"Subject: =?utf-8?q?caf=C3=A9?= [acme-users] news\r\n"
    b"X-Spam-Score: 7\r\n"
    b"Sender: owner-ietf-mta-filters@imc.org\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello, this is the body. Make money fast!\r\n"
)


def run(script, message=MESSAGE, recipient="alice@example.test", **kwargs):
    view = MessageView.from_bytes(message, recipient)
    return Interpreter(compile_script(script), view, **kwargs).run()


def test_no_script_actions_mean_implicit_keep():
    assert run("").targets == [(INBOX, False)]


def test_fileinto_cancels_implicit_keep_and_copy_keeps_it():
    assert run('require "fileinto"; fileinto "a";').targets == [("a", False)]
    outcome = run('require ["fileinto", "copy"]; fileinto :copy "a";')
    assert outcome.targets == [(INBOX, False), ("a", False)]


def test_keep_and_fileinto_inbox_store_one_copy():
    assert run('require "fileinto"; keep; fileinto "inbox";').targets == [(INBOX, False)]


def test_discard_and_stop():
    assert run("discard; stop; keep;").targets == []
    assert run("discard;").discarded


def test_redirect_cancels_keep_and_is_deduplicated():
    outcome = run('redirect "x@example.net"; redirect "x@EXAMPLE.net"; redirect "X@example.net";')
    assert outcome.redirects == ["x@example.net", "X@example.net"]
    assert outcome.targets == []
    copy = run('require "copy"; redirect :copy "x@example.net";')
    assert copy.targets == [(INBOX, False)]


def test_redirects_are_limited():
    with pytest.raises(SieveRuntimeError, match="more than 2 redirects"):
        run('redirect "a@x.y"; redirect "b@x.y"; redirect "c@x.y";', max_redirects=2)


def test_redirect_to_something_not_an_address_is_an_error():
    with pytest.raises(SieveRuntimeError, match="not an address"):
        run('redirect "nobody";')


def test_steps_are_limited():
    script = "if true { keep; }" * 50
    with pytest.raises(SieveRuntimeError, match="more than 20 steps"):
        run(script, max_steps=20)


def test_rfc5228_section_9_example_sorts_by_sender():
    script = """
        require ["fileinto"];
        if header :is "Sender" "owner-ietf-mta-filters@imc.org" { fileinto "filter"; }
        elsif address :DOMAIN :is ["From", "To"] "example.com" { keep; }
        else { fileinto "personal"; }
    """
    assert run(script).targets == [("filter", False)]
    other = MESSAGE.replace(b"Sender: owner", b"Sender: someone")
    assert run(script, other).targets == [(INBOX, False)]
    assert run(script, other.replace(b"example.com", b"example.net")).targets == [
        ("personal", False)
    ]


def test_header_values_are_decoded_and_matched_case_insensitively():
    assert run('if header :contains "subject" "CAFÉ" { discard; }').targets == [(INBOX, False)]
    assert run('if header :contains "subject" "café" { discard; }').discarded
    assert run('if header :contains "subject" "ACME" { discard; }').discarded
    octet = 'if header :contains :comparator "i;octet" "subject" "ACME" { discard; }'
    assert not run(octet).discarded


def test_address_parts_and_subaddress():
    def found(test):
        return run(f'require "subaddress"; if {test} {{ discard; }}').discarded

    assert found('address :localpart :is "from" "bob+news"')
    assert found('address :user :is "from" "bob"')
    assert found('address :detail :is "from" "news"')
    assert found('address :domain :is "to" "example.org"')
    assert found('address :all :is "to" "carol@example.org"')
    assert not found('address :detail :is "to" ""')  # no separator: no detail at all


def test_address_tests_read_hostile_address_fields():
    # Comments nested past Python's recursion limit failed the script (its rules skipped);
    # a To of 200 recipients is past the parser's cap and still read (addresslist.py).
    nested = b"(" * 500 + b"x" + b")" * 500
    many = b", ".join(b"u%d@list.example" % n for n in range(200))
    message = (b"From: " + nested + b" <bob@example.com>\r\nTo: " + many
               + b"\r\nReturn-Path: " + nested + b" <bob@example.com>\r\n\r\nx\r\n")  # fmt: skip

    def found(test):
        return run(f"if {test} {{ discard; }}", message).discarded

    assert found('address :domain :is "from" "example.com"')
    assert found('address :all :is "to" "u199@list.example"')
    assert MessageView.from_bytes(message, "alice@example.test").sender == "bob@example.com"


def test_envelope_from_to_and_null_sender():
    def found(test, message=MESSAGE):
        return run(f'require "envelope"; if {test} {{ discard; }}', message).discarded

    assert found('envelope :is "from" "bob+news@example.com"')
    assert found('envelope :domain :is "to" "example.test"')
    null = MESSAGE.replace(b"<bob+news@example.com>\r\nFrom", b"<>\r\nFrom")
    assert found('envelope :is "from" ""', null)
    assert not found('envelope :localpart :is "from" ""', null)


def test_exists_size_allof_anyof_not():
    assert run('if exists ["From", "X-Spam-Score"] { discard; }').discarded
    assert not run('if exists ["From", "X-None"] { discard; }').discarded
    assert run("if size :over 100 { discard; }").discarded
    assert not run("if size :under 100 { discard; }").discarded
    assert run("if allof (true, not false) { discard; }").discarded
    assert not run("if anyof (false, not true) { discard; }").discarded


def test_matches_wildcards_and_escapes():
    def found(key):
        return run(f'if header :matches "subject" "{key}" {{ discard; }}').discarded

    assert found("caf? *")
    assert found("*news")
    assert not found("news*")
    assert not found("caf\\\\? *")  # an escaped ? matches only a question mark


def test_relational_and_ascii_numeric():
    base = 'require ["relational", "comparator-i;ascii-numeric"]; '
    value = base + 'if header :value "{}" :comparator "i;ascii-numeric" "x-spam-score" "{}"'
    assert run(value.format("ge", "7") + " { discard; }").discarded
    assert not run(value.format("gt", "7") + " { discard; }").discarded
    count = base + 'if address :count "eq" :comparator "i;ascii-numeric" "to" "2" { discard; }'
    assert run(count).discarded
    # a value without digits is greater than any number (RFC 4790 9.1)
    assert run(
        value.format("gt", "100").replace("x-spam-score", "subject") + " { discard; }"
    ).discarded


@pytest.mark.parametrize(
    ("header", "relation", "key", "matched"),
    [
        ("9" * 4301, "ge", "5", True),  # int() refuses past 4,300 digits: the script crashed
        ("9" * 5000, "gt", "9" * 4999, True),
        ("0007", "eq", "7", True),  # leading zeros count for nothing
        ("0" * 5000 + "1", "lt", "2", True),
        ("12abc", "eq", "12", True),  # the leading digits
    ],
)
def test_ascii_numeric_compares_numbers_of_any_length(header, relation, key, matched):
    """RFC 4790 9.1 bounds no number; a sender's header of 4,301 digits aborted the script
    and the user's rules were skipped for that mail."""
    script = (
        'require ["relational", "comparator-i;ascii-numeric"]; '
        f'if header :value "{relation}" :comparator "i;ascii-numeric" "x-num" "{key}" '
        "{ discard; }"
    )
    message = b"X-Num: " + header.encode() + b"\r\n\r\nbody\r\n"
    assert run(script, message).discarded is matched


def test_rfc5229_variables_from_matches():
    script = """
        require ["fileinto", "variables"];
        if header :matches "Subject" "* [*] *" {
            set :lower "list" "${2}";
            fileinto "lists.${list}";
        }
    """
    assert run(script).targets == [("lists.acme-users", False)]


def test_set_modifiers():
    script = """
        require ["variables", "fileinto"];
        set :upperfirst "a" "hello"; set :length "n" "${a}"; set :quotewildcard "q" "a*b";
        fileinto "${a}-${n}-${q}-${unknown}";
    """
    assert run(script).targets == [("Hello-5-a\\*b-", False)]


def test_body_test():
    assert run('require "body"; if body :contains "money" { discard; }').discarded
    assert not run('require "body"; if body :contains "nothing" { discard; }').discarded
    raw = 'require "body"; if body :raw :contains "body." { discard; }'
    assert run(raw).discarded


def test_reject_conflicts_with_keep():
    outcome = run('require "reject"; reject "no thanks";')
    assert outcome.reject == "no thanks" and outcome.targets == []
    with pytest.raises(SieveRuntimeError, match="reject"):
        run('require "reject"; keep; reject "no";')


def test_vacation_request_carries_its_arguments():
    outcome = run(
        'require ["vacation", "vacation-seconds"];'
        ' vacation :seconds 60 :subject "Away" :addresses ["a@x.y"] :handle "h" "I am away";'
    )
    vacation = outcome.vacation
    assert vacation is not None
    assert (vacation.seconds, vacation.subject, vacation.addresses, vacation.handle) == (
        60,
        "Away",
        ["a@x.y"],
        "h",
    )
    assert run('require "vacation"; vacation "x";').vacation.seconds == 7 * 86400
    assert outcome.targets == [(INBOX, False)]


def test_mailboxexists_asks_the_store():
    script = 'require ["mailbox", "fileinto"]; if mailboxexists "Lists" { fileinto "Lists"; }'
    assert run(script, mailbox_exists=lambda name: name == "Lists").targets == [("Lists", False)]
    assert run(script).targets == [(INBOX, False)]


def test_rfc5260_date_and_currentdate():
    import datetime

    now = datetime.datetime(2026, 12, 4, 10, 30, tzinfo=datetime.UTC)
    dated = MESSAGE.replace(b"Subject:", b"Date: Fri, 04 Dec 2026 23:30:00 -0500\r\nSubject:")
    base = 'require ["date", "relational", "fileinto"]; '

    def found(test, message=dated):
        view = MessageView.from_bytes(message, "alice@example.test")
        script = compile_script(base + f"if {test} {{ discard; }}")
        return Interpreter(script, view, now=now).run().discarded

    assert found('currentdate :zone "+0000" :value "le" "date" "2026-12-24"')
    assert not found('currentdate :zone "+0000" :value "gt" "date" "2026-12-24"')
    assert found('currentdate :zone "+0100" :is "hour" "11"')
    assert found('date :originalzone :is "date" "date" "2026-12-04"')
    assert found('date :zone "+0000" :is "date" "date" "2026-12-05"')
    assert found('date :zone "+0000" :is "date" "weekday" "6"')  # a Saturday in UTC
    assert found('date :originalzone :is "date" "zone" "-0500"')
    assert not found('date :is "date" "year" "2026"', MESSAGE)  # no Date field: nothing matches
    with pytest.raises(Exception, match="unknown date-part"):
        compile_script(base + 'if currentdate :is "fortnight" "1" { keep; }')


def _with_includes(main, scripts, message=MESSAGE):
    compiled = {key: compile_script(text) for key, text in scripts.items()}
    view = MessageView.from_bytes(message, "alice@example.test")
    return Interpreter(
        compile_script(main), view, loader=lambda loc, name: compiled.get((loc, name))
    ).run()


def test_rfc6609_include_personal_and_global_with_return_and_stop():
    lists = 'require ["include", "fileinto"]; if true { fileinto "Lists"; return; } discard;'
    scripts = {
        ("personal", "lists"): lists,
        ("global", "spam"): 'require "fileinto"; fileinto "Spam"; stop;',
    }
    outcome = _with_includes(
        'require ["include", "fileinto"]; include "lists"; include :global "spam"; fileinto "X";',
        scripts,
    )
    assert outcome.targets == [("Lists", False), ("Spam", False)]  # stop ended everything


def test_include_once_optional_missing_and_recursion():
    once = {("personal", "a"): 'require "fileinto"; fileinto "A";'}
    main = 'require "include"; include :once "a"; include :once "a"; include :optional "none";'
    assert _with_includes(main, once).targets == [("A", False)]
    with pytest.raises(SieveRuntimeError, match="no personal script 'none'"):
        _with_includes('require "include"; include "none";', {})
    loop = {("personal", "b"): 'require "include"; include "b";'}
    with pytest.raises(SieveRuntimeError, match="recursive"):
        _with_includes('require "include"; include "b";', loop)


def test_include_global_variables_are_shared_and_others_are_not():
    scripts = {
        ("personal", "set"): 'require ["include", "variables"]; global "folder"; set "folder" "G";'
        ' set "mine" "M";',
    }
    main = (
        'require ["include", "variables", "fileinto"]; global "folder"; include "set";'
        ' fileinto "${folder}-${mine}";'
    )
    assert _with_includes(main, scripts).targets == [("G-", False)]


def test_rfc5260_index_selects_one_field_occurrence():
    received = (
        b"Received: from a.example by b.example; Fri, 04 Dec 2026 10:00:00 +0000\r\n"
        b"Received: from c.example by a.example; Thu, 03 Dec 2026 10:00:00 +0000\r\n"
        b"To: one@example.test\r\nTo: two@example.test, three@example.test\r\n"
    ) + MESSAGE
    base = 'require ["index", "date", "fileinto"]; '

    def found(test):
        return run(base + f"if {test} {{ discard; }}", received).discarded

    assert found('header :index 1 :contains "received" "from a.example"')
    assert not found('header :index 1 :contains "received" "from c.example"')
    assert found('header :index 1 :last :contains "received" "from c.example"')
    assert not found('header :index 3 :contains "received" "from"')
    assert found('address :index 2 :is "to" "three@example.test"')
    assert not found('address :index 1 :is "to" "three@example.test"')
    assert found('date :index 1 :last :zone "+0000" :is "received" "day" "03"')
    with pytest.raises(Exception, match=":last needs :index"):
        compile_script(base + 'if header :last :is "x" "y" { keep; }')


def _scored(status: str, extra: bytes = b"") -> bytes:
    """A message as our spam filter leaves it (its field on top), plus what the sender wrote."""
    return (
        b"Return-Path: <bob@example.com>\r\nX-Spam-Status: " + status.encode() + b"\r\n"
        + extra + b"Subject: s\r\n\r\nbody\r\n"
    )  # fmt: skip


SPAM_AT_LEAST = (
    'require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];'
    ' if spamtest :value "ge" :comparator "i;ascii-numeric" "%s" { fileinto "Junk"; }'
)


@pytest.mark.parametrize(
    "status, level, junk",
    [
        ("Yes, score=7.5 required=5.0 tests=X", "6", True),  # past the threshold
        ("No, score=4.0 required=5.0 tests=X", "6", False),
        ("No, score=-2.0 required=5.0 tests=X", "2", False),  # 1: surely not spam
        ("Yes, score=30.0 required=5.0 tests=X", "10", True),
        ("Yes, score=7.0 required=5.0 tests=X", "10", False),  # 10 compared as a number (8)
    ],
)
def test_spamtest_reads_our_filters_verdict(status, level, junk):
    outcome = run(SPAM_AT_LEAST % level, message=_scored(status))
    assert outcome.targets == ([("Junk", False)] if junk else [(INBOX, False)])


def test_spamtest_reads_only_the_topmost_status_and_zero_means_not_scored():
    # the sender's own "No, score=-50" below ours changes nothing
    forged = b"X-Spam-Status: No, score=-50.0 required=5.0\r\n"
    message = _scored("Yes, score=9.0 required=5.0 tests=X", forged)
    assert run(SPAM_AT_LEAST % "6", message=message).targets == [("Junk", False)]
    unscored = b"Subject: s\r\n\r\nbody\r\n"
    script = 'require "spamtest"; if spamtest "0" { discard; }'
    assert run(script, message=unscored).discarded


RECEIVED = b"Received: from x.example.com by mx.example.test (txmailhost) with ESMTP id 1\r\n"


def test_spamtest_and_virustest_read_no_field_below_our_received():
    # Mail no filter scored (authenticated, or a chain without one) keeps what the sender
    # wrote, below our Received:; it is never a verdict of ours.
    forged = (
        b"Return-Path: <bob@example.com>\r\n" + RECEIVED
        + b"X-Spam-Status: Yes, score=50.0 required=5.0 tests=X\r\n"
        b"X-Virus-Scanned: clamd on mx.example.test\r\nSubject: s\r\n\r\nbody\r\n"
    )  # fmt: skip
    assert run(SPAM_AT_LEAST % "6", message=forged).targets == [(INBOX, False)]
    assert run('require "spamtest"; if spamtest "0" { discard; }', message=forged).discarded
    assert run('require "virustest"; if virustest "0" { discard; }', message=forged).discarded
    # ours, on top of our Received:, is read past a "No" the sender wrote below it
    ours = _scored(
        "Yes, score=9.0 required=5.0 tests=X",
        RECEIVED + b"X-Spam-Status: No, score=-50.0 required=5.0\r\n",
    )
    assert run(SPAM_AT_LEAST % "6", message=ours).targets == [("Junk", False)]
    scanned = (
        b"X-Virus-Scanned: clamd on mx.example.test\r\n" + RECEIVED + b"Subject: s\r\n\r\nb\r\n"
    )
    assert run('require "virustest"; if virustest "1" { discard; }', message=scanned).discarded


def test_spamtest_percent_puts_the_threshold_at_50_and_is_empty_unscored():
    script = (
        'require ["spamtestplus", "relational", "comparator-i;ascii-numeric"];'
        ' if spamtest :percent :value "eq" :comparator "i;ascii-numeric" "50" { discard; }'
    )
    assert run(script, message=_scored("Yes, score=5.0 required=5.0 tests=X")).discarded
    assert not run(script, message=b"Subject: s\r\n\r\nb\r\n").discarded
    with pytest.raises(Exception, match="spamtestplus"):
        compile_script('require "spamtest"; if spamtest :percent "50" { discard; }')


def test_virustest_is_1_when_clamd_scanned_and_0_otherwise():
    script = 'require "virustest"; if virustest "1" { discard; }'
    scanned = b"X-Virus-Scanned: clamd on mx.example.test\r\nSubject: s\r\n\r\nb\r\n"
    assert run(script, message=scanned).discarded
    unavailable = b"X-Virus-Scanned: unavailable\r\nSubject: s\r\n\r\nb\r\n"
    assert not run(script, message=unavailable).discarded
    assert run('require "virustest"; if virustest "0" { discard; }', message=unavailable).discarded


@pytest.mark.parametrize(
    "date",
    [
        b"Sun, 31 Dec 9999 23:59:59 -1200",  # in UTC, or any zone east of -1200: year 10000
        b"Mon, 1 Jan 9999999999999999999999 00:00:00 +0000",
        b"Mon, 1 Jan 2026 00:00:00 -99999999999999999999",
    ],
)
@pytest.mark.parametrize("zone", ["", ':zone "+1400" '])
def test_a_date_that_cant_be_used_matches_nothing_and_the_script_goes_on(date, zone):
    """RFC 5260 4: no match, and the rest of the script still runs (no runtime error)."""
    dated = MESSAGE.replace(b"Subject:", b"Date: " + date + b"\r\nSubject:")
    script = (
        'require ["date", "relational", "fileinto"];'
        f' if date {zone}:value "ge" "date" "year" "2000" {{ fileinto "Dated"; stop; }}'
        ' if header :contains "subject" "news" { discard; }'
    )
    assert run(script, dated).discarded


def _nested(depth: int) -> bytes:
    """A message of ``depth`` multiparts, each the only part of the one around it."""
    head = b"From: a@example.net\r\nSubject: deep\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nneedle" + closing + b"\r\n"


@pytest.mark.parametrize("depth", [300, 3000])
@pytest.mark.parametrize("transform", [":raw", ":text", ':content "text"'])
def test_body_of_a_deeply_nested_message_is_searched_not_an_error(depth, transform):
    """Python's MIME parser and printer recurse once per level: ``body :raw`` reads the
    octets, and a message too deep to parse is searched as one text part."""
    script = f'require "body"; if body {transform} :contains "needle" {{ discard; }}'
    assert run(script, _nested(depth)).discarded
    assert not run(script.replace("needle", "haystack"), _nested(depth)).discarded


def test_body_of_mime_nested_deeper_than_mail_is_searched_as_one_text_part(monkeypatch):
    """The parser tries every enclosing boundary on every line: 300 levels around 20,000
    lines took 0.8 s, a few MiB a thousand levels deep minutes. It is stopped at
    ``MAX_DEPTH`` levels and the body searched as one text part; a message nested as mail
    is, and one whose text merely says ``boundary=``, are parsed as MIME."""
    flat: list[bytes] = []
    real = email.message_from_bytes

    def recorded(octets: bytes, *args, **kwargs):
        flat.append(octets[:39])
        return real(octets, *args, **kwargs)

    monkeypatch.setattr(email, "message_from_bytes", recorded)
    script = 'require "body"; if body :content "text" :contains "needle" { discard; }'
    padded = _nested(300).replace(b"needle", b"x\r\n" * 20_000 + b"needle")
    assert run(script, padded).discarded
    assert flat == [b"Content-Type: text/plain; charset=utf-8"]
    flat.clear()
    assert run(script, _nested(MAX_DEPTH - 1)).discarded
    wordy = _nested(2).replace(b"needle", b'boundary="x" ' * 100 + b"needle")
    assert run(script, wordy).discarded
    assert flat == []


def test_body_raw_is_the_body_as_received():
    script = 'require "body"; if body :raw :is "%s" { discard; }'
    body = "Hello, this is the body. Make money fast!"
    assert run(script % (body + "\r\n")).discarded
    assert run(script % (body + "\n"), MESSAGE.replace(b"\r\n", b"\n")).discarded


def test_body_searches_the_parts_behind_a_reused_boundary():
    """A multipart inside one with the same boundary: Python's parser leaves the parts after
    the inner close delimiter in an epilogue; Pigeonhole (and our IMAP) show them, and
    ``body`` searches them."""
    message = (
        b"From: a@example.net\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: multipart/alternative; boundary=B\r\n\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee the invoice\r\n--B--\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nwire the money today\r\n--B--\r\n"
    )
    script = 'require "body"; if body :text :contains "wire the money" { discard; }'
    assert run(script, message).discarded
    assert run(script.replace(":text", ':content "text/plain"'), message).discarded
