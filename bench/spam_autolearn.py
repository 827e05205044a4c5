"""``python -m bench.spam_autolearn``: would learning the mail as it is judged help?

SpamAssassin learns, by default, every message it judges far enough from the line
(``bayes_auto_learn``): the filter teaches itself from the stream. This bench asks what that
would do here, in memory as ``bench.spam_eval`` does (its samples, splits, counts and the
filter's own mathematics): per split, train 900 + 900 as the benches do, then judge the three
test halves in one random order, learning a message as spam when its total reaches
``--spam-at`` and as ham when it is at most ``--ham-at`` (and its sender is not allowed), as
it goes. Reported as ``bench.spam_eval`` reports (Junk at 5.0), with how many messages were
learned and how many of those learned as spam were ham. The figures are in
docs/benchmarks-spam.rst ("What each change did"); the filter does not do it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

from bench.spam_corpus import TEST_GROUPS, fetch, split
from bench.spam_eval import Classifier, Message, default_cache, samples, total


def run(
    corpus: dict[str, list[Message]],
    size: int,
    seed: int,
    spam_at: float | None,
    ham_at: float | None,
) -> tuple[dict[str, list[float]], list[int]]:
    """Per test group, each message's total; and [learned as spam, as ham, ham learned as
    spam]. Trained senders are allowed, as the IMAP trainer allows them."""
    spam, ham, test = split(corpus, size, seed)
    classifier = Classifier(allow=True)
    classifier.train(spam, ham)
    stream = [(group, message) for group in TEST_GROUPS for message in test[group]]
    random.Random(1000 + seed).shuffle(stream)
    out: dict[str, list[float]] = {group: [] for group in TEST_GROUPS}
    taught = [0, 0, 0]
    for group, message in stream:
        figure = total(*classifier.judge(message))
        out[group].append(figure)
        if spam_at is not None and figure >= spam_at:
            classifier.learn(message, 0)
            taught[0] += 1
            taught[2] += group != TEST_GROUPS[0]
        elif ham_at is not None and figure <= ham_at and not classifier.listed(message):
            classifier.learn(message, 1)
            taught[1] += 1
    return out, taught


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_autolearn", description=__doc__)
    parser.add_argument("--spam-at", type=float, default=None, help="learn as spam from here")
    parser.add_argument("--ham-at", type=float, default=None, help="learn as ham up to here")
    parser.add_argument("--size", type=int, default=900)
    parser.add_argument("--first", type=int, default=0, help="first split")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    corpus = samples(fetch(default_cache()), default_cache())
    rates: dict[str, list[float]] = {group: [] for group in TEST_GROUPS}
    taught = [0, 0, 0]
    for seed in range(args.first, args.first + args.repeats):
        out, learned = run(corpus, args.size, seed, args.spam_at, args.ham_at)
        for group in TEST_GROUPS:
            rates[group].append(100 * sum(f >= 5.0 for f in out[group]) / len(out[group]))
        taught = [a + b for a, b in zip(taught, learned, strict=True)]
    print(f"learned as spam from {args.spam_at}, as ham up to {args.ham_at}; Junk at 5.0:")
    print("  ".join(f"{g} {statistics.mean(rates[g]):.2f}%" for g in TEST_GROUPS))
    print(f"learned: {taught[0]} as spam ({taught[2]} of them ham), {taught[1]} as ham")
    return 0


if __name__ == "__main__":
    sys.exit(main())
