"""The tokenizer, the chi-squared classifier and its store (per user, global, expiry)."""

from __future__ import annotations

import io
import random
import re

import pytest

from txmailhost.spam import bayes
from txmailhost.spam import tokens as tokens_module
from txmailhost.spam.bayes import GLOBAL, TokenStore, chi2q, combine, token_probability
from txmailhost.spam.sample import sample_of
from txmailhost.spam.scoring import Scorer
from txmailhost.spam.tokens import tokens


def toks(text: str, subject: str = "hello", sender: str = "a@example.org") -> set[str]:
    message = f"From: {sender}\r\nSubject: {subject}\r\n\r\n{text}\r\n".encode()
    return tokens(sample_of(io.BytesIO(message)))


def test_tokens_cover_subject_sender_urls_and_long_words():
    found = toks("Visit https://shop.example.com/deal now " + "z" * 40, "Great deal")
    assert {"subject:great", "subject:deal", "from:addr:a@example.org"} <= found
    assert {"from:domain:example.org", "url:example.com", "url:shop.example.com"} <= found
    assert "url-path:deal" in found and "skip:z 40" in found and "visit" in found


def test_neighbouring_words_are_paired_short_and_long_ones_too():
    found = toks("Click HERE to be removed: " + "x" * 30 + " now.")
    assert {"bi:click here", "bi:here to", "bi:to be", "bi:be removed"} <= found
    assert {"bi:removed skip", "bi:skip now"} <= found  # a long word pairs as "skip"
    assert "bi:now hello" not in found  # the subject is not part of the text's pairs


