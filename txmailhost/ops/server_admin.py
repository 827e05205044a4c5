"""``txmailhost auth test``, ``config show`` and ``status``: questions about the server itself.

- ``auth test USER``: does this password open the account? Checked against the accounts
  database with the hash code the servers use (``accounts/passwords.py``), without logging in
  anywhere, so no login throttle, login-origin record or log line of a protocol is touched.
- ``config show``: the effective configuration, like ``postconf -n``: the keys set in the
  file (``--all``: every key, defaults included), secrets replaced by ``********``.
- ``status``: versions, each listener and whether something answers on it, the relay queue and
  local mail waiting for its mailboxes, accounts, and the disk holding the data directory.

Every command takes ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import twisted
from txmailhost import __version__
from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.passwords import dummy_hash, verify_password
from txmailhost.config import ListenConfig, load_config
from txmailhost.delivery.local import spooled_local
from txmailhost.ops.mailbox_admin import emit, json_option
from txmailhost.queue.service import open_records

HIDDEN = "********"
_URI_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)[^/?#]*@")
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)
# A key whose name says it holds a secret; paths to files holding one (``*_file``) are shown.
_SECRET = re.compile(r"pass(word)?|secret|token|api_?key|credential|private", re.IGNORECASE)


def register(
    commands: Any,
    with_config: Callable[..., Callable[[argparse.Namespace], int]],
    with_accounts: Callable[..., Callable[[argparse.Namespace], int]],
    password_option: Callable[[argparse.ArgumentParser], None],
    read_password: Callable[[str | None], str],
) -> None:
    """Add ``auth``, ``config`` and ``status`` to the CLI's subparsers."""
    auth = commands.add_parser("auth", help="check credentials without logging in anywhere")
    auth_actions = auth.add_subparsers(metavar="ACTION", required=True)
    test = auth_actions.add_parser("test", help="does the password open this account?")
    test.add_argument("user")
    password_option(test)
    json_option(test)
    test.set_defaults(run=with_accounts(_auth_test(read_password)))

    config = commands.add_parser("config", help="the effective configuration")
    config_actions = config.add_subparsers(metavar="ACTION", required=True)
    show = config_actions.add_parser(
        "show", help="keys set in the config file (like postconf -n), secrets hidden"
    )
    show.add_argument("--all", action="store_true", help="every key, defaults included")
    json_option(show)
    show.set_defaults(run=_config_show)

    status = commands.add_parser(
        "status", help="versions, listeners, queue, accounts and disk at a glance"
    )
    json_option(status)
    status.set_defaults(run=with_accounts(_status))


# -- auth test ---------------------------------------------------------------------------------


def _auth_test(read_password: Callable[[str | None], str]) -> Callable[..., int]:
    def run(args: argparse.Namespace, config: Any, accounts: Any) -> int:
        user = canonical_address(args.user)
        password = read_password(args.password_file)
        encoded = accounts.password_hash(user)
        # The same work whether or not the account exists (as the servers do).
        ok = verify_password(password, encoded or dummy_hash()) and encoded is not None
        why = "ok" if ok else ("no such user" if encoded is None else "wrong password")
        emit(
            args,
            {"user": user, "ok": ok, "reason": why},
            lambda: [f"auth {'succeeded' if ok else 'failed'} for {user}: {why}"],
        )
        return 0 if ok else 1

    return run


# -- config show -------------------------------------------------------------------------------


def _hide(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _hide(str(k), v) for k, v in value.items()}
    # Only text can be a secret (credential_cache_ttl is a number of seconds).
    if isinstance(value, str) and value and _SECRET.search(key) and not key.endswith("_file"):
        return HIDDEN
    if isinstance(value, str) and (key == "dsn" or key.endswith("_dsn")):
        return hide_dsn_password(value)
    return value


def hide_dsn_password(dsn: str) -> str:
    """``dsn`` with its password replaced by ``HIDDEN``: the one of a URI's user information
    (``postgresql://mail:PASSWORD@db/mail``, RFC 3986 3.2.1) and the ``password=`` of the
    keyword form or of a URI's query (libpq). ``config show`` printed ``store.dsn`` whole,
    password and all, as a key not named like a secret."""
    dsn = _URI_PASSWORD.sub(lambda m: m.group(1) + HIDDEN + "@", dsn)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, dsn)


