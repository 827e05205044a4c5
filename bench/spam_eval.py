"""``python -m bench.spam_eval``: the spam filter's accuracy on the public corpus, in memory.

What ``bench.spam_corpus`` measures, fast enough to try a change in seconds: every message of
the corpus is read into a ``Sample`` once (cached in ``--cache``), the content rules and the
connection checks the e2e bench's delivery from loopback gets (``relayed_hits``) are run
on it once, and each split trains counts held in dictionaries with ``bayes.py``'s own
mathematics (``token_probability``, ``combine``) and scores with ``scoring.py``'s bands —
the filter's code, without SQLite in between. The splits are ``bench.spam_corpus``'s (same
seeds, same draws), so a figure here is the corpus bench's figure for that split.

``--threshold`` and ``--sweep`` print the trade-off; ``run_split`` is what experiments call
with another tokenizer.
"""

from __future__ import annotations

import argparse
import email.utils
import io
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.spam_corpus import GROUPS, TEST_GROUPS, default_cache, fetch, load, split
from txmailhost.received import received_values
from txmailhost.spam import rules
from txmailhost.spam.bayes import combine, token_probability
from txmailhost.spam.connection import ConnectionChecks
from txmailhost.spam.sample import Sample, sample_of
from txmailhost.spam.scoring import arrival as relay_arrival
from txmailhost.spam.scoring import bayes_rule
from txmailhost.spam.tokens import TOKENIZER_VERSION, is_pair, tokens

Tokenizer = Callable[[Sample], set[str]]
_CONNECTION = ConnectionChecks("mx.bench.invalid")  # the e2e bench's server, without DNS


@dataclass
class Message:
    """One corpus message: its sample, and the content rules' score on it."""

    sample: Sample
    rules_score: float


def samples(data: Path, cache: Path) -> dict[str, list[Message]]:
    """Every group's messages read and ruled once (``cache``: a pickle, keyed by the
    tokenizer version so a changed ``sample.py`` is picked up by bumping it)."""
    path = cache / f"spam-eval-samples-v{TOKENIZER_VERSION}-relayed-arrival.pickle"
    if path.exists():  # (sample, score) pairs: the class is rebuilt here, whoever runs this
        with path.open("rb") as f:
            pairs = pickle.load(f)
        return {g: [Message(s, r) for s, r in pairs[g]] for g in pairs}
    out: dict[str, list[Message]] = {}
    for group in GROUPS:
        out[group] = []
        for raw in load(data, group):
            sample = sample_of(io.BytesIO(raw))
            connection, now = delivered(raw)
            context = rules.Context(now=now, authserv_id="mx.bench.invalid")
            hits = rules.content_hits(sample, context) + connection
            score = sum(rule.score for rule in hits)
            sample.memo.clear()
            out[group].append(Message(sample, score))
    with path.open("wb") as f:
        pickle.dump({g: [(m.sample, m.rules_score) for m in out[g]] for g in out}, f)
    return out


def delivered(raw: bytes) -> tuple[list[rules.Rule], float]:
    """What the server makes of ``raw`` before its content, delivered as the e2e bench
    delivers it, from 127.0.0.1 (no DNS: the bench's resolver answers NXDOMAIN): the
    connection checks on the client the corpus's collector received it from, as its
    ``Received:`` field wrote it down; and when it arrived (``scoring.arrival``), when the
    collector received it from that client, else now. The rules are run as at that moment
    (``DATE_IN_FUTURE``): judged in 2026, every message of 2002 would be years behind the
    clock and none ahead of it."""
    hits, hop = _CONNECTION.checked("127.0.0.1", "bench.invalid", None, received_values(raw))
    when = relay_arrival(hop)
    return hits, time.time() if when is None else when


def relayed_hits(raw: bytes) -> list[rules.Rule]:
    """``delivered``'s connection checks."""
    return delivered(raw)[0]


def arrival(raw: bytes) -> float:
    """``delivered``'s arrival."""
    return delivered(raw)[1]


def run_split(
    corpus: dict[str, list[Message]],
    size: int,
    seed: int,
    tokenize: Tokenizer = tokens,
    combiner: Callable[[list[float], list[float]], float] = combine,
    allow: bool = False,
) -> dict[str, list[tuple[float, float]]]:
    """Train on ``size`` + ``size`` of the split ``seed`` (``bench.spam_corpus``'s draws);
    per test group, (classifier probability, rules' score) of each message. ``allow``: as
    the IMAP trainer does, a ham's sender joins the allowed senders (a spam's leaves them),
    and a test message from an allowed sender scores ``USER_ALLOWED`` (-100)."""
    spam, ham, test = split(corpus, size, seed)
    classifier = Classifier(tokenize, allow)
    classifier.train(spam, ham)
    return {
        group: [classifier.judge(message, combiner) for message in test[group]]
        for group in TEST_GROUPS
    }


