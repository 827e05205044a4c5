"""Wiring for Sieve: ``build_sieve`` gives ``service.py`` the delivery agent's Sieve step.

The ManageSieve listener builds its own ``ScriptStore`` on the same directory
(``listeners.py``): the files are the truth, each write is atomic, and the delivery step
sees a new active script on the next message.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from txmailhost.delivery import mailboxes
from txmailhost.sieve.delivery import SieveStep
from txmailhost.sieve.scripts import ScriptStore

DIRECTORY = "sieve"


def script_store(config: Any) -> ScriptStore:
    """The scripts of every user: ``DATA/sieve/``, with the ``[sieve]`` quotas."""
    return ScriptStore(
        os.path.join(config.data_dir, DIRECTORY),
        max_scripts=config.sieve.max_scripts,
        max_script_size=config.sieve.max_script_size,
    )


def build_sieve(config: Any, router: Any, store: Any, reactor: Any, pool: Any) -> SieveStep:
    """The Sieve step; its ``submission`` is set once delivery is built (it sends through it)."""
    return SieveStep(
        script_store(config),
        router.resolve_sync,
        None,
        reactor,
        config.hostname,
        pool=pool,
        create_mailbox_sync=partial(mailboxes.create_sync, store, reactor),
        max_steps=config.sieve.max_steps,
        max_redirects=config.sieve.max_redirects,
    )
