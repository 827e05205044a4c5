"""Tokens for the classifier, from a ``Sample``: what SpamBayes's tokenizer found worth keeping.

- Words of the decoded text (HTML already turned into text, charsets decoded), lower-cased,
  3 to 12 characters; a longer one becomes ``skip:<first letter> <length/10>`` (long base64
  runs and URLs in spam look alike), as SpamBayes does.
- The subject's words apart (``subject:``), the sender's address, name and domain
  (``from:``), the Message-ID's domain, the content types, attachment extensions, the
  charsets declared, whether there is hidden HTML text or images.
- URLs as their host and its parent domains (``url:example.com``), plus the first path piece.
- Values of ``X-Mailer``/``User-Agent`` whole: which software sent the mail says a lot.
- Neighbouring words of the first ``BIGRAM_CHARS`` of text as pairs (``bi:click here``).

Each token counts once per message (presence, not frequency, as SpamBayes); at most
``MAX_TOKENS`` per message, so a huge text costs what a long one does. Which 40 words of
a long header value are kept follows the message's order, and which tokens fit under the
cap their sorted order, never a set's: a set of strings iterates in an order that changes
with each process's hash seed, and the trainer (in the server) and the scorer (in the
scoring process) must make the same tokens of the same message.

What was measured on the SpamAssassin public corpus (``docs/benchmarks-spam.rst``) and so
chosen (``TOKENIZER_VERSION`` 2):

- Header values are split into words only for the fields that say who sent the mail and
  how (``_VALUE_FIELDS``); every other field's words (the list software's ``List-*``,
  ``X-Beenthere``...) came as a dozen tokens saying the same thing, which outvoted the text
  of spam sent through a mailing list. Field names alone (``header:X-Foo``) are no longer
  tokens either: they too repeated what the values say.
- Fields written after delivery, by the receiving side or a mail reader (``Delivery-Date``,
  ``X-Keywords``, ``Status``, ``X-Spam-*``...; ``_LOCAL_FIELDS``), are skipped: they tell
  where a message was collected, not who sent it (in the corpus they gave away the
  collector's mailbox of half of spam 2).
- Upper-case words of the text and the subject are kept apart as well (``CAPS:FREE``
  besides ``free``), with the subject's punctuation runs (``subject:punct:!!``) and the
  share of upper-case letters in it, and sums of money and percentages by their shape
  (``money:$4``: a dollar sign and four digits).

Version 3 added the pairs of words: 900 + 900 messages trained, five splits, they took
the filter's recall at 5.0 from 92.8% to 95.6% (and ``bayes.MAX_CLUES`` went from 150 to
50, since pairs repeat their words' evidence and 150 correlated clues made the
probabilities too sure of themselves on hard ham; later at most 25 of the 50 may be pairs,
``bayes.MAX_PAIR_CLUES``, which took hard ham in Junk from 4.6% to 3.7%).

A store trained with an older version still judges (unknown tokens say nothing), less well
until retrained: ``TokenStore`` records the version it was trained with.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable
from itertools import repeat

from txmailhost.addresslist import parse_address
from txmailhost.spam.sample import Sample

MAX_TOKENS = 8000
TOKENIZER_VERSION = 3  # raised when tokens change: a store trained before is partly stale
BIGRAM_CHARS = 20000  # characters of text whose neighbouring words are paired
PAIR_PREFIX = "bi:"  # of the pairs' tokens (``bayes.combine`` takes fewer of them)
# A word: from a letter or digit to the last letter or digit of a run of word characters and
# ``'$€£%.-`` ("don't", "3.5%", "e-mail"). Found as the runs (``_RUN``) with the other
# characters stripped from both ends (``_EDGE``): the same words as the one expression
# ``[^\W_][\w'$€£%.-]*[^\W_]|[^\W_]``, which backtracks at every word and took twice as long.
_RUN = re.compile(r"[\w'$€£%.-]+")
_EDGE = "_'$€£%.-"


def _latin1_table(keep: Callable[[str], str]) -> bytes:
    """A ``bytes.translate`` table of the 256 Latin-1 characters, each to ``keep(char)``.

    Text of Latin-1 characters only (most mail: ASCII plus a no-break space or an accent) is
    classified by one ``translate`` over its bytes instead of a regular expression's step per
    character; the tables are made from the expressions themselves, so they agree with them.
    """
    return bytes(ord(keep(chr(code))) for code in range(256))


# A word character beyond Latin-1 (matched, then looked back at: the search skips ahead to the
# next character beyond Latin-1 at C speed).
_BEYOND_LATIN1_WORD = re.compile(r"[^\x00-\xff](?<=\w)")
# Characters of a run as they are, every other one a space: the runs are then ``split()``.
_RUN_TABLE = _latin1_table(lambda char: char if _RUN.fullmatch(char) else " ")
# Runs' characters as "e" for those ``_EDGE`` strips and "a" for the others (see ``_all_words``).
_EDGE_TABLE = _latin1_table(
    lambda char: "e" if char in _EDGE else "a" if _RUN.fullmatch(char) else " "
)
_SKIP_HEADERS = frozenset(
    {
        "received",
        "return-path",
        "x-spam-status",
        "x-spam-score",
        "x-spam-report",
        "date",
        "message-id",
        "delivered-to",
        "authentication-results",
        "dkim-signature",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
    }
)

_LOCAL_FIELDS = frozenset(  # written after delivery (X-Spam-* too): the collector, not the sender
    {"delivery-date", "x-keywords", "x-status", "status", "x-uid", "lines", "content-length"}
)
_VALUE_FIELDS = frozenset(  # fields whose values are split into words
    {
        "from",
        "to",
        "cc",
        "reply-to",
        "x-mailer",
        "user-agent",
        "organization",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "mime-version",
        "x-priority",
        "x-msmail-priority",
        "x-mimeole",
        "importance",
        "precedence",
        "x-originating-ip",
    }
)
# Upper-case words (``\b[A-Z]{3,12}\b``) are found as whole runs of three or more capitals
# (possessive: never given back) with no word character before the first (looked at once the
# first capital has matched, so that the search still skips to the next capital at C speed)
# nor after the last; those longer than 12 are dropped (``_caps``). The word-boundary test at
# every position cost twice the scan, checking the runs' ends in Python half as much again.
_CAPS_WORD = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]{2,}+(?!\w)")
# Capitals as "A", other word characters "a", the rest a space: in these classes (with a space
# at both ends) an upper-case word is 3 to 12 "A" between spaces, found by a search for its
# literal " AAA" first (``_caps``).
_CAPS_CLASS_TABLE = _latin1_table(
    lambda char: "A" if "A" <= char <= "Z" else "a" if re.match(r"\w", char) else " "
)
_CAPS_IN_CLASSES = re.compile(rb" AAAA{0,9} ")
# "\d+%" alone was tried at every digit of a run with no "%" after it: 40,000 digits took 24 s.
# A run's percentage starts where the run does, or (the first alternative having taken the
# run's first two digits) after "$1.23": the same matches, each run scanned once.
_MONEY = re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d\d)?|(?<!\d)\d+%|(?<=\.\d\d)\d+%")
_MONEY_SIGNS = "$€£%"  # no sum of money without one of these: the scan is skipped
_SUBJECT_PUNCT = re.compile(r"[!$?*%#]{2,}|[!$?]")
# Header values repeat from one message to the next (a sender's address, a list's or a mail
# program's fields, "1.0"): the words and the sender's address of values up to this long are
# remembered, the last ones of this many values.
_REMEMBERED_CHARS = 256
_REMEMBERED = 1024  # at most about 3 MB of remembered words
_PATH_PIECE = re.compile(r"[^/?#&=]*")  # a URL path's first piece (``url-path:``)

_WHOLE_VALUES = frozenset(
    {
        "x-mailer",
        "user-agent",
        "content-type",
        "precedence",
        "list-id",
        "x-priority",
        "x-msmail-priority",
        "importance",
        "mime-version",
        "content-transfer-encoding",
    }
)


def tokens(sample: Sample) -> set[str]:
    """The message's distinct tokens (see the module docstring)."""
    found: set[str] = set()

    def add(token: str) -> None:
        if len(found) < MAX_TOKENS:
            found.add(token)

    def take(more: Collection[str]) -> None:  # add() of each, at C speed when all fit
        if len(found) + len(more) <= MAX_TOKENS:
            found.update(more)
        else:  # which ones fit: the same in every process, whatever a set's order
            for token in sorted(more):
                add(token)

    for name, value in sample.headers:
        if name in _SKIP_HEADERS or name in _LOCAL_FIELDS or name.startswith("x-spam"):
            continue
        if name in _WHOLE_VALUES:
            add(f"{name}:{value.lower()[:60]}")
        if name in _VALUE_FIELDS:
            take([f"{name[:20]}:{word}" for word in _words(value)[:40]])
    subject = sample.header("subject") or ""
    take(["subject:" + word for word in _words(subject)])
    for run in _SUBJECT_PUNCT.findall(subject):
        add("subject:punct:" + run[:4])
    for word in _caps(subject):
        add("subject:CAPS:" + word)
    letters = sum(map(str.isalpha, subject))
    if letters:
        add(f"subject:upper:{10 * sum(map(str.isupper, subject)) // letters}")
    sender = sample.header("from")
    if sender:
        display, address = parse_sender(sender)
        address = address.lower()
        add("from:addr:" + address)
        add("from:domain:" + address.rpartition("@")[2])
        for word in _words(display):
            add("from:name:" + word)
    mid = sample.header("message-id")
    if mid:
        add("message-id:@" + mid.strip("<> ").rpartition("@")[2].lower()[:60])
    for content_type in sample.content_types:
        add("content-type:" + content_type)
    for name in sample.attachments:
        add("attachment:." + name.rpartition(".")[2].lower()[:10])
    for charset in sample.charsets:
        add("charset:" + charset.lower())
    if sample.hidden_text:
        add("html:hidden")
    if sample.images:
        add("html:images")
    for url in dict.fromkeys(sample.urls[:200]):  # a link given again has its tokens in
        take(_url_tokens(url))
    text = sample.text
    lowered = text.lower()
    words = _all_words(lowered)  # once, for the words and (mostly) for the pairs
    distinct = set(words)
    take(_kept(distinct))
    # pairs come from the first BIGRAM_CHARS characters of the text
    paired = words if len(text) <= BIGRAM_CHARS else _all_words(text[:BIGRAM_CHARS].lower())
    take(_pairs(paired, repetitive=4 * len(distinct) < len(words)))
    take(["CAPS:" + word for word in _caps(text)])
    if any(sign in text for sign in _MONEY_SIGNS):
        for amount in dict.fromkeys(_MONEY.findall(text)):
            digits = sum(c.isdigit() for c in amount)
            add(f"money:{'%' if amount.endswith('%') else amount[0]}{digits}")
    return found


