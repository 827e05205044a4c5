"""Base subject extraction (RFC 5256 §2.1), with the cases of Dovecot's imaptest sort-subject
file and the RFC's own rules one by one."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap.basesubject import base_subject
from txmailhost.imap.headerkeys import header_text


def base(raw: bytes) -> tuple[str, bool]:
    return base_subject(header_text(raw))


@pytest.mark.parametrize(
    ("raw", "expected", "reply"),
    [
        (b"a", "a", False),
        (b"Re: lunch", "lunch", True),
        (b"RE: lunch", "lunch", True),
        (b"Fwd: lunch", "lunch", True),
        (b"fw: lunch", "lunch", True),
        (b"Re[2]: lunch", "lunch", True),
        (b"Re : lunch", "lunch", True),
        (b"lunch (fwd)", "lunch", True),
        (b"lunch (FWD) (fwd)  ", "lunch", True),
        (b"[list] lunch", "lunch", False),
        (b"[list] Re: [other] Fwd: lunch", "lunch", True),
        (b"[xyz]", "[xyz]", False),  # a blob alone is kept: removing it leaves nothing
        (b"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b", True),
        (b"Re: [FWD: c]", "c", True),
        (b"[fwd: lunch]", "lunch", True),
        (b"re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon", True),
        (b"Ad: Re: Ad: Re: Ad: x", "Ad: Re: Ad: Re: Ad: x", False),  # "Ad:" is no prefix
        (b"b (a)", "b (a)", False),
        (b"Reply: not a prefix", "Reply: not a prefix", False),
        (b"=?iso-8859-1?q?_?=", "", False),
        (b"Re: =?utf-8?q?b?=", "b", True),
        (b"=?iso-8859-1?q?RE:_C?=", "C", True),
        (b"=?us-ascii?b?UmU6IGM=?=", "c", True),
        (b"  spaced \t  out  ", "spaced out", False),
        (b"", "", False),
    ],
)
def test_base_subject(raw, expected, reply):
    assert base(raw) == (expected, reply)


def test_folded_subject_is_one_line():
    assert base(b"Re: a long\r\n\tsubject") == ("a long subject", True)


@given(st.text(alphabet="Ree:Fwd[]() \tabcx", max_size=60))
def test_base_subject_is_idempotent_and_never_grows(subject):
    once, _reply = base_subject(subject)
    assert len(once) <= len(subject)
    assert base_subject(once)[0] == once


def _reference_base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 step by step, one removal at a time, each a search or a copy of the
    whole text: the first implementation, quadratic, kept here as the oracle for short text."""
    trailer = re.compile(r"(?:[ \t]|\(fwd\))$", re.IGNORECASE)
    blob = r"\[[^\[\]]*\][ \t]*"
    leader = re.compile(rf"(?:{blob})*(?:re|fwd?)[ \t]*(?:{blob})?:", re.IGNORECASE)
    leading_blob = re.compile(blob)
    text, reply = subject, False
    while True:
        while (match := trailer.search(text)) is not None:
            reply = reply or match.group() not in (" ", "\t")
            text = text[: match.start()]
        while True:
            if text[:1] in (" ", "\t"):
                text = text.lstrip(" \t")
            elif (match := leader.match(text)) is not None:
                reply, text = True, text[match.end() :]
            elif (match := leading_blob.match(text)) and text[match.end() :].strip(" \t"):
                text = text[match.end() :]
            else:
                break
        if text[:5].lower() != "[fwd:" or not text.endswith("]"):
            return text, reply
        text, reply = text[5:-1], True


_PIECES = [
    "Re:", "RE", "re", "Fwd:", "fw", "FWD", "d", ":", "[list]", "[2]", "[", "]", "[fwd:",
    "[FWD: ", "(fwd)", "(FWD)", "(", ")", " ", "\t", "  ", "a", "x", "lunch",
]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES), max_size=16).map("".join))
def test_base_subject_is_the_rfc_steps_taken_one_removal_at_a_time(subject):
    # The linear walk by index gives what the RFC's steps, taken literally, give.
    assert base_subject(subject) == _reference_base_subject(subject)


@given(st.text(alphabet="Ree:Fwd[]() \tabcx", max_size=40))
def test_base_subject_of_any_short_text_is_the_rfc_steps_taken_literally(subject):
    assert base_subject(subject) == _reference_base_subject(subject)
