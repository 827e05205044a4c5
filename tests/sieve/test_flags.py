"""imap4flags (RFC 5232): flag lists, the internal variable, setflag/addflag/removeflag,
hasflag, and the flags ``keep``, ``fileinto`` and the implicit keep store copies with, with
the examples of RFC 5232 and what Pigeonhole does where the RFC leaves it open."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.sieve import flags
from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.interpreter import INBOX, Interpreter
from txmailhost.sieve.language import compile_script
from txmailhost.sieve.message import MessageView

MESSAGE = (
    b"From: boss@frobnitzm.example.edu\r\nTo: alice@example.test\r\n"
    b"Disposition-Notification-To: mel@example.com\r\nSubject: report\r\n\r\nbody\r\n"
)


def run(script: str, message: bytes = MESSAGE):
    view = MessageView.from_bytes(message, "alice@example.test", "bob@example.com")
    return Interpreter(compile_script(script), view, mailbox_exists=lambda name: True).run()


def stored(script: str, message: bytes = MESSAGE) -> dict[str, frozenset[str]]:
    """mailbox -> the flags its copy is stored with, for every mailbox a copy goes into."""
    outcome = run(script, message)
    return {name: outcome.flags.get(name, frozenset()) for name, _create in outcome.targets}


# -- flag lists (RFC 5232 2) ---------------------------------------------------------------------


def test_strings_are_split_on_spaces_empty_strings_and_extra_spaces_count_for_nothing():
    assert flags.parse(["\\Seen  $Label1 ", "", "  Junk"]) == ["\\Seen", "$Label1", "Junk"]


def test_a_flag_already_listed_is_not_added_again_whatever_its_case():
    assert flags.parse(["\\seen \\SEEN Work", "work"]) == ["\\seen", "Work"]


def test_invalid_flags_and_flags_no_client_may_set_are_ignored():
    given_flags = ["\\Recent \\Bogus foo(bar) a%b \\Deleted caf\u00e9 ok \\answered x]y"]
    assert flags.parse(given_flags) == ["\\Deleted", "ok", "\\answered"]


def test_a_keyword_longer_than_imap_takes_is_ignored():
    """IMAP refuses keywords over 100 octets (``imap/keywords.py``); delivery must not make
    them either, or a script could grow a mailbox's flags without end."""
    assert flags.parse(["k" * 101, "k" * 100]) == ["k" * 100]


def test_the_store_gets_system_flags_spelt_as_imap_spells_them():
    assert flags.for_store(["\\seen", "\\FLAGGED", "$Label1"]) == {
        "\\Seen",
        "\\Flagged",
        "$Label1",
    }


def test_remove_takes_flags_away_without_regard_to_case():
    assert flags.remove("\\Seen Work $Label1", ["\\SEEN work"]) == "$Label1"


@given(st.lists(st.text(max_size=20), max_size=5))
def test_a_parsed_list_holds_only_valid_flags_each_once(strings):
    parsed = flags.parse(strings)
    assert all(flags.valid(flag) for flag in parsed)
    assert len({flag.lower() for flag in parsed}) == len(parsed)
    assert flags.parse([" ".join(parsed)]) == parsed  # a variable's value reads back the same


# -- the actions and the internal variable (RFC 5232 3, 5) ---------------------------------------


def test_no_flag_action_means_no_flags():
    assert stored('require "imap4flags";') == {INBOX: frozenset()}


def test_the_implicit_keep_stores_the_flags_the_internal_variable_holds_at_the_end():
    script = 'require "imap4flags"; addflag "\\\\Seen"; addflag "$Label1"; removeflag "\\\\seen";'
    assert stored(script) == {INBOX: {"$Label1"}}


def test_setflag_replaces_addflag_adds_removeflag_removes():
    script = """require "imap4flags";
        setflag "a b"; addflag ["c", "a"]; setflag "\\\\Flagged $Label2"; addflag "x";
        removeflag "x y";"""
    assert stored(script) == {INBOX: {"\\Flagged", "$Label2"}}


