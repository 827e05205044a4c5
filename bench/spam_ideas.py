"""``python -m bench.spam_ideas``: three ideas for issue 17's accuracy, measured and not kept.

``bench.spam_eval`` measures the filter as it is; this measures what was tried beside it on
the same five splits (``bench.spam_corpus.split``), each learning from the training half only:

- ``logistic``: an online logistic regression over the same tokens (Goodman & Yih 2006;
  Sculley & Wachman 2007, the TREC spam track's best), one weight per token, learned one
  message at a time as a user's moves would teach it (binary features scaled by one over the
  square root of their number, so one update moves the message's own score by ``rate``); its
  probability alone, and joined to the classifier's (its bands at half the ``BAYES_xx``
  scores). ``--order trained`` learns in the benches' order (all spam, then all ham, as
  ``bench.spam_corpus`` and the IMAP bench train); the default interleaves them at random.
- ``calibrate``: the classifier's constants (``S``, ``MIN_STRENGTH``, ``MAX_CLUES``) chosen
  per split from a grid by two-fold cross-validation on the 1,800 training messages (the cost
  of a fold: missed spam plus nine times the ham in Junk at 5.0, Androutsopoulos's λ = 9).
- ``scores``: the content rules' and the ``BAYES_xx`` bands' scores learned per split, as
  SpamAssassin learns its scores: the classifier's probability of each training message from
  five-fold cross-validation (a message never judged by counts it is in), a logistic
  regression over the rules and bands that fired (ham errors weighted nine times), its
  weights scaled so that its boundary is the 5.0 of Junk.
- ``links``: a feature from the hard ham the filter files (newsletters whose links go to the
  From address's own domain): HTML whose URLs mostly name the From domain, as a token of the
  classifier, or as a rule scoring -1.0.

Reported as ``bench.spam_eval`` reports (spam 2 caught, easy ham 2 and hard ham in Junk:
mean and range over the splits), with "curve": the pooled recall at 2% of hard ham of the
probability alone (the classifier's: 90.4% with tokenizer version 3). Figures are in
``docs/benchmarks-spam.rst`` ("What each change did").
"""

from __future__ import annotations

import argparse
import email.utils
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bench.spam_corpus import GROUPS, TEST_GROUPS, fetch, split
from bench.spam_eval import default_cache, samples
from txmailhost.spam import rules
from txmailhost.spam.bayes import chi2q
from txmailhost.spam.rules import _host as rules_host
from txmailhost.spam.rules import _registered as rules_registered
from txmailhost.spam.sample import Sample
from txmailhost.spam.scoring import bayes_rule
from txmailhost.spam.tokens import tokens

BANDS = ("BAYES_00", "BAYES_05", "BAYES_20", "BAYES_50", "BAYES_80", "BAYES_95", "BAYES_99")
BANDS += ("BAYES_999",)
HAM_COST = 9.0  # a ham in Junk costs nine missed spam (TCR's λ = 9)


@dataclass(frozen=True)
class Item:
    """A corpus message as the experiments need it: tokens as numbers, the rules that fired."""

    tokens: tuple[int, ...]
    hits: tuple[str, ...]
    rules_score: float
    digest: str
    links_to_sender: bool = False  # see ``links_to_sender``


@dataclass(frozen=True)
class Params:
    """The classifier's constants (``bayes.py``'s ``S``, ``MIN_STRENGTH``, ``MAX_CLUES``)."""

    strength: float = 0.45
    min_strength: float = 0.1
    max_clues: int = 50


Labelled = list[tuple[Item, bool]]  # (message, is spam) in the order learned
Judged = dict[str, list[float]]  # per test group, one figure per message


def load_items() -> dict[str, list[Item]]:
    """Every group's messages tokenized and ruled once."""
    cache = default_cache()
    corpus = samples(fetch(cache), cache)
    context = rules.Context(now=time.time(), authserv_id="mx.bench.invalid")
    numbers: dict[str, int] = {}
    out: dict[str, list[Item]] = {}
    for group in GROUPS:
        out[group] = []
        for message in corpus[group]:
            ids = tuple(
                sorted({numbers.setdefault(t, len(numbers)) for t in tokens(message.sample)})
            )
            hits = tuple(sorted(r.name for r in rules.content_hits(message.sample, context)))
            own = links_to_sender(message.sample)
            message.sample.memo.clear()
            out[group].append(Item(ids, hits, message.rules_score, message.sample.digest, own))
    return out


