"""``txmailhost acl``: the access control lists (RFC 4314) of users' mailboxes, and the domain's
shared folders, without a client.

``acl list USER MAILBOX`` prints the owner (who holds every right, always) and each entry;
``acl set USER MAILBOX IDENTIFIER RIGHTS`` changes one entry as IMAP's SETACL does (``lr``
replaces, ``+w`` adds, ``-w`` takes away; ``c`` is ``k`` and ``d`` is ``xte``);
``acl delete USER MAILBOX IDENTIFIER`` removes one (an error when there is none). An
identifier is a user's address, ``anyone``, or either with a leading ``-`` for negative rights.
``acl shared-with USER`` lists the mailboxes others opened to the user (what the user's LIST
shows under ``Other Users/``).

``acl share DOMAIN NAME`` creates the shared folder ``Shared/NAME`` of the domain's users: a
mailbox of the pseudo-user ``#shared@DOMAIN``, opened to ``anyone`` (in practice, the domain's
users: only they reach ``Shared/``) with ``--rights`` (default ``lrswite``); ``acl unshare``
deletes it and its messages. ``#shared@DOMAIN`` may be given as USER to the other commands.

The store's ACL table is what the running server reads on every command, so a change here
applies at once (to a session that has the mailbox selected, at its next SELECT).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from txmailhost.accounts.addresses import canonical_domain
from txmailhost.ops.mailbox_admin import AdminError, account, emit, json_option, open_store
from txmailhost.ops.mailbox_admin import result_of as result
from txmailhost.store import acl as rights
from txmailhost.store.interfaces import IAclStore

DEFAULT_SHARED_RIGHTS = "lrswite"


def register(commands: Any, with_accounts: Callable[..., Callable[[argparse.Namespace], int]]):
    """Add ``txmailhost acl ...`` to the CLI's subparsers."""
    acl = commands.add_parser("acl", help="mailbox access control lists (RFC 4314), shared folders")
    actions = acl.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the ACL of a mailbox, the owner first")
    listing.add_argument("user", help="the owner (an account, or #shared@DOMAIN)")
    listing.add_argument("mailbox")
    listing.set_defaults(run=with_accounts(_acl_list))
    change = actions.add_parser("set", help="grant rights (lr, +w, -w) to an identifier")
    change.add_argument("user")
    change.add_argument("mailbox")
    change.add_argument("identifier", help="user@domain, anyone, or either with a leading -")
    change.add_argument("rights", help="letters of lrswipkxtea (c = k, d = xte), +/- to change")
    change.set_defaults(run=with_accounts(_acl_set))
    delete = actions.add_parser("delete", help="remove an identifier's entry")
    delete.add_argument("user")
    delete.add_argument("mailbox")
    delete.add_argument("identifier")
    delete.set_defaults(run=with_accounts(_acl_delete))
    shared_with = actions.add_parser("shared-with", help="the mailboxes others opened to USER")
    shared_with.add_argument("user")
    shared_with.set_defaults(run=with_accounts(_acl_shared_with))
    share = actions.add_parser("share", help="create the shared folder Shared/NAME of a domain")
    share.add_argument("domain")
    share.add_argument("name")
    share.add_argument(
        "--rights",
        default=DEFAULT_SHARED_RIGHTS,
        help=f"what anyone of the domain may do (default {DEFAULT_SHARED_RIGHTS})",
    )
    share.set_defaults(run=with_accounts(_acl_share))
    unshare = actions.add_parser("unshare", help="delete a shared folder and its messages")
    unshare.add_argument("domain")
    unshare.add_argument("name")
    unshare.set_defaults(run=with_accounts(_acl_unshare))
    for parser in (listing, change, delete, shared_with, share, unshare):
        json_option(parser)


def _acl_store(config: Any) -> Any:
    store = open_store(config)
    if not IAclStore.providedBy(store):
        raise AdminError(f'[store] backend = "{config.store.backend}" keeps no ACLs')
    return store


