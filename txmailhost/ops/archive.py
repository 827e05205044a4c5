"""``txmailhost export USER|--all DEST`` and ``txmailhost import [USER] SRC``: backup and restore.

An export is a directory anyone can read without txmailhost::

    DEST/txmailhost-export.json          manifest: format, version, when, from which server,
                                         the users; written last, so an export without it
                                         is incomplete and ``import`` refuses it
    DEST/USER/account.json               password hash, quota, forwarding, aliases to the user,
                                         the user's Sieve scripts' names and the active one,
                                         their spam threshold and allowed and blocked senders
                                         (``archive_spam.py``), the account's METADATA
    DEST/USER/mailboxes.json             per mailbox: name, subscribed, UIDVALIDITY, UIDNEXT,
                                         HIGHESTMODSEQ, and per message UID, flags,
                                         INTERNALDATE, modseq, size and its file; the
                                         mailbox's METADATA and ACL (``archive_mailstate.py``)
    DEST/USER/mail/NNNN/UID.eml          each message's octets as stored (RFC 5322, CRLF)
    DEST/USER/sieve/NNNN.sieve           each Sieve script's text (``archive_sieve.py``)
    DEST/accounts.sqlite                 with --all: the whole accounts database (domains,
                                         users, aliases, forwards, quotas), an online copy

It is read through ``IMailStore`` (``select``, ``uid_range``, ``open_message``), so it works on
any backend and while mail arrives: each mailbox is exported as of one moment, and a message
expunged during the export is left out. ``import`` restores the account if it is missing
(with its password hash: the user logs in with the old password), its quota, forwarding and
aliases, then every mailbox through ``store/restore.py``: into an empty mailbox with the same
UIDs, UIDVALIDITY and modseqs, so IMAP clients keep their caches; into one restored from the
same export before, only what it lacks; into one that holds other mail, as new messages
(flags and INTERNALDATE kept; the report says which). It is safe on a running server, which
sees the restored mailboxes at once. The export is checked whole before that
(``read_exported_user``): it may come from anywhere, and its JSON names files, so a name
export doesn't write (``../../etc/shadow``), a path leading out of it, or a link is refused.

The manifest's ``version`` is that of the format: 1 had no Sieve scripts, spam settings,
METADATA and ACLs; 2 has them. An export of version 1 imports as it did (its users have
none to restore); a txmailhost that reads only version 1 refuses one of version 2, rather
than lose them silently.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from txmailhost import __version__, _safeio
from txmailhost.accounts.addresses import canonical_address, new_address
from txmailhost.accounts.interfaces import AccountError
from txmailhost.ops import archive_mailstate, archive_sieve, archive_spam
from txmailhost.ops.mailbox_admin import (
    AdminError,
    account,
    emit,
    json_option,
    open_store,
    result_of,
)
from txmailhost.ops.migrate_sieve import SourceScript
from txmailhost.ops.sourcefiles import (
    RegularFileSource,
    SourceFileError,
    entry_problem,
    read_regular,
    shown,
)
from txmailhost.sieve.setup import script_store
from txmailhost.store.interfaces import IFileDelivery, InvalidMailboxName
from txmailhost.store.restore import (
    RestoredMessage,
    check_numbers,
    clamped_date,
    is_flag,
    restore_mailbox_sync,
)

MANIFEST = "txmailhost-export.json"
FORMAT = "txmailhost-export"
VERSION = 2  # 2: each user's Sieve scripts, spam settings, METADATA and ACLs
_ALL_UIDS = (1, 2**32 - 1)
MAX_QUOTA = 2**63 - 1  # bytes: what SQLite's INTEGER holds
MAX_JSON = 1024 * 1024 * 1024  # octets of one JSON file of an export


def register(commands: Any, with_accounts: Callable[..., Callable[[argparse.Namespace], int]]):
    export = commands.add_parser(
        "export", help="write users' accounts and mail (flags, UIDs) into a directory"
    )
    export.add_argument("user", nargs="?", help="the user to export (or --all)")
    export.add_argument("dest", help="a directory that doesn't exist yet (or is empty)")
    export.add_argument("--all", action="store_true", help="every user")
    json_option(export)
    export.set_defaults(run=with_accounts(_export))

    restore = commands.add_parser(
        "import", help="restore an export: accounts, mailboxes, flags, UIDs where possible"
    )
    restore.add_argument(
        "user", nargs="?", help="import into this address (default: the exported ones)"
    )
    restore.add_argument("src", help="a directory written by 'txmailhost export'")
    json_option(restore)
    restore.set_defaults(run=with_accounts(_import))


# -- export ------------------------------------------------------------------------------------


def _export(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    if args.all == bool(args.user):
        raise AdminError("name one USER or give --all")
    users = list(accounts.list_users(None)) if args.all else [account(accounts, args.user)]
    dest = os.path.abspath(args.dest)
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise AdminError(f"{dest} exists and is not an empty directory")
    inside = _server_directory_holding(config, dest)
    if inside is not None:
        raise AdminError(f"{dest} is inside {inside}: put the export outside the server's "
                         "data directory")  # fmt: skip
    os.makedirs(dest, mode=0o700, exist_ok=True)
    store, scripts = open_store(config), script_store(config)
    spam = archive_spam.open_settings(config, create=False)
    try:
        summary = [export_user(store, accounts, user, dest, scripts, spam) for user in users]
    finally:
        if spam is not None:
            spam.close()
    if args.all:
        backup_database(config.accounts_path, os.path.join(dest, "accounts.sqlite"))
    os.sync()  # every message file on disk before the manifest says the export is whole
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.time(),
        "hostname": config.hostname,
        "txmailhost": __version__,
        "users": users,
    }
    _safeio.write_atomic(os.path.join(dest, MANIFEST), _json(manifest))
    emit(
        args,
        {"dest": dest, "users": summary},
        lambda: (
            [
                f"exported {s['user']}: {s['mailboxes']} mailbox(es), {s['messages']} message(s)"
                f", {s['scripts']} Sieve script(s)"
                for s in summary
            ]
            + [f"into {dest}"]
        ),
    )
    return 0


def _server_directory_holding(config: Any, dest: str) -> str | None:
    """The server's directory ``dest`` would be written into, links resolved (``DATA``, or
    the mail or queue directory where a link takes it elsewhere); None when it is outside
    them all. Written there, an export's files are the server's to read: in a Maildir's
    ``cur/`` the manifest became a message, under ``DATA/mail`` the export's user
    directory became a domain's, and every user's password hash lay in the data directory
    a backup of it copies."""
    where = os.path.realpath(dest)
    for directory in (config.data_dir, config.mail_root, config.queue_dir):
        root = os.path.realpath(directory)
        if os.path.commonpath([root, where]) == root:
            return directory
    return None


def backup_database(source: str, target: str) -> None:
    """A consistent copy of a live SQLite database (its online backup API: pages copied in one
    read transaction, so a login or an alias added meanwhile is wholly in or out)."""
    live, copy = sqlite3.connect(source, timeout=30), sqlite3.connect(target)
    try:
        live.backup(copy)
    finally:
        copy.close()
        live.close()
    os.chmod(target, 0o600)  # password hashes


def export_user(
    store: Any, accounts: Any, user: str, dest: str, scripts: Any, spam: Any = None
) -> dict[str, Any]:
    """Write one user's account (with their spam settings, from the ``spam`` token store if
    there is one), Sieve scripts and mailboxes under ``dest/USER``; a summary for the
    report."""
    home = os.path.join(dest, user)
    os.makedirs(os.path.join(home, "mail"), mode=0o700)
    rules = accounts.address_rules()
    targets, keep_copy = rules.forward_of(user)
    aliases = [[alias, list(to)] for alias, to in rules.list_aliases(None) if user in to]
    account_record = {
        "address": user,
        "password_hash": accounts.password_hash(user),
        "quota": rules.quota_of(user) if _own_quota(accounts, user) else None,
        "forward": {"targets": list(targets), "keep_copy": keep_copy},
        "aliases": aliases,
        "sieve": archive_sieve.export_scripts(scripts, user, home),
        "spam": archive_spam.export_spam(spam, user),
        "metadata": archive_mailstate.export_metadata(store, user, None),
    }
    with open(os.path.join(home, "account.json"), "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # a password hash
        f.write(_json(account_record))
    subscribed = set(result_of(store.subscriptions(user)))
    mailboxes, count = [], 0
    for number, name in enumerate(result_of(store.list_mailboxes(user)), 1):
        folder = f"{number:04d}"
        record = _export_mailbox(store, user, name, os.path.join(home, "mail", folder))
        record.update(
            directory=folder,
            subscribed=name in subscribed,
            metadata=archive_mailstate.export_metadata(store, user, name),
            acl=archive_mailstate.export_acl(store, user, name),
        )
        mailboxes.append(record)
        count += len(record["messages"])
    with open(os.path.join(home, "mailboxes.json"), "wb") as f:
        f.write(_json(mailboxes))
    return {
        "user": user,
        "mailboxes": len(mailboxes),
        "messages": count,
        "scripts": len(account_record["sieve"]["scripts"]),
    }


def _own_quota(accounts: Any, user: str) -> bool:
    """Whether the quota is the user's own, not the domain default (which stays the domain's)."""
    domain = user.rpartition("@")[2]
    defaults = {name: quota for name, _alias, quota in accounts.domain_table()}
    return accounts.address_rules().quota_of(user) != defaults.get(domain)


def _export_mailbox(store: Any, user: str, name: str, directory: str) -> dict[str, Any]:
    os.makedirs(directory, mode=0o700)
    mailbox = result_of(store.open(user, name))
    selection = result_of(mailbox.select(False))
    wanted = set(selection.uids)
    origins = result_of(mailbox.origins(sorted(wanted)))  # RFC 8474 / RFC 8514, kept too
    messages = []
    for message in result_of(mailbox.uid_range(*_ALL_UIDS)):
        if message.uid not in wanted:
            continue  # arrived after the snapshot: the next export has it
        try:
            source = result_of(mailbox.open_message(message.uid))
        except AdminError:
            continue  # expunged meanwhile (NoSuchMessage)
        path = os.path.join(directory, f"{message.uid}.eml")
        try:
            with open(path, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        finally:
            source.close()
        messages.append(
            {
                "uid": message.uid,
                # a flag no IMAP response can carry (one a restore took before they were
                # checked) is left out: import refuses it
                "flags": sorted(flag for flag in message.flags if is_flag(flag)),
                "internaldate": clamped_date(message.internaldate),
                "modseq": message.modseq,
                "size": message.size,
                "file": f"{message.uid}.eml",
            }
        )
        origin = origins.get(message.uid)
        if origin is not None:
            messages[-1].update(emailid=origin.emailid, savedate=origin.savedate)
    return {
        "name": name,
        "uidvalidity": selection.uidvalidity,
        "uidnext": selection.uidnext,
        "highestmodseq": selection.highestmodseq,
        "mailboxid": selection.mailboxid,
        "messages": messages,
    }


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


# -- import ------------------------------------------------------------------------------------


def read_manifest(src: str) -> dict[str, Any]:
    path = os.path.join(src, MANIFEST)
    if not os.path.lexists(path):
        raise AdminError(f"{src}: no {MANIFEST}: not an export, or an incomplete one")
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AdminError(f"{path}: not a txmailhost export")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise AdminError(f"{path}: export format {version!r} is not a version number")
    if version > VERSION:
        raise AdminError(
            f"{path}: export format {manifest['version']} is newer than this txmailhost "
            f"reads ({VERSION}); import it with the version that wrote it or a newer one"
        )
    if not isinstance(manifest.get("users"), list):
        raise AdminError(f"{path}: no list of users")
    return manifest


def _read_json(path: str) -> Any:
    """A JSON file of the export: a regular file, not followed if it is a link, of at most
    ``MAX_JSON`` (some five million messages' records)."""
    data = read_regular(path, MAX_JSON)
    if data is None:
        raise AdminError(f"{path}: missing from the export")
    try:
        return json.loads(data)
    except ValueError as e:
        raise AdminError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:  # the parser recurses once a level: "[[[[..." ten thousand deep
        raise AdminError(f"{path}: not valid JSON (nested too deeply)") from None


# An export names its users' directories after their addresses, its mailboxes' NNNN and its
# messages' files UID.eml: anything else in its JSON (``../../etc``, an absolute path) is a
# path export never wrote, and is refused rather than read.
_USER_DIRECTORY = re.compile(r"[^/\x00]+@[^/\x00]+")
_MAILBOX_DIRECTORY = re.compile(r"[0-9]{4,}")
_MESSAGE_FILE = re.compile(r"[1-9][0-9]*\.eml")


def _inside(src: str, parent: str, name: object, shape: re.Pattern[str]) -> str:
    """``parent/name``, where ``name`` is one path component of the ``shape`` export writes
    and the path, links resolved, stays under ``src``; else an ``AdminError``."""
    if not isinstance(name, str) or not shape.fullmatch(name):
        text = repr(name)  # cut: a manifest may name a user of megabytes
        shown_name = text[:80] + ("..." if len(text) > 80 else "")
        raise AdminError(f"{shown(parent)}: {shown_name} is not a name export writes")
    path = os.path.join(parent, name)
    root = os.path.realpath(src)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise AdminError(f"{shown(path)}: leads out of {shown(src)}")
    return path


def _check_account(path: str, record: dict[str, Any]) -> None:
    """Refuse an ``account.json`` whose values the accounts would refuse halfway, after the
    account was made (a quota of -5 or past SQLite's 2^63-1, a forward that is no list of
    addresses): the import then stopped with the account made and no mail in it."""
    problem = None
    password_hash, quota = record.get("password_hash"), record.get("quota")
    forward = record.get("forward") or {}
    if password_hash is not None and not isinstance(password_hash, str):
        problem = f"password_hash {password_hash!r} is not a string"
    elif quota is not None and not (
        isinstance(quota, int) and not isinstance(quota, bool) and 0 < quota <= MAX_QUOTA
    ):
        problem = f"quota {quota!r} is not a number of bytes from 1 to {MAX_QUOTA}"
    elif not isinstance(forward, dict) or not isinstance(forward.get("targets", []), list):
        problem = "forward is not an object with a list of targets"
    elif not isinstance(forward.get("keep_copy", True), bool):
        problem = "forward keep_copy is not true or false"
    elif not isinstance(record.get("aliases", []), list):
        problem = "aliases is not a list"
    else:
        bad = [t for t in forward.get("targets", []) if not _is_address(t)]
        if bad:
            shown_target = bad[0][:80] if isinstance(bad[0], str) else type(bad[0]).__name__
            problem = f"forward target {shown_target!r} is not an address"
    if problem is not None:
        raise AdminError(f"{shown(path)}: {problem}")


def _is_address(text: object) -> bool:
    """Whether ``text`` is an address a forward may be set to (``new_address``)."""
    try:
        return isinstance(text, str) and bool(new_address(text))
    except AccountError:
        return False


@dataclass
class ExportedUser:
    """One user of an export, read and checked whole before anything is imported."""

    account: dict[str, Any]
    mailboxes: list[tuple[dict[str, Any], list[RestoredMessage]]]
    scripts: list[SourceScript]
    spam: archive_spam.SpamSettings | None
    account_state: archive_mailstate.MailboxState  # the account's METADATA ("server" entries)
    box_states: list[archive_mailstate.MailboxState]  # each mailbox's, as ``mailboxes``


def read_exported_user(src: str, user: object) -> ExportedUser:
    home = _inside(src, src, user, _USER_DIRECTORY)
    account_path = os.path.join(home, "account.json")
    account = _read_json(account_path)
    path = os.path.join(home, "mailboxes.json")
    mailboxes = _read_json(path)
    try:
        if not isinstance(account, dict) or not isinstance(mailboxes, list):
            raise TypeError("not an object and a list")
        _check_account(account_path, account)
        scripts = archive_sieve.read_scripts(account_path, home, account.get("sieve"))
        spam = archive_spam.read_spam(account_path, account.get("spam"))
        account_state = archive_mailstate.read_state(account_path, account, with_acl=False)
        boxes, states = [], []
        for box in mailboxes:
            boxes.append((box, _exported_messages(src, home, box)))
            states.append(archive_mailstate.read_state(path, box))
    except AdminError:
        raise  # it names its file
    except (KeyError, TypeError) as e:
        problem = f"{type(e).__name__}: {e}"
        raise AdminError(f"{shown(path)}: not as export writes it ({problem})") from None
    except ValueError as e:  # check_numbers
        raise AdminError(f"{shown(path)}: {e}") from None
    return ExportedUser(account, boxes, scripts, spam, account_state, states)


def _exported_messages(src: str, home: str, box: dict[str, Any]) -> list[RestoredMessage]:
    """The messages of one mailbox of ``mailboxes.json``: files checked to be regular files
    under ``src``, numbers to be ones IMAP can serve (``check_numbers``)."""
    folder = _inside(src, os.path.join(home, "mail"), box["directory"], _MAILBOX_DIRECTORY)
    messages = []
    for m in box["messages"]:
        path = _inside(src, folder, m["file"], _MESSAGE_FILE)
        problem = entry_problem(path)
        if problem is not None:
            raise SourceFileError(problem)
        if not isinstance(m["flags"], list):  # a string would be taken letter by letter
            raise TypeError(f"the flags of UID {m['uid']!r} are not a list")
        messages.append(
            RestoredMessage(
                uid=m["uid"],
                flags=frozenset(m["flags"]),
                internaldate=m["internaldate"],
                modseq=m["modseq"],
                source=RegularFileSource(path, os.lstat(path)),
                emailid=m.get("emailid"),  # absent from exports made before they were kept
                savedate=m.get("savedate"),
            )
        )
    try:
        check_numbers(box["uidvalidity"], box["uidnext"], messages)
    except ValueError as e:
        raise ValueError(f"mailbox {box['name']!r}: {e}") from None
    return messages


def _import(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    src = os.path.abspath(args.src)
    manifest = read_manifest(src)
    exported = list(manifest["users"])
    if args.user:
        if len(exported) != 1:
            raise AdminError(
                f"{src} holds {len(exported)} users; import it without naming one "
                "(each goes back to its own address)"
            )
        pairs = [(exported[0], canonical_address(args.user))]
    else:
        pairs = [(user, user) for user in exported]
    exports = [read_exported_user(src, old) for old, _new in pairs]  # all checked first
    store, scripts = open_store(config), script_store(config)
    for export, (old, new) in zip(exports, pairs, strict=True):
        _check_names(store, src, old, new, export)
    report = [
        import_user(store, accounts, export, new, scripts, config)
        for export, (_old, new) in zip(exports, pairs, strict=True)
    ]

    def lines() -> list[str]:
        out = []
        for user in report:
            out.append(f"{user['user']}: account {user['account']}")
            for box in user["mailboxes"]:
                how = "UIDs kept" if box["kept_uids"] else "new UIDs (the mailbox held mail)"
                out.append(f"  {box['name']}: {added(box)}, {how}")
                state = archive_mailstate.report_text(box["state"])
                out.extend([f"  {box['name']}: {state}"] if state else [])
            state = archive_mailstate.report_text(user["metadata"])
            out.extend([f"  account: {state}"] if state else [])
            out.extend(f"  {line}" for line in archive_sieve.report_lines(user["sieve"]))
            spam = archive_spam.report_line(user["spam"])
            out.extend([f"  {spam}"] if spam else [])
        return out

    emit(args, report, lines)
    return 0


def _check_names(store: Any, src: str, old: str, user: str, export: ExportedUser) -> None:
    """Refuse an export whose mailbox names the store can't hold (``../../x``, a NUL, a
    number) before the account is made: a name found bad halfway left the account created
    and the mailboxes before it restored, with "unexpected InvalidMailboxName"."""
    path = os.path.join(src, old, "mailboxes.json")
    for box, _messages in export.mailboxes:
        name = box["name"]
        try:
            if not isinstance(name, str):
                raise InvalidMailboxName(f"{name!r} is not a mailbox name")
            if IFileDelivery.providedBy(store):  # its names are directories: check them
                store.mailbox_directory(user, name)
        except InvalidMailboxName as e:
            raise AdminError(f"{shown(path)}: {e}") from None


def added(box: dict) -> str:
    """How many messages a mailbox got, and how many it had from an earlier run."""
    text = f"{box['messages']} message(s)"
    return text + (f" added, {box['present']} there already" if box["present"] else "")


def _aliases_to(record: dict[str, Any], old: object, user: str) -> list[tuple[str, list[str]]]:
    """The aliases of ``account.json`` to restore, as ``user``'s: only those leading to the
    user, which are all export writes. Any other (``postmaster@`` to an outside address)
    came from someone's editing, and importing one user's backup took over the address."""
    found = []
    aliases = record.get("aliases", [])
    for entry in aliases if isinstance(aliases, list) else []:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            continue
        alias, targets = entry
        wanted = [user if t == old else t for t in targets]
        if isinstance(alias, str) and all(isinstance(t, str) for t in wanted) and user in wanted:
            found.append((alias, wanted))
    return found


def import_user(
    store: Any, accounts: Any, export: ExportedUser, user: str, scripts: Any, config: Any
) -> dict[str, Any]:
    """Restore one exported user (read by ``read_exported_user``) as ``user``: the account,
    the mailboxes (each with its METADATA and ACL), the account's METADATA, then the Sieve
    scripts (after the mail: a rule filing new mail into a mailbox not yet restored would
    make it one that holds other mail, restored under new UIDs) and the spam settings."""
    record = export.account
    created = not accounts.has_user(user)
    if created:
        if not record.get("password_hash"):
            raise AdminError(f"{user}: no account here and no password hash in the export")
        accounts.add_user_with_hash(user, record["password_hash"])
        rules = accounts.address_rules()
        try:
            if record.get("quota") is not None:
                rules.set_quota(user, record["quota"])
            forward = record.get("forward") or {}
            if forward.get("targets"):
                rules.set_forward(user, forward["targets"], forward.get("keep_copy", True))
        except BaseException:
            accounts.remove_user(user)  # no account half made
            raise
    rules = accounts.address_rules()
    old = record.get("address", user)
    for alias, targets in _aliases_to(record, old, user):
        # One that exists already, or whose domain isn't served here, is left as it is.
        with contextlib.suppress(AccountError):
            rules.add_alias(alias, targets)
    result_of(store.provision(user))
    done = []
    for (box, messages), state in zip(export.mailboxes, export.box_states, strict=True):
        restored = restore_mailbox_sync(
            store, user, box["name"], box["uidvalidity"], box["uidnext"], messages, result_of,
            box.get("mailboxid"),
        )  # fmt: skip
        if box.get("subscribed"):
            result_of(store.subscribe(user, box["name"], True))
        done.append(
            {
                "name": box["name"],
                "messages": restored.messages,
                "present": restored.present,
                "kept_uids": restored.kept_uids,
                "uidvalidity": restored.uidvalidity,
                "state": archive_mailstate.import_state(store, user, box["name"], state),
            }
        )
    return {
        "user": user,
        "account": "created" if created else "existed",
        "mailboxes": done,
        "metadata": archive_mailstate.import_state(store, user, None, export.account_state),
        "sieve": archive_sieve.import_scripts(scripts, user, export.scripts),
        "spam": archive_spam.import_spam(config, user, export.spam),
    }
