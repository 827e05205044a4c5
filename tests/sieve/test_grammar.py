"""The Sieve grammar (RFC 5228 section 8) and the check of commands and tests against it."""

from __future__ import annotations

import pytest

from txmailhost.sieve.grammar import MAX_NESTING, SieveSyntaxError, StringList, Tag, parse
from txmailhost.sieve.language import compile_script


def test_comments_numbers_tags_and_string_lists_parse():
    commands = parse('# hash\r\n/* bracket\r\n */ size :over 1K; x ["a", "b\\"c"] 3m;\n')
    assert [c.name for c in commands] == ["size", "x"]
    assert commands[0].arguments[0] == Tag("over", 3)
    assert commands[0].arguments[1].value == 1024
    assert commands[1].arguments[0] == StringList(["a", 'b"c'], False, 3)
    assert commands[1].arguments[1].value == 3 << 20


def test_quantifier_g_and_escapes_of_any_character():
    commands = parse('x 2G "a\\qb\\\\";')
    assert commands[0].arguments[0].value == 2 << 30
    assert commands[0].arguments[1].values == ["aqb\\"]


def test_multiline_string_unstuffs_dots_and_keeps_crlf():
    commands = parse("vacation text: # comment\r\nline one\r\n..dotted\r\n.\r\n;")
    assert commands[0].arguments[0].values == ["line one\r\n.dotted\r\n"]


def test_multiline_string_with_bare_lf_line_ends():
    commands = parse("reject text:\nno thanks\n.\n;")
    assert commands[0].arguments[0].values == ["no thanks\r\n"]


def test_identifiers_and_tags_are_case_insensitive():
    commands = parse('IF Header :IS "a" "b" { Keep; }')
    assert commands[0].name == "if"
    assert commands[0].tests[0].name == "header"
    assert commands[0].tests[0].arguments[0] == Tag("is", 1)
    assert commands[0].block[0].name == "keep"


@pytest.mark.parametrize(
    ("script", "line", "reason"),
    [
        ("keep", 1, "expected ';'"),
        ('keep;\n"x";', 2, "expected a command"),
        ("if true { keep;", 1, "missing '}'"),
        ("keep; }", 1, "unexpected '}'"),
        ('x "abc', 1, "unterminated string"),
        ("x /* never closed", 1, "unterminated /*"),
        ("x text:\nnever ends\n", 1, "never ends"),
        ("x 99999999999999999G;", 1, "too large"),
        ("x [];", 1, "expected a string"),
        ("x :;", 1, "tag name"),
        ("if\u00b2", 1, "expected"),  # a digit to str.isdigit(), no number (found by fuzzing)
        ("x \u0663;", 1, "expected"),  # ARABIC-INDIC DIGIT THREE: int() would read it as 3
    ],
)
def test_syntax_errors_name_their_line(script, line, reason):
    with pytest.raises(SieveSyntaxError) as caught:
        parse(script)
    assert caught.value.line == line
    assert reason in str(caught.value)


def test_nesting_is_bounded():
    deep = "if true {" * (MAX_NESTING + 1) + "}" * (MAX_NESTING + 1)
    with pytest.raises(SieveSyntaxError, match="nested deeper"):
        parse(deep)
    tests = "not " * (MAX_NESTING + 1) + "true"
    with pytest.raises(SieveSyntaxError, match="nested deeper"):
        parse(f"if {tests} {{ keep; }}")


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ('fileinto "x";', "fileinto needs require 'fileinto'"),
        ('require "nonsense";', "unsupported extension"),
        ('keep; require "fileinto";', "require must come before"),
        ("frobnicate;", "unknown command"),
        ("if frob { keep; }", "unknown test"),
        ("else { keep; }", "else without a preceding if"),
        ("if true { keep; } keep; elsif true { keep; }", "elsif without"),
        ('if header :is :contains "a" "b" { keep; }', ":contains conflicts with :is"),
        ('if header :is "a" { keep; }', "missing arguments"),
        ('if header "a" "b" "c" { keep; }', "too many arguments"),
        ('if header "a" :is "b" { keep; }', "after a positional"),
        ("if size 10 { keep; }", "size needs :over or :under"),
        ("if true keep;", "true takes no test"),
        ("if true;", "if needs a block"),
        ("keep { }", "keep takes no block"),
        ('if header :comparator "i;frob" "a" "b" { keep; }', "unknown comparator"),
        ('if header :comparator "i;ascii-numeric" "a" "b" { keep; }', "needs require"),
        ('require "relational"; if header :value "xx" "a" "b" { keep; }', "unknown relation"),
        ('if header :count "gt" "a" "b" { keep; }', ":count needs require 'relational'"),
        ('require "envelope"; if envelope "cc" "x" { keep; }', "unknown envelope part"),
        ('require "variables"; set "1x" "y";', "not a variable name"),
        ('redirect ["a@b", "c@d"];', "expected one string"),
        ("if not (true, false) { keep; }", "exactly one test"),
        ("if allof { keep; }", "a list of tests"),
        ('if exists "x" true { keep; }', "takes no test"),
        ('require "vacation"; vacation :days "x" "r";', "expected a number"),
        ('require ["fileinto"]; fileinto :create "x";', "needs require 'mailbox'"),
    ],
)
def test_checks_refuse_what_cannot_run(script, reason):
    with pytest.raises(SieveSyntaxError, match=reason):
        compile_script(script)


def test_script_size_limit():
    with pytest.raises(SieveSyntaxError, match="larger than 100 octets"):
        compile_script("keep;" * 30, max_size=100)


def test_encoded_character_decodes_only_when_required():
    plain = compile_script('require "fileinto"; fileinto "${hex:41}";')
    assert plain.commands[1].checked["positional"] == ["${hex:41}"]
    script = compile_script(
        'require ["fileinto", "encoded-character"];'
        ' fileinto "a${hex:42 43}${unicode:263a}${hex:zz}";'
    )
    assert script.commands[1].checked["positional"] == ["aBC\u263a${hex:zz}"]


def test_rfc5228_section_9_example_compiles():
    """The full example script of RFC 5228 section 9."""
    script = compile_script(
        """
        require ["fileinto"];
        if header :is "Sender" "owner-ietf-mta-filters@imc.org"
                {
                fileinto "filter";  # move to "filter" mailbox
                }
        elsif address :DOMAIN :is ["From", "To"] "example.com"
                {
                keep;               # keep in "In" mailbox
                }
        elsif anyof (NOT address :all :contains
                ["To", "Cc", "Bcc"] "me@example.com",
                header :matches "subject"
                ["*make*money*fast*", "*university*dipl*mas*"])
                {
                fileinto "spam";   # move to "spam" mailbox
                }
        else
                {
                # Move all other (non-company) mail to "personal"
                # mailbox.
                fileinto "personal";
                }
        """
    )
    assert [c.name for c in script.commands] == ["require", "if", "elsif", "elsif", "else"]
