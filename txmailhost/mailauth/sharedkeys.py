"""DKIM keys in the database every node shares, and which key store a config opens.

Why: with several nodes behind one name, a message is signed by whichever node the user
submitted it to, and verified against the one record published in DNS for its selector. With
``DATA/dkim`` per node, a node without the keys sends unsigned mail, and two nodes that each
ran ``dkim init`` (or ``rotate``) in one month hold *different* keys under the *same*
selector name, so half the mail fails DKIM, and DMARC with it. With ``[store] backend =
"postgres"`` the keys are rows of ``dkim_selectors`` (step 7 of ``store/postgres_schema.py``):
one row per selector with its Ed25519 and RSA keys, at most one active per domain (a partial
unique index), made once by ``txmailhost dkim init``/``rotate`` on any node.

:class:`SharedKeyStore` has the methods of ``keys.KeyStore`` (``domains``, ``selectors``,
``create``, ``retire``, ``keys``, ``published``) and its errors. Signing asks ``keys(domain)``
for each message (and its parent domains): those answers come from one snapshot of every
domain's active keys, read at start and again every ``REFRESH`` seconds, so signing costs a
query only that often; a ``rotate`` on another node signs here within that time (the old
selector stays published until ``retire``, so mail signed with it meanwhile still verifies).
Mail the server writes itself (DSNs) is signed on the reactor thread: there a stale snapshot
is used as it is and read again in a thread, so the reactor never waits on the database.

The private keys are then in the database: give its role and its backups the care the key
files had (mode 0600).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python import threadable

from txmailhost.mailauth.keys import (
    ALGORITHMS,
    DKIMKeyError,
    KeyStore,
    Selector,
    SigningKey,
    check_domain,
    check_selector,
    new_private_keys,
)

log = Logger(namespace="txmailhost.mailauth")


def open_key_store(config: Any) -> KeyStore | SharedKeyStore:
    """The keys of ``config``: ``DATA/dkim``, or the shared table for a PostgreSQL store; the
    server, the CLI and the admin console open the same one."""
    if config.store.backend == "postgres":
        from txmailhost.store.pgstate import SharedState

        return SharedKeyStore(SharedState(config.store.dsn))
    return KeyStore(os.path.join(config.data_dir, "dkim"))


class SharedKeyStore:
    """Every domain's DKIM keys in ``dkim_selectors`` of ``state`` (a ``store.pgstate``
    ``SharedState``). Blocking, like ``KeyStore``'s file reads."""

    REFRESH = 30.0  # seconds this node signs with the active keys it read last
    # A domain with no key at all is looked for again sooner: the first ``dkim init`` on one
    # node must not leave the others sending unsigned mail for half a minute.
    MISSING_REFRESH = 1.0

    def __init__(self, state: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, list[SigningKey]] = {}
        self._read_at = float("-inf")
        self._refreshing = False

    def domains(self) -> list[str]:
        return [row[0] for row in self.state.rows(
            "SELECT DISTINCT domain FROM dkim_selectors ORDER BY domain")]  # fmt: skip

    def selectors(self, domain: str) -> list[Selector]:
        rows = self.state.rows(
            "SELECT name, created, active FROM dkim_selectors WHERE domain = %s ORDER BY created",
            (check_domain(domain),),
        )
        return [Selector(name, created, active) for name, created, active in rows]

    def create(self, domain: str, selector: str | None = None) -> str:
        """Make a new key pair for ``domain`` and sign with it from now on (on every node
        within ``REFRESH`` seconds); returns its name. An existing selector is refused."""
        domain = check_domain(domain)
        wanted = check_selector(selector) if selector else None
        pems = new_private_keys()  # before the transaction: RSA takes a while
        with self.state.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('dkim:' || %s))", (domain,))
            names = {
                row[0]: row[1]
                for row in conn.execute(
                    "SELECT name, created FROM dkim_selectors WHERE domain = %s", (domain,)
                )
            }
            name = wanted or KeyStore._next_name({"selectors": names})
            if name in names:
                raise DKIMKeyError(f"{domain} already has a selector {name!r}")
            conn.execute(
                "UPDATE dkim_selectors SET active = false WHERE domain = %s AND active", (domain,)
            )
            conn.execute(
                "INSERT INTO dkim_selectors (domain, name, created, active, ed25519_pem,"
                " rsa_pem) VALUES (%s, %s, %s, true, %s, %s)",
                (domain, name, time.time(), pems["ed25519"].decode(), pems["rsa"].decode()),
            )
        self._forget()
        return name

    def retire(self, domain: str, selector: str) -> None:
        """Forget an old selector (after its DNS records were removed); never the active one."""
        domain = check_domain(domain)
        with self.state.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('dkim:' || %s))", (domain,))
            row = conn.execute(
                "SELECT active FROM dkim_selectors WHERE domain = %s AND name = %s",
                (domain, selector),
            ).fetchone()
            if row is None:
                raise DKIMKeyError(f"{domain} has no selector {selector!r}")
            if row[0]:
                raise DKIMKeyError(f"{selector!r} signs {domain}'s mail now: rotate first")
            conn.execute(
                "DELETE FROM dkim_selectors WHERE domain = %s AND name = %s", (domain, selector)
            )
        self._forget()

    def keys(self, domain: str, selector: str | None = None) -> list[SigningKey]:
        """The keys of ``selector`` (the active one when None), Ed25519 first; [] when the
        domain has none. The active ones from the snapshot (see the module docstring)."""
        domain = domain.rstrip(".").lower()
        if selector is not None:
            rows = self.state.rows(
                "SELECT name, ed25519_pem, rsa_pem FROM dkim_selectors"
                " WHERE domain = %s AND name = %s",
                (domain, selector),
            )
            return _signing_keys(domain, *rows[0]) if rows else []
        age = self._clock() - self._read_at
        active = self._active  # taken first: a background read may replace it meanwhile
        missing = domain not in active
        if age >= self.REFRESH or (missing and age >= self.MISSING_REFRESH):
            if threadable.isInIOThread():
                self._refresh_later()  # the reactor thread never waits on the database
                return active.get(domain, [])
            self.refresh()
        return self._active.get(domain, [])

    def refresh(self) -> None:
        """Read every domain's active keys now (the server does it once at start)."""
        rows = self.state.rows(
            "SELECT domain, name, ed25519_pem, rsa_pem FROM dkim_selectors WHERE active"
        )
        active = {row[0]: _signing_keys(*row) for row in rows}
        with self._lock:
            self._active = active
            self._read_at = self._clock()

    def _refresh_later(self) -> None:
        """On the reactor thread (a DSN signed as it is submitted): sign with what was read
        last, and read again in a thread of its own."""
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def run() -> None:
            try:
                self.refresh()
            except Exception:
                log.failure("dkim: can't read the shared keys; signing with the last ones")
            finally:
                self._refreshing = False

        threading.Thread(target=run, name="txmailhost-dkim-keys", daemon=True).start()

    def published(self, domain: str) -> list[SigningKey]:
        """Every key whose record should be in DNS: the active selector's and older ones."""
        return [k for s in self.selectors(domain) for k in self.keys(domain, s.name)]

    def _forget(self) -> None:
        with self._lock:
            self._read_at = float("-inf")


def _signing_keys(domain: str, name: str, ed25519_pem: str, rsa_pem: str) -> list[SigningKey]:
    pems = {"ed25519": ed25519_pem, "rsa": rsa_pem}
    return [
        SigningKey(domain, f"{name}-{algorithm}", algorithm, pems[algorithm].encode())
        for algorithm in ALGORITHMS
    ]