def _owner(accounts: Any, user: str) -> str:
    """An account, or the shared-folder pseudo-user of a domain the server serves."""
    if user.lower().startswith(rights.SHARED_LOCAL_PART + "@"):
        domain = canonical_domain(user.rpartition("@")[2])
        if not accounts.has_domain(domain):
            raise AdminError(f"no such domain: {domain}")
        return rights.shared_owner(domain)
    return account(accounts, user)


def _identifier(text: str) -> str:
    try:
        return rights.check_identifier(text)
    except rights.RightsError as error:
        raise AdminError(str(error)) from None


def _acl_list(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    owner = _owner(accounts, args.user)
    entries = result(_acl_store(config).get_acl(owner, args.mailbox))
    rows = [] if owner.startswith("#") else [{"identifier": owner, "rights": rights.RIGHTS}]
    rows += [{"identifier": i, "rights": r} for i, r in sorted(entries.items())]
    emit(args, rows, lambda: [f"{row['identifier']} {row['rights']}" for row in rows])
    return 0


def _acl_set(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    owner = _owner(accounts, args.user)
    identifier = _identifier(args.identifier)
    if identifier.lstrip("-") == owner:
        raise AdminError("the owner always holds every right")
    change = args.rights
    try:
        rights.normalize(change[1:] if change[:1] in ("+", "-") else change)
    except rights.RightsError as error:
        raise AdminError(str(error)) from None
    new = result(_acl_store(config).change_acl(owner, args.mailbox, identifier, change))
    emit(
        args,
        {"mailbox": args.mailbox, "identifier": identifier, "rights": new},
        lambda: [f"{identifier} {new or '(none)'}"],
    )
    return 0


def _acl_delete(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    """Unlike IMAP's DELETEACL (RFC 4314 3.2: OK for an absent entry), an entry that isn't
    there is an error: a mistyped identifier must not read as "deleted"."""
    owner = _owner(accounts, args.user)
    identifier = _identifier(args.identifier)
    store = _acl_store(config)
    if identifier not in result(store.get_acl(owner, args.mailbox)):
        raise AdminError(f"{args.mailbox} of {owner} has no entry for {identifier}")
    result(store.set_acl(owner, args.mailbox, identifier, None))
    emit(args, {"deleted": identifier}, lambda: [f"deleted {identifier}"])
    return 0


def _acl_shared_with(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    user = account(accounts, args.user)
    grants = result(_acl_store(config).shared_with([user, rights.ANYONE]))
    rows = []
    for (owner, mailbox), acl in sorted(grants.items()):
        held = rights.effective(acl, user)
        same_domain = owner == rights.shared_owner(user)
        if owner != user and held and (not owner.startswith("#") or same_domain):
            rows.append({"owner": owner, "mailbox": mailbox, "rights": held})
    emit(args, rows, lambda: [f"{r['owner']} {r['mailbox']} {r['rights']}" for r in rows])
    return 0


def _acl_share(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    owner = _owner(accounts, rights.shared_owner(args.domain))
    try:
        granted = rights.normalize(args.rights)
    except rights.RightsError as error:
        raise AdminError(str(error)) from None
    store = _acl_store(config)
    result(store.create_mailbox(owner, args.name))
    result(store.set_acl(owner, args.name, rights.ANYONE, granted or None))
    emit(
        args,
        {"shared": args.name, "domain": owner.partition("@")[2], "anyone": granted},
        lambda: [f"created Shared/{args.name} for {owner.partition('@')[2]}: anyone {granted}"],
    )
    return 0


def _acl_unshare(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    owner = _owner(accounts, rights.shared_owner(args.domain))
    result(_acl_store(config).delete_mailbox(owner, args.name))
    emit(args, {"deleted": args.name}, lambda: [f"deleted Shared/{args.name}"])
    return 0