class Classifier:
    """The counts ``bayes.py``'s store would hold, in dictionaries: what each split trains
    (``run_split``, ``bench.spam_autolearn``). ``allow``: as the IMAP trainer does, a ham's
    sender joins the allowed senders (a spam's leaves them), and a message from an allowed
    sender scores ``USER_ALLOWED`` (-100)."""

    def __init__(self, tokenize: Tokenizer = tokens, allow: bool = False) -> None:
        self.tokenize = tokenize
        self.allow = allow
        self.counts: dict[str, list[int]] = {}
        self.learned: set[str] = set()
        self.totals = [0, 0]
        self.allowed: set[str] = set()

    def train(self, spam: list[Message], ham: list[Message]) -> None:
        """Learn ``spam`` then ``ham``, their senders listed as the trainer lists them."""
        for kind, pool in ((0, spam), (1, ham)):
            for message in pool:
                sender = from_address(message.sample)
                if self.allow and sender:
                    (self.allowed.add if kind else self.allowed.discard)(sender)
                self.learn(message, kind)

    def learn(self, message: Message, kind: int) -> None:
        """Count ``message``'s tokens as spam (``kind`` 0) or ham (1), once per message."""
        if message.sample.digest in self.learned:  # nothing learned twice (bayes.py)
            return
        self.learned.add(message.sample.digest)
        self.totals[kind] += 1
        for token in self.tokenize(message.sample):
            self.counts.setdefault(token, [0, 0])[kind] += 1

    def listed(self, message: Message) -> bool:
        """Is one of the message's senders allowed?"""
        return self.allow and not self.allowed.isdisjoint(sender_addresses(message.sample))

    def judge(
        self,
        message: Message,
        combiner: Callable[[list[float], list[float]], float] = combine,
    ) -> tuple[float, float]:
        """(classifier probability, rules' score, ``USER_ALLOWED`` included) of ``message``."""
        words: list[float] = []
        pairs: list[float] = []  # apart, as the store reads them (``bayes.combine``)
        nspam, nham = self.totals
        for token in self.tokenize(message.sample):
            c = self.counts.get(token)
            if c is not None:
                probability = token_probability(c[0], c[1], nspam, nham)
                (pairs if is_pair(token) else words).append(probability)
        allowed = rules.BY_NAME["USER_ALLOWED"].score if self.listed(message) else 0
        return combiner(words, pairs), message.rules_score + allowed


def from_address(sample: Sample) -> str:
    """The From: address, lower-cased ("" without one): what the trainer allows."""
    _name, address = email.utils.parseaddr(sample.header("from") or "")
    return address.lower() if "@" in address else ""


def envelope_sender(sample: Sample) -> str:
    """The envelope sender the corpus message came with (its Return-Path), else From."""
    _name, address = email.utils.parseaddr(sample.header("return-path") or "")
    return address if "@" in address else from_address(sample)


def sender_addresses(sample: Sample) -> set[str]:
    """What ``scoring.sender_addresses`` looks up for a message delivered with the
    envelope sender ``envelope_sender`` gives it."""
    return {a.lower() for a in (envelope_sender(sample), from_address(sample)) if a}


def total(probability: float, rules_score: float) -> float:
    """The filter's total: the rules' score plus the BAYES_xx band's (``scoring.Scorer``)."""
    band = bayes_rule(probability)
    return round(rules_score + (band.score if band else 0.0), 1)


def rates(
    runs: list[dict[str, list[tuple[float, float]]]],
    verdict: Callable[[float, float], bool],
) -> dict[str, list[float]]:
    """Per test group, the percentage judged spam by ``verdict`` in each run."""
    return {
        group: [100 * sum(verdict(p, r) for p, r in run[group]) / len(run[group]) for run in runs]
        for group in TEST_GROUPS
    }


def summary(figures: dict[str, list[float]]) -> str:
    return "  ".join(
        f"{statistics.mean(v):6.2f}% ({min(v):.2f}-{max(v):.2f})"
        for v in (figures[g] for g in TEST_GROUPS)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_eval", description=__doc__)
    parser.add_argument("--size", type=int, default=900, help="training messages of each kind")
    parser.add_argument("--repeats", type=int, default=5, help="random splits")
    parser.add_argument("--junk-score", type=float, default=5.0)
    parser.add_argument(
        "--allow", action="store_true", help="trained ham's senders allowed, as over IMAP"
    )
    parser.add_argument("--sweep", action="store_true", help="print the trade-off curve")
    parser.add_argument("--cache", type=Path, default=default_cache())
    args = parser.parse_args(argv)
    corpus = samples(fetch(args.cache), args.cache)
    runs = [run_split(corpus, args.size, seed, allow=args.allow) for seed in range(args.repeats)]
    print(f"{args.size} + {args.size}, {args.repeats} splits: spam 2 caught, easy ham 2, hard ham")
    print(
        f"score >= {args.junk_score}: ",
        summary(rates(runs, lambda p, r: total(p, r) >= args.junk_score)),
    )
    if args.sweep:
        for cut in (0.5, 0.9, 0.95, 0.99, 0.999):
            print(f"probability >= {cut}: ", summary(rates(runs, lambda p, r, c=cut: p >= c)))
        for cut in (3.5, 4.0, 4.5, 5.0, 6.0):
            print(f"score >= {cut}: ", summary(rates(runs, lambda p, r, c=cut: total(p, r) >= c)))
        from bench.spam_rspamd import at_ceiling  # the same reading as rspamd's rows

        ceilings = [at_ceiling({g: [total(p, r) for p, r in run[g]] for g in run}) for run in runs]
        for key in ceilings[0]:
            values = [c[key] for c in ceilings]
            print(
                f"spam 2 caught at the score threshold with {key} in Junk: "
                f"{statistics.mean(values):.2f}% ({min(values):.2f}-{max(values):.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