def test_keep_and_fileinto_store_the_internal_flags_at_that_moment():
    script = """require ["imap4flags", "fileinto"];
        addflag "\\\\Flagged"; fileinto "Boss"; addflag "\\\\Seen"; keep; setflag "late";"""
    assert stored(script) == {"Boss": {"\\Flagged"}, INBOX: {"\\Flagged", "\\Seen"}}


def test_flags_argument_overrides_the_internal_variable_for_that_action_only():
    script = """require ["imap4flags", "fileinto", "copy"];
        setflag "\\\\Seen";
        fileinto :copy :flags ["\\\\Flagged", "$Label1"] "Boss";
        fileinto :copy :flags "" "Plain";"""
    assert stored(script) == {
        INBOX: {"\\Seen"},
        "Boss": {"\\Flagged", "$Label1"},
        "Plain": frozenset(),
    }


def test_a_mailbox_stored_twice_is_one_copy_with_the_last_actions_flags():
    # RFC 5228 2.10.3 makes it one copy; its flags are the last action's, as in Pigeonhole.
    script = """require ["imap4flags", "fileinto"];
        fileinto :flags "\\\\Seen" "W"; fileinto :flags "\\\\Flagged" "W";
        keep :flags "b"; fileinto :flags "a" "INBOX";"""
    assert stored(script) == {"W": {"\\Flagged"}, INBOX: {"a"}}


def test_an_explicit_keep_fixes_inbox_flags_and_the_implicit_keep_adds_none():
    script = 'require "imap4flags"; addflag "\\\\Seen"; keep; removeflag "\\\\Seen"; addflag "x";'
    assert stored(script) == {INBOX: {"\\Seen"}}


def test_discard_stores_nothing_whatever_the_flags():
    assert stored('require "imap4flags"; setflag "\\\\Seen"; discard;') == {}


def test_rfc_5232_example_flags_in_variables_follow_the_messages():
    """RFC 5232 6 (examples), with the variables extension."""
    script = """require ["imap4flags", "fileinto", "variables"];
        if header :contains "from" "boss@frobnitzm.example.edu" {
            setflag "flagvar" "\\\\Flagged";
            fileinto :flags "${flagvar}" "INBOX.From Boss";
        }
        if header :contains "Disposition-Notification-To" "mel@example.com" {
            addflag "flagvar" "$MDNRequired";
        }
        if header :contains "from" "imap@cac.washington.example.edu" {
            removeflag "flagvar" "$MDNRequired";
            fileinto :flags "${flagvar}" "INBOX.imap-list";
        }"""
    assert stored(script) == {"INBOX.From Boss": {"\\Flagged"}}
    imap_list = MESSAGE.replace(b"boss@frobnitzm", b"imap@cac.washington")
    assert stored(script, imap_list) == {"INBOX.imap-list": frozenset()}


def test_named_variables_leave_the_internal_variable_alone_and_read_as_flag_lists():
    script = """require ["imap4flags", "variables", "fileinto"];
        setflag "flagvar" "\\\\Deleted  \\\\Answered";
        addflag "flagvar" ["\\\\deleted", "Work"];
        removeflag "flagvar" "\\\\Answered";
        if string :is "${flagvar}" "\\\\Deleted Work" { fileinto "Exact"; }"""
    assert stored(script) == {"Exact": frozenset()}


def test_a_variable_name_needs_the_variables_extension():
    with pytest.raises(SieveSyntaxError, match="variables"):
        compile_script('require "imap4flags"; setflag "flagvar" "x";')
    with pytest.raises(SieveSyntaxError, match="variables"):
        compile_script('require "imap4flags"; if hasflag "flagvar" "x" { keep; }')
    with pytest.raises(SieveSyntaxError, match="variable name"):
        compile_script('require ["imap4flags", "variables"]; addflag "not a name" "x";')


