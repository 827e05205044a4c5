"""The pieces of ``bench.spam_ideas2``: its clue choice is ``bayes.combine``'s, the token
kinds and sparse bigrams are what they say, the log of the chi-squared tail agrees with
``bayes.chi2q`` where that doesn't underflow, noise reduction drops only the word that
disagrees with its agreeing neighbours, and the compression model tells its own text."""

from __future__ import annotations

import io
import math
import random

import pytest

from bench.spam_ideas2 import (
    HEADER,
    PAIR,
    PPM,
    WORD,
    Counts,
    Message,
    Vocabulary,
    as_filter,
    bnr_noise,
    chosen,
    fisher,
    fitted,
    kind_of,
    log_chi2q,
    osb_pairs,
    tails,
)
from txmailhost.spam.bayes import chi2q
from txmailhost.spam.sample import sample_of


def message(vocabulary: Vocabulary, tokens: list[str], digest: str, sequence=()) -> Message:
    ids = tuple(sorted({vocabulary.number(t) for t in tokens}))
    seq = tuple(vocabulary.number(t) for t in sequence)
    return Message(ids, seq, b"", 0.0, "", frozenset(), digest)


def corpus(vocabulary: Vocabulary, n: int, seed: int = 1) -> tuple[list[Message], list[Message]]:
    """Spam's words from s0-s39 (and pairs of them), ham's from h0-h39, both some of c0-c19."""
    rng = random.Random(seed)
    spam, ham = [], []
    for i in range(n):
        own = "s" if i % 2 == 0 else "h"
        words = [f"{own}{rng.randrange(40):03d}" for _ in range(8)]
        words += [f"c{rng.randrange(20):03d}" for _ in range(4)]
        pairs = [f"bi:{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        head = [f"subject:{own}{rng.randrange(10)}"]
        (spam if own == "s" else ham).append(message(vocabulary, words + pairs + head, f"{i}"))
    return spam, ham


def test_clues_chosen_as_bayes_combine_chooses_them():
    vocabulary = Vocabulary()
    spam, ham = corpus(vocabulary, 200)
    counts = Counts(spam, ham)
    test_spam, test_ham = corpus(vocabulary, 60, seed=2)
    for m in test_spam + test_ham:
        assert fisher(chosen(counts, m.ids, vocabulary)) == pytest.approx(
            as_filter(counts, m, vocabulary.kinds)
        )
    # leaving out the pairs whose words are clues is another judgement
    assert any(
        fisher(chosen(counts, m.ids, vocabulary, redundant="pair"))
        != pytest.approx(as_filter(counts, m, vocabulary.kinds))
        for m in test_spam
    )


def test_token_kinds_and_a_pairs_words():
    assert kind_of("bi:click here") == PAIR
    assert kind_of("o3:click here") == PAIR
    assert kind_of("click") == WORD
    assert kind_of("url:example.com") == WORD
    assert kind_of("CAPS:FREE") == WORD
    assert kind_of("subject:free") == HEADER
    assert kind_of("from:addr:a@example.com") == HEADER
    assert kind_of("organization:acme") == HEADER
    vocabulary = Vocabulary()
    pair = vocabulary.number("bi:click here")
    assert vocabulary.parts[pair] == (vocabulary.number("click"), vocabulary.number("here"))
    assert vocabulary.parts[vocabulary.number("bi:to be")] is None  # short words: no tokens


def test_orthogonal_sparse_bigrams_carry_the_distance():
    sample = sample_of(io.BytesIO(b"Subject: x\r\n\r\none two three four\r\n"))
    near = osb_pairs(sample, 2, adjacent=True)
    assert near == {"bi:one two", "bi:two three", "bi:three four", "o2:one three", "o2:two four"}
    assert osb_pairs(sample, 3, adjacent=False) == {"o2:one three", "o2:two four", "o3:one four"}


def test_log_chi2q_is_the_log_of_chi2q_and_goes_on_below_it():
    for x2, v in ((3.0, 4), (30.0, 20), (120.0, 100)):
        assert log_chi2q(x2, v) == pytest.approx(math.log(chi2q(x2, v)))
    assert chi2q(3000.0, 100) == 0.0
    assert log_chi2q(3000.0, 100) < log_chi2q(2000.0, 100) < -500
    # the tails order what Fisher's probability says is 1.0 either way
    assert fisher([0.999] * 50) == fisher([0.99] * 50) == 1.0
    assert tails([0.999] * 50) > tails([0.99] * 50) > 0 > tails([0.01] * 50)


def test_noise_reduction_drops_the_word_against_its_neighbours():
    vocabulary = Vocabulary()
    spammy = [message(vocabulary, ["buy", "now", "cheap"], f"s{i}") for i in range(10)]
    hammy = [message(vocabulary, ["meeting", "patch"], f"h{i}") for i in range(10)]
    counts = Counts(spammy, hammy)
    padded = message(vocabulary, [], "t", sequence=["buy", "meeting", "now"])
    assert bnr_noise(counts, padded, 0.3) == {vocabulary.number("meeting")}
    # said again next to a word like it, "meeting" is not noise every time; "now", between
    # the two, is
    twice = message(vocabulary, [], "t", sequence=["buy", "meeting", "now", "meeting", "patch"])
    meeting, now = vocabulary.number("meeting"), vocabulary.number("now")
    assert bnr_noise(counts, twice, 0.3) == {now}
    assert bnr_noise(counts, twice, 0.3, every=False) == {meeting, now}
    # neighbours not sure enough: nothing is noise
    assert bnr_noise(counts, padded, 0.49) == set()


def test_compression_model_needs_fewer_bits_for_its_own_kind():
    spam, ham = PPM(3), PPM(3)
    spam.learn(b"buy cheap pills now, click here to unsubscribe from this offer " * 10)
    ham.learn(b"the meeting moved to tuesday; please review the patch first " * 10)
    offer = b"click here for cheap pills"
    review = b"please review the meeting notes"
    assert spam.bits(offer) < ham.bits(offer)
    assert ham.bits(review) < spam.bits(review)
    # nothing learned: eight bits an octet
    assert PPM(3).bits(b"abcd") == pytest.approx(32.0)


def test_plane_learns_which_judgement_to_trust():
    """Spam says so in its first figure, the second is noise: the first gets the weight."""
    rng = random.Random(4)
    examples = []
    for i in range(400):
        is_spam = i % 2 == 0
        examples.append(((1.0 if is_spam else -1.0, rng.uniform(-1, 1)), is_spam))
    weights = fitted(examples, rounds=300)
    assert weights[0] > 1.0
    assert abs(weights[1]) < weights[0] / 5
    # ham errors cost nine times: the boundary leans toward spam
    assert weights[-1] < 0
