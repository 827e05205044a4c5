"""``txmailhost spam ...``: the rules, training, sender lists, and scoring a file by hand.

- ``spam rules`` — every rule: name, score, what it means (the names in ``X-Spam-Report``);
- ``spam train --user U --spam DIR --ham DIR`` — learn the files under DIR (a Maildir, an
  mbox-free directory of one message per file, searched recursively) as U's spam or ham
  (and the global set's); ``--user`` left out trains the global set only;
- ``spam check FILE [--user U]`` — the score and rules a message gets, as the server would;
- ``spam allow|block ADDRESS [--user U]`` and ``spam forget ADDRESS`` — a user's (or,
  without ``--user``, everyone's) allowed and blocked senders: an address or ``@domain``;
- ``spam threshold --user U [SCORE]`` — U's own Junk threshold (none: the server's);
- ``spam stats [--user U]`` — messages learned, the senders listed, U's threshold.

The commands open ``DATA/spam/bayes.sqlite`` with the server's code (``bayes.py``); SQLite's
WAL lets them run while the server does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from txmailhost.spam import rules
from txmailhost.spam.bayes import GLOBAL, TokenStore
from txmailhost.spam.sample import sample_of
from txmailhost.spam.scoring import Scorer, owner_of, store_path
from txmailhost.spam.training import learn_file


def register(
    commands: Any, with_config: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Add the ``spam`` command group to the CLI's subparsers."""
    spam = commands.add_parser("spam", help="spam filtering: rules, training, sender lists")
    actions = spam.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("rules", help="list the rules and their scores")
    listing.set_defaults(run=_rules)
    train = actions.add_parser("train", help="learn messages from directories as spam or ham")
    train.add_argument("--user", help="whose classifier (default: the global one only)")
    train.add_argument("--spam", metavar="DIR", action="append", default=[])
    train.add_argument("--ham", metavar="DIR", action="append", default=[])
    train.set_defaults(run=with_config(_train))
    check = actions.add_parser("check", help="score one message file as the server would")
    check.add_argument("file")
    check.add_argument("--user", help="judge with this user's training and sender lists")
    check.set_defaults(run=with_config(_check))
    for name, text in (
        ("allow", "never file mail from this sender (address or @domain) as spam"),
        ("block", "always file mail from this sender (address or @domain) as spam"),
        ("forget", "take a sender off the allow and block lists"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("address")
        action.add_argument("--user", help="for this user only (default: for everyone)")
        action.set_defaults(run=with_config(_sender(name)), kind=name)
    threshold = actions.add_parser(
        "threshold", help="a user's own Junk threshold (or, without SCORE, the server's again)"
    )
    threshold.add_argument("--user", required=True)
    threshold.add_argument("score", nargs="?", type=float)
    threshold.set_defaults(run=with_config(_threshold))
    stats = actions.add_parser("stats", help="messages learned and senders listed")
    stats.add_argument("--user", help="this user's (default: the global set)")
    stats.set_defaults(run=with_config(_stats))


def _rules(args: argparse.Namespace) -> int:
    for rule in rules.RULES:
        print(f"{rule.name:<20} {rule.score:6.1f}  {rule.description}")
    return 0


def _store(config: Any) -> TokenStore:
    return TokenStore(store_path(config.data_dir))


def _owner(args: argparse.Namespace) -> str:
    return owner_of(args.user) if args.user else GLOBAL


def _files(directory: str) -> Iterator[str]:
    """Message files under ``directory``, in a stable order (a Maildir's tmp/ left out)."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "tmp")
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(root, name)


def _train(args: argparse.Namespace, config: Any) -> int:
    if not args.spam and not args.ham:
        print("txmailhost spam train: give --spam DIR and/or --ham DIR", file=sys.stderr)
        return 2
    for directory in [*args.spam, *args.ham]:
        if not os.path.isdir(directory):
            print(f"txmailhost spam train: {directory}: not a directory", file=sys.stderr)
            return 1
    store = _store(config)
    owner = _owner(args)
    for is_spam, directories in ((True, args.spam), (False, args.ham)):
        learned = seen = 0
        for directory in directories:
            for path in _files(directory):
                seen += 1
                try:
                    learned += learn_file(store, owner, path, is_spam)
                except OSError as e:
                    print(f"txmailhost spam train: {path}: {e.strerror}", file=sys.stderr)
        if directories:
            kind = "spam" if is_spam else "ham"
            print(f"{kind}: learned {learned} of {seen} messages ({seen - learned} known)")
    return 0


def _check(args: argparse.Namespace, config: Any) -> int:
    try:
        with open(args.file, "rb") as stream:
            sample = sample_of(stream)
    except OSError as e:
        print(f"txmailhost spam check: {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    settings = config.filters.settings.get("spam", {})
    scorer = Scorer(_store(config), settings.get("authserv_id") or config.hostname)
    score = scorer.score(sample, _owner(args) or None)
    required = float(settings.get("junk_score", 5.0))
    for name, value in score.fields(required):
        print(f"{name}: {value}")
    return 0


def _sender(kind: str) -> Callable[[argparse.Namespace, Any], int]:
    def run(args: argparse.Namespace, config: Any) -> int:
        address = args.address.strip().lower()
        if "@" not in address or address.endswith("@") or " " in address:
            print(f"txmailhost spam {kind}: {args.address!r} is not an address or @domain",
                  file=sys.stderr)  # fmt: skip
            return 2
        _store(config).set_sender(_owner(args), address, None if kind == "forget" else kind)
        return 0

    return run


def _threshold(args: argparse.Namespace, config: Any) -> int:
    _store(config).set_threshold(owner_of(args.user), args.score)
    return 0


def _stats(args: argparse.Namespace, config: Any) -> int:
    store = _store(config)
    owner = _owner(args)
    spam, ham = store.totals(owner)
    print(f"learned: {spam} spam, {ham} ham ({'global' if owner == GLOBAL else owner})")
    trained = store.trained_tokenizer()
    if trained is not None and trained != store.tokenizer_version:
        print(
            f"tokenizer: counts learned with version {trained}, the filter's is"
            f" {store.tokenizer_version}; retraining from scratch judges better"
        )
    own = store.threshold(owner) if owner != GLOBAL else None
    if own is not None:
        print(f"junk threshold: {own:.1f}")
    for address, kind in store.senders(owner):
        print(f"{kind} {address}")
    return 0
