"""Admin commands for address rules: ``alias``, ``user forward``, ``user quota``, ``domain quota``.

Registered into the ``txmailhost`` CLI by ``cli.py``; they go through ``IAddressRules``, the same
code the router reads, so what the CLI writes applies to the next message without a restart.

``alias add`` and ``user forward`` ask the router (``routing.Router``, which ``cli.py`` builds
from the config and hands in: this package never imports routing) before they commit: a change
that makes mail loop is refused, and a target of ours nobody receives at is warned about.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from txmailhost.accounts.db import parse_size
from txmailhost.accounts.interfaces import AccountError, IAccounts

Runner = Callable[[Callable[[argparse.Namespace, Any, IAccounts], int]], Callable]
# (config, accounts) -> the server's routing.Router over them, for the checks above.
RouterFor = Callable[[Any, IAccounts], Any]


def register_alias(commands: Any, with_accounts: Runner, router_for: RouterFor) -> None:
    alias = commands.add_parser(
        "alias", help="addresses that deliver to other addresses (lists, catch-alls)"
    )
    actions = alias.add_subparsers(metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="make ADDRESS deliver to TARGET... (local or remote; '@domain' = catch-all)"
    )
    add.add_argument("address")
    add.add_argument("targets", nargs="+", metavar="TARGET")
    add.set_defaults(run=with_accounts(_alias_add), router_for=router_for)
    listing = actions.add_parser("list", help="one line per alias: ADDRESS -> TARGETS")
    listing.add_argument("--domain", help="only the aliases of this domain")
    listing.set_defaults(run=with_accounts(_alias_list))
    delete = actions.add_parser("del", help="remove an alias, or only some of its targets")
    delete.add_argument("address")
    delete.add_argument("targets", nargs="*", metavar="TARGET")
    delete.set_defaults(run=with_accounts(_alias_del))


def register_user_actions(user_commands: Any, with_accounts: Runner, router_for: RouterFor) -> None:
    forward = user_commands.add_parser(
        "forward", help="send a user's mail on to other addresses (or show the setting)"
    )
    forward.add_argument("address")
    forward.add_argument("targets", nargs="*", metavar="TARGET")
    forward.add_argument("--off", action="store_true", help="stop forwarding")
    copy = forward.add_mutually_exclusive_group()
    copy.add_argument(
        "--keep-copy",
        dest="keep_copy",
        action="store_true",
        default=True,
        help="also keep each message in the user's INBOX (default)",
    )
    copy.add_argument(
        "--no-keep-copy",
        dest="keep_copy",
        action="store_false",
        help="forward only, keep nothing here",
    )
    forward.set_defaults(run=with_accounts(_user_forward), router_for=router_for)
    quota = user_commands.add_parser(
        "quota", help="set a user's storage limit (500M, 2G, bytes, or none) or show it"
    )
    quota.add_argument("address")
    quota.add_argument("size", nargs="?")
    quota.set_defaults(run=with_accounts(_user_quota))


def register_domain_actions(domain_commands: Any, with_accounts: Runner) -> None:
    quota = domain_commands.add_parser(
        "quota", help="default storage limit of the domain's users (500M, 2G, none)"
    )
    quota.add_argument("domain")
    quota.add_argument("size")
    quota.set_defaults(run=with_accounts(_domain_quota))


def _warn_unknown(router: Any, targets: list[str]) -> None:
    for target in router.unknown(targets):
        print(
            f"txmailhost: warning: nobody receives mail at {target} here yet: "
            "it is refused (550 5.1.1) until a user or alias has that address",
            file=sys.stderr,
        )


def _alias_add(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    router = args.router_for(config, accounts)
    rules = accounts.address_rules()
    source, targets = rules.add_alias(args.address, args.targets, router.refuse_loops)
    print(f"alias {source} -> {', '.join(targets)}")
    _warn_unknown(router, targets)
    return 0


def _alias_list(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    for source, targets in accounts.address_rules().list_aliases(args.domain):
        print(f"{source} -> {', '.join(targets)}")
    return 0


def _alias_del(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    removed = accounts.address_rules().remove_alias(args.address, args.targets or None)
    print(f"removed {removed} alias target(s) of {args.address.lower()}")
    return 0


def _user_forward(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    rules = accounts.address_rules()
    if args.off and args.targets:
        raise AccountError("give targets or --off, not both")
    if args.off or args.targets:
        router = args.router_for(config, accounts)
        wanted = [] if args.off else args.targets
        targets = rules.set_forward(args.address, wanted, args.keep_copy, router.refuse_loops)
        user = args.address.lower()
        if not targets:
            print(f"{user}: no forwarding")
        else:
            kept = "keeping a copy" if args.keep_copy else "keeping no copy"
            print(f"{user} forwards to {', '.join(targets)} ({kept})")
        _warn_unknown(router, targets)
        return 0
    if not accounts.has_user(args.address):
        raise AccountError(f"no such user: {args.address.lower()}")
    targets, keep_copy = rules.forward_of(args.address.lower())
    if targets:
        kept = "keeping a copy" if keep_copy else "keeping no copy"
        print(f"forwards to {', '.join(targets)} ({kept})")
    else:
        print("no forwarding")
    return 0


def _show_size(limit: int | None) -> str:
    if limit is None:
        return "none"
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if limit % factor == 0:
            return f"{limit // factor}{unit}"
    return f"{limit} bytes"


def _user_quota(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    rules = accounts.address_rules()
    if args.size is None:
        if not accounts.has_user(args.address):
            raise AccountError(f"no such user: {args.address.lower()}")
        print(_show_size(rules.quota_of(args.address.lower())))
        return 0
    user = rules.set_quota(args.address, parse_size(args.size))
    print(f"{user}: quota {_show_size(rules.quota_of(user))}")
    return 0


def _domain_quota(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    name = accounts.address_rules().set_domain_quota(args.domain, parse_size(args.size))
    print(f"{name}: default quota {_show_size(parse_size(args.size))}")
    return 0