def links_to_sender(sample: Sample) -> bool:
    """HTML whose links mostly go to the From address's registered domain (what a shop's or
    a publisher's newsletter does; spam's links go elsewhere)."""
    _name, address = email.utils.parseaddr(sample.header("from") or "")
    if "@" not in address or "text/html" not in sample.content_types:
        return False
    domain = rules_registered(address.rpartition("@")[2])
    hosts = [rules_registered(h) for h in map(rules_host, sample.urls[:200]) if h]
    return bool(hosts) and 2 * sum(h == domain for h in hosts) >= len(hosts)


def training(spam: list[Item], ham: list[Item], order: str, seed: int) -> Labelled:
    """The training messages in the order learned, each message once (as the store does)."""
    learned: Labelled = [(m, True) for m in spam] + [(m, False) for m in ham]
    if order == "random":
        random.Random(1000 + seed).shuffle(learned)
    seen: set[str] = set()
    out = []
    for item, is_spam in learned:
        if item.digest not in seen:
            seen.add(item.digest)
            out.append((item, is_spam))
    return out


# -- the classifier, with its constants as parameters ---------------------------------------


class Counts:
    """Token counts of the messages learned, judged as ``bayes.py`` judged when these ideas
    were measured (``Params``): every clue alike, before ``bayes.MAX_PAIR_CLUES``."""

    def __init__(self, learned: Labelled) -> None:
        self.counts: dict[int, list[int]] = {}
        self.totals = [0, 0]
        for item, is_spam in learned:
            kind = 0 if is_spam else 1
            self.totals[kind] += 1
            for token in item.tokens:
                self.counts.setdefault(token, [0, 0])[kind] += 1

    def probability(self, item: Item, params: Params = Params()) -> float:
        nspam, nham = self.totals
        clues = []
        for token in item.tokens:
            found = self.counts.get(token)
            if found is None:
                continue
            spam_ratio, ham_ratio = found[0] / nspam, found[1] / nham
            p = spam_ratio / (spam_ratio + ham_ratio)
            n = found[0] + found[1]
            p = (params.strength * 0.5 + n * p) / (params.strength + n)
            if abs(p - 0.5) >= params.min_strength:
                clues.append(p)
        clues.sort(key=lambda p: -abs(p - 0.5))
        clues = clues[: params.max_clues]
        if not clues:
            return 0.5
        s_log = sum(math.log(1.0 - p) for p in clues)
        h_log = sum(math.log(p) for p in clues)
        spamminess = 1.0 - chi2q(-2.0 * s_log, 2 * len(clues))
        hamminess = 1.0 - chi2q(-2.0 * h_log, 2 * len(clues))
        return (spamminess - hamminess + 1.0) / 2.0


def band_score(probability: float) -> float:
    band = bayes_rule(probability)
    return band.score if band else 0.0


def total(item: Item, probability: float) -> float:
    """The filter's score: the content rules plus the classifier's band."""
    return round(item.rules_score + band_score(probability), 1)


# -- online logistic regression ---------------------------------------------------------------


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class OnlineLogistic:
    """One weight per token, learned message by message: ``w += rate * (y - p) * x`` with
    ``x`` the message's tokens scaled to unit length (so ``rate`` is how far one update moves
    the message's own score), and a bias learned ten times slower. ``margin``: learn only
    from messages judged wrongly or within that many log-odds of the boundary (Sculley's
    "train on or near error"), as relaxed online SVMs do."""

    def __init__(self, rate: float, margin: float | None = None) -> None:
        self.rate = rate
        self.margin = margin
        self.weights: dict[int, float] = {}
        self.bias = 0.0

    def score(self, item: Item) -> float:
        """The log-odds of spam."""
        if not item.tokens:
            return self.bias
        weights = self.weights
        return self.bias + sum(weights.get(t, 0.0) for t in item.tokens) / math.sqrt(
            len(item.tokens)
        )

    def learn(self, item: Item, is_spam: bool) -> None:
        z = self.score(item)
        if self.margin is not None and (z if is_spam else -z) > self.margin:
            return
        error = self.rate * ((1.0 if is_spam else 0.0) - sigmoid(z))
        self.bias += error / 10
        step = error / math.sqrt(len(item.tokens)) if item.tokens else 0.0
        for token in item.tokens:
            self.weights[token] = self.weights.get(token, 0.0) + step


# -- scores learned from the training half ----------------------------------------------------


def features(item: Item, probability: float) -> tuple[str, ...]:
    band = bayes_rule(probability)
    return item.hits + ((band.name,) if band else ())


