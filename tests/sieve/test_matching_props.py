"""``:matches`` without a regular expression engine: the same matches and match variables as
the ``(.*?)`` regular expression RFC 5229 3.2 describes, in pattern x text steps at most."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.sieve.matching import Matcher, wildcard_match, wildcard_tokens

pytestmark = pytest.mark.fuzz


def regex_oracle(pattern: str, text: str) -> list[str] | None:
    """The slow reference: each wildcard a lazy group, anchored at both ends."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append("(.*?)" if char == "*" else "(.)" if char == "?" else re.escape(char))
        i += 1
    found = re.compile("".join(out) + r"\Z", re.DOTALL).match(text)
    return None if found is None else list(found.groups())


_pattern = st.text(alphabet="ab*?\\", max_size=8)
_text = st.text(alphabet="ab*?\\", max_size=12)


@given(_pattern, _text)
def test_same_answer_and_variables_as_the_lazy_regular_expression(pattern, text):
    spans = wildcard_match(wildcard_tokens(pattern), text)
    found = None if spans is None else [text[s:e] for s, e in spans]
    assert found == regex_oracle(pattern, text)


def test_pathological_patterns_stay_fast():
    matcher = Matcher("matches")
    text = "a" * 5000
    # CPU time of this process: a quadratic path costs seconds of it; other processes'
    # load (CI runs two test processes) doesn't count, as wall-clock time would.
    started = time.process_time()
    assert matcher.test([text], ["*a" * 30 + "*b"]) == (False, None)
    assert time.process_time() - started < 2.0


@given(st.text(alphabet="ab*\\", max_size=10), _text)
def test_a_pattern_without_question_marks_finds_what_the_walk_finds(pattern, text):
    """``_star_match`` (``str.find``) against the step-by-step walk: the same spans."""
    from txmailhost.sieve.matching import _walk

    tokens = wildcard_tokens(pattern)
    assert wildcard_match(tokens, text) == _walk(tokens, text, None)


def test_matches_work_past_the_budget_is_an_error_not_an_hour_of_delivery():
    from txmailhost.sieve.matching import MatchBudget, MatchBudgetExhausted

    matcher = Matcher("matches")
    text = "a" * 150_000
    pattern = "*" + "?a" * 500 + "b"  # pattern x text: 150 million steps of the walk
    started = time.process_time()
    with pytest.raises(MatchBudgetExhausted):
        matcher.test([text], [pattern], MatchBudget())
    assert time.process_time() - started < 5.0
    # a pattern of stars and literals is linear: a long one on the same text is no work
    budget = MatchBudget()
    assert matcher.test([text], ["*" + "a" * 20_000 + "b*"], budget) == (False, None)
    assert budget.left > MatchBudget().left - 1000


def test_a_script_whose_matches_take_too_long_fails_and_the_message_is_kept():
    from txmailhost.sieve.interpreter import Interpreter, SieveRuntimeError
    from txmailhost.sieve.language import compile_script
    from txmailhost.sieve.message import MessageView

    script = compile_script(
        'require ["body", "fileinto"];\r\n'
        'if body :matches "*' + "?a" * 500 + 'b" { fileinto "Junk"; }\r\n'
    )
    raw = b"Subject: x\r\n\r\n" + b"a" * 150_000 + b"\r\n"
    view = MessageView.from_bytes(raw, "alice@example.test")
    started = time.process_time()
    with pytest.raises(SieveRuntimeError, match="matches"):
        Interpreter(script, view).run()
    assert time.process_time() - started < 5.0
