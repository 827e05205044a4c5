"""``txmailhost user vacation``: an away message without writing Sieve.

``txmailhost user vacation ADDR --subject S --body-file F [--until DATE] [--days N]`` writes
the user's script ``vacation`` (RFC 5230, with RFC 5260 ``currentdate`` for ``--until``) and
makes it active; ``--off`` deactivates it and activates again the script that was active
before (its name is kept in the generated script's first line); without options it shows
the setting. It writes the same files as ManageSieve (``scripts.py``), so it works with the
server running and the next message sees it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.interfaces import AccountError, IAccounts
from txmailhost.sieve.grammar import quote
from txmailhost.sieve.scripts import ScriptError

NAME = "vacation"
DAYS = 7  # RFC 5230 4.1 recommends 7 as the default :days
_PREVIOUS = "# txmailhost vacation; previously active: "


def register(user_commands: Any, with_accounts: Any) -> None:
    vacation = user_commands.add_parser(
        "vacation", help="set, show or end a user's automatic away reply (a Sieve script)"
    )
    vacation.add_argument("address")
    vacation.add_argument("--subject", help="subject of the reply (default: Auto: <subject>)")
    vacation.add_argument(
        "--body-file", metavar="FILE", help="text of the reply, UTF-8 ('-' for stdin)"
    )
    vacation.add_argument(
        "--until", metavar="YYYY-MM-DD", help="last day to answer (server's time zone)"
    )
    vacation.add_argument(
        "--days", type=int, help=f"answer each sender once per DAYS days (default {DAYS})"
    )
    vacation.add_argument("--off", action="store_true", help="end the away reply")
    vacation.set_defaults(run=with_accounts(_vacation))


def vacation_script(
    body: str,
    subject: str | None,
    until: datetime.date | None,
    days: int,
    previous: str | None = None,
) -> str:
    """The Sieve text for an away reply (what ``--subject/--body-file/--until`` ask for)."""
    extensions = ["vacation"] + (["date", "relational"] if until else [])
    lines = [
        _PREVIOUS + (previous or ""),
        "require [" + ", ".join(quote(e) for e in extensions) + "];",
    ]
    subject_tag = f" :subject {quote(subject)}" if subject else ""
    action = f"vacation :days {days}{subject_tag} {quote(body)};"
    if until:
        lines.append(f'if currentdate :value "le" "date" "{until.isoformat()}" {{')
        lines.append(f"  {action}")
        lines.append("}")
    else:
        lines.append(action)
    return "\r\n".join(lines) + "\r\n"


def _previous_of(text: str) -> str | None:
    first = text.split("\r\n", 1)[0].split("\n", 1)[0]
    if first.startswith(_PREVIOUS):
        return first[len(_PREVIOUS) :].strip() or None
    return None


def _vacation(args: argparse.Namespace, config: Any, accounts: IAccounts) -> int:
    until = _checked_options(args)
    user = canonical_address(args.address)
    if not accounts.has_user(user):
        raise AccountError(f"no such user: {user}")
    # Imported here: it brings in Sieve delivery and the mail store, which the other ``user``
    # commands (this module is loaded to register ``vacation`` beside them) never use.
    from txmailhost.sieve.setup import script_store

    store = script_store(config)
    active = store.active_name(user)
    try:
        if args.off:
            return _off(store, user, active)
        if args.body_file is None:
            on = active == NAME
            print(f"{user}: vacation {'on' if on else 'off'}")
            return 0
        days = DAYS if args.days is None else args.days
        vacation_on(store, user, _read_body(args.body_file), args.subject, until, days)
    except ScriptError as e:
        raise ValueError(str(e)) from None
    print(f"{user}: vacation on" + (f" until {until.isoformat()}" if until else ""))
    return 0


def _checked_options(args: argparse.Namespace) -> datetime.date | None:
    """The ``--until`` date, after refusing options that would be ignored: without
    ``--body-file`` the command only shows (or, with ``--off``, ends) the setting, and an
    administrator who typed ``--subject`` or ``--until`` meant to set one. A last day
    already past would write a reply that is never sent."""
    given = [
        f"--{name}" for name in ("subject", "until", "days") if getattr(args, name) is not None
    ]
    if args.off and (given or args.body_file is not None):
        raise ValueError("--off takes no other option")
    if given and args.body_file is None:
        raise ValueError(f"{', '.join(given)} set an away reply: give its text with --body-file")
    if args.until is None:
        return None
    try:
        until = datetime.date.fromisoformat(args.until)
    except ValueError:
        raise ValueError(f"--until {args.until!r}: expected a date as YYYY-MM-DD") from None
    if until < datetime.date.today():
        raise ValueError(
            f"--until {until.isoformat()} is in the past: the reply would never be sent"
        )
    return until


def vacation_on(
    store: Any, user: str, body: str, subject: str | None, until: datetime.date | None, days: int
) -> None:
    """Write and activate the user's ``vacation`` script, remembering the script that was
    active so that :func:`vacation_off` can bring it back (the CLI and the webmail's
    settings both come here). Blocking (the script store writes durably)."""
    if not 1 <= days <= 365:
        raise ValueError("--days must be from 1 to 365")
    active = store.active_name(user)
    previous = active if active != NAME else _previous_of(store.get(user, NAME))
    store.put(user, NAME, vacation_script(body, subject, until, days, previous))
    store.set_active(user, NAME)


def vacation_off(store: Any, user: str) -> str | None:
    """End the away reply: the previously active script is active again (its name), or
    none. Nothing changes when the vacation script isn't the active one."""
    if store.active_name(user) != NAME:
        return None
    previous = _previous_of(store.get(user, NAME))
    names = {info.name for info in store.list(user)}
    store.set_active(user, previous if previous in names else None)
    return previous if previous in names else None


def _off(store: Any, user: str, active: str | None) -> int:
    if active != NAME:
        print(f"{user}: vacation off")
        return 0
    previous = vacation_off(store, user)
    again = f"; {previous} active again" if previous else ""
    print(f"{user}: vacation off{again}")
    return 0


def _read_body(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()
