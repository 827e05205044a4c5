"""The ``spam`` filter's verdicts: tags, Junk per recipient, the optional 550, who is skipped."""

from __future__ import annotations

import io
import sys

import pytest
from twisted.internet.defer import Deferred

from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.filters.registry import FilterConfigError, FilterHost, build_chain
from txmailhost.spam import rules
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.scoring import SpamFilter, bayes_rule, store_path

SPAM = (
    b"From: deals@promo.example\r\nSubject: CHEAP WATCHES BUY NOW!!!\r\n\r\n"
    b"Buy now: cheap replica watches, lowest price!!! http://bit.ly/x\r\n"
)
HAM = (
    b"From: carol@example.org\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <a@example.org>\r\nSubject: lunch\r\n\r\nNoon?\r\n"
)
OUTSIDE = Client("192.0.2.1", listener="smtp")


def spam_filter(tmp_path, **settings) -> SpamFilter:
    settings.setdefault("dns_checks", False)  # no DNS but the tests' own (test_connection.py)
    return SpamFilter(host=FilterHost(str(tmp_path), "mx.example.test"), **settings)


def judge(f: SpamFilter, message: bytes, *recipients: str, client: Client = OUTSIDE):
    transaction = Transaction("deals@promo.example", recipients or ("alice@example.test",))
    return f.end_of_data(client, transaction, io.BytesIO(message))


def fields(verdict) -> dict[str, str]:
    return dict(verdict.headers)


def test_ham_is_accepted_with_its_score(tmp_path):
    verdict = judge(spam_filter(tmp_path), HAM)
    assert verdict.action is Action.ACCEPT
    assert fields(verdict)["X-Spam-Status"] == "No, score=0.0 required=5.0 tests=none"
    assert fields(verdict)["X-Spam-Score"] == "0.0"


def test_spam_goes_to_junk_with_a_report(tmp_path):
    verdict = judge(spam_filter(tmp_path), SPAM)
    assert verdict.action is Action.JUNK
    assert verdict.recipients == {"alice@example.test"}
    status = fields(verdict)["X-Spam-Status"]
    assert status.startswith("Yes, score=") and "URL_SHORTENER" in status
    assert "URL_SHORTENER" in fields(verdict)["X-Spam-Report"]
    assert fields(verdict)["X-Spam-Flag"] == "YES"


def test_reject_score_refuses_what_scores_above_it(tmp_path):
    verdict = judge(spam_filter(tmp_path, junk_score=2.0, reject_score=4.0), SPAM)
    assert verdict.action is Action.REJECT
    assert "spam" in verdict.reason


def test_a_reject_score_not_above_the_junk_score_is_refused_at_start(tmp_path):
    with pytest.raises(FilterConfigError, match="reject_score"):
        build_chain(("spam",), {"spam": {"reject_score": 3.0}}, None, None, 5, "tempfail",
                    FilterHost(str(tmp_path), "mx"))  # fmt: skip
    with pytest.raises(FilterConfigError, match="bayes_global_per_user"):
        build_chain(("spam",), {"spam": {"bayes_global_per_user": -1}}, None, None, 5,
                    "tempfail", FilterHost(str(tmp_path), "mx"))  # fmt: skip
    with pytest.raises(FilterConfigError, match="no_such_option"):
        build_chain(("spam",), {"spam": {"no_such_option": 1}}, None, None, 5, "tempfail",
                    FilterHost(str(tmp_path), "mx"))  # fmt: skip


def test_authenticated_and_submission_mail_is_not_scored(tmp_path):
    f = spam_filter(tmp_path)
    user = Client("192.0.2.1", listener="smtp", authenticated_as="bob@example.test")
    assert judge(f, SPAM, client=user).headers == ()
    assert judge(f, SPAM, client=Client("192.0.2.1", listener="submission")).headers == ()


def test_each_recipients_own_allow_list_decides_their_copy(tmp_path):
    f = spam_filter(tmp_path)
    TokenStore(store_path(str(tmp_path))).set_sender(
        "bob@example.test", "deals@promo.example", "allow"
    )
    verdict = judge(f, SPAM, "alice@example.test", "bob@example.test")
    assert verdict.action is Action.JUNK
    assert verdict.recipients == {"alice@example.test"}


def test_a_blocked_sender_is_junk_whatever_the_content(tmp_path):
    f = spam_filter(tmp_path)
    TokenStore(store_path(str(tmp_path))).set_sender("", "@example.org", "block")
    verdict = judge(f, HAM)
    assert verdict.action is Action.JUNK and "USER_BLOCKED" in fields(verdict)["X-Spam-Status"]


