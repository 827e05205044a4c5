"""The Bayesian classifier: token counts per user, Robinson's estimates, Fisher's combining.

The mathematics is SpamBayes's (Gary Robinson, "A Statistical Approach to the Spam Problem",
2003; Tim Peters's chi-squared combining): for each token, its spam probability from how often
it was in spam and in ham, pulled toward 0.5 when it was seen rarely (``S``, ``X``); the
tokens furthest from 0.5 (at most ``MAX_CLUES``, at least ``MIN_STRENGTH`` away, and among
them at most ``MAX_PAIR_CLUES`` pairs of words) are combined twice with Fisher's method —
once for "these are spam" (S), once for "these are ham" (H) — and the score is
``(S - H + 1) / 2``: near 0 ham, near 1 spam, near 0.5 "unsure" (both or neither).

The counts live in ``DATA/spam/bayes.sqlite`` (``TokenStore``), one set per user and one
global set that every training adds to too (owner ``""``): a user with too little training
of their own (``min_messages`` of each kind) is judged by the global set. A user's training
counts there only for their first ``global_per_user`` messages of each kind, so that one user
moving thousands of messages (a newsletter everybody else wants, say) into Junk can't outvote
everyone who relies on the global set; the administrator's ``txmailhost spam train`` without
``--user`` has no such bound. Tokens are kept as
64-bit hashes (BLAKE2b), so the store holds no words of anyone's mail. ``learned`` keeps the
SHA-256 of each message learned per owner: a message is never counted twice, and one learned
as spam and then as ham (the user changed their mind) moves from one count to the other.
Expiry drops tokens not trained for ``max_age`` days that were seen only once, the oldest
beyond ``max_tokens`` rows, and the record of messages learned more than ``max_age`` ago.

SQLite is used from worker threads only (the filters' pool, the training thread, the CLI):
one connection per thread, WAL, a busy timeout, so the server and ``txmailhost spam train``
can share the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from txmailhost.spam.cluecache import Clue, ClueCache
from txmailhost.spam.sqlitedb import thread_connection
from txmailhost.spam.tokens import PAIR_PREFIX, TOKENIZER_VERSION

GLOBAL = ""  # the owner every training also counts for
S = 0.45  # strength of the prior (SpamBayes unknown_word_strength)
X = 0.5  # the prior: an unknown token says nothing
MIN_STRENGTH = 0.1  # |p - 0.5| a token needs to count (minimum_prob_strength)
MAX_CLUES = 50  # tokens combined at most (max_discriminators; SpamBayes: 150)
# Pairs of words (``bi:``) among them at most: a pair repeats its two words' evidence, and a
# newsletter's commercial phrases made 50 clues of pairs and their words too sure of spam
# (900 + 900 trained, five splits: hard ham in Junk 4.6% -> 3.7%, recall the same).
MAX_PAIR_CLUES = 25
_LN2 = math.log(2)
STANDINGS_KEPT = 4096  # recipients and senders whose standing the scoring process keeps

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    owner TEXT NOT NULL, token INTEGER NOT NULL, spam INTEGER NOT NULL DEFAULT 0,
    ham INTEGER NOT NULL DEFAULT 0, atime INTEGER NOT NULL,
    PRIMARY KEY (owner, token)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_atime ON tokens (atime);
CREATE TABLE IF NOT EXISTS totals (
    owner TEXT PRIMARY KEY, spam INTEGER NOT NULL DEFAULT 0, ham INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS learned (
    owner TEXT NOT NULL, digest TEXT NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (owner, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS thresholds (owner TEXT PRIMARY KEY, junk REAL NOT NULL);
CREATE TABLE IF NOT EXISTS senders (
    owner TEXT NOT NULL, address TEXT NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (owner, address)) WITHOUT ROWID;
"""


_SIGNED_64 = struct.Struct(">q").unpack


def token_id(token: str, _hash: Any = hashlib.blake2b, _signed: Any = _SIGNED_64) -> int:
    """A token as a signed 64-bit integer (SQLite's INTEGER): the first 8 octets of its
    BLAKE2b, big-endian. Made for each of a message's hundreds of tokens, hence the
    pre-bound names (a sixth faster than looking them up and ``int.from_bytes``)."""
    return _signed(_hash(token.encode("utf-8", "surrogatepass"), digest_size=8).digest())[0]