def is_pair(token: str) -> bool:
    """A pair of neighbouring words (``_pairs``): ``bayes.combine`` takes fewer of them."""
    return token.startswith(PAIR_PREFIX)


def _all_words(lowered: str) -> list[str]:
    """The words of ``lowered`` in order, repeats kept (see ``_RUN``).

    The same list as ``_RUN.findall`` with ``_EDGE`` stripped and empty words dropped; for
    Latin-1 text the runs are found by ``_RUN_TABLE`` and ``split()`` (no run character is
    white space), and strip is skipped when no run begins or ends with an ``_EDGE`` character
    (in ``_EDGE_TABLE``'s classes: no "e" at either end or next to a space): it would give
    back every run as it is.
    """
    encoded = _latin1(lowered)
    if encoded is None:  # words beyond Latin-1: the expression itself
        return list(filter(None, map(str.strip, _RUN.findall(lowered), repeat(_EDGE))))
    runs = encoded.translate(_RUN_TABLE).decode("latin-1").split()
    classes = encoded.translate(_EDGE_TABLE)
    if b" e" in classes or b"e " in classes or classes[:1] == b"e" or classes[-1:] == b"e":
        return list(filter(None, map(str.strip, runs, repeat(_EDGE))))
    return runs


def _latin1(text: str) -> bytes | None:
    """``text`` in Latin-1 for the tables (``_RUN_TABLE``), or None when it has word
    characters beyond Latin-1 (or "€").

    Other characters beyond Latin-1 (typographic quotes and dashes, bullets, an ideographic
    space...) only ever separate runs: they become "?", which separates them the same way.
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        if "€" in text or _BEYOND_LATIN1_WORD.search(text):
            return None
        return text.encode("latin-1", "replace")


def _kept(distinct: Iterable[str]) -> list[str]:
    """Words as tokens: 3 to 12 characters as they are, a longer one as its first letter and
    length (``skip:x 40``), shorter ones dropped."""
    return [
        word if len(word) <= 12 else f"skip:{word[0]} {len(word) // 10 * 10}"
        for word in distinct
        if len(word) >= 3
    ]


def _words(text: str) -> tuple[str, ...]:
    """The word tokens of ``text`` (header values, the subject, a display name); a short
    text's are remembered (``_REMEMBERED_CHARS``)."""
    if len(text) <= _REMEMBERED_CHARS:
        return _remembered_words(text)
    return tuple(_kept(dict.fromkeys(_all_words(text.lower()))))


