"""``python -m bench.spam_cpu``: the scoring process's work per message, in-process, old code
beside new, and proof that a change to it leaves every verdict as it was.

What the scoring process does for a request (``scorechild._answer``: the request's header
parsed, the sample read, rules, tokens, the classifier, the answer written) is run here in
one process on the requests the server would send it: the throughput bench's 4 KiB message
(``bench.messages``) and every message of the SpamAssassin public corpus
(``bench.spam_corpus`` fetches it), each read as the server reads it (``read_capped``).
The store is trained first on 500 spam 2 + 500 easy ham 2 (``--store``: kept, so that the old
and the new code judge with the very same counts).

- ``dump FILE``: for each request, the hash of its sorted tokens and the child's answer,
  one line each (the clock the rules see is fixed, so a Date rule can't move between runs).
- ``compare A B``: the lines that differ (none: the same tokens and the same scores, to the
  last digit, for every message).
- ``time --old REV``: CPU a message (``time.process_time``) of ``_answer`` for the bench's
  message and for a corpus mix, the code of git revision ``REV`` (a renamed copy,
  ``txmailhost_old``) and the code of the tree, alternating rounds in this one process, the
  best of ``--rounds`` each.

Use ``nice -n 10``: it is CPU for a minute or two (``instructions``: some ten minutes).
Its ``callgrind_control`` names its own process, as ``bench.spam_instructions``' names the
server's: a bare ``callgrind_control`` turns counting on and off in every process under
callgrind on the machine, another bench's too.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import messages, spam_corpus

RECIPIENT = "u1@bench.test"
SENDER = "bench@client.test"
FIXED_NOW = 1_780_000_000.0  # the clock the rules see in ``dump`` (2026-05-28)
Request = tuple[bytes, bytes, bytes]


def train(package: str, path: Path, count: int, cache: Path) -> None:
    """A store at ``path`` trained on ``count`` spam 2 and ``count`` easy ham 2 (globally, as
    ``txmailhost spam train`` does), unless it is there already."""
    if path.exists():
        return
    bayes = importlib.import_module(f"{package}.spam.bayes")
    training = importlib.import_module(f"{package}.spam.training")
    data = spam_corpus.fetch(cache)
    store = bayes.TokenStore(str(path))
    for is_spam, group in ((True, "spam-2"), (False, "easy-ham-2")):
        for raw in spam_corpus.load(data, group)[:count]:
            training.learn_stream(store, bayes.GLOBAL, io.BytesIO(raw), is_spam)
    store.close()


def requests(package: str, cache: Path) -> list[tuple[str, Request]]:
    """(name, request) of the bench's message and of every corpus message, as the server's
    ``SpamFilter._offloaded`` sends them."""
    sample = importlib.import_module(f"{package}.spam.sample")
    data = spam_corpus.fetch(cache)
    raws = [("bench", messages.message(0, 4096, SENDER, RECIPIENT))]
    for group in spam_corpus.GROUPS:
        raws += [(f"{group}/{i}", raw) for i, raw in enumerate(spam_corpus.load(data, group))]
    out = []
    for name, raw in raws:
        head, body, truncated = sample.read_capped(io.BytesIO(raw))
        header = {"owners": ["u1"], "sender": SENDER, "connection": [], "truncated": truncated}
        out.append((name, (json.dumps(header).encode(), head, body)))
    return out


class Code:
    """One version of the scoring process's code: its ``_answer`` with a scorer on ``store``."""

    def __init__(self, package: str, store: Path) -> None:
        bayes = importlib.import_module(f"{package}.spam.bayes")
        cluecache = importlib.import_module(f"{package}.spam.cluecache")
        sqlitedb = importlib.import_module(f"{package}.spam.sqlitedb")
        scorer = importlib.import_module(f"{package}.spam.scorer")
        self.child = importlib.import_module(f"{package}.spam.scorechild")
        self.sample = importlib.import_module(f"{package}.spam.sample")
        self.tokens = importlib.import_module(f"{package}.spam.tokens").tokens
        self.scorer_module = scorer
        self.store = bayes.TokenStore(
            str(store), mmap_size=sqlitedb.MMAP_SIZE, cache_tokens=cluecache.DEFAULT_MOST
        )
        self.scorer = scorer.Scorer(self.store, "mx.bench.invalid")

    def answer(self, request: Request) -> bytes:
        return self.child._answer(self.scorer, *request)

    def token_digest(self, request: Request) -> str:
        truncated = json.loads(request[0])["truncated"]
        found = self.tokens(self.sample.sample_of_bytes(request[1], request[2], truncated))
        return hashlib.sha256("\n".join(sorted(found)).encode("utf-8", "surrogatepass")).hexdigest()


