"""``python -m bench.spam_ideas2``: more ideas for issue 17's accuracy, measured.

``bench.spam_ideas`` measured a discriminative learner, constants and scores learned from the
training half, and a links feature; this measures what the literature offers beyond them, on
the same splits (``bench.spam_corpus.split``), each learning from the training half only, the
figures those of ``bench.spam_eval --allow`` (trained ham's senders allowed, as over IMAP):

- ``osb``: orthogonal sparse bigrams (Siefkes, Assis, Chhabra & Yerazunis, "Combining Winnow
  and Orthogonal Sparse Bigrams for Incremental Spam Filtering", 2004; CRM114, OSBF-Lua): each
  word paired with each of the next ``--gap`` words, the distance in the token
  (``o3:click here`` is "click", two words, "here"), besides or instead of the neighbouring
  pairs, all of them counted as pairs under ``bayes.MAX_PAIR_CLUES``.
- ``bnr``: Bayesian noise reduction (Zdziarski, "Bayesian Noise Reduction: Contextual
  Symmetry Logic Utilizing Pattern Consistency Analysis", 2005; DSPAM): the text's words in
  order, each with its probability; where a word's two neighbours agree with each other
  (both at least ``--bnr-strength`` from 0.5 on the same side) and the word disagrees (on
  the other side of 0.5), that occurrence is noise; a word all of whose occurrences are noise
  is no clue.
- ``fields``: two classifiers, one over the header's tokens (the sender, subject, Message-ID,
  MIME structure) and one over the body's (words, pairs, URLs, capitals, sums), each
  combined with Fisher's method on its own; joined by their mean, by Fisher's method over
  the two, or as one classifier whose clues are shared out (at most ``--header-clues`` of
  the header's).
- ``plane``: the same two, and the whole message's classifier, joined by a decision learned
  on the training half: each training message judged by counts of the other four fifths,
  a logistic regression over the three log-odds (ham errors weighted nine times), its
  log-odds times ``--plane-scale`` put to the ``BAYES_xx`` bands.
- ``clues``: the clue selection: a pair left out when both its words are clues already (it
  says again what they said), or a word left out when a pair holding it is a clue; and the
  messages ranked by the log-ratio of Fisher's two chi-squared tails (``tails``), which goes
  on ordering where ``(S - H + 1) / 2`` is 1.0 to the last bit (a ranking only: "curve").
- ``graham``: Paul Graham's "A Plan for Spam" (2002) as a second opinion: ham counts
  doubled, a token seen fewer than five times (doubled ham) ignored, probabilities clipped
  to 0.01-0.99, the 15 furthest from 0.5 combined by Bayes's rule; its probability alone,
  and averaged with the classifier's (the probabilities, or their log-odds).
- ``domains``: the From domain of a trained ham allowed as its address is (when no spam, or
  at most one, trained came from it), at -100 as ``USER_ALLOWED`` or at -5, -2.5, -1.
- ``ppm``: a character-level compression model (Bratko, Cormack, Filipič, Lynam & Zupan,
  "Spam Filtering Using Statistical Data Compression Models", JMLR 2006, the TREC 2005
  winner): an order-``--order`` PPM-like model per class (counts of the next byte after each
  context, escape to shorter contexts, Witten-Bell), the message judged by how many bits
  each model needs for its first ``--ppm-chars`` characters; the difference per character
  as a score, alone and added to the classifier's log-odds.

Each prints, per setting: spam 2 caught, easy ham 2 and hard ham in Junk at 5.0 (mean and
range over the splits), the pooled curve (recall at 2% of hard ham of the probability
alone, as ``bench.spam_ideas``), and the hard ham in Junk per split. ``--first`` and
``--repeats`` choose the splits: parameters were chosen on 0-4 and confirmed on 5-9.
Figures are in ``docs/benchmarks-spam.rst`` ("What each change did").
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.spam_corpus import GROUPS, TEST_GROUPS, fetch, split
from bench.spam_corpus import load as corpus_load
from bench.spam_eval import default_cache, from_address, samples, sender_addresses, total
from txmailhost.spam import rules
from txmailhost.spam.bayes import MAX_CLUES, MAX_PAIR_CLUES, MIN_STRENGTH, chi2q, combine
from txmailhost.spam.bayes import token_probability as robinson
from txmailhost.spam.sample import Sample
from txmailhost.spam.scoring import bayes_rule
from txmailhost.spam.tokens import _all_words, _kept, tokens

WORD, PAIR, HEADER = 0, 1, 2  # kinds of token
_BODY_PREFIXES = ("skip:", "bi:", "CAPS:", "money:", "url:", "url-path:", "html:")
ALLOWED_SCORE = rules.BY_NAME["USER_ALLOWED"].score


class Vocabulary:
    """Tokens as numbers, with each one's kind and, for a pair, its two words' numbers."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.kinds: list[int] = []
        self.parts: list[tuple[int, int] | None] = []

    def number(self, token: str) -> int:
        found = self.numbers.get(token)
        if found is not None:
            return found
        found = self.numbers[token] = len(self.kinds)
        kind = kind_of(token)
        self.kinds.append(kind)
        self.parts.append(None)
        if kind == PAIR:
            first, _, second = token.partition(":")[2].partition(" ")
            if len(first) >= 3 and len(second) >= 3:
                self.parts[found] = (self.number(first), self.number(second))
        return found


