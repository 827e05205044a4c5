"""The tokenizer's fast paths (Latin-1 tables, the capitals' class search) give exactly what
the general expressions give, where they apply and where they hand over to them."""

from __future__ import annotations

import io
import json
import os
import random
import re
from itertools import repeat

import pytest

from txmailhost.spam import tokens as tokens_module
from txmailhost.spam.sample import sample_of
from txmailhost.spam.tokens import tokens

_DEFINING_WORD = re.compile(r"[^\W_][\w'$€£%.-]*[^\W_]|[^\W_]")
_DEFINING_CAPS = re.compile(r"\b[A-Z]{3,12}\b")


def general_words(lowered: str) -> list[str]:
    """What ``_all_words`` gave before its fast path (the runs, stripped, empties dropped)."""
    runs = tokens_module._RUN.findall(lowered)
    return list(filter(None, map(str.strip, runs, repeat(tokens_module._EDGE))))


def general_caps(text: str) -> list[str]:
    """The distinct upper-case words in the order the text first has them."""
    return list(dict.fromkeys(_DEFINING_CAPS.findall(text)))


def assert_same_words_and_caps(text: str) -> None:
    lowered = text.lower()
    assert tokens_module._all_words(lowered) == general_words(lowered), text
    assert tokens_module._all_words(lowered) == _DEFINING_WORD.findall(lowered), text
    assert tokens_module._caps(text) == general_caps(text), text


@pytest.mark.parametrize("code", range(256))
def test_every_latin1_character_splits_and_joins_words_as_the_expression_says(code):
    char = chr(code)
    for text in (char, f"ab{char}cd", f"{char}ab{char}", f"AB{char}CDE {char}XYZ{char}"):
        assert tokens_module._latin1(text.lower()) is not None
        assert_same_words_and_caps(text)
        assert_same_words_and_caps(text.upper())


@pytest.mark.parametrize("char", ["’", "—", "•", "“", "™", "…", "\u3000", "\u2028", "\ud800"])
def test_other_characters_beyond_latin1_separate_words_on_the_fast_path(char):
    text = f"don{char}t STOP{char}NOW {char}e-mail.{char} 3.5%{char}"
    assert tokens_module._latin1(text.lower()) is not None  # taken as a "?"
    assert_same_words_and_caps(text)


@pytest.mark.parametrize("char", ["Ω", "ж", "漢", "ő", "٣", "€", "Ǆ"])
def test_word_characters_beyond_latin1_and_euro_take_the_expression(char):
    text = f"ab{char}cd {char}ABC ABC{char} €5 {char}' '{char}"
    assert tokens_module._latin1(text.lower()) is None
    assert_same_words_and_caps(text)


@pytest.mark.parametrize(
    "text",
    [
        "plain words only and 123 numbers",  # no edge character: strip skipped
        "e-mail don't 3.5 a_b",  # edge characters only inside the runs: skipped
        "end of a sentence.",
        ".start",
        "'quoted'",
        "-- _ $ % . '",
        "£5 $5 50%",
        "x" * 13 + " " + "y" * 40,
        "ABCDEFGHIJKLMNOPQRST and no other capitals",  # runs of capitals all too long
        "",
    ],
)
def test_strip_and_capital_shortcuts_give_the_expressions_words(text):
    assert_same_words_and_caps(text)


def test_random_mixed_text_gives_the_expressions_words():
    alphabet = list("aZ9_'$£%.- \t\n!?É½\xa0’•") + ["ABC", "ABCDEFGHIJKLMN", "Ω", "€", "__"]
    rng = random.Random(5)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        assert_same_words_and_caps(text)


def message(text: str, subject: str = "Hello THERE") -> bytes:
    head = f"From: A B <a@b.example>\r\nSubject: {subject}\r\n"
    return f"{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n".encode()


_MESSAGES = [
    message("FREE money!!! Click here NOW. Don't wait: $4,000.00 or 50% off, e-mail us."),
    message("Très bien, l'été à Paris. ÉCOLE\xa0NOW — “quoted” • bullet… ABC’s"),
    message("漢字 mixed with FREE words and Ωmega ABCΩ €5"),
    message("http://example.com/a-b.c?d=e " * 30 + "ABCDEFGHIJKLMNOPQ " * 10),
    # more distinct words than MAX_TOKENS: which ones fit depends on the order of adding
    message(" ".join(f"w{n}x W{n}XYZ" for n in range(6000))),
]