def test_only_the_start_of_a_long_text_is_paired():
    text = "alpha beta " + "filler " * (tokens_module.BIGRAM_CHARS // 7) + "omega zeta"
    found = toks(text)
    assert "bi:alpha beta" in found and "omega" in found and "bi:omega zeta" not in found


def test_chi2q_matches_known_values():
    assert chi2q(0.0, 2) == pytest.approx(1.0)
    assert chi2q(2.0, 2) == pytest.approx(0.36787944, rel=1e-6)  # e^-1
    assert chi2q(10.0, 4) == pytest.approx(0.04042768, rel=1e-5)


def test_token_probability_is_pulled_toward_half_when_rare():
    assert token_probability(1, 0, 10, 10) == pytest.approx((0.45 * 0.5 + 1) / 1.45)
    assert token_probability(100, 0, 100, 100) > 0.99
    assert token_probability(0, 0, 10, 10) == 0.5


def test_combining_says_spam_ham_and_unsure():
    assert combine([0.99] * 20) > 0.99
    assert combine([0.01] * 20) < 0.01
    assert 0.4 < combine([0.99] * 10 + [0.01] * 10) < 0.6
    assert combine([0.5, 0.55]) == 0.5  # no clue strong enough


def test_at_most_max_pair_clues_of_the_clues_are_pairs_of_words():
    spammy_pairs = [0.999] * bayes.MAX_CLUES
    hammy_words = [0.01] * bayes.MAX_CLUES
    # all clues alike: the 50 strongest are pairs, the words are never heard
    assert combine(spammy_pairs + hammy_words) > 0.99
    # pairs apart: 25 pairs and 25 words, which disagree
    capped = combine(hammy_words, pairs=spammy_pairs)
    assert capped == pytest.approx(
        combine([0.999] * bayes.MAX_PAIR_CLUES + [0.01] * (bayes.MAX_CLUES - bayes.MAX_PAIR_CLUES))
    )
    assert capped < 0.9
    # with few words, the pairs still fill no more than their share
    assert combine([], pairs=spammy_pairs) == pytest.approx(combine([0.999] * bayes.MAX_PAIR_CLUES))


def test_the_store_combines_pairs_of_words_apart(tmp_path, monkeypatch):
    store = TokenStore(str(tmp_path / "bayes.sqlite"), min_messages=1)
    words = {f"word{i}" for i in range(10)}
    pairs = {f"bi:word{i} next" for i in range(10)}
    store.learn("u", "s", words | pairs, True)
    store.learn("u", "h", {"other"}, False)
    seen = []

    def combine_spy(probabilities, pairs=()):
        seen.append((len(list(probabilities)), len(list(pairs))))
        return 0.5

    monkeypatch.setattr(bayes, "combine", combine_spy)
    store.judge("u", words | pairs | {"unknown", "bi:never seen"})
    assert seen == [(10, 10)]


def trained(tmp_path, min_messages: int = 5) -> TokenStore:
    store = TokenStore(str(tmp_path / "bayes.sqlite"), min_messages=min_messages)
    for i in range(6):
        spam = toks(f"cheap pills viagra offer {i}", "cheap pills", f"s{i}@spam.example")
        ham = toks(f"meeting agenda minutes project {i}", "project notes", f"h{i}@work.example")
        assert store.learn("alice@example.test", f"s{i}", spam, True)
        assert store.learn("alice@example.test", f"h{i}", ham, False)
    return store


def test_a_trained_user_judges_new_mail(tmp_path):
    store = trained(tmp_path)
    spam = store.judge("alice@example.test", toks("cheap viagra pills today", "cheap pills"))
    ham = store.judge("alice@example.test", toks("project meeting agenda", "project notes"))
    assert spam is not None and spam.probability > 0.9 and spam.owner == "alice@example.test"
    assert ham is not None and ham.probability < 0.1


def test_an_untrained_user_falls_back_to_the_global_counts(tmp_path):
    store = trained(tmp_path)
    judged = store.judge("bob@example.test", toks("cheap viagra pills", "cheap pills"))
    assert judged is not None and judged.owner == GLOBAL and judged.probability > 0.9
    assert store.totals(GLOBAL) == (6, 6)


def test_too_little_training_says_nothing(tmp_path):
    store = trained(tmp_path, min_messages=50)
    assert store.judge("alice@example.test", toks("cheap viagra")) is None


def test_a_message_is_learned_once_and_can_change_sides(tmp_path):
    store = TokenStore(str(tmp_path / "bayes.sqlite"))
    found = toks("some text")
    assert store.learn("u", "d1", found, True)
    assert not store.learn("u", "d1", found, True)
    assert store.totals("u") == (1, 0)
    assert store.learn("u", "d1", found, False)  # the user changed their mind
    assert store.totals("u") == (0, 1) and store.totals(GLOBAL) == (0, 1)


def test_a_users_share_of_the_global_set_is_bounded(tmp_path):
    """One user moving many messages into Junk (poisoning what everyone else is judged by)
    counts in the global set for the first ``global_per_user`` of each kind only."""
    store = TokenStore(str(tmp_path / "bayes.sqlite"), global_per_user=3)
    for i in range(5):
        assert store.learn("mallory", f"s{i}", {"newsletter", f"w{i}"}, True)
    assert store.learn("mallory", "h0", {"other"}, False)
    assert store.totals("mallory") == (5, 1) and store.totals(GLOBAL) == (3, 1)
    rows = store._db().execute("SELECT spam FROM tokens WHERE owner = ''").fetchall()
    assert max(r[0] for r in rows) == 3  # "newsletter" counted three times, not five
    # a correction of a shared message moves it in the global set too, adding no message
    assert store.learn("mallory", "s0", {"newsletter", "w0"}, False)
    assert store.totals("mallory") == (4, 2) and store.totals(GLOBAL) == (2, 2)
    # one never shared, now ham: within their ham share (2 of 3), so it counts there now
    assert store.learn("mallory", "s4", {"newsletter", "w4"}, False)
    assert store.totals("mallory") == (3, 3) and store.totals(GLOBAL) == (2, 3)
    assert store.learn("mallory", "h9", {"more"}, False)  # past the ham share
    assert store.totals("mallory") == (3, 4) and store.totals(GLOBAL) == (2, 3)
    # others still share; the administrator's global training is not bounded
    assert store.learn("alice", "a0", {"x"}, True) and store.totals(GLOBAL) == (3, 3)
    for i in range(5):
        assert store.learn(GLOBAL, f"g{i}", {"y"}, True)
    assert store.totals(GLOBAL) == (8, 3)
    none_shared = TokenStore(str(tmp_path / "b2.sqlite"), global_per_user=0)
    assert none_shared.learn("u", "d", {"z"}, True)
    assert none_shared.totals("u") == (1, 0) and none_shared.totals(GLOBAL) == (0, 0)
    with pytest.raises(ValueError):
        TokenStore(str(tmp_path / "b3.sqlite"), global_per_user=-1)


def test_expiry_drops_stale_single_sightings_and_bounds_the_size(tmp_path):
    store = TokenStore(str(tmp_path / "bayes.sqlite"), max_tokens=10, max_age_days=1)
    store.learn("u", "d1", {f"word{i}" for i in range(30)}, True)
    assert store.expire(now=bayes.time.time() + 2 * 86400) == 60  # user's and global's
    assert store._db().execute("SELECT count(*) FROM learned").fetchone() == (0,)
    store.learn("u", "d2", {f"word{i}" for i in range(30)}, True)
    store.expire()
    (count,) = store._db().execute("SELECT count(*) FROM tokens").fetchone()
    assert count == 10


def test_sender_lists_per_user_then_everyone(tmp_path):
    store = TokenStore(str(tmp_path / "bayes.sqlite"))
    store.set_sender("alice", "friend@example.org", "allow")
    store.set_sender(GLOBAL, "@spam.example", "block")
    assert store.sender_kind(["alice"], ["Friend@Example.org"]) == "allow"
    assert store.sender_kind(["bob"], ["friend@example.org"]) is None
    assert store.sender_kind(["bob"], ["x@spam.example"]) == "block"
    store.set_sender("alice", "friend@example.org", None)
    assert store.sender_kind(["alice"], ["friend@example.org"]) is None


def fields_toks(header: str, text: str = "body text") -> set[str]:
    return tokens(sample_of(io.BytesIO(f"{header}\r\n\r\n{text}\r\n".encode())))


def test_list_and_delivery_fields_give_no_tokens_senders_fields_do():
    found = fields_toks(
        "From: Ann <ann@example.org>\r\nX-Mailer: Mutt 1.4\r\nList-Id: <dev.lists.example>\r\n"
        "X-Beenthere: dev@lists.example\r\nDelivery-Date: Tue, 6 Aug 2002\r\n"
        "X-Keywords: work\r\nX-Spam-Level: ***\r\nSubject: hi"
    )
    assert {"from:name:ann", "x-mailer:mutt", "x-mailer:mutt 1.4"} <= found
    assert "list-id:<dev.lists.example>" in found  # which list: one token, not its words
    assert not [t for t in found if t.startswith(("list-id:dev", "x-beenthere", "delivery-"))]
    assert not [t for t in found if t.startswith(("x-keywords", "x-spam", "header:"))]


def test_capitals_money_and_subject_punctuation_are_tokens():
    found = toks("Only $1,299.00 and 50% off, FREE shipping", "FREE money!!! now")
    assert {"CAPS:FREE", "free", "money:$6", "money:%2"} <= found
    assert {"subject:CAPS:FREE", "subject:punct:!!!", "subject:free"} <= found
    assert "subject:upper:3" in found  # 4 of 13 letters upper-case


def test_the_store_records_its_tokenizer_version(tmp_path):
    store = TokenStore(str(tmp_path / "bayes.sqlite"))
    assert store.trained_tokenizer() is None
    store.learn("bob@example.test", "d1", {"a"}, True)
    assert store.trained_tokenizer() == store.tokenizer_version == tokens_module.TOKENIZER_VERSION
    store.close()


def test_a_store_trained_before_versions_is_reported_as_version_1(tmp_path):
    path = str(tmp_path / "bayes.sqlite")
    old = TokenStore(path)
    old.learn("bob@example.test", "d1", {"a"}, True)
    old._db().execute("DELETE FROM meta")  # as a store written before the meta table
    old.close()
    store = TokenStore(path)
    assert store.trained_tokenizer() == 1
    store.learn("bob@example.test", "d2", {"b"}, False)  # later learning keeps the record
    assert store.trained_tokenizer() == 1
    assert store.judge("bob@example.test", {"a"}) is None  # still judges (too little here)
    store.close()


# The tokenizer finds its words, pairs and capitals without the expressions that define them
# (they backtracked at every position); these say it still finds exactly what they find.
_DEFINING_WORD = re.compile(r"[^\W_][\w'$€£%.-]*[^\W_]|[^\W_]")
_DEFINING_CAPS = re.compile(r"\b[A-Z]{3,12}\b")
_TRICKY = [
    "don't stop 'quoted' -dash- e-mail 3.5% $4,000.00 __init__ a_b _x_ ..",
    "ÉCOLE ÉTÉ naïve straße İstanbul ﬁne Ǆungla ½ ² ٣٤ 漢字テキスト",
    "ABC ABCD1 xABC ABC_ _ABC ABCDEFGHIJKL ABCDEFGHIJKLM FREE! (NOW) ÉABC ABCÉ 'YES'",
    "",
    "'''",
    "a",
    "http://example.com/a-b.c?d=e&f=g ... -- '' $$ %% € £",
]


@pytest.mark.parametrize("text", _TRICKY)
def test_words_are_those_of_the_defining_expression(text):
    lowered = text.lower()
    assert tokens_module._all_words(lowered) == _DEFINING_WORD.findall(lowered)
    assert tokens_module._caps(text) == list(dict.fromkeys(_DEFINING_CAPS.findall(text)))


def test_words_match_the_defining_expression_on_random_text():
    alphabet = "aZ9_'$€£%.- \tÉé½٣\n!?"
    rng = random.Random(1)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        text = text.replace("Z", rng.choice(["Z", "ZZZ", "ABCD", "ABCDEFGHIJKLMN"]))
        lowered = text.lower()
        assert tokens_module._all_words(lowered) == _DEFINING_WORD.findall(lowered), text
        assert tokens_module._caps(text) == list(dict.fromkeys(_DEFINING_CAPS.findall(text))), text


def test_standing_reads_totals_threshold_and_lists_as_the_single_queries_do(tmp_path):
    store = trained(tmp_path)
    store.set_threshold("alice@example.test", 7.5)
    store.set_sender("alice@example.test", "@spam.example", "allow")
    store.set_sender(GLOBAL, "@spam.example", "block")
    store.set_sender("bob@example.test", "x@spam.example", "block")
    store.set_sender("bob@example.test", "@spam.example", "allow")
    for owner in ("alice@example.test", "bob@example.test", "carol@example.test", None):
        for senders in (["x@spam.example"], ["y@spam.example", "x@work.example"], [], ["nobody"]):
            standing = store.standing(owner, senders)
            assert standing.listed == store.sender_kind([owner] if owner else [], senders)
            assert standing.global_totals == store.totals(GLOBAL)
            assert standing.totals == store.totals(owner or GLOBAL)
            assert standing.threshold == (store.threshold(owner) if owner else None)
    assert store.standing("alice@example.test", []).threshold == 7.5


def test_scoring_a_message_takes_two_statements_whatever_its_size(tmp_path):
    """Each statement and each row fetched lets go of the GIL, and getting it back on a busy
    server waits for the reactor: scoring reads one row of each of two statements."""
    store = trained(tmp_path)
    scorer = Scorer(store)
    statements: list[str] = []
    store._db().set_trace_callback(statements.append)
    words = " ".join(f"word{i}" for i in range(3000))
    message = f"From: s1@spam.example\r\nSubject: cheap pills\r\n\r\ncheap viagra {words}\r\n"
    score = scorer.score(sample_of(io.BytesIO(message.encode())), "alice@example.test")
    assert score.bayes is not None and score.bayes > 0.9
    # SQLite traces the ``pragma_data_version`` table the first statement reads as "-- PRAGMA
    # data_version": a part of that statement, not one of Python's
    statements = [s for s in statements if not s.startswith("-- ")]
    assert len(statements) == 2, statements
    judged = store.judge("alice@example.test", tokens(sample_of(io.BytesIO(message.encode()))))
    assert judged is not None and judged.probability == pytest.approx(score.bayes)


def test_the_scoring_process_reads_its_store_through_a_mapping(tmp_path):
    """``mmap_size`` reaches SQLite (the scoring process's store); the server's own stores
    keep SQLite's page cache, so the file's pages don't count in the server's memory."""
    from txmailhost.spam.sqlitedb import MMAP_SIZE

    mapped = TokenStore(str(tmp_path / "a.sqlite"), mmap_size=MMAP_SIZE)
    plain = TokenStore(str(tmp_path / "b.sqlite"))
    assert mapped._db().execute("PRAGMA mmap_size").fetchone()[0] == MMAP_SIZE
    assert plain._db().execute("PRAGMA mmap_size").fetchone()[0] == 0
    mapped.learn("u", "d1", {"cheap", "pills"}, True)
    assert TokenStore(mapped.path).totals("u") == (1, 0)  # the same file either way