def _id_list(tokens: Iterable[str]) -> str:
    """The tokens' ids as a JSON array (for ``json_each``), in order: looked up one after the
    other, neighbouring ids are on the pages just read (a quarter fewer pages visited)."""
    return f"[{','.join(map(str, sorted(map(token_id, tokens))))}]"


def chi2q(x2: float, v: int) -> float:
    """P(chi-squared with ``v`` (even) degrees of freedom >= ``x2``) (SpamBayes's chi2Q)."""
    m = x2 / 2.0
    total = term = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def token_probability(spam: int, ham: int, nspam: int, nham: int) -> float:
    """Robinson's f(w): the token's spam probability, pulled toward ``X`` when rare."""
    spam_ratio = spam / nspam if nspam else 0.0
    ham_ratio = ham / nham if nham else 0.0
    if spam_ratio + ham_ratio == 0:
        return X
    p = spam_ratio / (spam_ratio + ham_ratio)
    n = spam + ham
    return (S * X + n * p) / (S + n)


def _weakness(p: float) -> float:
    return -abs(p - 0.5)


def _strongest(probabilities: Iterable[float], most: int) -> list[float]:
    """At most ``most`` of ``probabilities`` furthest from 0.5, the strongest first."""
    clues = [p for p in probabilities if abs(p - 0.5) >= MIN_STRENGTH]
    clues.sort(key=_weakness)
    return clues[:most]


def combine(probabilities: Iterable[float], pairs: Iterable[float] = ()) -> float:
    """Fisher's chi-squared combining of the clues, as SpamBayes's ``chi2_spamprob``:
    ``probabilities`` of the words and other tokens, ``pairs`` of the pairs of words (at most
    ``MAX_PAIR_CLUES`` of them among the ``MAX_CLUES``; a word goes before a pair as strong)."""
    clues = _strongest(probabilities, MAX_CLUES) + _strongest(pairs, MAX_PAIR_CLUES)
    clues.sort(key=_weakness)  # stable: the words first among clues as strong
    clues = clues[:MAX_CLUES]
    if not clues:
        return 0.5
    h = s = 1.0
    h_exp = s_exp = 0
    for p in clues:
        s *= 1.0 - p
        h *= p
        if s < 1e-200:  # keep the products from underflowing: carry the exponent apart
            s, e = math.frexp(s)
            s_exp += e
        if h < 1e-200:
            h, e = math.frexp(h)
            h_exp += e
    s_log = math.log(s) + s_exp * _LN2
    h_log = math.log(h) + h_exp * _LN2
    n = len(clues)
    spamminess = 1.0 - chi2q(-2.0 * s_log, 2 * n)
    hamminess = 1.0 - chi2q(-2.0 * h_log, 2 * n)
    return (spamminess - hamminess + 1.0) / 2.0


@dataclass(frozen=True)
class Standing:
    """A recipient's part of the store for one message (``TokenStore.standing``)."""

    totals: tuple[int, int]  # (spam, ham) learned for the owner (the global ones: no owner)
    global_totals: tuple[int, int]
    threshold: float | None  # the owner's own Junk threshold
    listed: str | None  # "allow", "block" or None: the sender in the owner's or everyone's list
    version: int | None = None  # the store's ``data_version`` when read (``cluecache``)


def _pair(counts: str | None) -> tuple[int, int]:
    if not counts:
        return (0, 0)
    spam, _, ham = counts.partition(" ")
    return (int(spam), int(ham))


def _sender_keys(addresses: Iterable[str]) -> set[str]:
    """The rows of the sender lists that name ``addresses``: each address, and its domain."""
    keys = set()
    for address in addresses:
        address = address.lower()
        if "@" in address:
            keys.add(address)
            keys.add("@" + address.rpartition("@")[2])
    return keys


def _first_listed(kinds: dict[str, set[str]], owners: list[str]) -> str | None:
    """The first of ``owners`` (then everyone) whose list names the sender decides; a block
    wins over an allow in one list."""
    for owner in [*owners, GLOBAL]:
        found = kinds.get(owner, ())
        if "block" in found:
            return "block"
        if "allow" in found:
            return "allow"
    return None


