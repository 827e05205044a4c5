"""``txmailhost mailbox|search|fetch|expunge|flags|quota|index``: a user's mail without a client.

Like Dovecot's ``doveadm mailbox``/``search``/``fetch``/``expunge``/``flags``/``quota recalc``
/``index``, over the same ``IMailStore`` the IMAP and POP3 servers use, so whatever these do
is what a client would see, and is safe while the server runs: the Maildir store's writes are
file renames and links plus transactions on each mailbox's index, which the server's sessions
notice (``IMailbox.changes_since``: a flag set here shows in an IDLEing client's next update).

Queries are IMAP SEARCH criteria (RFC 3501 §6.4.4), parsed and run by ``imap/search.py``
exactly as a client's ``UID SEARCH`` is: ``txmailhost search alice@example.org INBOX UNSEEN
FROM bob SINCE 1-Jan-2026``. Arguments holding a space are quoted for you (``SUBJECT 'two
words'``). Messages are named by UID, never by sequence number (they change under a client).

Every command takes ``--json`` for scripts; the text form is one item per line. A user who
is not an account is an error (a typo then doesn't look like an empty mailbox). With
``[store] backend = "memory"`` the mail lives inside the server process, out of the CLI's
reach, and the commands say so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.interfaces import AccountError
from txmailhost.imap import names
from txmailhost.imap.matching import matching
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import InvalidName
from txmailhost.imap.search import BadCharset, parse_search
from txmailhost.imap.searchtext import SEARCH_TEXT
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store import backends, s3blobs
from txmailhost.store.interfaces import (
    SYSTEM_FLAGS,
    IIndexRepair,
    ITextIndex,
    StoredMessage,
    StoreError,
)
from txmailhost.store.mailboxnames import creation_problem


class AdminError(ValueError):
    """A failure reported as one ``txmailhost: error: ...`` line (exit status 1): the CLI
    reports every ``ValueError`` that way."""


# -- shared plumbing ---------------------------------------------------------------------------


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def emit(args: argparse.Namespace, document: Any, lines: Callable[[], list[str]]) -> None:
    """``document`` as JSON with ``--json``, else the text ``lines``."""
    if getattr(args, "json", False):
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for line in lines():
            print(line)


def result_of(d: Any) -> Any:
    """The result of a Deferred from a store without a thread pool (it has fired already)."""
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise AdminError("the mail store did not finish its work")
    if isinstance(out[0], Failure):
        if isinstance(out[0].value, StoreError):
            raise AdminError(str(out[0].value) or type(out[0].value).__name__)
        out[0].raiseException()
    return out[0]


def open_store(config: Any) -> Any:
    """The store ``[store] backend`` names, doing its work inline (no reactor runs here)."""
    if config.store.backend in backends.VOLATILE:
        raise AdminError(
            f'[store] backend = "{config.store.backend}" keeps mail inside the server process; '
            "the admin commands can't reach it"
        )
    return backends.build(
        config.store.backend,
        config.mail_root,
        dsn=config.store.dsn,
        text_index=config.store.text_index,
        blobs=s3blobs.from_config(config.store),
    )


def new_name(name: str) -> str:
    """A mailbox name to create or rename to, checked as IMAP's CREATE checks it
    (``imap.names``): an octet the shell passed that isn't UTF-8 arrives as a lone
    surrogate, and the store made the folder before the subscriptions file refused it."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise AdminError(f"invalid mailbox name {ascii(name)}: it is not UTF-8")
    # The name as typed first: Twisted's imap4-utf-7 encoder writes a tab, CR or LF as "&-",
    # which decodes to "&", so "x\ny" would come back as the valid "x&y".
    problem = creation_problem(name)
    if problem is not None:
        raise AdminError(f"invalid mailbox name {ascii(name)}: {problem}")
    try:
        checked = names.decode(name.encode("imap4-utf-7"))
        names.check_creatable(checked)
    except (UnicodeError, InvalidName) as e:
        raise AdminError(f"invalid mailbox name {ascii(name)}: {e}") from None
    return checked


def account(accounts: Any, address: str) -> str:
    """The canonical address of an existing account."""
    user = canonical_address(address)
    if not accounts.has_user(user):
        raise AccountError(f"no such user: {user}")
    return user


def users_of(args: argparse.Namespace, accounts: Any) -> list[str]:
    """``USER`` or, with ``--all``, every account."""
    if args.all:
        return list(accounts.list_users(None))
    if not args.user:
        raise AdminError("name a USER or give --all")
    return [account(accounts, args.user)]


