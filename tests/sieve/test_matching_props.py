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
