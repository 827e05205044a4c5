"""The Sender Rewriting Scheme: forwarded mail leaves with a sender of ours that leads back.

A message we forward (an alias or a user's forward to another server, a Sieve ``redirect``)
keeps its original envelope sender otherwise, and the receiver's SPF check then fails: that
sender's domain never allowed our addresses. SRS (Shevek's scheme, as postsrsd, Exim and
OpenSMTPD write it) replaces the sender with an address in ``[srs] domain`` that encodes the
original, signed, and dated:

    SRS0=HHHH=TT=example.com=bob@fwd.example.org          bob@example.com, forwarded by us
    SRS1=HHHH=first.example==GGGG=TT=example.com=bob@fwd.example.org
                                                          an SRS0 address of first.example

``HHHH`` is an HMAC-SHA1 of the rest (base32, 4 characters; compared without regard to case,
as some servers lower-case local parts), ``TT`` the day it was made (base32, 2 characters,
days modulo 1024). A bounce to such an address is *reversed*: the signature is checked with
the current key or any older one (key rotation), SRS0 addresses must be younger than
``max_age_days``, and the mail goes on to the original sender (SRS1: to the first forwarder's
SRS0 address). A forged, damaged or expired address is refused (``SRSError``; RCPT gets
``550 5.1.1``).

Keys live in ``DATA/srs/keys``, one per line, the first in use, the others still accepted:
rotate by putting a new line first (``txmailhost srs rotate``, ``Keys.rotate``), retire an
old one once ``max_age_days`` have passed (``txmailhost srs retire ID``; a key is named by
``key_id``, never shown). The file is made on first use with a random key, mode 0600. A
running server looks at the file again every ``Keys.REFRESH`` seconds, and at once (at most
once a second) when an address fails to verify, so the commands need no restart.

Several nodes behind one MX name must share the keys: node A rewrites a sender, and the bounce
comes back to whichever node the MX records send it to. With ``[store] backend = "postgres"``
the keys are the rows of ``srs_keys`` in the database every node shares (:class:`SharedKeys`),
the newest signing; a node re-reads them every ``SharedKeys.REFRESH`` seconds, and at once
(at most once a second) when an address fails to verify, so a key another node just made or
rotated in is never the reason a bounce is refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from txmailhost._safeio import directory_locked, makedirs_durably, write_atomic

PREFIXES = ("SRS0", "SRS1")
_DAY = 86400
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
HASH_LENGTH = 4


class SRSError(ValueError):
    """An SRS address that can't be reversed: forged, damaged or expired."""


class SRSKeyError(ValueError):
    """A key command that can't be done (``srs retire`` of an unknown or the signing key)."""


def key_id(key: bytes) -> str:
    """A key's name for the administrator (``srs list``, ``srs retire``): a digest of it, so
    the secret itself is never printed."""
    return hashlib.sha256(key).hexdigest()[:12]


@dataclass(frozen=True)
class KeyInfo:
    """One key as ``srs list`` shows it: its id, whether it signs, when it was made (None when
    the file doesn't say)."""

    id: str
    signing: bool
    created: float | None