def imap_query(words: list[str]) -> bytes:
    """Shell words as IMAP SEARCH text: a word with a space (or an empty one) is quoted."""
    out = []
    for word in words:
        if word == "" or (any(c.isspace() for c in word) and word[0] not in '"('):
            word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(word)
    return " ".join(out).encode("utf-8")


def search(mailbox: Any, words: list[str]) -> list[StoredMessage]:
    """The messages of ``mailbox`` (an ``IMailbox``) matching the IMAP SEARCH ``words``, in
    UID order, without header or content."""
    selection = result_of(mailbox.select(False))
    view = SelectedMailbox(
        mailbox, mailbox.name, True, selection.uids, selection.uidvalidity,
        selection.uidnext, selection.highestmodseq,
        [(selection.first_recent, selection.uidnext)],  # as EXAMINE: unclaimed ones are \Recent
    )  # fmt: skip

    def resolve(text: bytes, by_uid: bool) -> set[int]:
        return {seq for seq, _uid in view.resolve(text, by_uid)}

    try:
        program = parse_search(Reader(imap_query(words or ["ALL"])), resolve, esearch=False)
    except BadCharset:
        raise AdminError("only the UTF-8 and US-ASCII charsets are supported") from None
    except (ParseError, ValueError) as e:
        raise AdminError(f"bad search query: {e}") from None
    # The IMAP server's own search loop (full-text index included, where the store has one).
    matches = result_of(Deferred.fromCoroutine(matching(view, program)))
    return [message for _seq, message in matches]


def message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "uid": message.uid,
        "flags": sorted(message.flags),
        "size": message.size,
        "internaldate": message.internaldate,
        "modseq": message.modseq,
    }


# -- registration ------------------------------------------------------------------------------


def register(commands: Any, with_accounts: Callable[..., Callable[[argparse.Namespace], int]]):
    """Add the mailbox commands to the CLI's subparsers."""
    mailbox = commands.add_parser("mailbox", help="a user's mailboxes: list, create, status ...")
    actions = mailbox.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the user's mailboxes, one per line, INBOX first")
    listing.add_argument("user")
    listing.add_argument("--subscribed", action="store_true", help="only subscribed ones")
    listing.set_defaults(run=with_accounts(_mailbox_list))
    for name, text, run in (
        ("create", "create mailboxes (and subscribe them)", _mailbox_create),
        ("delete", "delete mailboxes and the messages in them", _mailbox_delete),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("user")
        action.add_argument("mailboxes", nargs="+", metavar="MAILBOX")
        action.set_defaults(run=with_accounts(run))
    rename = actions.add_parser("rename", help="rename a mailbox and the ones below it")
    rename.add_argument("user")
    rename.add_argument("old")
    rename.add_argument("new")
    rename.set_defaults(run=with_accounts(_mailbox_rename))
    status = actions.add_parser("status", help="messages, unseen, size, UIDVALIDITY, UIDNEXT")
    status.add_argument("user")
    status.add_argument("mailboxes", nargs="*", metavar="MAILBOX", help="default: all")
    status.set_defaults(run=with_accounts(_mailbox_status))
    for parser in (listing, status, rename, *(actions.choices[n] for n in ("create", "delete"))):
        json_option(parser)

    found = commands.add_parser("search", help="UIDs of the messages matching an IMAP SEARCH")
    _mailbox_and_query(found)
    found.set_defaults(run=with_accounts(_search))

    fetch = commands.add_parser("fetch", help="one message, as stored, to standard output")
    fetch.add_argument("user")
    fetch.add_argument("mailbox")
    fetch.add_argument("uid", type=_uid, help="the message's IMAP UID (1 to 4294967295)")
    fetch.add_argument("--header", action="store_true", help="only the header section")
    json_option(fetch)
    fetch.set_defaults(run=with_accounts(_fetch))

    expunge = commands.add_parser("expunge", help="remove the messages matching a query")
    _mailbox_and_query(expunge, required=True)
    expunge.set_defaults(run=with_accounts(_expunge))

    flags = commands.add_parser("flags", help="add, remove or replace flags of messages")
    flags.add_argument("user")
    flags.add_argument("mailbox")
    flags.add_argument("mode", choices=("add", "remove", "replace"))
    flags.add_argument("flags", help="space-separated, e.g. '\\Seen \\Flagged' or '$Label1'")
    flags.add_argument("query", nargs="+", help="IMAP SEARCH criteria, e.g. ALL or UID 3:9")
    json_option(flags)
    flags.set_defaults(run=with_accounts(_flags))

    quota = commands.add_parser("quota", help="storage used by users")
    quota_actions = quota.add_subparsers(metavar="ACTION", required=True)
    recalc = quota_actions.add_parser(
        "recalc", help="count each user's storage from the mailboxes (and print it)"
    )
    _user_or_all(recalc)
    recalc.set_defaults(run=with_accounts(_quota_recalc))

    index = commands.add_parser("index", help="the per-mailbox indexes")
    index_actions = index.add_subparsers(metavar="ACTION", required=True)
    rebuild = index_actions.add_parser(
        "rebuild",
        help="bring each mailbox's index in line with its files (messages other tools added "
        "or removed), keeping UIDs and UIDVALIDITY, and build its full-text index again; a "
        "damaged index is set aside and made anew from the files (new UIDVALIDITY)",
    )
    _user_or_all(rebuild)
    rebuild.add_argument("mailbox", nargs="?", help="only this mailbox of USER")
    rebuild.add_argument(
        "--force",
        action="store_true",
        help="set every index aside and make it anew from the files, sound or not (new "
        "UIDVALIDITY: clients download the mailbox again; keywords not kept)",
    )
    rebuild.set_defaults(run=with_accounts(_index_rebuild))


def _uid(text: str) -> int:
    """A UID as IMAP has them (RFC 9051 2.3.1.1: a non-zero 32-bit number); a larger one
    would overflow the index's lookup rather than find nothing."""
    try:
        uid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UID (a number)") from None
    if not 1 <= uid <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text}: a UID is from 1 to 4294967295")
    return uid