def kind_of(token: str) -> int:
    if token.startswith("bi:") or (token[:1] == "o" and token[1:2].isdigit() and token[2:3] == ":"):
        return PAIR
    if ":" not in token or token.startswith(_BODY_PREFIXES):
        return WORD
    return HEADER


@dataclass
class Message:
    """A corpus message as the experiments need it."""

    ids: tuple[int, ...]  # distinct tokens
    sequence: tuple[int, ...]  # the text's words in order, repeats kept (``bnr``)
    text: bytes  # the start of the message for ``ppm``
    rules_score: float
    sender: str  # what training allows (``bench.spam_eval.from_address``)
    senders: frozenset[str]  # what a test message is looked up by
    digest: str


def osb_pairs(sample: Sample, gap: int, adjacent: bool) -> set[str]:
    """Each word of the first 20,000 characters paired with each of the next ``gap`` words
    (``bi:`` for neighbours, as ``tokens._pairs``; ``oN:`` for N - 1 words between)."""
    words = _all_words(sample.text[:20000].lower())
    shown = [w if len(w) <= 12 else "skip" for w in words]
    out = set()
    for distance in range(1 if adjacent else 2, gap + 1):
        prefix = "bi:" if distance == 1 else f"o{distance}:"
        out.update(f"{prefix}{a} {b}" for a, b in zip(shown, shown[distance:], strict=False))
    return out


def load(
    vocabulary: Vocabulary,
    extra: Callable[[Sample], set[str]] | None = None,
    pairs: bool = True,
    text_chars: int = 0,
    raw: bool = False,
) -> dict[str, list[Message]]:
    """Every group's messages as ``Message``: ``tokens`` (without its pairs unless ``pairs``),
    and ``extra``'s tokens; for ``ppm``, the first ``text_chars`` of the decoded text after a
    few header fields, or (``raw``) of the message as it came."""
    cache = default_cache()
    data = fetch(cache)
    corpus = samples(data, cache)
    out: dict[str, list[Message]] = {}
    for group in GROUPS:
        out[group] = []
        originals = corpus_load(data, group) if raw else []
        for index, message in enumerate(corpus[group]):
            sample = message.sample
            found = tokens(sample)
            if not pairs:
                found = {t for t in found if not t.startswith("bi:")}
            if extra is not None:
                found |= extra(sample)
            ids = tuple(sorted(vocabulary.number(t) for t in found))
            sequence = tuple(
                vocabulary.number(w) for w in _kept(_all_words(sample.text[:20000].lower()))
            )
            text = b""
            if text_chars:
                head = "\n".join(f"{n}: {v}" for n, v in sample.headers if n in _PPM_FIELDS)
                text = (head + "\n" + sample.text)[:text_chars].encode("utf-8", "replace")
                if raw:
                    text = originals[index][:text_chars]
            out[group].append(
                Message(
                    ids,
                    sequence,
                    text,
                    message.rules_score,
                    from_address(sample),
                    frozenset(sender_addresses(sample)),
                    sample.digest,
                )
            )
            sample.memo.clear()
    return out