@functools.lru_cache(maxsize=_REMEMBERED)
def _remembered_words(text: str) -> tuple[str, ...]:
    """``_words`` of a short text, computed once: the same tuple, in the same order."""
    return tuple(_kept(dict.fromkeys(_all_words(text.lower()))))


def parse_sender(value: str) -> tuple[str, str]:
    """``parse_address`` of a From field's value (a short one's remembered). The scorer's
    sender lists ask for it too (``scorer.sender_addresses``): the standard library's
    address parser, in Python, ran twice a message."""
    if len(value) <= _REMEMBERED_CHARS:
        return _remembered_sender(value)
    return parse_address(value)


@functools.lru_cache(maxsize=_REMEMBERED)
def _remembered_sender(value: str) -> tuple[str, str]:
    return parse_address(value)


def _pairs(words: list[str], repetitive: bool = False) -> set[str]:
    """Neighbouring words as ``bi:first second`` (CRM114's and SpamBayes's experimental
    bigrams): every word, short ones too, a long one as ``skip``; the phrases spam repeats
    ("click here", "to be removed") say more than their words.

    ``repetitive`` (fewer than a quarter of the words distinct: the same lines again and
    again, as in the throughput bench's message): the distinct pairs of words are found
    first, at C speed, and only they are made strings (51 us instead of 78 for the bench's
    message). The same set either way; for other text (85% of the pairs of a message of the
    public corpus are distinct) that costs more than it saves (76 us against 55)."""
    if repetitive:
        return {
            f"{PAIR_PREFIX}{a if len(a) <= 12 else 'skip'} {b if len(b) <= 12 else 'skip'}"
            for a, b in set(zip(words, words[1:], strict=False))
        }
    shown = [w if len(w) <= 12 else "skip" for w in words]
    return {f"{PAIR_PREFIX}{a} {b}" for a, b in zip(shown, shown[1:], strict=False)}