def effective(config: Any, everything: bool) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}``: the keys whose values differ from what an empty config
    file gives (``everything``: all of them), secrets hidden."""
    # The schema and the loader's own defaults (resolved paths included): one table drives
    # every view of the config, so this can't list a key the loader doesn't know.
    from txmailhost.config import _SECTIONS, _build

    defaults = _build(config.data_dir, config.config_file, {})
    out: dict[str, dict[str, Any]] = {}
    for section, (cls, _doc) in _SECTIONS.items():
        shown: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value, default = (
                (getattr(config, f.name), getattr(defaults, f.name))  # flattened into Config
                if section == "server"
                else (
                    getattr(getattr(config, section), f.name),
                    getattr(getattr(defaults, section), f.name),
                )
            )
            if everything or value != default:
                shown[f.name] = _hide(f.name, list(value) if isinstance(value, tuple) else value)
        if shown:
            out[section] = shown
    return out


def _config_show(args: argparse.Namespace) -> int:
    config = load_config(args.data, args.config)
    shown = effective(config, args.all)

    def lines() -> list[str]:
        import json

        out = [f"# {config.config_file}"]
        for section, values in shown.items():
            for key, value in values.items():
                out.append(f"{section}.{key} = {json.dumps(value, ensure_ascii=False)}")
        return out

    emit(args, shown, lines)
    return 0


# -- status ------------------------------------------------------------------------------------


def _probe_address(description: str) -> tuple[str, int] | None:
    """Where to connect to see whether a ``tcp:`` listener answers; None for other kinds."""
    parts = description.split(":")
    kind = parts[0].strip().lower()
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        return None
    try:
        port = int(parts[1])
    except ValueError:
        return None
    interface = ""
    found = re.search(r"interface=((?:\\:|[^:])*)", description)
    if found:
        interface = found.group(1).replace("\\:", ":")
    if interface in ("", "0.0.0.0"):
        interface = "::1" if kind == "tcp6" else "127.0.0.1"
    elif interface == "::":
        interface = "::1"
    return interface, port


def _answers(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError:
        return False
    return True


def _listeners(config: Any) -> list[dict[str, Any]]:
    rows = []
    for f in dataclasses.fields(ListenConfig):
        description = getattr(config.listen, f.name)
        address = _probe_address(description) if description else None
        if not description:
            state = "off"
        elif address is None or address[1] == 0:
            state = "unknown"
        else:
            state = "listening" if _answers(address) else "not listening"
        rows.append({"listener": f.name, "endpoint": description, "state": state})
    return rows


def _queue(config: Any) -> dict[str, Any]:
    now = time.time()
    messages, pending, deferred, oldest = 0, 0, 0, now
    for envelope in open_records(config).envelopes():
        messages += 1
        oldest = min(oldest, envelope.arrival)
        for r in envelope.active():
            pending += r.state == "pending"
            deferred += r.state == "deferred"
    local = spooled_local(os.path.join(config.queue_dir, "spare"))
    return {
        "messages": messages,
        "pending_recipients": pending,
        "deferred_recipients": deferred,
        "oldest_age_seconds": round(now - oldest, 1),
        "local_waiting": len(local),
    }


def _status(args: argparse.Namespace, config: Any, accounts: Any) -> int:
    disk = shutil.disk_usage(config.data_dir)
    document = {
        "versions": {
            "txmailhost": __version__,
            "python": ".".join(str(n) for n in sys.version_info[:3]),
            "twisted": twisted.__version__,
        },
        "data": config.data_dir,
        "hostname": config.hostname,
        "store": config.store.backend,
        "listeners": _listeners(config),
        "queue": _queue(config),
        "accounts": {
            "domains": len(accounts.list_domains()),
            "users": len(accounts.list_users(None)),
        },
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free},
    }

    def lines() -> list[str]:
        versions = document["versions"]
        queue = document["queue"]
        free = disk.free / disk.total * 100 if disk.total else 0.0
        out = [
            f"txmailhost {versions['txmailhost']} (Python {versions['python']}, "
            f"Twisted {versions['twisted']})",
            f"data: {config.data_dir} ({config.store.backend} store), hostname {config.hostname}",
            "listeners:",
        ]
        out += [
            f"  {r['listener']:<12} {r['state']:<14} {r['endpoint']}" for r in document["listeners"]
        ]
        out.append(
            f"queue: {queue['messages']} message(s), {queue['pending_recipients']} pending and "
            f"{queue['deferred_recipients']} deferred recipient(s), oldest "
            f"{queue['oldest_age_seconds']:.0f} s; {queue['local_waiting']} local waiting"
        )
        out.append(
            f"accounts: {document['accounts']['domains']} domain(s), "
            f"{document['accounts']['users']} user(s)"
        )
        out.append(
            f"disk: {disk.free // 2**20} MiB free of {disk.total // 2**20} MiB ({free:.0f}%)"
        )
        return out

    emit(args, document, lines)
    return 0
