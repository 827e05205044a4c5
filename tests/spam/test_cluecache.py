"""The scoring process's cache of clues (``cluecache``): the same judgements as the store's,
emptied when the store changes, bounded."""

from __future__ import annotations

import random
from dataclasses import replace

from txmailhost.spam.bayes import GLOBAL, TokenStore
from txmailhost.spam.cluecache import ClueCache

WORDS = [f"w{i}" for i in range(400)] + [f"bi:w{i} w{i + 1}" for i in range(200)]


def _message(rng: random.Random, spammy: bool) -> set[str]:
    """Tokens drawn from a shared vocabulary, leaning one way: many ties of strength, as
    tokens seen once each way make."""
    lean = WORDS[:300] if spammy else WORDS[100:]
    return set(rng.sample(lean, 60)) | {f"once{rng.random()}"}


def _trained(path: str, cache_tokens: int = 0, owner: str = "alice@example.test") -> TokenStore:
    store = TokenStore(path, min_messages=5, cache_tokens=cache_tokens)
    rng = random.Random(7)
    for i in range(40):
        store.learn(owner, f"d{i}", _message(rng, i % 2 == 0), i % 2 == 0)
    return store


def _judged(store: TokenStore, owner: str, found: set[str]) -> float:
    judged = store.judge_standing(owner, store.standing(owner, ()), lambda: found)
    assert judged is not None
    return judged.probability


def test_judgements_are_the_stores_to_the_last_digit(tmp_path):
    """The clues are combined in the store's order (by id), so which of equally strong clues
    are kept is the same whether a token's clue was cached or read."""
    path = str(tmp_path / "bayes.sqlite")
    plain = _trained(path)
    cached = TokenStore(path, min_messages=5, cache_tokens=500)
    rng = random.Random(11)
    messages = [_message(rng, rng.random() < 0.5) | set(rng.sample(WORDS, 30)) for _ in range(80)]
    for owner in ("alice@example.test", "bob@example.test"):  # own counts, then the global
        for _ in range(2):  # the second time mostly from the cache
            for found in messages:
                assert _judged(cached, owner, found) == _judged(plain, owner, found)
    assert cached._cache is not None and 0 < len(cached._cache) <= 500


def test_what_another_connection_learns_empties_the_cache(tmp_path):
    """A user's move into Junk is learned by the server's training thread, another
    connection: the scoring process's next message is judged on the new counts."""
    path = str(tmp_path / "bayes.sqlite")
    scorer = TokenStore(path, min_messages=5, cache_tokens=10_000)
    trainer = _trained(path)
    found = {"w1", "w2", "w350", "w351", "bi:w1 w2"}
    before = _judged(scorer, GLOBAL, found)
    assert _judged(scorer, GLOBAL, found) == before  # from the cache
    for i in range(30):
        trainer.learn(GLOBAL, f"spam{i}", {"w350", "w351", f"x{i}"}, True)
    after = _judged(scorer, GLOBAL, found)
    assert after > before
    assert after == _judged(TokenStore(path, min_messages=5), GLOBAL, found)


def test_the_cache_keeps_at_most_its_bound_and_the_tokens_used_often():
    cache = ClueCache(most=100)
    cache.check(1)
    for i in range(1_000):
        found = {"common", f"rare{i}", f"rare{i}b"}
        known, unknown = cache.split(GLOBAL, found)
        if i:
            assert known == [(1, 0.9, False)] and sorted(unknown) == [f"rare{i}", f"rare{i}b"]
        cache.add(GLOBAL, {t: ((1, 0.9, False) if t == "common" else None) for t in unknown})
        assert len(cache) <= 100
    cache.check(2)  # the store changed
    assert len(cache) == 0 and cache.split(GLOBAL, {"common"}) == ([], ["common"])


def test_the_scoring_stores_standing_is_read_again_only_when_the_store_changed(tmp_path):
    """The scoring process reads a recipient's totals, threshold and sender lists in one
    statement; for the same recipient and sender, while no other connection committed, a
    ``PRAGMA data_version`` stands in for it. What another connection changes is seen at the
    next message all the same."""
    path = str(tmp_path / "bayes.sqlite")
    trainer = _trained(path)
    owner = "alice@example.test"
    scorer = TokenStore(path, min_messages=5, cache_tokens=1000)
    statements: list[str] = []
    scorer._db().set_trace_callback(statements.append)

    def reads() -> int:  # the whole statement, as against the PRAGMA
        return sum("json_each" in statement for statement in statements)

    first = scorer.standing(owner, ["friend@example.org"])
    assert first.listed is None and first.totals == (20, 20)
    again = scorer.standing(owner, ["friend@example.org"])
    assert again == first
    assert reads() == 1 and statements[-1] == "PRAGMA data_version"
    assert scorer.standing(owner, ["other@example.org"]) == first  # another sender: read
    assert reads() == 2
    trainer.set_sender(owner, "@example.org", "block")
    trainer.set_threshold(owner, 3.5)
    trainer.learn(owner, "one more", {"w1"}, True)
    changed = scorer.standing(owner, ["friend@example.org"])
    assert (changed.listed, changed.threshold, changed.totals) == ("block", 3.5, (21, 20))
    assert reads() == 3
    afresh = TokenStore(path, min_messages=5).standing(owner, ["friend@example.org"])
    assert replace(changed, version=None) == replace(afresh, version=None)  # its own counter


def test_a_store_that_learns_reads_its_standing_every_time(tmp_path):
    """``data_version`` doesn't change with the connection's own commits: a store that is
    not the scoring process's (no clue cache) keeps nothing."""
    path = str(tmp_path / "bayes.sqlite")
    store = _trained(path)
    owner = "alice@example.test"
    assert store.standing(owner, ["friend@example.org"]).listed is None
    store.set_sender(owner, "friend@example.org", "allow")
    assert store.standing(owner, ["friend@example.org"]).listed == "allow"