def _caps(text: str) -> list[str]:
    """The distinct words of 3 to 12 capitals A-Z standing alone (``\\b[A-Z]{3,12}\\b``: no
    letter, digit or underscore either side), found by ``_CAPS_WORD``.

    Its scan starts at the first such word of ``_CAPS_CLASS_TABLE``'s classes, and is not
    made at all when there is none there (text without upper-case words, or whose runs of
    capitals are all longer than 12): that search goes from one " AAA" to the next at the
    speed of a substring search. A character beyond Latin-1 becomes "?" (not a word character)
    there, so the classes may show a word that is not one (next to a Greek letter, say), then
    ``_CAPS_WORD`` says, but never miss one.
    """
    classes = text.encode("latin-1", "replace").translate(_CAPS_CLASS_TABLE)
    first = _CAPS_IN_CLASSES.search(b" " + classes + b" ")
    if first is None:
        return []
    # the match starts at its leading space, the text's index of the word's first letter: the
    # classes show every upper-case word, so there is none before (and no run of capitals
    # goes across that non-word character)
    return list(dict.fromkeys(r for r in _CAPS_WORD.findall(text, first.start()) if len(r) <= 12))


def _url_tokens(url: str) -> list[str]:
    lowered = url.lower()
    rest = lowered.split("://", 1)[1] if "://" in lowered else lowered
    host, _, path = rest.partition("/")
    host = host.rpartition("@")[2].split(":")[0]
    labels = [label for label in host.split(".") if label]
    out = ["url:" + ".".join(labels[i:]) for i in range(max(0, len(labels) - 4), len(labels) - 1)]
    first = _PATH_PIECE.match(path).group()
    if first:
        out.append("url-path:" + first[:30])
    return out
