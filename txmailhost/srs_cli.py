"""``txmailhost srs ...``: the SRS signing keys (``srs.py``), without editing their file.

- ``srs list`` — one line per key: its id (a digest; the secret is never printed), whether
  it signs or only verifies, when it was made (PostgreSQL keeps the date, the file doesn't);
- ``srs rotate`` — a new key signs from now on; the others keep verifying bounces to the
  addresses they signed;
- ``srs retire ID`` — forget an old key, once ``[srs] max_age_days`` have passed since the
  rotation (its addresses have expired by then): bounces to them are refused from then on.

The keys are ``DATA/srs/keys``, or the ``srs_keys`` rows every node shares with
``[store] backend = "postgres"``; a running server sees the change within 30 seconds, and at
once when an address fails to verify, so no restart is needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from txmailhost.srs import Keys, SharedKeys, open_keys


def register(
    commands: Any, with_config: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Add the ``srs`` command to the CLI's subparsers."""
    srs = commands.add_parser("srs", help="SRS signing keys of forwarded mail ([srs] domain)")
    actions = srs.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per key: id, signs or verifies, created")
    listing.set_defaults(run=with_config(_list))
    rotate = actions.add_parser(
        "rotate", help="make a new key that signs from now on; the old ones still verify"
    )
    rotate.set_defaults(run=with_config(_rotate))
    retire = actions.add_parser(
        "retire", help="forget an old key ([srs] max_age_days after the rotation)"
    )
    retire.add_argument("id", help="the key's id, as 'srs list' shows it")
    retire.set_defaults(run=with_config(_retire))


def key_store(config: Any) -> Keys | SharedKeys:
    """The keys the server signs with: the shared table or this node's file."""
    if not config.srs.domain:
        print("note: [srs] domain is not set: these keys sign nothing until it is", file=sys.stderr)
    return open_keys(config)


def _list(args: argparse.Namespace, config: Any) -> int:
    for key in key_store(config).listing():
        line = f"{key.id} {'signs' if key.signing else 'verifies'}"
        if key.created is not None:
            line += " created=" + time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created))
        print(line)
    return 0


def _rotate(args: argparse.Namespace, config: Any) -> int:
    made = key_store(config).rotate()
    print(f"SRS key {made} signs from now on; the old ones verify until retired")
    print(f"retire them in {config.srs.max_age_days} days ([srs] max_age_days): 'srs retire ID'")
    return 0


def _retire(args: argparse.Namespace, config: Any) -> int:
    key_store(config).retire(args.id)
    print(f"SRS key {args.id.strip().lower()} retired")
    return 0
