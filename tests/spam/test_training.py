"""What a user's moves teach the classifier (the IMAP side is in tests/e2e/test_spam.py)."""

from __future__ import annotations

import io

import pytest

from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.training import learn_stream, lesson


@pytest.mark.parametrize(
    ("origin", "target", "taught"),
    [
        ("INBOX", "Junk", True),
        (None, "Junk", True),  # APPEND
        ("INBOX", "Spam", True),
        ("Archive/2026", "junk", True),
        ("Junk", "INBOX", False),
        ("Junk", "Archive", False),
        ("Junk", "Trash", None),  # "delete it" is not "it is good mail"
        ("Junk", "Junk", None),
        ("INBOX", "Archive", None),
        (None, "Sent", None),
    ],
)
def test_moves_into_and_out_of_junk(origin, target, taught):
    assert lesson(origin, target) is taught


MESSAGE = b"From: Deals <deals@promo.example>\r\nSubject: hi\r\n\r\ncheap\r\n"


def test_a_rescued_sender_is_allowed_and_a_reported_one_no_longer(tmp_path):
    store = TokenStore(str(tmp_path / "b.sqlite"))
    assert learn_stream(store, "alice", io.BytesIO(MESSAGE), False, allow_sender=True)
    assert store.sender_kind(["alice"], ["deals@promo.example"]) == "allow"
    assert learn_stream(store, "alice", io.BytesIO(MESSAGE), True, allow_sender=True)
    assert store.sender_kind(["alice"], ["deals@promo.example"]) is None
    assert store.totals("alice") == (1, 0)


def test_the_servers_trainer_takes_the_share_of_the_global_set_from_the_settings(tmp_path):
    from twisted.internet.task import Clock

    from txmailhost.spam.training import build_trainer

    trainer = build_trainer(str(tmp_path), {"bayes_global_per_user": 7}, Clock())
    assert trainer is not None and trainer.store.global_per_user == 7
    default = build_trainer(str(tmp_path), {}, Clock())
    assert default is not None and default.store.global_per_user == 1000