def learn_scores(
    examples: Sequence[tuple[tuple[str, ...], bool]], rounds: int = 3000
) -> dict[str, float]:
    """Batch logistic regression (gradient descent, a little L2) over the rules that fired,
    ham weighted ``HAM_COST``; weights scaled so the boundary ``b + sum(w) = 0`` is a score of
    5.0. Rules that never fired in training keep no score."""
    names = sorted({f for fired, _ in examples for f in fired})
    weights = dict.fromkeys(names, 0.0)
    bias = 0.0
    cost = [1.0 if is_spam else HAM_COST for _, is_spam in examples]
    norm = sum(cost)
    for _ in range(rounds):
        grad = dict.fromkeys(names, 0.0)
        grad_bias = 0.0
        for (fired, is_spam), c in zip(examples, cost, strict=True):
            g = c * (sigmoid(bias + sum(weights[f] for f in fired)) - is_spam)
            grad_bias += g
            for f in fired:
                grad[f] += g
        for f in names:
            weights[f] -= 0.5 * (grad[f] + weights[f]) / norm
        bias -= 0.5 * grad_bias / norm
    if bias >= 0:  # a message with no rule would be spam: no boundary to put at 5.0
        raise ValueError("the training messages are mostly spam")
    return {f: 5.0 * w / -bias for f, w in weights.items()}


# -- the experiments ----------------------------------------------------------------------------


def report(name: str, runs: list[Judged], spam_when: Callable[[float], bool]) -> None:
    figures = []
    for group in TEST_GROUPS:
        rates = [100 * sum(map(spam_when, run[group])) / len(run[group]) for run in runs]
        figures.append(f"{statistics.mean(rates):6.2f}% ({min(rates):.2f}-{max(rates):.2f})")
    print(f"{name:<40}", "  ".join(figures), flush=True)


def curve(runs: list[Judged], hard_ham: float = 2.0) -> float:
    """Pooled over the splits, the share of spam 2 above the figure that leaves at most
    ``hard_ham`` % of hard ham above it."""
    spam = [x for run in runs for x in run["spam-2"]]
    hard = sorted((x for run in runs for x in run["hard-ham-1"]), reverse=True)
    cut = hard[int(len(hard) * hard_ham / 100)]
    return 100 * sum(x > cut for x in spam) / len(spam)


def judged(test: dict[str, list[Item]], figure: Callable[[Item], float]) -> Judged:
    return {group: [figure(item) for item in test[group]] for group in TEST_GROUPS}


def logistic(items: dict[str, list[Item]], args: argparse.Namespace) -> None:
    probability, learned, joined = [], [], []
    costs = []
    for seed in range(args.repeats):
        spam, ham, test = split(items, args.size, seed)
        counts = Counts(training(spam, ham, "trained", seed))
        model = OnlineLogistic(args.rate, args.margin)
        for item, is_spam in training(spam, ham, args.order, seed):
            model.learn(item, is_spam)
        started = time.process_time()
        learned.append(judged(test, model.score))
        costs.append((time.process_time() - started) / sum(len(test[g]) for g in TEST_GROUPS))
        probability.append(judged(test, counts.probability))
        joined.append(
            judged(
                test,
                lambda m, c=counts, lr=model: (
                    total(m, c.probability(m)) + band_score(sigmoid(lr.score(m))) / 2
                ),
            )
        )
    shown = f"rate {args.rate}, margin {args.margin}, order {args.order}"
    print(f"{shown}: spam 2 caught, easy ham 2, hard ham in Junk")
    print(f"curve: classifier {curve(probability):.1f}%, logistic {curve(learned):.1f}%")
    report("logistic p >= 0.5", learned, lambda z: z >= 0)
    report("logistic p >= 0.99", learned, lambda z: z >= math.log(99))
    report("score + logistic bands / 2 >= 5.0", joined, lambda s: s >= 5.0)
    print(f"the weighted sum: {1e6 * statistics.mean(costs):.0f} us a message (CPU)")


GRID = [
    Params(s, m, c)
    for s, m, c in itertools.product((0.2, 0.45, 1.0), (0.05, 0.1, 0.2), (30, 50, 80))
]