def test_a_recipients_own_threshold_decides_their_copy(tmp_path):
    f = spam_filter(tmp_path)
    store = TokenStore(store_path(str(tmp_path)))
    store.set_threshold("alice@example.test", 0.5)  # alice wants even slight suspicion filed
    verdict = judge(f, HAM.replace(b"Message-ID: <a@example.org>\r\n", b""))  # 0.5 points
    assert verdict.action is Action.JUNK
    assert "required=0.5" in fields(verdict)["X-Spam-Status"]
    store.set_threshold("alice@example.test", None)
    assert judge(f, HAM.replace(b"Message-ID: <a@example.org>\r\n", b"")).action is Action.ACCEPT


def test_only_the_classifiers_surest_band_is_junk_alone():
    """99-99.9% needs another rule's 1.5 to reach Junk; 99.9% or more is Junk by itself."""
    assert bayes_rule(0.995).name == "BAYES_99" and bayes_rule(0.995).score == 3.5
    assert bayes_rule(0.9995).name == "BAYES_999" and bayes_rule(0.9995).score == 5.0
    assert bayes_rule(0.97).name == "BAYES_95" and bayes_rule(0.6).name == "BAYES_50"
    assert bayes_rule(0.3) is None and bayes_rule(0.001).name == "BAYES_00"


def test_the_senders_own_x_spam_fields_are_removed(tmp_path):
    """A spammer's ``X-Spam-Status: No`` must not sit below ours as if we had written it."""
    from txmailhost.delivery.incoming import strip_fields

    forged = (
        b"Received: from a by b; Fri, 04 Dec 2026 10:00:00 +0000\r\n"
        b"X-Spam-Status: No, score=-20.0 required=5.0 tests=none\r\n"
        b"X-Spam-Flag: NO\r\nX-Spam-Score: -20.0\r\nX-Spam-Level: \r\n"
        b"X-Spam-Report:\r\n\t-20.0 ALL_TRUSTED\r\n"
        b"X-Spam-Status: No, again\r\nX-Spam-Custom: kept\r\n"
    )
    message = forged + SPAM
    verdict = judge(spam_filter(tmp_path), message)
    assert verdict.action is Action.JUNK
    assert set(verdict.remove) == {
        ("X-Spam-Status", 1),
        ("X-Spam-Status", 2),
        ("X-Spam-Flag", 1),
        ("X-Spam-Score", 1),
        ("X-Spam-Level", 1),
        ("X-Spam-Report", 1),
    }
    delivered = strip_fields(message, verdict.remove, True)
    assert b"X-Spam-Status" not in delivered and b"ALL_TRUSTED" not in delivered
    assert b"X-Spam-Custom: kept\r\n" in delivered and b"Received: from a" in delivered
    assert fields(verdict)["X-Spam-Status"].startswith("Yes")
    assert judge(spam_filter(tmp_path), HAM).remove == ()


class _AnsweringLater:
    """A scoring process whose answer the test gives (``offload.ScoringProcess``'s
    ``score_and_domains``)."""

    def __init__(self) -> None:
        self.asked: list[Deferred] = []

    def score_and_domains(self, header, head, body) -> Deferred:
        self.asked.append(Deferred())
        return self.asked[-1]


def test_a_message_the_reactor_can_read_is_asked_about_without_a_deferred_of_its_own():
    """On the reactor thread, a message in memory from a client DNS isn't asked about goes
    to the scoring process at once: the one Deferred made is the answer's (an already
    fired one, chained to it, was two more callbacks and a pause a message)."""
    spam = SpamFilter(bayes=False)
    offload = _AnsweringLater()
    spam.offload, spam._reactor, spam._pool, spam.blocking = offload, object(), object(), False
    made = []

    def count(frame, event, arg):
        if event == "call" and frame.f_code is Deferred.__init__.__code__:
            made.append(frame)

    client = Client("127.0.0.1", helo="client.test", listener="smtp")
    sys.setprofile(count)
    try:
        verdict = spam.end_of_data(
            client, Transaction("a@client.test", ("u1@example.test",)), io.BytesIO(HAM)
        )
        offload.asked[0].callback(([(1.5, [rules.BY_NAME["MISSING_MID"]], None, None)], []))
    finally:
        sys.setprofile(None)
    assert len(made) == 1
    got = []
    verdict.addCallback(got.append)
    assert got[0].action is Action.ACCEPT
    assert ("X-Spam-Score", "1.5") in got[0].headers
