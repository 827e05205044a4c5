"""``ClueCache``: what the scoring process made of each token, kept until the store changes.

Judging a message looks up each of its few hundred tokens in the store (hashing each into its
id, then SQLite's B-tree), makes each found token's probability from its counts and the
totals, and keeps the strong ones as clues. Mail repeats its words: over 3,250 messages of
the SpamAssassin corpus in random order, 56% of the tokens looked up had been looked up
before within the last 100,000 (SpamBayes keeps its word counts in memory for the same
reason). So the scoring process, which only reads the store, keeps for each token it read
whether it is a clue and, if so, its id and probability, and asks SQLite only for the rest.
The id is kept because the clues are combined in the order of their ids, the order the
store gives them in: which of several equally strong clues are taken then doesn't depend on
what was cached.

It is right only while the store is unchanged: a probability depends on the token's counts
and on the totals. SQLite's ``data_version`` (read with the totals in every message's first
statement, ``TokenStore.standing``) changes whenever another connection commits — a user's
move into Junk, ``txmailhost spam train``, expiry, a sender listed — and the cache is then
emptied. A commit between that statement and the counts' is seen with the next message: one
message judged on counts one learning older, as without the cache.

Bounded: ``most`` tokens in all, in two generations. Tokens go into the new one; when it
holds half of ``most``, it becomes the old one and the old one is dropped. A token found in
the old one moves to the new one, so the words every message has stay, and a message's
one-off words leave after a generation.
"""

from __future__ import annotations

# (id, probability, a pair of words); None: the token is no clue (not in the store, or too
# weak: ``bayes.MIN_STRENGTH``)
Clue = tuple[int, float, bool] | None
_MISSING = object()  # not known here: ask the store
DEFAULT_MOST = 100_000  # tokens; about 15 MiB of the scoring process


class ClueCache:
    """Per owner, token -> ``Clue`` (see the module docstring). One thread only."""

    def __init__(self, most: int = DEFAULT_MOST) -> None:
        self.most = most
        self.version: int | None = None
        self._new: dict[str, dict[str, Clue]] = {}
        self._old: dict[str, dict[str, Clue]] = {}
        self._new_size = 0

    def check(self, version: int) -> None:
        """Forget everything when the store's ``data_version`` is no longer the one read."""
        if version != self.version:
            self._new.clear()
            self._old.clear()
            self._new_size = 0
            self.version = version

    def split(self, owner: str, found: set[str]) -> tuple[list[tuple[int, float, bool]], list[str]]:
        """The clues among ``found`` known here, and the tokens to ask the store about."""
        new = self._new.setdefault(owner, {})
        old = self._old.get(owner, {})
        known: list[tuple[int, float, bool]] = []
        unknown: list[str] = []
        moved = 0
        get = new.get
        for token in found:
            clue = get(token, _MISSING)
            if clue is _MISSING:
                clue = old.get(token, _MISSING)
                if clue is _MISSING:
                    unknown.append(token)
                    continue
                new[token] = clue  # type: ignore[assignment]
                moved += 1
            if clue is not None:
                known.append(clue)  # type: ignore[arg-type]
        if moved:
            self._grew(moved)
        return known, unknown

    def add(self, owner: str, read: dict[str, Clue]) -> None:
        """What the store answered about the tokens ``split`` didn't know."""
        self._new.setdefault(owner, {}).update(read)
        self._grew(len(read))

    def __len__(self) -> int:
        return sum(map(len, self._new.values())) + sum(map(len, self._old.values()))

    def _grew(self, count: int) -> None:
        self._new_size += count
        if self._new_size >= self.most // 2:
            self._old, self._new = self._new, {}
            self._new_size = 0
