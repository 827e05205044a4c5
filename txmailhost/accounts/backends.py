"""The accounts backend ``[store] accounts`` names, built for the server and the CLI alike
(one source of truth for accounts, DESIGN invariant 5: both must open the same one)."""

from __future__ import annotations

from typing import Any


def open_accounts(config: Any) -> Any:
    """The ``IAccounts`` of ``config``: ``accounts.sqlite`` in the data directory, or the
    PostgreSQL database of ``[store] dsn`` (``accounts/postgres.py``, imported only then)."""
    if config.store.accounts == "postgres":
        from txmailhost.accounts.postgres import PostgresAccounts

        return PostgresAccounts(config.store.dsn)
    from txmailhost.accounts.db import AccountsDB

    return AccountsDB(config.accounts_path)