def dump(out: Path, store: Path, cache: Path) -> None:
    code = Code("txmailhost", store)
    code.scorer_module.time = types.SimpleNamespace(time=lambda: FIXED_NOW)
    with out.open("w") as f:
        for name, request in requests("txmailhost", cache):
            f.write(f"{name}\t{code.token_digest(request)}\t{code.answer(request).decode()}\n")


def compare(first: Path, second: Path) -> int:
    a, b = first.read_text().splitlines(), second.read_text().splitlines()
    if len(a) != len(b):
        print(f"{len(a)} lines against {len(b)}")
        return 1
    differ = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    for x, y in differ[:20]:
        print(f"- {x[:300]}\n+ {y[:300]}")
    print(f"{len(a)} messages, {len(differ)} differ")
    return 1 if differ else 0


def old_package(revision: str, into: Path) -> str:
    """The ``txmailhost`` package of ``revision`` as ``txmailhost_old`` under ``into``."""
    archive = subprocess.run(
        ["git", "archive", revision, "txmailhost"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "txmailhost").rename(into / "txmailhost_old")
    for path in (into / "txmailhost_old").rglob("*.py"):
        text = path.read_text()
        text = text.replace("from txmailhost.", "from txmailhost_old.")
        text = text.replace("from txmailhost import", "from txmailhost_old import")
        text = text.replace("import txmailhost.", "import txmailhost_old.")
        path.write_text(text)
    sys.path.insert(0, str(into))
    return "txmailhost_old"


def _cpu_per_message(answer: Callable[[Request], Any], batch: list[Request]) -> float:
    started = time.process_time()
    for request in batch:
        answer(request)
    return (time.process_time() - started) / len(batch)


def _as_in_the_child(code: Code) -> None:
    """The garbage collector as the scoring process sets it (``scorechild.main``): what is
    loaded here (the corpus's requests) frozen out of its way, and run as seldom."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(code.child.GC_THRESHOLD, 20, 20)


def timing(revision: str, store: Path, cache: Path, rounds: int, mix: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        old = Code(old_package(revision, Path(work)), store)
        new = Code("txmailhost", store)
        every = requests("txmailhost", cache)
        bench = [every[0][1]] * 300
        corpus = [r for _name, r in every[1:]]
        random.Random(17).shuffle(corpus)
        _as_in_the_child(old)
        batches = {"the bench's 4 KiB message x300": bench, f"corpus mix of {mix}": corpus[:mix]}
        for title, batch in batches.items():
            best = {"old": float("inf"), "new": float("inf")}
            for code in (old, new):  # warm: the clue caches filled, as in a running child
                _cpu_per_message(code.answer, batch)
            for _ in range(rounds):
                for label, code in (("old", old), ("new", new)):
                    best[label] = min(best[label], _cpu_per_message(code.answer, batch))
            print(
                f"{title}: {revision} {best['old'] * 1e6:.0f} us, this tree "
                f"{best['new'] * 1e6:.0f} us ({100 * (best['new'] / best['old'] - 1):+.1f}%)",
                flush=True,
            )


def _batch(which: str, every: list[tuple[str, Request]], mix: int) -> list[Request]:
    if which == "bench":
        return [every[0][1]] * 100
    corpus = [r for _name, r in every[1:]]
    random.Random(17).shuffle(corpus)
    return corpus[:mix]


def count(
    revision: str | None, which: str, passes: int, mix: int, store: Path, cache: Path
) -> None:
    """Under callgrind (``instructions``): the batch answered once to warm the caches, then
    ``passes`` times with instrumentation on (``callgrind_control``)."""
    with tempfile.TemporaryDirectory() as work:
        code = Code(old_package(revision, Path(work)) if revision else "txmailhost", store)
        batch = _batch(which, requests("txmailhost", cache), mix)
        _as_in_the_child(code)
        for request in batch:
            code.answer(request)
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True)
        for _ in range(passes):
            for request in batch:
                code.answer(request)


def instructions(revision: str, mix: int, store: Path, cache: Path) -> None:
    """Instructions a message of ``_answer``, ``revision`` and this tree: each batch counted
    over one pass and over two (the difference is one pass alone: start-up, the toggle and the
    interpreter's exit cancel out)."""
    for which in ("bench", "mix"):
        found = {}
        for label, old in ((revision, [f"--old={revision}"]), ("this tree", [])):
            totals = []
            for passes in (1, 2):
                with tempfile.TemporaryDirectory() as work:
                    out = Path(work) / "callgrind.out"
                    subprocess.run(
                        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                         f"--callgrind-out-file={out}", sys.executable, "-m", "bench.spam_cpu",
                         f"--store={store}", f"--cache={cache}", "count", *old,
                         f"--batch={which}", f"--passes={passes}", f"--mix={mix}"],
                        check=True, capture_output=True,
                    )  # fmt: skip
                    totals.append(_summary(out))
            size = len(_batch(which, [("bench", (b"", b"", b""))] * (mix + 1), mix))
            found[label] = (totals[1] - totals[0]) / size
        old_count, new_count = found[revision], found["this tree"]
        print(
            f"{which}: {revision} {old_count / 1e6:.3f} M instructions a message, this tree "
            f"{new_count / 1e6:.3f} M ({100 * (new_count / old_count - 1):+.1f}%)",
            flush=True,
        )


def _summary(path: Path) -> int:
    with path.open() as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise ValueError(f"no summary in {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spam_cpu", description=__doc__)
    parser.add_argument("--cache", type=Path, default=spam_corpus.default_cache())
    parser.add_argument(
        "--store", type=Path, default=spam_corpus.default_cache() / "spam-cpu-store.sqlite"
    )
    parser.add_argument("--trained", type=int, default=500)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dump").add_argument("out", type=Path)
    pair = commands.add_parser("compare")
    pair.add_argument("first", type=Path)
    pair.add_argument("second", type=Path)
    timed = commands.add_parser("time")
    timed.add_argument("--old", default="HEAD", help="git revision to compare with")
    timed.add_argument("--rounds", type=int, default=5)
    timed.add_argument("--mix", type=int, default=600, help="corpus messages a round")
    counted = commands.add_parser("instructions")
    counted.add_argument("--old", default="HEAD", help="git revision to compare with")
    counted.add_argument("--mix", type=int, default=200, help="corpus messages a pass")
    one = commands.add_parser("count", help="(run by instructions, under callgrind)")
    one.add_argument("--old", default=None)
    one.add_argument("--batch", choices=("bench", "mix"), required=True)
    one.add_argument("--passes", type=int, required=True)
    one.add_argument("--mix", type=int, default=200)
    args = parser.parse_args(argv)
    if args.command == "compare":
        return compare(args.first, args.second)
    train("txmailhost", args.store, args.trained, args.cache)
    if args.command == "dump":
        dump(args.out, args.store, args.cache)
    elif args.command == "count":
        count(args.old, args.batch, args.passes, args.mix, args.store, args.cache)
    elif args.command == "instructions":
        instructions(args.old, args.mix, args.store, args.cache)
    else:
        timing(args.old, args.store, args.cache, args.rounds, args.mix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
