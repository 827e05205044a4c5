"""The pieces of ``bench.spam_ideas``: its classifier with default constants is ``bayes.py``'s,
the online logistic regression learns, learned scores put the boundary at 5.0, and the
newsletter feature is what it says."""

from __future__ import annotations

import io
import random

import pytest

from bench import spam_ideas
from bench.spam_ideas import Counts, Item, OnlineLogistic, Params
from txmailhost.spam.bayes import combine, token_probability
from txmailhost.spam.sample import sample_of


def item(token_ids: list[int], digest: str, hits: tuple[str, ...] = ()) -> Item:
    return Item(tuple(sorted(set(token_ids))), hits, 0.0, digest)


def corpus(n: int, seed: int = 1) -> list[tuple[Item, bool]]:
    """Spam draws most of its tokens from 0-49, ham from 50-99, both some of 100-149."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        is_spam = i % 2 == 0
        own = range(0, 50) if is_spam else range(50, 100)
        ids = rng.sample(own, 8) + rng.sample(range(100, 150), 6) + rng.sample(range(150), 2)
        out.append((item(ids, f"{i}"), is_spam))
    return out


def test_default_constants_judge_as_bayes_py():
    learned = corpus(120)
    counts = Counts(learned)
    for message, _ in corpus(40, seed=2):
        expected = combine(
            token_probability(*counts.counts[t], *counts.totals)
            for t in message.tokens
            if t in counts.counts
        )
        assert counts.probability(message) == pytest.approx(expected)
    # other constants are other judgements
    stricter = Params(min_strength=0.45)
    assert any(
        counts.probability(m, stricter) != counts.probability(m) for m, _ in corpus(40, seed=2)
    )


def test_online_logistic_learns_message_by_message():
    model = OnlineLogistic(rate=3.0)
    for message, is_spam in corpus(200):
        model.learn(message, is_spam)
    judged = [(model.score(m) > 0) == is_spam for m, is_spam in corpus(100, seed=3)]
    assert sum(judged) >= 95


def test_training_counts_a_message_once_and_keeps_the_order():
    spam = [item([1], "a"), item([2], "b"), item([1], "a")]
    ham = [item([3], "c")]
    assert [(m.digest, s) for m, s in spam_ideas.training(spam, ham, "trained", 0)] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]
    assert len(spam_ideas.training(spam, ham, "random", 0)) == 3


def test_learned_scores_put_the_boundary_at_five():
    examples = [(("SPAMMY",), True)] * 40 + [(("SPAMMY",), False)] * 2
    examples += [(("HAMMY",), False)] * 40 + [(("HAMMY",), True)] * 2
    scores = spam_ideas.learn_scores(examples, rounds=500)
    assert scores["SPAMMY"] > 5.0 > scores["HAMMY"]


def test_links_to_sender_is_html_linking_mostly_to_the_from_domain():
    def sample(sender: str, links: list[str], html: bool = True) -> bytes:
        body = "".join(f'<a href="{u}">here</a> ' for u in links)
        kind = "text/html" if html else "text/plain"
        return (
            f"From: {sender}\r\nSubject: news\r\nContent-Type: {kind}\r\n\r\n{body}\r\n"
        ).encode()

    def judge(raw: bytes) -> bool:
        return spam_ideas.links_to_sender(sample_of(io.BytesIO(raw)))

    shop = "News <news@mail.shop.example>"
    assert judge(sample(shop, ["http://www.shop.example/a", "http://shop.example/b"]))
    assert judge(sample(shop, ["http://shop.example/a", "http://track.example/b"]))
    assert not judge(
        sample(shop, ["http://shop.example/a", "http://x.example/", "http://y.example/"])
    )
    assert not judge(sample(shop, ["http://shop.example/a"], html=False))
    assert not judge(sample("Someone <s@other.example>", ["http://shop.example/a"]))


def test_online_logistic_with_a_margin_learns_only_on_or_near_errors():
    model = OnlineLogistic(rate=3.0, margin=1.0)
    spam = item([1, 2, 3], "s")
    for _ in range(20):
        model.learn(spam, True)
    confident = dict(model.weights)
    assert 1.0 < model.score(spam) < 4.0  # stopped once beyond the margin
    model.learn(spam, True)
    assert model.weights == confident
    model.learn(spam, False)  # judged wrongly now: learned
    assert model.weights != confident
