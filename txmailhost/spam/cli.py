"""``txmailhost spam ...``: the rules, training, sender lists, and scoring a file by hand.

- ``spam rules`` — every rule: name, score, what it means (the names in ``X-Spam-Report``);
- ``spam train --user U --spam DIR --ham DIR`` — learn the files under DIR (a Maildir, an
  mbox-free directory of one message per file, searched recursively) as U's spam or ham
  (and the global set's); ``--user`` left out trains the global set only;
- ``spam check FILE [--user U]`` — the score and rules a message gets, as the server would
  (the client its top ``Received:`` names judged as that field recorded it, without DNS);
- ``spam allow|block ADDRESS [--user U]`` and ``spam forget ADDRESS`` — a user's (or,
  without ``--user``, everyone's) allowed and blocked senders: an address or ``@domain``;
- ``spam threshold --user U [SCORE]`` — U's own Junk threshold (none: the server's);
- ``spam stats [--user U]`` — messages learned, the senders listed, U's threshold.

``--user`` names an account that exists (``train``, ``allow``, ``block``, ``threshold``;
``forget``, ``check`` and ``stats`` also take one removed since) and is keyed as the server
keys a recipient: lower case, NFC, the domain's A-label. A sender is kept the same way, so
``@bücher.example`` matches mail from ``xn--bcher-kva.example``. A threshold is a finite
score from -100 to 100.

The commands open ``DATA/spam/bayes.sqlite`` with the server's code (``bayes.py``); SQLite's
WAL lets them run while the server does.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from txmailhost.accounts.addresses import canonical_address, canonical_domain, fold_local
from txmailhost.accounts.interfaces import AccountError
from txmailhost.received import received_values
from txmailhost.spam import rules
from txmailhost.spam.bayes import GLOBAL, TokenStore
from txmailhost.spam.connection import ConnectionChecks
from txmailhost.spam.sample import sample_of
from txmailhost.spam.scoring import Scorer, arrival, owner_of, store_path
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
    threshold.add_argument(
        "score", nargs="?", type=_score, help=f"from {-MAX_SCORE:g} to {MAX_SCORE:g}"
    )
    threshold.set_defaults(run=with_config(_threshold))
    stats = actions.add_parser("stats", help="messages learned and senders listed")
    stats.add_argument("--user", help="this user's (default: the global set)")
    stats.set_defaults(run=with_config(_stats))


MAX_SCORE = 100.0  # SpamAssassin's USER_IN_BLOCKLIST: a threshold beyond it means nothing


def _score(text: str) -> float:
    """A Junk threshold: a finite number no further from 0 than any score a rule gives."""
    try:
        score = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(score) or abs(score) > MAX_SCORE:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a score from -100 to 100")
    return score


def _rules(args: argparse.Namespace) -> int:
    for rule in rules.RULES:
        print(f"{rule.name:<20} {rule.score:6.1f}  {rule.description}")
    return 0


def token_store(config: Any) -> TokenStore:
    """The token store with the server's ``[filters.settings.spam]`` bounds, so that training
    here expires, shares with the global set and ``check`` judges as the server does."""
    settings = config.filters.settings.get("spam", {})
    return TokenStore(
        store_path(config.data_dir),
        min_messages=int(settings.get("bayes_min_messages", 20)),
        max_tokens=int(settings.get("bayes_max_tokens", 2_000_000)),
        max_age_days=float(settings.get("bayes_max_age_days", 180.0)),
        global_per_user=int(settings.get("bayes_global_per_user", 1000)),
    )


def _owner(args: argparse.Namespace, config: Any = None) -> str:
    """Whose training, lists or threshold: ``--user`` as the server keys them (the address
    the accounts keep: lower case, NFC, the domain's A-label, which is what mail arrives
    for), or the global set. With ``config`` the user must exist: state set for a typo, or
    for the Unicode spelling of a domain, would never apply."""
    if not args.user:
        return GLOBAL
    address = canonical_address(args.user)
    if config is not None:
        from txmailhost.accounts.backends import open_accounts

        accounts = open_accounts(config)
        try:
            if not accounts.has_user(address):
                raise AccountError(f"no such user: {address}")
        finally:
            accounts.close()
    return owner_of(address)


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
    owner = _owner(args, config)
    store = token_store(config)
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
            start = stream.read(1 << 20)  # the header section is in it (at most 1 MiB)
            stream.seek(0)
            sample = sample_of(stream)
    except OSError as e:
        print(f"txmailhost spam check: {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    settings = config.filters.settings.get("spam", {})
    scorer = Scorer(token_store(config), settings.get("authserv_id") or config.hostname)
    # As if a trusted relay handed the file over (the server judged who sent it when it
    # came; a saved message carries that in our Received:, its name as we recorded it):
    # the checks that need no DNS on the client its top Received: names, dated by it.
    relayed = ConnectionChecks(
        config.hostname, None, trusted_relays=settings.get("trusted_relays", ())
    )
    seen, hop = relayed.checked("127.0.0.1", None, None, received_values(_crlf_head(start)))
    score = scorer.score_each(sample, [_owner(args) or None], None, seen, arrival(hop))[0]
    required = float(settings.get("junk_score", 5.0))
    for name, value in score.fields(required):
        print(f"{name}: {value}")
    return 0


def _crlf_head(start: bytes) -> bytes:
    """The header section of a message file's start, whatever its line ends, in CRLF lines
    (as ``received_values`` reads it)."""
    lines = start.replace(b"\r\n", b"\n")
    return lines.split(b"\n\n", 1)[0].replace(b"\n", b"\r\n") + b"\r\n\r\n"


def _sender(kind: str) -> Callable[[argparse.Namespace, Any], int]:
    def run(args: argparse.Namespace, config: Any) -> int:
        address = sender_key(args.address)
        if address is None:
            print(f"txmailhost spam {kind}: {args.address!r} is not an address or @domain",
                  file=sys.stderr)  # fmt: skip
            return 2
        store = token_store(config)
        if kind != "forget":
            store.set_sender(_owner(args, config), address, kind)
            return 0
        # Also for a user removed since, and also the entry as typed, which is how earlier
        # versions kept it (an IDN domain in its Unicode form, never matched).
        owners = {_owner(args), args.user.strip().lower() if args.user else GLOBAL}
        for owner in owners:
            for entry in {address, args.address.strip().lower()}:
                store.set_sender(owner, entry, None)
        return 0

    return run


def sender_key(text: str) -> str | None:
    """A sender list's entry as mail will show it: the local part lower-cased in NFC, the
    domain as its A-label (an envelope sender's domain is one: smtp/address.py); None when
    ``text`` is neither an address nor ``@domain``. Any local part a sender may have is
    taken, even one no account here could have."""
    local, at, domain = text.strip().rpartition("@")
    if not at or any(c.isspace() or not c.isprintable() for c in local):
        return None
    try:
        domain = canonical_domain(domain)
    except AccountError:
        return None
    return f"{fold_local(local)}@{domain}"


def _threshold(args: argparse.Namespace, config: Any) -> int:
    token_store(config).set_threshold(_owner(args, config), args.score)
    return 0


def _stats(args: argparse.Namespace, config: Any) -> int:
    store = token_store(config)
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