def test_flag_commands_and_the_flags_tag_need_require_imap4flags():
    for text in ('addflag "x";', 'if hasflag "x" { stop; }', 'keep :flags "x";'):
        with pytest.raises(SieveSyntaxError, match="imap4flags"):
            compile_script(text)
    with pytest.raises(SieveSyntaxError, match="too many"):
        compile_script('require ["imap4flags", "variables"]; addflag "a" "b" "c";')


# -- hasflag (RFC 5232 4) ------------------------------------------------------------------------


def flagged_if(test: str, setup: str = 'setflag "\\\\Seen $Label1 Work";') -> bool:
    require = 'require ["imap4flags", "fileinto", "variables", "relational",'
    require += ' "comparator-i;ascii-numeric"];'
    return "Yes" in stored(f'{require} {setup} if {test} {{ fileinto "Yes"; }}')


def test_hasflag_is_compares_each_flag_without_case_by_default():
    assert flagged_if('hasflag "\\\\seen"')
    assert flagged_if('hasflag ["nothing", "work"]')
    assert flagged_if('hasflag "other $label1"')  # keys are flag lists too
    assert not flagged_if('hasflag "Wor"')
    assert not flagged_if('hasflag :comparator "i;octet" "work"')
    assert flagged_if('hasflag :comparator "i;octet" "Work"')


def test_hasflag_contains_and_matches_go_flag_by_flag():
    assert flagged_if('hasflag :contains "abel"')
    assert flagged_if('hasflag :matches "$*1"')
    assert not flagged_if('hasflag :matches "\\\\seen *"')  # a pattern: never two flags
    assert not flagged_if('hasflag :contains ""')  # an empty key is no flag (RFC 5232 2)


def test_hasflag_count_counts_the_flags_of_all_the_variables():
    count = 'hasflag :count "eq" :comparator "i;ascii-numeric"'
    assert flagged_if(f'{count} "3"')
    assert flagged_if(f'{count} "0"', setup="")
    setup = 'set "a" "x y"; set "b" "z";'
    assert flagged_if(f'{count} ["a", "b", "unset"] "3"', setup)
    assert flagged_if('hasflag :count "ge" :comparator "i;ascii-numeric" ["a"] "2"', setup)


def test_hasflag_on_named_variables_and_match_variables():
    script = """require ["imap4flags", "variables", "fileinto"];
        set "labels" "$Label3 $Label7";
        if hasflag :matches "labels" "$Label*" { fileinto "L${1}"; }"""
    assert stored(script) == {"L3": frozenset()}


def test_hasflag_sees_flags_added_by_an_included_script(tmp_path):
    main = compile_script(
        'require ["imap4flags", "include"]; include "sub"; if hasflag "x" { discard; }'
    )
    sub = compile_script('require "imap4flags"; addflag "x";')
    view = MessageView.from_bytes(MESSAGE, "alice@example.test")
    outcome = Interpreter(main, view, loader=lambda location, name: sub).run()
    assert outcome.discarded


def test_the_example_of_docs_sieve_rst():
    script = r"""require ["imap4flags", "fileinto", "variables"];
    if header :contains "list-id" "announce" { addflag "\\Seen"; }  # read, in INBOX
    if address :is "from" "boss@example.org" {
        fileinto :flags "\\Flagged $Label1" "Boss";
    }
    if header :matches "subject" "[*]*" { setflag "tags" "${1}"; }
    if hasflag :is "tags" "urgent" { keep :flags ["\\Flagged", "${tags}"]; }"""
    boss = b"From: boss@example.org\r\nSubject: [urgent] servers down\r\n\r\n!\r\n"
    assert stored(script, boss) == {
        "Boss": {"\\Flagged", "$Label1"},
        INBOX: {"\\Flagged", "urgent"},
    }
    announce = b"From: list@example.org\r\nList-Id: <announce.example.org>\r\nSubject: x\r\n\r\n"
    assert stored(script, announce) == {INBOX: {"\\Seen"}}
