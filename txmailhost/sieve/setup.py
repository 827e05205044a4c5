"""Wiring for Sieve: ``build_sieve`` gives ``service.py`` the delivery agent's Sieve step.

The ManageSieve listener builds its own script store on the same place (``listeners.py``):
the files are the truth, each write is atomic, and the delivery step sees a new active script
on the next message. With ``[store] backend = "postgres"`` the place is the database every
node shares (``shared.py``): a script uploaded to one node sorts the mail every node delivers,
and a vacation reply goes to a sender once, whichever nodes their mail reaches.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from txmailhost.delivery import mailboxes
from txmailhost.sieve.delivery import SieveStep
from txmailhost.sieve.scripts import ScriptStore
from txmailhost.sieve.shared import SharedNotified, SharedResponseLog, SharedScriptStore

DIRECTORY = "sieve"


def script_store(config: Any) -> ScriptStore | SharedScriptStore:
    """The scripts of every user, with the ``[sieve]`` quotas: ``DATA/sieve/``, or the shared
    database's ``sieve_scripts`` for a PostgreSQL store (the administrator's ``include
    :global`` scripts stay in ``DATA/sieve/global/``)."""
    root = os.path.join(config.data_dir, DIRECTORY)
    if config.store.backend == "postgres":
        from txmailhost.store.pgstate import SharedState

        return SharedScriptStore(
            SharedState(config.store.dsn),
            root,
            max_scripts=config.sieve.max_scripts,
            max_script_size=config.sieve.max_script_size,
        )
    return ScriptStore(
        root,
        max_scripts=config.sieve.max_scripts,
        max_script_size=config.sieve.max_script_size,
    )


def build_sieve(config: Any, router: Any, store: Any, reactor: Any, pool: Any) -> SieveStep:
    """The Sieve step; its ``submission`` is set once delivery is built (it sends through it)."""
    scripts = script_store(config)
    memories: dict[str, Any] = {}
    if isinstance(scripts, SharedScriptStore):  # what vacation and failure notices remember
        memories = {
            "responses": SharedResponseLog(scripts.state),
            "notified": SharedNotified(scripts.state),
        }
    return SieveStep(
        scripts,
        router.resolve_sync,
        None,
        reactor,
        config.hostname,
        pool=pool,
        create_mailbox_sync=partial(mailboxes.create_sync, store, reactor),
        max_steps=config.sieve.max_steps,
        max_redirects=config.sieve.max_redirects,
        **memories,
    )