_PPM_FIELDS = frozenset({"from", "subject", "to", "reply-to", "content-type", "x-mailer"})


class Counts:
    """The training half learned as ``bench.spam_eval.run_split`` learns it (each message
    once, ham's senders allowed, spam's not)."""

    def __init__(self, spam: list[Message], ham: list[Message]) -> None:
        self.counts: dict[int, list[int]] = {}
        self.totals = [0, 0]
        self.allowed: set[str] = set()
        self.learned: list[tuple[Message, int]] = []
        self.domains: dict[str, list[int]] = {}  # From domain: (spam, ham) trained (``domains``)
        seen: set[str] = set()
        for kind, pool in ((0, spam), (1, ham)):
            for message in pool:
                if message.sender:
                    (self.allowed.add if kind else self.allowed.discard)(message.sender)
                    domain = message.sender.rpartition("@")[2]
                    self.domains.setdefault(domain, [0, 0])[kind] += 1
                if message.digest in seen:
                    continue
                seen.add(message.digest)
                self.learned.append((message, kind))
                self.totals[kind] += 1
                for token in message.ids:
                    self.counts.setdefault(token, [0, 0])[kind] += 1
        self._p: dict[int, float] = {}

    def p(self, token: int) -> float | None:
        """Robinson's probability of a token seen in training, else None."""
        found = self._p.get(token)
        if found is None:
            c = self.counts.get(token)
            if c is None:
                return None
            found = self._p[token] = robinson(c[0], c[1], self.totals[0], self.totals[1])
        return found

    def rules_score(self, message: Message) -> float:
        listed = not self.allowed.isdisjoint(message.senders)
        return message.rules_score + (ALLOWED_SCORE if listed else 0.0)


# -- combining ----------------------------------------------------------------------------------


def fisher(clues: list[float]) -> float:
    """``bayes.combine``'s mathematics on clues already chosen."""
    if not clues:
        return 0.5
    s_log = sum(math.log(1.0 - p) for p in clues)
    h_log = sum(math.log(p) for p in clues)
    n = len(clues)
    return (1.0 - chi2q(-2.0 * s_log, 2 * n) - (1.0 - chi2q(-2.0 * h_log, 2 * n)) + 1.0) / 2.0


