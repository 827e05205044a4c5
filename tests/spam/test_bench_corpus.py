"""The corpus benches' own pieces: the in-memory evaluation judges as the store does, and the
end-to-end bench's envelope sender comes from the message."""

from __future__ import annotations

import io
import random
import time

import pytest

from bench import spam_e2e, spam_eval
from bench.spam_corpus import GROUPS, halves
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.sample import sample_of
from txmailhost.spam.tokens import tokens


def message(i: int, kind: str) -> bytes:
    words = {
        "spam": "cheap pills offer click here to be removed",
        "ham": "meeting agenda for the project review",
    }[kind.split("-")[0] if kind.startswith("spam") else "ham"]
    return (
        f"From: {kind}{i % 7}@example.org\r\nSubject: {kind} {i}\r\n"
        f"Message-ID: <{i}.{kind}@example.org>\r\n\r\n{words} number {i} {kind}\r\n"
    ).encode()


def test_in_memory_probabilities_are_the_stores(tmp_path):
    raw = {group: [message(i, group) for i in range(40)] for group in GROUPS}
    corpus = {
        group: [spam_eval.Message(sample_of(io.BytesIO(m)), 0.0) for m in raw[group]]
        for group in GROUPS
    }
    judged = spam_eval.run_split(corpus, 25, seed=3)
    # the same split and draws, through the SQLite store
    rng = random.Random(3)
    train, test = {}, {}
    for group in GROUPS:
        train[group], test[group] = halves(raw[group], rng)
    store = TokenStore(str(tmp_path / "b.sqlite"), min_messages=5)
    spam = train["spam-1"] + train["spam-2"]
    ham = train["easy-ham-1"] + train["easy-ham-2"] + train["hard-ham-1"]
    for kind, pool in ((True, spam), (False, ham)):
        for m in rng.sample(pool, 25):
            sample = sample_of(io.BytesIO(m))
            store.learn("u", sample.digest, tokens(sample), kind)
    for group in spam_eval.TEST_GROUPS:
        for m, (probability, _rules) in zip(test[group], judged[group], strict=True):
            found = tokens(sample_of(io.BytesIO(m)))
            assert store.judge("u", found).probability == pytest.approx(probability)
    assert min(p for p, _r in judged["spam-2"]) > 0.9 > max(p for p, _r in judged["easy-ham-2"])


def test_the_envelope_sender_is_the_return_path_else_from():
    assert spam_e2e.envelope_sender(b"Return-Path: <b@x.example>\r\nFrom: a@y.example\r\n\r\n") == (
        "b@x.example"
    )
    assert spam_e2e.envelope_sender(b"Return-Path: <>\r\nFrom: A <a@y.example>\r\n\r\nhi") == (
        "a@y.example"
    )
    assert spam_e2e.envelope_sender(b"Subject: none\r\n\r\n") == ""


def test_the_rules_judge_a_corpus_message_at_its_arrival():
    """As the server judges a message the bench delivers from 127.0.0.1: at the date of the
    Received: field that names the first client outside the collector's networks (when the
    collector's MX received it), not at the local re-injection above it; no such field: the
    clock."""
    raw = (
        b"Received: from localhost (localhost [127.0.0.1]) by c.example (Postfix);"
        b" Tue, 3 Sep 2002 12:00:00 +0000\r\n"
        b"Received: from b.example (b.example [192.0.2.2])\r\n by mx.c.example (8.11.6);"
        b" Tue, 3 Sep 2002 10:00:00 +0000\r\n"
        b"Received: from a.example ([192.0.2.1]) by b.example; Tue, 3 Sep 2002 09:00:00 +0000\r\n"
        b"Date: Tue, 3 Sep 2002 14:00:00 +0000\r\nSubject: x\r\n\r\nhi\r\n"
    )
    assert spam_eval.arrival(raw) == 1031047200  # 2002-09-03 10:00 UTC
    no_date = b"Received: from b (b [192.0.2.2]) by c (Postfix)\r\n\r\n"
    assert abs(spam_eval.arrival(no_date) - time.time()) < 60
    assert abs(spam_eval.arrival(b"Subject: x\r\n\r\nhi\r\n") - time.time()) < 60