@dataclass(frozen=True)
class Judgement:
    probability: float  # 0 ham .. 1 spam
    owner: str  # whose counts judged it ("" the global ones)


class TokenStore:
    """The counts on disk (see the module docstring). Call from worker threads only."""

    def __init__(
        self,
        path: str,
        min_messages: int = 20,
        max_tokens: int = 2_000_000,
        max_age_days: float = 180.0,
        tokenizer_version: int = TOKENIZER_VERSION,
        mmap_size: int = 0,
        cache_tokens: int = 0,
        global_per_user: int = 1000,
    ) -> None:
        """``mmap_size``: octets of the file read through a mapping (``sqlitedb``);
        ``cache_tokens``: at most so many tokens' clues kept between messages
        (``cluecache``). The scoring process's store, which does nothing but judge from one
        thread, does both. ``global_per_user``: how many of a user's spam (and of their ham)
        also count for the global set (0: none)."""
        if global_per_user < 0:
            raise ValueError("global_per_user must be 0 or more")
        self.path = path
        self.global_per_user = global_per_user
        self.min_messages = min_messages
        self.max_tokens = max_tokens
        self.max_age = max_age_days * 86400
        self._local = threading.local()
        self._learned_since_expiry = 0
        self.tokenizer_version = tokenizer_version
        self.mmap_size = mmap_size
        self._cache = ClueCache(cache_tokens) if cache_tokens else None
        # (owner, sender keys) -> what ``standing`` read, while ``data_version`` is the same:
        # kept, as the clues are, only by the scoring process's store (it never writes, and
        # ``data_version`` changes only with another connection's commits).
        self._standings: dict[tuple[str, tuple[str, ...]], Standing] | None = (
            {} if cache_tokens else None
        )
        self._standings_version: int | None = None

    def trained_tokenizer(self) -> int | None:
        """The tokenizer version the counts were first learned with (None: nothing learned,
        or learned before versions were recorded, which is version 1). Tokens of another
        version are partly stale: judging still works (a token never seen says nothing),
        retraining (``txmailhost spam train`` into a fresh store) makes it as good as
        measured. ``txmailhost spam stats`` says so."""
        row = self._db().execute("SELECT value FROM meta WHERE key = 'tokenizer'").fetchone()
        if row is not None:
            return int(row[0])
        return 1 if self.totals(GLOBAL) != (0, 0) else None

    def _db(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, _SCHEMA, self.mmap_size)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- learning ------------------------------------------------------------------------------

    def learn(self, owner: str, digest: str, found: set[str], is_spam: bool) -> bool:
        """Count ``found`` as one spam (or ham) of ``owner`` and of the global set (while
        ``owner`` has shared fewer than ``global_per_user`` of that kind). False when that
        message was already learned so for ``owner``; learned as the other kind before, it is
        moved over, in the global set too (a correction adds no message there)."""
        kind = "s" if is_spam else "h"
        owners = [owner] if owner == GLOBAL else [owner, GLOBAL]
        ids = [token_id(t) for t in found]
        now = int(time.time())
        db = self._db()
        changed = False
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(  # the first learning says which tokenizer made the counts
                "INSERT OR IGNORE INTO meta (key, value) SELECT 'tokenizer', CASE WHEN EXISTS"
                " (SELECT 1 FROM totals WHERE spam + ham > 0) THEN '1' ELSE ? END",
                (str(self.tokenizer_version),),
            )
            shares = owner == GLOBAL or self._owned(db, owner, is_spam) < self.global_per_user
            for who in owners:
                row = db.execute(
                    "SELECT kind FROM learned WHERE owner = ? AND digest = ?", (who, digest)
                ).fetchone()
                if row is not None and row[0] == kind:
                    continue
                if who == GLOBAL and row is None and not shares:
                    continue  # past the user's share: their own counts only
                if row is not None:
                    self._count(db, who, ids, row[0] == "s", -1, now)
                self._count(db, who, ids, is_spam, +1, now)
                db.execute(
                    "INSERT OR REPLACE INTO learned (owner, digest, kind, at) VALUES (?, ?, ?, ?)",
                    (who, digest, kind, now),
                )
                changed = True
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if changed:
            self._learned_since_expiry += 1
            if self._learned_since_expiry >= 500:
                self.expire()
        return changed

    @staticmethod
    def _owned(db: sqlite3.Connection, owner: str, spam: bool) -> int:
        """How many spam (or ham) ``owner``'s own set counts, before this learning."""
        column = "spam" if spam else "ham"
        row = db.execute(f"SELECT {column} FROM totals WHERE owner = ?", (owner,)).fetchone()
        return row[0] if row is not None else 0

    def _count(
        self, db: sqlite3.Connection, owner: str, ids: list[int], spam: bool, step: int, now: int
    ) -> None:
        column = "spam" if spam else "ham"
        db.execute("INSERT OR IGNORE INTO totals (owner) VALUES (?)", (owner,))
        db.execute(
            f"UPDATE totals SET {column} = max(0, {column} + ?) WHERE owner = ?", (step, owner)
        )
        if step > 0:
            db.executemany(
                f"INSERT INTO tokens (owner, token, {column}, atime) VALUES (?, ?, 1, ?) "
                f"ON CONFLICT (owner, token) DO UPDATE SET {column} = {column} + 1, atime = ?",
                [(owner, i, now, now) for i in ids],
            )
        else:
            db.executemany(
                f"UPDATE tokens SET {column} = max(0, {column} - 1) WHERE owner = ? AND token = ?",
                [(owner, i) for i in ids],
            )

    def expire(self, now: float | None = None) -> int:
        """Drop stale single sightings and the oldest rows past ``max_tokens``; rows removed."""
        now = time.time() if now is None else now
        db = self._db()
        removed = db.execute(
            "DELETE FROM tokens WHERE (spam + ham <= 1 AND atime < ?) OR spam + ham = 0",
            (int(now - self.max_age),),
        ).rowcount
        # What was learned when is kept as long as tokens are; older messages may be learned
        # again, by then their tokens are mostly gone too.
        db.execute("DELETE FROM learned WHERE at < ?", (int(now - self.max_age),))
        (count,) = db.execute("SELECT count(*) FROM tokens").fetchone()
        if count > self.max_tokens:
            excess = count - self.max_tokens
            removed += db.execute(
                "DELETE FROM tokens WHERE (owner, token) IN"
                " (SELECT owner, token FROM tokens ORDER BY atime LIMIT ?)",
                (excess,),
            ).rowcount
        self._learned_since_expiry = 0
        return removed

    # -- judging -------------------------------------------------------------------------------

    def totals(self, owner: str) -> tuple[int, int]:
        row = (
            self._db().execute("SELECT spam, ham FROM totals WHERE owner = ?", (owner,)).fetchone()
        )
        return (row[0], row[1]) if row else (0, 0)

    def judge(self, owner: str | None, found: set[str]) -> Judgement | None:
        """``owner``'s counts judge ``found`` when trained enough, else the global ones; None
        when neither is (the classifier then says nothing). What scoring does in two steps
        (``standing``, then ``judge_standing``), for callers that have only the tokens."""
        return self.judge_standing(owner, self.standing(owner, ()), lambda: found)

    def standing(self, owner: str | None, addresses: Iterable[str]) -> Standing:
        """What scoring a message for ``owner`` reads besides the token counts — both sets of
        totals, the owner's threshold, ``addresses`` in either sender list — in one statement
        of one row. The ``sqlite3`` module lets go of the GIL for every statement and every
        row fetched, and on a busy server each time costs the filter thread a wait for the
        reactor thread to let go of it in turn: six small queries per message made scoring
        cost twice its own CPU time.

        The scoring process's store keeps what it read for the same recipient and sender
        while the store is unchanged: a ``PRAGMA data_version`` (8 us) says so instead of
        the statement (60-70 us, the bench's 4 KiB message's largest single step).
        ``data_version`` changes with every commit of another connection (a user's move into
        Junk, ``txmailhost spam train``, a sender listed, a threshold set), and this store
        never writes."""
        keys = sorted(_sender_keys(addresses))
        remembered = (owner or GLOBAL, tuple(keys))
        if self._standings is not None and remembered in self._standings:
            known = self._standings[remembered]
            (version,) = self._db().execute("PRAGMA data_version").fetchone()
            if version == known.version:
                return known
        row = (
            self._db()
            .execute(
                "SELECT (SELECT spam || ' ' || ham FROM totals WHERE owner = :owner),"
                " (SELECT spam || ' ' || ham FROM totals WHERE owner = ''),"
                " (SELECT junk FROM thresholds WHERE owner = :owner),"
                " (SELECT group_concat(kind || ' ' || owner, char(10)) FROM senders"
                "   WHERE owner IN (:owner, '')"
                "   AND address IN (SELECT value FROM json_each(:keys))),"
                " (SELECT data_version FROM pragma_data_version)",
                {"owner": owner or GLOBAL, "keys": json.dumps(keys)},
            )
            .fetchone()
        )
        own, everyone, threshold, listed, version = row
        kinds: dict[str, set[str]] = {}
        for line in (listed or "").split("\n") if keys else ():
            kind, _, who = line.partition(" ")
            kinds.setdefault(who, set()).add(kind)
        standing = Standing(
            _pair(own) if owner else _pair(everyone),
            _pair(everyone),
            threshold if owner else None,
            _first_listed(kinds, [owner] if owner else []),
            version,
        )
        if self._standings is not None:
            if version != self._standings_version or len(self._standings) >= STANDINGS_KEPT:
                self._standings.clear()  # read before the store changed, or too many
                self._standings_version = version
            self._standings[remembered] = standing
        return standing

    def judge_standing(
        self, owner: str | None, standing: Standing, found: Callable[[], set[str]]
    ) -> Judgement | None:
        """``judge`` with the totals already read (``standing``): one statement, one row,
        for the token counts (none for tokens the cache knows)."""
        if self._cache is not None and standing.version is not None:
            self._cache.check(standing.version)
        if owner and min(standing.totals) >= self.min_messages:
            return Judgement(self._probability(owner, found(), *standing.totals), owner)
        if min(standing.global_totals) >= self.min_messages:
            return Judgement(self._probability(GLOBAL, found(), *standing.global_totals), GLOBAL)
        return None

    def _probability(self, owner: str, found: set[str], nspam: int, nham: int) -> float:
        if self._cache is None:
            return self._probability_read(owner, found, nspam, nham)
        known, unknown = self._cache.split(owner, found)
        read = self._clues(owner, unknown, nspam, nham)
        self._cache.add(owner, read)
        clues = known + [clue for clue in read.values() if clue is not None]
        clues.sort()  # by id, the order the store gives them in (``cluecache``)
        words = [p for _id, p, pair in clues if not pair]
        pairs = [p for _id, p, pair in clues if pair]
        return combine(words, pairs)

    def _clues(self, owner: str, found: list[str], nspam: int, nham: int) -> dict[str, Clue]:
        """What each of ``found`` is as a clue (``cluecache``), from its counts read in one
        statement of one row."""
        if not found:
            return {}
        ids = {token_id(token): token for token in found}
        (counts,) = (
            self._db()
            .execute(
                "SELECT group_concat(t.token || ' ' || spam || ' ' || ham, ' ')"
                " FROM json_each(:ids) AS j"
                " CROSS JOIN tokens AS t ON t.owner = :owner AND t.token = j.value",
                {"owner": owner, "ids": f"[{','.join(map(str, sorted(ids)))}]"},
            )
            .fetchone()
        )
        clues: dict[str, Clue] = dict.fromkeys(found)
        numbers = list(map(int, counts.split())) if counts else []
        for i, spam, ham in zip(numbers[::3], numbers[1::3], numbers[2::3], strict=True):
            p = token_probability(spam, ham, nspam, nham)
            if abs(p - 0.5) >= MIN_STRENGTH:
                token = ids[i]
                clues[token] = (i, p, token.startswith(PAIR_PREFIX))
        return clues

    def _probability_read(self, owner: str, found: set[str], nspam: int, nham: int) -> float:
        """The counts of ``found`` come back as two strings (the pairs of words' apart, for
        ``combine``) of one row (see ``standing``). Each id of the list is looked up in turn
        (``CROSS JOIN`` keeps that order: ``token IN (SELECT ...)`` first built a temporary
        index of the list, a fifth of the statement's time)."""
        pairs = [t for t in found if t.startswith(PAIR_PREFIX)]
        words = found.difference(pairs)
        row = (
            self._db()
            .execute(
                "SELECT (SELECT group_concat(spam || ' ' || ham, ' ') FROM json_each(:words) AS j"
                "   CROSS JOIN tokens AS t ON t.owner = :owner AND t.token = j.value),"
                " (SELECT group_concat(spam || ' ' || ham, ' ') FROM json_each(:pairs) AS j"
                "   CROSS JOIN tokens AS t ON t.owner = :owner AND t.token = j.value)",
                {"owner": owner, "words": _id_list(words), "pairs": _id_list(pairs)},
            )
            .fetchone()
        )

        def probabilities(counts: str | None) -> list[float]:
            numbers = list(map(int, counts.split())) if counts else []
            return [
                token_probability(spam, ham, nspam, nham)
                for spam, ham in zip(numbers[::2], numbers[1::2], strict=True)
            ]

        return combine(probabilities(row[0]), probabilities(row[1]))

    def forget_owner(self, owner: str) -> None:
        """Everything kept for one user (``user del --purge``): their token counts and
        totals, the record of messages they trained, their Junk threshold, allowed and
        blocked senders. What their training added to the global set stays: it is
        everyone's. An account made later under the address starts untrained."""
        if not owner:
            raise ValueError("the global set is not one user's")
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("tokens", "totals", "learned", "thresholds", "senders"):
                db.execute(f"DELETE FROM {table} WHERE owner = ?", (owner,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- per-user thresholds -------------------------------------------------------------------

    def set_threshold(self, owner: str, junk: float | None) -> None:
        """``owner``'s own Junk threshold; None: the server's (``junk_score``)."""
        if junk is None:
            self._db().execute("DELETE FROM thresholds WHERE owner = ?", (owner,))
        else:
            self._db().execute(
                "INSERT OR REPLACE INTO thresholds (owner, junk) VALUES (?, ?)", (owner, junk)
            )

    def threshold(self, owner: str) -> float | None:
        row = self._db().execute("SELECT junk FROM thresholds WHERE owner = ?", (owner,)).fetchone()
        return row[0] if row else None

    # -- senders -------------------------------------------------------------------------------

    def set_sender(self, owner: str, address: str, kind: str | None) -> None:
        """Allow (``"allow"``) or block (``"block"``) ``address`` (or ``@domain``) for
        ``owner`` (``""``: for everyone); None forgets it."""
        db = self._db()
        if kind is None:
            db.execute(
                "DELETE FROM senders WHERE owner = ? AND address = ?", (owner, address.lower())
            )
        else:
            db.execute(
                "INSERT OR REPLACE INTO senders (owner, address, kind, at) VALUES (?, ?, ?, ?)",
                (owner, address.lower(), kind, int(time.time())),
            )

    def sender_kind(self, owners: Iterable[str], addresses: Iterable[str]) -> str | None:
        """ "allow", "block" or None for the first of ``owners`` (then everyone's list) that
        names one of ``addresses`` or its domain; a block wins over an allow of one owner."""
        keys = _sender_keys(addresses)
        if not keys:
            return None
        owners = list(owners)
        kinds: dict[str, set[str]] = {}
        for who, kind in self._db().execute(
            "SELECT owner, kind FROM senders WHERE owner IN (SELECT value FROM json_each(?))"
            " AND address IN (SELECT value FROM json_each(?))",
            (json.dumps([*owners, GLOBAL]), json.dumps(sorted(keys))),
        ):
            kinds.setdefault(who, set()).add(kind)
        return _first_listed(kinds, owners)

    def senders(self, owner: str) -> list[tuple[str, str]]:
        return (
            self._db()
            .execute("SELECT address, kind FROM senders WHERE owner = ? ORDER BY address", (owner,))
            .fetchall()
        )