def log_chi2q(x2: float, v: int) -> float:
    """The natural log of ``bayes.chi2q`` (without its clipping at 1), which underflows to 0
    for a message's 50 clues that all agree: ``-m + log(sum of m**i / i!)``."""
    m = x2 / 2.0
    terms = [0.0]
    log_term = 0.0
    for i in range(1, v // 2):
        log_term += math.log(m) - math.log(i) if m > 0 else -math.inf
        terms.append(log_term)
    top = max(terms)
    return -m + top + math.log(sum(math.exp(t - top) for t in terms))


def tails(clues: list[float]) -> float:
    """The two chi-squared tails' log-ratio: ``log Q(ham) - log Q(spam)``, positive for spam;
    where ``fisher`` saturates at 0 or 1 this still orders messages by how sure."""
    if not clues:
        return 0.0
    n = 2 * len(clues)
    s_log = sum(math.log(1.0 - p) for p in clues)
    h_log = sum(math.log(p) for p in clues)
    return log_chi2q(-2.0 * h_log, n) - log_chi2q(-2.0 * s_log, n)


def as_filter(counts: Counts, message: Message, kinds: list[int]) -> float:
    """The filter's probability: ``bayes.combine`` of the words and the pairs."""
    words, pairs = [], []
    for token in message.ids:
        p = counts.p(token)
        if p is not None:
            (pairs if kinds[token] == PAIR else words).append(p)
    return combine(words, pairs)


def chosen(
    counts: Counts,
    ids: Iterable[int],
    vocabulary: Vocabulary,
    most: int = MAX_CLUES,
    most_pairs: int = MAX_PAIR_CLUES,
    most_header: int | None = None,
    redundant: str = "",
) -> list[float]:
    """The clues as ``bayes.combine`` chooses them (strongest first, a word before a pair as
    strong, at most ``most_pairs`` pairs), with ``most_header`` header tokens at most, and
    ``redundant``: "pair" leaves out a pair whose two words are clues already, "word" a word
    that a pair already chosen holds."""
    kinds, parts = vocabulary.kinds, vocabulary.parts
    candidates = []
    for token in ids:
        p = counts.p(token)
        if p is not None and abs(p - 0.5) >= MIN_STRENGTH:
            candidates.append((-abs(p - 0.5), kinds[token] == PAIR, token, p))
    candidates.sort()
    out: list[float] = []
    taken: set[int] = set()
    covered: set[int] = set()  # words held by a pair taken
    npairs = nheader = 0
    for _, is_pair, token, p in candidates:
        if len(out) >= most:
            break
        if is_pair:
            if npairs >= most_pairs:
                continue
            both = parts[token]
            if redundant == "pair" and both and both[0] in taken and both[1] in taken:
                continue
            npairs += 1
            if both:
                covered.update(both)
        elif kinds[token] == HEADER:
            if most_header is not None and nheader >= most_header:
                continue
            nheader += 1
        elif redundant == "word" and token in covered:
            continue
        taken.add(token)
        out.append(p)
    return out


# -- reporting ------------------------------------------------------------------------------------

Judged = dict[str, list[tuple[float, float]]]  # per group, (probability, total score)


def curve(runs: list[Judged], hard_ham: float = 2.0, group: str = "hard-ham-1") -> float:
    """Pooled over the splits, the share of spam 2 above the probability that leaves at most
    ``hard_ham`` % of hard ham (or ``group``) above it (``bench.spam_ideas.curve``)."""
    spam = [p for run in runs for p, _ in run["spam-2"]]
    hard = sorted((p for run in runs for p, _ in run[group]), reverse=True)
    cut = hard[int(len(hard) * hard_ham / 100)]
    return 100 * sum(p > cut for p in spam) / len(spam)


def report(name: str, runs: list[Judged], junk: float = 5.0) -> None:
    figures = []
    for group in TEST_GROUPS:
        rates = [100 * sum(s >= junk for _, s in run[group]) / len(run[group]) for run in runs]
        figures.append(f"{statistics.mean(rates):6.2f}% ({min(rates):.2f}-{max(rates):.2f})")
    hard = " ".join(str(sum(s >= junk for _, s in run["hard-ham-1"])) for run in runs)
    print(f"{name:<44}", "  ".join(figures), f" curve {curve(runs):.1f}%  hard [{hard}]")
    sys.stdout.flush()


def judge(counts: Counts, test: dict[str, list[Message]], figure: Callable[[Message], float]):
    """Per test group, (probability, the filter's total with it) of each message."""
    out: Judged = {}
    for group in TEST_GROUPS:
        out[group] = []
        for message in test[group]:
            p = figure(message)
            out[group].append((p, total(p, counts.rules_score(message))))
    return out


Variant = Callable[[Counts, Message], float]


def run(
    name: str,
    items: dict[str, list[Message]],
    args: argparse.Namespace,
    variants: dict[str, Variant],
) -> None:
    seeds = range(args.first, args.first + args.repeats)
    runs: dict[str, list[Judged]] = {v: [] for v in variants}
    started = time.monotonic()
    for seed in seeds:
        spam, ham, test = split(items, args.size, seed)
        counts = Counts(spam, ham)
        for v, figure in variants.items():
            runs[v].append(judge(counts, test, lambda m, c=counts, f=figure: f(c, m)))
    print(f"{name}, splits {seeds.start}-{seeds.stop - 1} ({time.monotonic() - started:.0f} s):")
    print(f"{'':<44} spam 2 caught         easy ham 2           hard ham at {args.junk}")
    for v in variants:
        report(v, runs[v], args.junk)


# -- the ideas ------------------------------------------------------------------------------------


def baseline_variants(vocabulary: Vocabulary) -> dict[str, Variant]:
    return {"as it is": lambda c, m: as_filter(c, m, vocabulary.kinds)}


def osb(args: argparse.Namespace) -> None:
    for gap in args.gaps:
        for adjacent in (True, False):
            vocabulary = Vocabulary()
            items = load(vocabulary, lambda s, g=gap, a=adjacent: osb_pairs(s, g, a), pairs=False)
            variants: dict[str, Variant] = {}
            for most_pairs in args.pair_clues:
                variants[f"at most {most_pairs} pairs"] = lambda c, m, n=most_pairs, v=vocabulary: (
                    fisher(chosen(c, m.ids, v, most_pairs=n))
                )
            shown = "neighbours and" if adjacent else "without neighbours,"
            run(f"OSB, {shown} gaps to {gap}", items, args, variants)


def bnr_noise(counts: Counts, message: Message, strength: float, every: bool = True) -> set[int]:
    """The words all of whose occurrences (``every``; else any of them) disagree with both
    their neighbours (which agree)."""
    ps = [counts.p(t) for t in message.sequence]
    noisy: dict[int, bool] = {}
    for i, token in enumerate(message.sequence):
        p = ps[i]
        flagged = False
        if p is not None and 0 < i < len(ps) - 1:
            left, right = ps[i - 1], ps[i + 1]
            if left is not None and right is not None:
                spammy = left >= 0.5 + strength and right >= 0.5 + strength and p < 0.5
                hammy = left <= 0.5 - strength and right <= 0.5 - strength and p > 0.5
                flagged = spammy or hammy
        if every:
            noisy[token] = noisy.get(token, True) and flagged
        else:
            noisy[token] = noisy.get(token, False) or flagged
    return {t for t, all_noise in noisy.items() if all_noise}


def bnr(args: argparse.Namespace) -> None:
    vocabulary = Vocabulary()
    items = load(vocabulary)
    variants = baseline_variants(vocabulary)
    for strength in args.bnr_strength:

        def figure(c: Counts, m: Message, s: float = strength) -> float:
            noise = bnr_noise(c, m, s)
            return fisher(chosen(c, (t for t in m.ids if t not in noise), vocabulary))

        def figure_any(c: Counts, m: Message, s: float = strength) -> float:
            noise = bnr_noise(c, m, s, every=False)
            return fisher(chosen(c, (t for t in m.ids if t not in noise), vocabulary))

        variants[f"noise reduced, neighbours {strength} from 0.5"] = figure
        variants[f"the same, any occurrence noise, {strength}"] = figure_any
    run("Bayesian noise reduction", items, args, variants)


def fields(args: argparse.Namespace) -> None:
    vocabulary = Vocabulary()
    items = load(vocabulary)
    kinds = vocabulary.kinds
    variants = baseline_variants(vocabulary)

    def parts(c: Counts, m: Message) -> tuple[float, float]:
        head = [t for t in m.ids if kinds[t] == HEADER]
        body = [t for t in m.ids if kinds[t] != HEADER]
        return fisher(chosen(c, head, vocabulary)), fisher(chosen(c, body, vocabulary))

    def clipped(p: float) -> float:
        return min(max(p, 1e-6), 1 - 1e-6)

    variants["header alone"] = lambda c, m: parts(c, m)[0]
    variants["body alone"] = lambda c, m: parts(c, m)[1]
    variants["mean of the two"] = lambda c, m: sum(parts(c, m)) / 2
    variants["Fisher over the two"] = lambda c, m: fisher([clipped(p) for p in parts(c, m)])
    variants["body, header at one third"] = lambda c, m: (lambda h, b: (h + 2 * b) / 3)(
        *parts(c, m)
    )
    variants["header below 0.7: no spam band"] = lambda c, m: (
        lambda h, b: as_filter(c, m, kinds) if h >= 0.7 else min(as_filter(c, m, kinds), 0.5)
    )(*parts(c, m))
    for most in args.header_clues:
        variants[f"one classifier, at most {most} header clues"] = lambda c, m, n=most: fisher(
            chosen(c, m.ids, vocabulary, most_header=n)
        )
    run("Header and body apart", items, args, variants)


def fitted(examples: list[tuple[tuple[float, ...], bool]], rounds: int = 1500) -> list[float]:
    """Logistic regression by gradient descent (a little L2), a ham's error weighted nine
    times (``bench.spam_ideas.HAM_COST``): the weights, the bias last."""
    width = len(examples[0][0])
    weights = [0.0] * (width + 1)
    cost = [1.0 if is_spam else 9.0 for _, is_spam in examples]
    norm = sum(cost)
    for _ in range(rounds):
        grad = [0.0] * (width + 1)
        for (x, is_spam), c in zip(examples, cost, strict=True):
            z = weights[-1] + sum(w * v for w, v in zip(weights, x, strict=False))
            g = c * (_sigmoid(z) - is_spam)
            for i, v in enumerate(x):
                grad[i] += g * v
            grad[-1] += g
        for i in range(width):
            weights[i] -= 0.5 * (grad[i] + 0.01 * weights[i]) / norm
        weights[-1] -= 0.5 * grad[-1] / norm
    return weights


def band(p: float) -> float:
    """The score of the ``BAYES_xx`` band ``p`` falls in (``bench.spam_eval.total``'s)."""
    found = bayes_rule(p)
    return found.score if found else 0.0


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def plane(args: argparse.Namespace) -> None:
    """The header's and the body's log-odds (and the whole's) joined by a decision learned
    on the training half: each training message judged by counts of the other four fifths
    of it, then a logistic regression over the three, ham errors weighted nine times."""
    vocabulary = Vocabulary()
    items = load(vocabulary)
    kinds = vocabulary.kinds

    def features(c: Counts, m: Message) -> tuple[float, ...]:
        head = [t for t in m.ids if kinds[t] == HEADER]
        body = [t for t in m.ids if kinds[t] != HEADER]
        parts = (as_filter(c, m, kinds), fisher(chosen(c, head, vocabulary)))
        parts += (fisher(chosen(c, body, vocabulary)),)
        return tuple(_logit(p) / 10 for p in parts)

    seeds = range(args.first, args.first + args.repeats)
    runs: dict[str, list[Judged]] = {"as it is": [], "learned plane": []}
    runs.update({f"learned plane, log-odds times {k}": [] for k in args.plane_scale})
    for seed in seeds:
        spam, ham, test = split(items, args.size, seed)
        counts = Counts(spam, ham)
        learned = counts.learned
        examples = []
        for k in range(5):
            fold = Counts(
                [m for i, (m, kind) in enumerate(learned) if i % 5 != k and kind == 0],
                [m for i, (m, kind) in enumerate(learned) if i % 5 != k and kind == 1],
            )
            for m, kind in learned[k::5]:
                examples.append((features(fold, m), kind == 0))
        weights = fitted(examples)
        print(f"split {seed}: weights {[round(w, 2) for w in weights]}", flush=True)
        runs["as it is"].append(judge(counts, test, lambda m, c=counts: as_filter(c, m, kinds)))
        runs["learned plane"].append(
            judge(
                counts,
                test,
                lambda m, c=counts, w=weights: _sigmoid(
                    w[-1] + sum(a * b for a, b in zip(w, features(c, m), strict=False))
                ),
            )
        )
        for k in args.plane_scale:  # the same ranking, its probabilities put to the bands
            runs[f"learned plane, log-odds times {k}"].append(
                {
                    g: [
                        (_sigmoid(k * _logit(p)), total(_sigmoid(k * _logit(p)), s - band(p)))
                        for p, s in judged
                    ]
                    for g, judged in runs["learned plane"][-1].items()
                }
            )
    print(f"Header and body joined by a learned plane, splits {seeds.start}-{seeds.stop - 1}:")
    for name in runs:
        report(name, runs[name], args.junk)


def clues(args: argparse.Namespace) -> None:
    vocabulary = Vocabulary()
    items = load(vocabulary)
    variants = baseline_variants(vocabulary)
    variants["same clues (check)"] = lambda c, m: fisher(chosen(c, m.ids, vocabulary))
    variants["no pair whose words are clues"] = lambda c, m: fisher(
        chosen(c, m.ids, vocabulary, redundant="pair")
    )
    variants["no word a pair taken holds"] = lambda c, m: fisher(
        chosen(c, m.ids, vocabulary, redundant="word")
    )
    variants["ranked by the tails' log-ratio (curve only)"] = lambda c, m: tails(
        chosen(c, m.ids, vocabulary)
    )
    variants["no pair whose words are clues, 60 clues"] = lambda c, m: fisher(
        chosen(c, m.ids, vocabulary, most=60, redundant="pair")
    )
    run("Clue selection", items, args, variants)


def graham_p(counts: Counts, message: Message, most: int = 15) -> float:
    nbad, ngood = counts.totals
    found = []
    for token in message.ids:
        c = counts.counts.get(token)
        if c is None:
            continue
        b, g = c[0], 2 * c[1]
        if b + g < 5:
            continue
        bad, good = min(1.0, b / nbad), min(1.0, g / ngood)
        found.append(max(0.01, min(0.99, bad / (bad + good))))
    found.sort(key=lambda p: -abs(p - 0.5))
    found = found[:most]
    if not found:
        return 0.4  # Graham's unknown
    spam = math.exp(sum(math.log(p) for p in found))
    ham = math.exp(sum(math.log(1 - p) for p in found))
    return spam / (spam + ham)


def graham(args: argparse.Namespace) -> None:
    vocabulary = Vocabulary()
    items = load(vocabulary)
    kinds = vocabulary.kinds
    variants = baseline_variants(vocabulary)
    variants["Graham alone"] = lambda c, m: graham_p(c, m)
    variants["mean with Graham"] = lambda c, m: (as_filter(c, m, kinds) + graham_p(c, m)) / 2
    variants["mean of log-odds with Graham"] = lambda c, m: _mean_logit(
        as_filter(c, m, kinds), graham_p(c, m)
    )
    run("Graham's combining", items, args, variants)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def _mean_logit(*ps: float) -> float:
    z = sum(map(_logit, ps)) / len(ps)
    return 1 / (1 + math.exp(-z))


def domains(args: argparse.Namespace) -> None:
    """A ham's From domain allowed as its address is (when no spam trained came from it)."""
    vocabulary = Vocabulary()
    items = load(vocabulary)
    seeds = range(args.first, args.first + args.repeats)
    settings = [(most, score) for most in (0, 1) for score in (-100.0, -5.0, -2.5, -1.0)]
    runs: dict[str, list[Judged]] = {"as it is": []}
    names = {k: f"domain allowed at {k[1]}, spam from it <= {k[0]}" for k in settings}
    runs.update({names[k]: [] for k in settings})
    for seed in seeds:
        spam, ham, test = split(items, args.size, seed)
        counts = Counts(spam, ham)
        for name in runs:
            runs[name].append({g: [] for g in TEST_GROUPS})
        for group in TEST_GROUPS:
            for message in test[group]:
                p = as_filter(counts, message, vocabulary.kinds)
                score = counts.rules_score(message)
                runs["as it is"][-1][group].append((p, total(p, score)))
                listed = score <= ALLOWED_SCORE / 2
                found = [counts.domains.get(a.rpartition("@")[2]) for a in message.senders]
                for most, extra in settings:
                    allowed = not listed and any(f and f[1] and f[0] <= most for f in found)
                    added = score + (extra if allowed else 0.0)
                    runs[names[(most, extra)]][-1][group].append((p, total(p, added)))
    print(f"From domains of trained ham allowed, splits {seeds.start}-{seeds.stop - 1}:")
    for name in runs:
        report(name, runs[name], args.junk)


# -- PPM ------------------------------------------------------------------------------------------


class PPM:
    """Bytes after each context of up to ``order`` bytes, with PPM's escapes (method C,
    Witten-Bell) down to a uniform model; no exclusions (simpler, a little weaker). Flat
    tables: ``symbols`` counts a context followed by its byte, ``contexts`` each context's
    (occurrences, distinct bytes after it)."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.symbols: dict[bytes, int] = {}
        self.contexts: dict[bytes, list[int]] = {}

    def learn(self, text: bytes) -> None:
        symbols, contexts = self.symbols, self.contexts
        for i in range(len(text)):
            for k in range(min(self.order, i) + 1):
                key = text[i - k : i + 1]
                seen = symbols.get(key, 0)
                symbols[key] = seen + 1
                context = contexts.get(key[:-1])
                if context is None:
                    context = contexts[key[:-1]] = [0, 0]
                context[0] += 1
                if not seen:
                    context[1] += 1

    def bits(self, text: bytes) -> float:
        symbols, contexts = self.symbols, self.contexts
        total = 0.0
        log2 = math.log2
        for i in range(len(text)):
            escape = 1.0
            for k in range(min(self.order, i), -1, -1):
                context = contexts.get(text[i - k : i])
                if context is None:
                    continue
                n, distinct = context
                hit = symbols.get(text[i - k : i + 1])
                if hit:
                    total -= log2(escape * hit / (n + distinct))
                    break
                escape *= distinct / (n + distinct)
            else:
                total -= log2(escape / 256)
        return total


def ppm(args: argparse.Namespace) -> None:
    vocabulary = Vocabulary()
    items = load(vocabulary, text_chars=args.ppm_chars, raw=args.raw)
    kinds = vocabulary.kinds
    seeds = range(args.first, args.first + args.repeats)
    names = ("as it is", "PPM alone", "log-odds + PPM / 2", "log-odds + PPM")
    runs: dict[str, list[Judged]] = {n: [] for n in names}
    costs = []
    for seed in seeds:
        spam, ham, test = split(items, args.size, seed)
        counts = Counts(spam, ham)
        models = (PPM(args.order), PPM(args.order))
        for message, kind in counts.learned:
            models[kind].learn(message.text)
        for name in names:
            runs[name].append({g: [] for g in TEST_GROUPS})
        for group in TEST_GROUPS:
            for message in test[group]:
                p = as_filter(counts, message, kinds)
                started = time.process_time()
                n = max(1, len(message.text))
                margin = (models[1].bits(message.text) - models[0].bits(message.text)) / n
                costs.append((time.process_time() - started, n))
                score = counts.rules_score(message)
                z = _logit(p)
                for name, q in zip(
                    names,
                    (
                        p,
                        1 / (1 + math.exp(-args.ppm_scale * margin)),
                        1 / (1 + math.exp(-(z + args.ppm_scale * margin / 2))),
                        1 / (1 + math.exp(-(z + args.ppm_scale * margin))),
                    ),
                    strict=True,
                ):
                    runs[name][-1][group].append((q, total(q, score)))
        print(f"split {seed} done", flush=True)
    per_kib = 1e3 * sum(t for t, _ in costs) / sum(n for _, n in costs) * 4096
    shown = "octets of the message" if args.raw else "characters of fields and text"
    print(f"PPM order {args.order}, first {args.ppm_chars} {shown}, scale {args.ppm_scale}")
    print(f"cost: {per_kib:.1f} ms of CPU for 4 KiB judged by both models")
    for name in names:
        report(name, runs[name], args.junk)
    for name in names[:2]:
        shown = f"{curve(runs[name], 1.0, 'easy-ham-2'):.1f}%"
        print(f"{name}: recall at 1% of easy ham {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_ideas2", description=__doc__)
    parser.add_argument(
        "idea", choices=("osb", "bnr", "fields", "clues", "graham", "ppm", "domains", "plane")
    )
    parser.add_argument("--size", type=int, default=900, help="training messages of each kind")
    parser.add_argument("--first", type=int, default=0, help="first split")
    parser.add_argument("--repeats", type=int, default=5, help="splits")
    parser.add_argument("--junk", type=float, default=5.0, help="the Junk threshold")
    parser.add_argument("--gaps", type=int, nargs="+", default=[2, 4], help="osb: widest gaps")
    parser.add_argument("--pair-clues", type=int, nargs="+", default=[25], help="osb: pairs")
    parser.add_argument("--bnr-strength", type=float, nargs="+", default=[0.3, 0.4])
    parser.add_argument("--header-clues", type=int, nargs="+", default=[10, 20])
    parser.add_argument(
        "--plane-scale", type=float, nargs="+", default=[2.0, 3.0, 4.0], help="plane: k"
    )
    parser.add_argument("--order", type=int, default=3, help="ppm: context bytes")
    parser.add_argument("--ppm-chars", type=int, default=3000, help="ppm: characters modelled")
    parser.add_argument("--raw", action="store_true", help="ppm: the message as it came")
    parser.add_argument("--ppm-scale", type=float, default=4.0, help="ppm: log-odds per bit")
    args = parser.parse_args(argv)
    ideas = {
        "bnr": bnr,
        "fields": fields,
        "clues": clues,
        "graham": graham,
        "domains": domains,
        "plane": plane,
    }
    if args.idea in ideas:
        ideas[args.idea](args)
    elif args.idea == "osb":
        osb(args)
    else:
        ppm(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