class Keys:
    """The HMAC keys in ``path``: the first signs, all of them verify.

    The file is read again when it changed (its inode, size or modification time), looked at
    every ``REFRESH`` seconds and, when an address fails to verify, at once (at most once a
    ``RETRY``): ``srs rotate`` and ``srs retire`` rewrite it while the server runs."""

    REFRESH = 30.0
    RETRY = 1.0

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[bytes] | None = None
        self._seen: tuple[int, int, int] | None = None  # the file's (inode, size, mtime)
        self._looked_at = float("-inf")

    def load(self) -> list[bytes]:
        with self._lock:
            if self._keys is None or self._clock() - self._looked_at >= self.REFRESH:
                self._look()
            assert self._keys is not None
            return self._keys

    def refresh(self) -> bool:
        """Look at the file again unless that was done within ``RETRY`` seconds; True when
        the keys changed (an address that failed to verify may verify now)."""
        with self._lock:
            if self._keys is not None and self._clock() - self._looked_at < self.RETRY:
                return False
            before = self._keys
            self._look()
            return self._keys != before

    def rotate(self) -> str:
        """A new signing key; the old ones keep verifying until retired. Its id."""
        with self._lock, self._file_locked():
            self._keys = None
            keys = [self._new(), *self._read()]
            self._write(keys)
            return key_id(keys[0])

    def retire(self, wanted: str) -> None:
        """Forget the key ``key_id`` names: addresses it signed no longer verify. Not the
        signing key (rotate first). Without a key file there is nothing to retire, and
        nothing is made (``_read`` would make a first key)."""
        if not os.path.exists(self.path):
            raise _no_keys_yet(wanted)
        with self._lock, self._file_locked():
            kept, _gone = _without(self._read(), wanted)
            self._write(kept)
            self._keys = None

    def _file_locked(self) -> contextlib.AbstractContextManager[None]:
        """The key directory's flock: two commands (processes) changing the keys at once
        each keep the other's change."""
        makedirs_durably(os.path.dirname(self.path))
        return directory_locked(os.path.dirname(self.path))

    def listing(self) -> list[KeyInfo]:
        """The keys, the signing one first (the file keeps no dates)."""
        return [KeyInfo(key_id(k), n == 0, None) for n, k in enumerate(self.load())]

    def _look(self) -> None:
        """Read the file if it changed since the last read. Its state is taken before it is
        read: a change made between the two is seen at the next look."""
        self._looked_at = self._clock()
        seen = self._state()
        if self._keys is None or seen is None or seen != self._seen:
            self._keys = self._read()
            self._seen = seen if seen is not None else self._state()  # made by _read

    def _state(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> list[bytes]:
        """The file's keys; a missing or empty file gets a first key."""
        try:
            with open(self.path, encoding="ascii") as f:
                keys = [line.strip().encode() for line in f if line.strip()]
        except FileNotFoundError:
            keys = []
        if not keys:
            keys = [self._new()]
            self._write(keys)
        return keys

    @staticmethod
    def _new() -> bytes:
        return secrets.token_hex(32).encode()

    def _write(self, keys: list[bytes]) -> None:
        makedirs_durably(os.path.dirname(self.path))
        write_atomic(self.path, b"\n".join(keys) + b"\n", mode=0o600)


def _no_keys_yet(wanted: str) -> SRSKeyError:
    return SRSKeyError(f"no SRS key {wanted.strip().lower()!r}: there are no keys yet")


def _without(keys: list[bytes], wanted: str) -> tuple[list[bytes], bytes]:
    """``keys`` less the one ``wanted`` names, and that key; SRSKeyError if it is none or the
    signer."""
    wanted = wanted.strip().lower()
    found = [k for k in keys if key_id(k) == wanted]
    if not found:
        raise SRSKeyError(f"no SRS key {wanted!r} ('srs list' shows them)")
    if found[0] == keys[0]:
        raise SRSKeyError(
            f"key {wanted} signs: 'srs rotate' first, and retire it [srs] max_age_days later"
        )
    return [k for k in keys if k != found[0]], found[0]


class SharedKeys:
    """The HMAC keys of every node: rows of ``srs_keys`` in the shared database (``state``, a
    ``store.pgstate.SharedState``); the newest signs, all of them verify. Blocking: called
    from the accounts thread pool, as the file's ``Keys`` are."""

    REFRESH = 30.0  # seconds a node signs and verifies with what it read last
    RETRY = 1.0  # seconds between re-reads forced by addresses that don't verify

    def __init__(self, state: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[bytes] = []
        self._read_at = float("-inf")

    def load(self) -> list[bytes]:
        with self._lock:
            if not self._keys or self._clock() - self._read_at >= self.REFRESH:
                self._read()
            return self._keys

    def refresh(self) -> bool:
        """Read the keys again unless that was done within ``RETRY`` seconds; True when they
        changed (an address that failed to verify may verify now)."""
        with self._lock:
            if self._clock() - self._read_at < self.RETRY:
                return False
            before = self._keys
            self._read()
            return self._keys != before

    def rotate(self) -> str:
        """A new signing key for every node (each signs with it from its next read); the old
        ones keep verifying until retired. Its id."""
        secret = Keys._new()
        with self._lock:
            self._state.rows(
                "INSERT INTO srs_keys (secret, created) VALUES (%s, %s)",
                (secret.decode(), time.time()),
            )
            self._read()
        return key_id(secret)

    def retire(self, wanted: str) -> None:
        """Delete the key ``key_id`` names from ``srs_keys`` (every node forgets it within
        ``REFRESH`` seconds). Not the newest, which signs. With no keys at all, none is
        made (``_read`` would make the first)."""
        with self._lock:
            if not self._state.rows("SELECT 1 FROM srs_keys LIMIT 1"):
                raise _no_keys_yet(wanted)
            self._read()
            _kept, gone = _without(self._keys, wanted)
            self._state.rows("DELETE FROM srs_keys WHERE secret = %s", (gone.decode(),))
            self._read()

    def listing(self) -> list[KeyInfo]:
        """The keys, newest (signing) first, with when each was made."""
        self.load()
        rows = self._state.rows("SELECT secret, created FROM srs_keys ORDER BY id DESC")
        return [KeyInfo(key_id(row[0].encode()), n == 0, row[1]) for n, row in enumerate(rows)]

    def _read(self) -> None:
        # The first node to need a key makes it; the advisory lock (on this table's name)
        # keeps two nodes starting together from making one each.
        with self._state.transaction() as conn:
            rows = conn.execute("SELECT secret FROM srs_keys ORDER BY id DESC").fetchall()
            if not rows:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('srs_keys'))")
                rows = conn.execute("SELECT secret FROM srs_keys ORDER BY id DESC").fetchall()
            if not rows:
                secret = Keys._new().decode()
                conn.execute(
                    "INSERT INTO srs_keys (secret, created) VALUES (%s, %s)",
                    (secret, time.time()),
                )
                rows = [(secret,)]
        self._keys = [row[0].encode() for row in rows]
        self._read_at = self._clock()


def _timestamp(now: float) -> str:
    days = int(now // _DAY) % 1024
    return _BASE32[days >> 5] + _BASE32[days & 31]


def _age_days(stamp: str, now: float) -> int:
    if len(stamp) != 2 or any(c not in _BASE32 for c in stamp.upper()):
        raise SRSError("bad SRS timestamp")
    stamp = stamp.upper()
    then = (_BASE32.index(stamp[0]) << 5) | _BASE32.index(stamp[1])
    return (int(now // _DAY) - then) % 1024


def open_keys(config: Any) -> Keys | SharedKeys:
    """The keys a server with ``config`` signs with: every node's (``srs_keys``) when they
    share a PostgreSQL store, else this node's ``DATA/srs/keys``. The server and the
    ``srs`` commands both open them here, so the two can't disagree on where they are."""
    if config.store.backend == "postgres":
        from txmailhost.store.pgstate import SharedState

        return SharedKeys(SharedState(config.store.dsn))
    return Keys(os.path.join(config.data_dir, "srs", "keys"))


class SRS:
    """Rewrites senders for ``domain`` and reverses what it wrote."""

    def __init__(
        self,
        domain: str,
        keys: Keys | SharedKeys,
        max_age_days: int = 21,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.domain = domain.lower()
        self.keys = keys
        self.max_age_days = max_age_days
        self._clock = clock

    def _hash(self, key: bytes, *parts: str) -> str:
        data = "".join(p.lower() for p in parts).encode("utf-8", "surrogateescape")
        digest = hmac.new(key, data, hashlib.sha1).digest()
        return base64.b32encode(digest).decode()[:HASH_LENGTH]

    def _check(self, given: str, *parts: str) -> None:
        if self._verifies(given, parts) or self.keys.refresh() and self._verifies(given, parts):
            return  # the second try: a key another node made or rotated in since our read
        raise SRSError("the SRS signature does not match")

    def _verifies(self, given: str, parts: tuple[str, ...]) -> bool:
        return any(
            hmac.compare_digest(given.upper(), self._hash(key, *parts)) for key in self.keys.load()
        )

    def is_srs(self, local: str, domain: str) -> bool:
        """Is ``local@domain`` an address we may have written (ours, starting SRS0/SRS1)?"""
        return domain.lower() == self.domain and local[:5].upper() in ("SRS0=", "SRS1=",
                                                                        "SRS0+", "SRS0-",
                                                                        "SRS1+", "SRS1-")  # fmt: skip

    def forward(self, sender: str) -> str:
        """The address to send forwarded mail from, for the original envelope ``sender``."""
        local, at, domain = sender.rpartition("@")
        if not at or not local or not domain:
            raise SRSError(f"not an address: {sender!r}")
        if domain.lower() == self.domain and local[:4].upper() in PREFIXES:
            return sender  # ours already: forwarding it again needs nothing new
        key = self.keys.load()[0]
        prefix, sep = local[:4].upper(), local[4:5]
        if prefix == "SRS0" and sep in "=+-" and sep:
            # Another forwarder's SRS0: keep it whole and name that forwarder (SRS1).
            rest = local[5:]
            return f"SRS1={self._hash(key, domain, rest)}={domain}=={rest}@{self.domain}"
        if prefix == "SRS1" and sep in "=+-" and sep:
            # An SRS1 already: keep its first forwarder and original part, sign anew.
            try:
                _hash, first, rest = local[5:].split("=", 2)
            except ValueError:
                raise SRSError(f"not an SRS1 address: {sender!r}") from None
            rest = rest.removeprefix("=")
            return f"SRS1={self._hash(key, first, rest)}={first}=={rest}@{self.domain}"
        stamp = _timestamp(self._clock())
        signature = self._hash(key, stamp, domain, local)
        return f"SRS0={signature}={stamp}={domain}={local}@{self.domain}"

    def reverse(self, local: str) -> str:
        """Where a bounce to ``local@domain`` goes, or SRSError for a forged/expired one."""
        prefix, body = local[:4].upper(), local[5:]
        if prefix == "SRS0":
            parts = body.split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SRSError("not an SRS0 address")
            signature, stamp, domain, original = parts
            self._check(signature, stamp, domain, original)
            if _age_days(stamp, self._clock()) > self.max_age_days:
                raise SRSError("the SRS address has expired")
            return f"{original}@{domain}"
        if prefix == "SRS1":
            signature, _, rest = body.partition("=")
            first, separator, srs0 = rest.partition("==")
            if not signature or not first or not separator or not srs0:
                raise SRSError("not an SRS1 address")
            self._check(signature, first, srs0)
            return f"SRS0={srs0}@{first}"
        raise SRSError("not an SRS address")