@pytest.mark.parametrize("raw", _MESSAGES)
def test_tokens_are_those_of_the_general_paths_in_the_same_order(raw, monkeypatch):
    sample = sample_of(io.BytesIO(raw))
    fast = tokens(sample)
    monkeypatch.setattr(tokens_module, "_latin1", lambda text: None)  # words by the expression
    monkeypatch.setattr(tokens_module, "_caps", general_caps)
    general = tokens(sample)
    assert fast == general
    assert list(fast) == list(general)  # the same set, built in the same order
    assert len(fast) <= tokens_module.MAX_TOKENS


def test_remembered_header_words_and_sender_are_those_computed_afresh():
    long_name = "Very " * 60  # a display name past _REMEMBERED_CHARS: not remembered
    raws = [
        message("body", subject="Same SUBJECT"),
        message("body", subject="Same SUBJECT").replace(b"A B <a@", f"{long_name}<a@".encode()),
    ]
    for raw in raws:
        sample = sample_of(io.BytesIO(raw))
        tokens_module._remembered_words.cache_clear()
        tokens_module._remembered_sender.cache_clear()
        afresh = tokens(sample)
        remembered = tokens(sample)  # this time from what was remembered
        assert remembered == afresh
        assert list(remembered) == list(afresh)
    assert "from:name:very" in afresh
    assert tokens_module._remembered_words.cache_info().hits > 0


_SEEDED = """
import io, json, sys
from txmailhost.spam.sample import read_capped, sample_of_bytes
from txmailhost.spam import tokens
tokens.MAX_TOKENS = 150  # the cap reached: which tokens are kept is decided by order
found = tokens.tokens(sample_of_bytes(*read_capped(io.BytesIO(sys.stdin.buffer.read()))))
print(json.dumps(sorted(found)))
"""


def test_the_same_message_makes_the_same_tokens_in_every_process():
    """The trainer (the server) and the scorer (the scoring process) run with different hash
    seeds: a header value of more than 40 words and a text past ``MAX_TOKENS`` must keep
    the same tokens in both (a set's order would keep different ones)."""
    import subprocess
    import sys

    to = ", ".join(f"person{i}@host{i}.example" for i in range(120))
    words = " ".join(f"word{i} WORD{i}X" for i in range(400))
    message = f"From: a@b.example\r\nTo: {to}\r\nSubject: hello\r\n\r\n{words}\r\n".encode()
    made = {
        subprocess.run(
            [sys.executable, "-c", _SEEDED],
            input=message,
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(made) == 1
    assert len(json.loads(made.pop())) == 150


_DEFINING_MONEY = re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d\d)?|\d+%")  # tried at every digit
_MONEY_PIECES = ["$", "€", "£", "1", "12", "123", ".", ",", "%", " ", "a", "\n", "\u0663"]


def test_sums_of_money_are_what_the_defining_expression_finds():
    """``_MONEY`` tries a percentage only where a run of digits starts (or after "$1.23",
    where the sum took its first digits): the defining expression tried one at every digit
    of a run with no "%" after it, 40,000 digits in 24 s (past the filter's 30 s budget
    at 50,000: a 451)."""
    pick = random.Random(2231)
    for _ in range(50_000):
        text = "".join(pick.choice(_MONEY_PIECES) for _ in range(pick.randint(0, 14)))
        assert tokens_module._MONEY.findall(text) == _DEFINING_MONEY.findall(text), text
    for text in ("$1.234%", "$1.23 45%", "12%34%", "1.2345%", "$12,34.567%"):
        assert tokens_module._MONEY.findall(text) == _DEFINING_MONEY.findall(text), text


def test_pairs_of_repetitive_text_are_the_pairs_made_one_by_one():
    """``_pairs``'s path for repetitive text (distinct pairs first) gives the same set:
    long words that make the same pair, repeats, one word and none included."""
    rng = random.Random(17)
    vocabulary = ["a", "to", "the", "click", "here", "x" * 12, "y" * 13, "z" * 40, "skip"]
    for size in [0, 1, 2, 3, *range(10, 400, 37)]:
        words = [rng.choice(vocabulary) for _ in range(size)]
        one_by_one = tokens_module._pairs(words)
        assert tokens_module._pairs(words, repetitive=True) == one_by_one
        assert all(len(pair.split(" ")) == 2 for pair in one_by_one)
    assert tokens_module._pairs(["y" * 13, "z" * 40], repetitive=True) == {"bi:skip skip"}