def calibrate(items: dict[str, list[Item]], args: argparse.Namespace) -> None:
    runs: dict[str, tuple[list[Judged], list[Judged]]] = {
        "constants of bayes.py": ([], []),
        "constants chosen by CV": ([], []),
    }
    for seed in range(args.repeats):
        spam, ham, test = split(items, args.size, seed)
        learned = training(spam, ham, "trained", seed)
        rng = random.Random(5000 + seed)
        shuffled = sorted(learned, key=lambda _: rng.random())
        folds = [shuffled[0::2], shuffled[1::2]]
        cost = dict.fromkeys(GRID, 0.0)
        for k in range(2):
            counts = Counts(folds[1 - k])
            for params in GRID:
                for item, is_spam in folds[k]:
                    junk = total(item, counts.probability(item, params)) >= 5.0
                    cost[params] += (is_spam and not junk) + HAM_COST * (junk and not is_spam)
        best = min(GRID, key=lambda p: (cost[p], p != Params()))
        print(f"split {seed}: chose {best} (cost {cost[best]:.0f}, default {cost[Params()]:.0f})")
        counts = Counts(learned)
        for (probabilities, totals), params in zip(runs.values(), (Params(), best), strict=True):
            probabilities.append(judged(test, lambda m, c=counts, p=params: c.probability(m, p)))
            totals.append(judged(test, lambda m, c=counts, p=params: total(m, c.probability(m, p))))
    for name, (probabilities, totals) in runs.items():
        print(f"{name}: curve {curve(probabilities):.1f}%")
        for cut in (4.0, 5.0):
            report(f"  score >= {cut}", totals, lambda s, c=cut: s >= c)


def scores(items: dict[str, list[Item]], args: argparse.Namespace) -> None:
    hand, learned_runs = [], []
    for seed in range(args.repeats):
        spam, ham, test = split(items, args.size, seed)
        learned = training(spam, ham, "trained", seed)
        rng = random.Random(7000 + seed)
        shuffled = sorted(learned, key=lambda _: rng.random())
        examples = []
        for k in range(5):
            counts = Counts([x for i, x in enumerate(shuffled) if i % 5 != k])
            for item, is_spam in shuffled[k::5]:
                examples.append((features(item, counts.probability(item)), is_spam))
        learned_scores = learn_scores(examples)
        shown = " ".join(f"{n}={s:.1f}" for n, s in sorted(learned_scores.items()))
        print(f"split {seed}: {shown}", flush=True)
        counts = Counts(learned)
        hand.append(judged(test, lambda m, c=counts: total(m, c.probability(m))))
        learned_runs.append(
            judged(
                test,
                lambda m, c=counts, s=learned_scores: round(
                    sum(s.get(f, 0.0) for f in features(m, c.probability(m))), 1
                ),
            )
        )
    report("hand-set scores >= 5.0", hand, lambda s: s >= 5.0)
    for cut in (4.0, 4.5, 5.0, 5.5):
        report(f"learned scores >= {cut}", learned_runs, lambda s, c=cut: s >= c)


def links(items: dict[str, list[Item]], args: argparse.Namespace) -> None:
    marked = {
        group: [replace(m, tokens=(*m.tokens, -1)) if m.links_to_sender else m for m in messages]
        for group, messages in items.items()
    }
    for group in TEST_GROUPS:
        share = 100 * sum(m.links_to_sender for m in items[group]) / len(items[group])
        print(f"{group}: {share:.1f}% HTML with links to the From domain")
    plain, token, rule = [], [], []
    for seed in range(args.repeats):
        spam, ham, test = split(items, args.size, seed)
        counts = Counts(training(spam, ham, "trained", seed))
        plain.append(judged(test, lambda m, c=counts: total(m, c.probability(m))))
        rule.append(
            judged(test, lambda m, c=counts: total(m, c.probability(m)) - m.links_to_sender)
        )
        spam, ham, test = split(marked, args.size, seed)
        counts = Counts(training(spam, ham, "trained", seed))
        token.append(judged(test, lambda m, c=counts: total(m, c.probability(m))))
    report("as it is", plain, lambda s: s >= 5.0)
    report("links to the From domain, a token", token, lambda s: s >= 5.0)
    report("links to the From domain, -1.0", rule, lambda s: s >= 5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_ideas", description=__doc__)
    parser.add_argument("idea", choices=("logistic", "calibrate", "scores", "links"))
    parser.add_argument("--size", type=int, default=900, help="training messages of each kind")
    parser.add_argument("--repeats", type=int, default=5, help="random splits")
    parser.add_argument("--rate", type=float, default=10.0, help="logistic: learning rate")
    parser.add_argument(
        "--margin", type=float, default=None, help="logistic: learn only on or near errors"
    )
    parser.add_argument(
        "--order", choices=("random", "trained"), default="random", help="logistic: order"
    )
    args = parser.parse_args(argv)
    items = load_items()
    ideas = {"logistic": logistic, "calibrate": calibrate, "scores": scores, "links": links}
    ideas[args.idea](items, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