def _mailbox_and_query(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("user")
    parser.add_argument("mailbox")
    parser.add_argument(
        "query",
        nargs="+" if required else "*",
        help="IMAP SEARCH criteria, e.g. UNSEEN FROM bob SINCE 1-Jan-2026"
        + ("" if required else " (default ALL)"),
    )
    json_option(parser)


def _user_or_all(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", nargs="?")
    parser.add_argument("--all", action="store_true", help="every user")
    json_option(parser)


# -- mailboxes ---------------------------------------------------------------------------------


def _mailbox_list(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    user = account(accounts, args.user)
    store = open_store(config)
    names = result_of(store.list_mailboxes(user))
    subscribed = set(result_of(store.subscriptions(user)))
    if args.subscribed:
        names = [n for n in names if n in subscribed]
    rows = [{"name": n, "subscribed": n in subscribed} for n in names]
    emit(args, rows, lambda: list(names))
    return 0


def _mailbox_create(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    """Every name is checked before the first is made: a bad one among several leaves the
    user's mailboxes as they were, rather than some made and an error."""
    user = account(accounts, args.user)
    store = open_store(config)
    wanted = [new_name(name) for name in args.mailboxes]
    existing = set(result_of(store.list_mailboxes(user)))
    for position, name in enumerate(wanted):
        if name in existing:
            raise AdminError(f"mailbox {name!r} exists")
        if name in wanted[:position]:
            raise AdminError(f"mailbox {name!r} is named twice")
    for name in wanted:
        result_of(store.create_mailbox(user, name))
        result_of(store.subscribe(user, name, True))
    emit(args, {"created": args.mailboxes}, lambda: [f"created {n}" for n in args.mailboxes])
    return 0


def _mailbox_delete(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    user = account(accounts, args.user)
    store = open_store(config)
    for name in args.mailboxes:
        result_of(store.delete_mailbox(user, name))
        result_of(store.subscribe(user, name, False))
    emit(args, {"deleted": args.mailboxes}, lambda: [f"deleted {n}" for n in args.mailboxes])
    return 0


def _mailbox_rename(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    user = account(accounts, args.user)
    store = open_store(config)
    new = new_name(args.new)
    result_of(store.rename_mailbox(user, args.old, new))
    if args.old in result_of(store.subscriptions(user)):
        result_of(store.subscribe(user, args.old, False))
        result_of(store.subscribe(user, new, True))
    emit(args, {"renamed": args.old, "to": args.new}, lambda: [f"renamed {args.old} to {args.new}"])
    return 0


def _mailbox_status(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    user = account(accounts, args.user)
    store = open_store(config)
    names = args.mailboxes or result_of(store.list_mailboxes(user))
    rows = []
    for name in names:
        status = result_of(result_of(store.open(user, name)).status())
        rows.append(
            {
                "mailbox": name,
                "messages": status.messages,
                "recent": status.recent,
                "unseen": status.unseen,
                "size": status.size,
                "uidvalidity": status.uidvalidity,
                "uidnext": status.uidnext,
                "highestmodseq": status.highestmodseq,
            }
        )

    def lines() -> list[str]:
        out = [f"{'MAILBOX':<24} {'MESSAGES':>8} {'UNSEEN':>7} {'SIZE':>12} UIDVALIDITY UIDNEXT"]
        for r in rows:
            out.append(
                f"{r['mailbox']:<24} {r['messages']:>8} {r['unseen']:>7} {r['size']:>12} "
                f"{r['uidvalidity']:>11} {r['uidnext']:>7}"
            )
        return out

    emit(args, rows, lines)
    return 0


# -- messages ----------------------------------------------------------------------------------


def _open(config: Any, accounts: Any, args: argparse.Namespace) -> Any:
    user = account(accounts, args.user)
    return result_of(open_store(config).open(user, args.mailbox))


def _search(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    found = search(_open(config, accounts, args), args.query)
    emit(args, [message_json(m) for m in found], lambda: [str(m.uid) for m in found])
    return 0


def _fetch(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    mailbox = _open(config, accounts, args)
    messages = result_of(mailbox.messages([args.uid], True, not args.header))
    if not messages:
        raise AdminError(f"no message with UID {args.uid} in {args.mailbox}")
    message = messages[0]
    data = message.header if args.header else message.content
    if args.json:
        document = message_json(message)
        key = "header" if args.header else "message"
        document[key] = (data or b"").decode("utf-8", "replace")
        emit(args, document, list)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data or b"")
        sys.stdout.buffer.flush()
    return 0


def _expunge(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    mailbox = _open(config, accounts, args)
    uids = [m.uid for m in search(mailbox, args.query)]
    removed = result_of(mailbox.expunge(uids)) if uids else []
    emit(
        args,
        {"expunged": sorted(removed)},
        lambda: [f"expunged {len(removed)} message(s) from {args.mailbox}"],
    )
    return 0


_MODES = {"add": "+", "remove": "-", "replace": "="}
_ATOM_SPECIALS = frozenset('(){ %*"]\\')


def _valid_flag(flag: str) -> bool:
    """A system flag a client may set, or a keyword atom (RFC 3501 §9 ``flag-keyword``)."""
    if flag.startswith("\\"):
        return flag in SYSTEM_FLAGS
    return flag.isascii() and flag.isprintable() and not (set(flag) & _ATOM_SPECIALS)


def _flags(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    mailbox = _open(config, accounts, args)
    flags = args.flags.split()
    bad = [flag for flag in flags if not _valid_flag(flag)]
    if bad:
        raise AdminError(f"not an IMAP flag or keyword: {bad[0]}")
    uids = [m.uid for m in search(mailbox, args.query)]
    changed = result_of(mailbox.store_flags(uids, flags, _MODES[args.mode])) if uids else []
    rows = [{"uid": info.uid, "flags": sorted(info.flags)} for info in changed]
    emit(args, rows, lambda: [f"{r['uid']} {' '.join(r['flags'])}".rstrip() for r in rows])
    return 0


# -- quota and index ---------------------------------------------------------------------------


def _quota_recalc(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    store = open_store(config)
    rules = accounts.address_rules()
    rows = []
    for user in users_of(args, accounts):
        used = result_of(store.usage(user))
        rows.append({"user": user, "used": used, "limit": rules.quota_of(user)})

    def lines() -> list[str]:
        return [f"{r['user']} {r['used']} {r['limit'] or 'unlimited'}" for r in rows]

    emit(args, rows, lines)
    return 0


def _index_rebuild(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    """A store opened here has seen no directory yet, so opening each mailbox rescans it
    (``MaildirStore._reconcile``): files added by other tools get UIDs, vanished ones leave
    the index; UIDVALIDITY and existing UIDs stay. An index that is damaged (or every one,
    ``--force``) is first set aside and made anew from the files (``IIndexRepair``), and
    its new name printed. The full-text index of a store that keeps one (``ITextIndex``,
    ``[store] text_index``) is dropped and built from every message."""
    store = open_store(config)
    if args.mailbox is not None and args.all:
        raise AdminError("name a MAILBOX of one USER, not with --all")
    rows = []
    for user in users_of(args, accounts):
        names = [args.mailbox] if args.mailbox else result_of(store.list_mailboxes(user))
        for name in names:
            mailbox = result_of(store.open(user, name))
            aside = None
            if IIndexRepair.providedBy(mailbox):
                aside = result_of(mailbox.repair_index(args.force))
            status = result_of(mailbox.status())
            row = {"user": user, "mailbox": name, "messages": status.messages, "text": None}
            row["set_aside"] = aside
            if ITextIndex.providedBy(mailbox):
                row["text"] = result_of(mailbox.rebuild_text_index(SEARCH_TEXT))
            rows.append(row)

    def lines() -> list[str]:
        return [
            f"{r['user']} {r['mailbox']} {r['messages']}"
            + (f" text {r['text']}" if r["text"] is not None else "")
            + (f" (old index set aside as {r['set_aside']})" if r["set_aside"] else "")
            for r in rows
        ]

    emit(args, rows, lines)
    return 0
