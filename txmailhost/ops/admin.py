"""The operations commands, added to the ``txmailhost`` CLI by one ``register`` call.

``cli.py`` hands over its helpers (how a command gets the config and the accounts database,
how a password is read) so these modules share its checks of the data directory and its
one-line errors without importing it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from txmailhost.ops import (
    acl_admin,
    archive,
    control,
    log_grep,
    mailbox_admin,
    migrate,
    server_admin,
)

Runner = Callable[[argparse.Namespace], int]


def register(
    commands: Any,
    with_config: Callable[..., Runner],
    with_accounts: Callable[..., Runner],
    password_option: Callable[[argparse.ArgumentParser], None],
    read_password: Callable[[str | None], str],
) -> None:
    """Add ``mailbox``, ``search``, ``fetch``, ``expunge``, ``flags``, ``quota``, ``index``,
    ``acl``, ``export``, ``import``, ``log grep``, ``migrate``, ``who``, ``kick``, ``auth``, ``config`` and ``status`` to the CLI's subparsers."""
    mailbox_admin.register(commands, with_accounts)
    acl_admin.register(commands, with_accounts)
    archive.register(commands, with_accounts)
    log_grep.register(commands)
    migrate.register(commands, with_accounts)
    control.register(commands, with_config)
    server_admin.register(commands, with_config, with_accounts, password_option, read_password)
