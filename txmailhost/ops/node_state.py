"""What ``migrate maildir-to-postgres`` moves besides mail, accounts and the queue: the state of
the data directory that a PostgreSQL store keeps in the database (schema step 7).

- the SRS keys of ``DATA/srs/keys`` into ``srs_keys``, the file's signing key (its first line)
  newest, so bounces to addresses rewritten before the move still verify and nothing changes
  for mail rewritten after it (``srs.py``);
- the DKIM keys of ``DATA/dkim`` into ``dkim_selectors``, each selector with its keys and the
  active one (unless the domain already has an active selector in the database), so the
  records already in DNS keep verifying (``mailauth/sharedkeys.py``);
- every user's Sieve scripts of ``DATA/sieve`` into ``sieve_scripts``, with the active one
  (unless the user already has an active script in the database), and the vacation replies
  still running (``vacation.json``) into ``sieve_responses``, so no sender is answered again
  because the server moved (``sieve/shared.py``).

What is in the database already is kept: running the migration again changes nothing. The
administrator's ``DATA/sieve/global`` scripts stay files (docs/scaling.rst: copy them to
every node).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from txmailhost.mailauth.keys import KeyStore
from txmailhost.sieve.scripts import ScriptError, ScriptStore
from txmailhost.sieve.vacation import LOG_NAME


def copy_node_state(data_dir: str, users: list[str], state: Any) -> dict[str, int]:
    """Copy the SRS keys and ``users``' Sieve state into the database of ``state`` (a
    ``store.pgstate.SharedState``); the counts of rows added."""
    done = {
        "srs_keys": _copy_srs_keys(data_dir, state),
        "dkim_selectors": _copy_dkim(data_dir, state),
        "scripts": 0,
        "vacation": 0,
    }
    files = ScriptStore(os.path.join(data_dir, "sieve"))
    for user in users:
        scripts, responses = _copy_user(files, user, state)
        done["scripts"] += scripts
        done["vacation"] += responses
    return done


def _copy_srs_keys(data_dir: str, state: Any) -> int:
    try:
        with open(os.path.join(data_dir, "srs", "keys"), encoding="ascii") as f:
            keys = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return 0
    added = 0
    now = time.time()
    with state.transaction() as conn:
        for key in reversed(keys):  # the first line last: the highest id signs
            added += conn.execute(
                "INSERT INTO srs_keys (secret, created) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (key, now),
            ).rowcount
    return added


def _copy_dkim(data_dir: str, state: Any) -> int:
    files = KeyStore(os.path.join(data_dir, "dkim"))
    added = 0
    for domain in files.domains():
        with state.transaction() as conn:
            for selector in files.selectors(domain):
                pems = {
                    k.algorithm: k.private_pem.decode() for k in files.keys(domain, selector.name)
                }
                added += conn.execute(
                    "INSERT INTO dkim_selectors (domain, name, created, ed25519_pem, rsa_pem)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (domain, selector.name, selector.created, pems["ed25519"], pems["rsa"]),
                ).rowcount
                if selector.active:
                    conn.execute(
                        "UPDATE dkim_selectors SET active = true WHERE domain = %s AND name = %s"
                        " AND NOT EXISTS (SELECT 1 FROM dkim_selectors WHERE domain = %s"
                        " AND active)",
                        (domain, selector.name, domain),
                    )
    return added


def _copy_user(files: ScriptStore, user: str, state: Any) -> tuple[int, int]:
    try:
        listed = files.list(user)
        directory = files.user_directory(user)
    except ScriptError:
        return 0, 0  # an address the file store can't hold has no files to move
    address = user.lower()
    added = responses = 0
    with state.transaction() as conn:
        for info in listed:
            added += conn.execute(
                "INSERT INTO sieve_scripts (address, name, script, updated)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (address, info.name, files.get(user, info.name), time.time()),
            ).rowcount
        active = files.active_name(user)
        if active is not None:
            conn.execute(
                "UPDATE sieve_scripts SET active = true WHERE address = %s AND name = %s"
                " AND NOT EXISTS (SELECT 1 FROM sieve_scripts WHERE address = %s AND active)",
                (address, active, address),
            )
        now = time.time()
        for digest, until in _running_replies(os.path.join(directory, LOG_NAME), now):
            responses += conn.execute(
                "INSERT INTO sieve_responses (address, digest, until) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (address, digest, until),
            ).rowcount
    return added, responses


def _running_replies(path: str, now: float) -> list[tuple[str, float]]:
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return []  # none, or damaged: at most one extra reply per sender, as on one node
    if not isinstance(entries, dict):
        return []
    found = []
    for digest, until in entries.items():
        if isinstance(until, int | float) and until > now:
            found.append((str(digest), float(until)))
    return found


def differences(data_dir: str, users: list[str], state: Any) -> list[str]:
    """Scripts of ``DATA/sieve`` that the database lacks or holds with another text."""
    files = ScriptStore(os.path.join(data_dir, "sieve"))
    problems = []
    for user in users:
        try:
            listed = files.list(user)
        except ScriptError:
            continue
        rows = dict(
            state.rows("SELECT name, script FROM sieve_scripts WHERE address = %s", (user.lower(),))
        )
        for info in listed:
            if rows.get(info.name) != files.get(user, info.name):
                problems.append(f"{user}: Sieve script {info.name!r} is not in the database")
    return problems
