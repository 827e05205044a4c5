"""A cache of verified passwords, so a client that logs in again doesn't pay scrypt again.

Mail clients reconnect all day (Thunderbird opens up to five connections per account, phones
reconnect on every network change), and each login would otherwise cost a scrypt hash: 32 MiB
and ~90 ms of a core, at most one per core at a time. Dovecot's auth cache (``auth_cache_size``,
``auth_cache_ttl``) answers the same problem the same way.

What is kept, in memory only, per entry: the account, an HMAC-SHA256 of the offered password
under a key drawn at random when the process starts (never the password, nor anything that
outlives the process or could be tested offline), the stored hash the password was verified
against, and an expiry (``ttl``, default an hour). At most ``max_entries``, the oldest dropped
first.

A hit needs the account's *current* stored hash, read by the checker from the accounts
database anyway (one primary-key lookup, no hashing), to equal the one the entry was verified
against: a password change (a new hash, with a new salt) or the user's deletion (no hash)
drops every entry of the account at once, including when the CLI did it in another process.
Wrong passwords are never cached: every guess still costs a full scrypt.

With worker processes (``[server] workers``) each worker has a cache, and a client's
connections land on any worker: without sharing, a user's first login on each of N workers
costs a scrypt, N times the hashing (a crowd of 100,000 sessions over 1,000 users on 8
workers: 8,000 hashes, minutes of both cores). So the supervisor draws one key at start and
hands it to every worker through its stdin pipe (never a file, an argument or the
environment), and each entry remembered is told to the other workers over their bus
(``forward``; ``adopt`` on the receiving end): a fingerprint under the shared key, which
is worthless without it, and the stored hash, which the accounts database already holds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

KEY_SIZE = 32


class CredentialCache:
    """Verified (account, password) pairs; thread-safe, since checks run in a thread pool."""

    def __init__(
        self,
        clock: Any,
        *,
        ttl: float = 3600.0,
        max_entries: int = 10_000,
        key: bytes | None = None,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        # ``key``: the workers' shared one (see the module docstring); alone, a fresh one.
        self._key = key if key else os.urandom(KEY_SIZE)
        # Told each entry remembered here (account, fingerprint, stored hash): the bus.
        self.forward: Callable[[str, bytes, str], None] | None = None
        self._lock = threading.Lock()
        # (account, HMAC of the password) -> (stored hash it was verified against, expiry)
        self._entries: OrderedDict[tuple[str, bytes], tuple[str, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_entries > 0

    def fingerprint(self, account: str, password: str) -> bytes:
        """The HMAC an entry is found by; the account is in it so equal passwords differ."""
        message = account.encode("utf-8") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verified(self, account: str, fingerprint: bytes, stored_hash: str | None) -> bool:
        """True when this password was verified against ``stored_hash`` (the account's hash
        now) within the TTL. A different or missing hash drops all the account's entries."""
        if not self.enabled:
            return False
        with self._lock:
            entry = self._entries.get((account, fingerprint))
            if entry is None:
                return False
            verified_against, expires = entry
            if stored_hash is None or not hmac.compare_digest(verified_against, stored_hash):
                self._forget_locked(account)
                return False
            if expires <= self.clock.seconds():
                del self._entries[(account, fingerprint)]
                return False
            return True

    def remember(self, account: str, fingerprint: bytes, stored_hash: str) -> None:
        """A password just verified by a full hash against ``stored_hash``."""
        if not self.enabled:
            return
        self.adopt(account, fingerprint, stored_hash)
        if self.forward is not None:
            self.forward(account, fingerprint, stored_hash)

    def adopt(self, account: str, fingerprint: bytes, stored_hash: str) -> None:
        """An entry another worker verified (same key), not told on: ``remember`` without
        ``forward``. A forged one is harmless: it matches no password without the key, and
        a hit still needs ``stored_hash`` to be the account's hash at the time."""
        if not self.enabled:
            return
        with self._lock:
            key = (account, fingerprint)
            self._entries.pop(key, None)
            self._entries[key] = (stored_hash, self.clock.seconds() + self.ttl)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, account: str) -> None:
        """Drop every entry of ``account`` (its password changed, or it was removed)."""
        with self._lock:
            self._forget_locked(account)

    def _forget_locked(self, account: str) -> None:
        for key in [key for key in self._entries if key[0] == account]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
