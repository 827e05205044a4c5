"""Vacation (RFC 5230): when not to answer, once per sender per period, and the reply itself."""

from __future__ import annotations

import email

import pytest

from tests.support.clock import FakeClock
from txmailhost.sieve.interpreter import VacationRequest
from txmailhost.sieve.message import MessageView
from txmailhost.sieve.vacation import ResponseLog, build_reply, handle_of, refusal

ALICE = "alice@example.test"
BASE = (
    b"Return-Path: <bob@example.net>\r\nFrom: Bob <bob@example.net>\r\n"
    b"To: Alice <alice@example.test>\r\nSubject: Lunch?\r\n"
    b"Message-ID: <m1@example.net>\r\nReferences: <m0@example.net>\r\n\r\nhi\r\n"
)
REQUEST = VacationRequest("I am away.", 86400, subject="Away")


def view(data: bytes = BASE) -> MessageView:
    return MessageView.from_bytes(data, ALICE)


def test_an_ordinary_message_is_answered():
    assert refusal(view(), REQUEST, [ALICE]) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ((b"<bob@example.net>\r\nFrom", b"<>\r\nFrom"), "<>"),
        ((b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:"), "auto-submitted"),
        ((b"Subject:", b"List-Id: <x.example.net>\r\nSubject:"), "mailing list"),
        ((b"Subject:", b"Precedence: bulk\r\nSubject:"), "bulk"),
        ((b"Subject:", b"Precedence: junk\r\nSubject:"), "bulk"),
        ((b"<bob@example.net>\r\nFrom", b"<owner-list@example.net>\r\nFrom"), "robot"),
        ((b"<bob@example.net>\r\nFrom", b"<MAILER-DAEMON@example.net>\r\nFrom"), "robot"),
        ((b"<bob@example.net>\r\nFrom", b"<alice@example.test>\r\nFrom"), "the user"),
        ((b"To: Alice <alice@example.test>", b"To: list@example.net"), "not named"),
    ],
)
def test_no_answer_to_automatic_list_or_own_mail(change, why):
    assert why in refusal(view(BASE.replace(*change)), REQUEST, [ALICE])


def test_auto_submitted_no_is_answered_and_addresses_count_as_ours():
    assert refusal(view(BASE.replace(b"Subject:", b"Auto-Submitted: no\r\nSubject:")),
                   REQUEST, [ALICE]) is None  # fmt: skip
    other = view(BASE.replace(b"alice@example.test", b"al@example.org"))
    assert refusal(other, REQUEST, [ALICE]) is not None
    with_alias = VacationRequest("away", 86400, addresses=["al@example.org"])
    assert refusal(other, with_alias, [ALICE]) is None


def test_mail_to_the_users_plus_address_names_the_user():
    """``alice+lists@`` is alice's (RFC 5233): it went unanswered as "not named"."""
    tagged = view(BASE.replace(b"alice@example.test", b"alice+lists@example.test"))
    assert refusal(tagged, REQUEST, [ALICE]) is None
    other = view(BASE.replace(b"alice@example.test", b"alicex+lists@example.test"))
    assert "not named" in refusal(other, REQUEST, [ALICE])


def test_response_log_answers_once_per_period_and_per_handle(tmp_path):
    clock = FakeClock(1_000_000.0)
    log = ResponseLog(clock)
    handle = handle_of(REQUEST)
    assert log.claim(str(tmp_path), "bob@example.net", handle, 86400)
    assert not log.claim(str(tmp_path), "BOB@example.net", handle, 86400)
    assert log.claim(str(tmp_path), "carol@example.net", handle, 86400)
    other = handle_of(VacationRequest("New text.", 86400, subject="Away"))
    assert log.claim(str(tmp_path), "bob@example.net", other, 86400)
    clock.now += 86401
    assert log.claim(str(tmp_path), "bob@example.net", handle, 86400)


def test_response_log_survives_a_new_instance_and_damage(tmp_path):
    assert ResponseLog(FakeClock(1_000_000.0)).claim(str(tmp_path), "bob@example.net", "h", 60)
    assert not ResponseLog(FakeClock(1_000_000.0)).claim(str(tmp_path), "bob@example.net", "h", 60)
    (tmp_path / "vacation.json").write_text("{not json")
    assert ResponseLog(FakeClock(1_000_000.0)).claim(str(tmp_path), "bob@example.net", "h", 60)


def _claims(directory: str, senders: list[str], start) -> list[str]:
    """One worker process's deliveries: whom it answered."""
    log = ResponseLog(FakeClock(1_000_000.0))
    start.wait()
    return [sender for sender in senders if log.claim(directory, sender, "h", 86400)]


def test_deliveries_in_several_processes_answer_each_sender_once(tmp_path):
    """The server's workers are processes: each claim holds the directory's flock across
    its read and write, so two workers delivering mail of one sender at once don't both
    answer it (without the flock, both read the log before either wrote it)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    senders = [f"s{n}@example.net" for n in range(30)]
    start = context.Manager().Barrier(4)
    with context.Pool(4) as pool:
        answered = pool.starmap(_claims, [(str(tmp_path), senders, start)] * 4)
    every = [sender for names in answered for sender in names]
    assert sorted(every) == sorted(senders)  # each answered once, by one of the workers


def test_reply_headers_follow_rfc5230_section_5():
    reply = email.message_from_bytes(build_reply(view(), REQUEST, ALICE, "mx.example.test"))
    assert reply["To"] == "<bob@example.net>"
    assert reply["From"] == ALICE
    assert reply["Subject"] == "Away"
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["In-Reply-To"] == "<m1@example.net>"
    assert reply["References"] == "<m0@example.net> <m1@example.net>"
    assert reply.get_payload() == "I am away.\r\n"


def test_default_subject_and_non_ascii_text():
    request = VacationRequest("Bin weg \u2013 zurück am 5.", 86400)
    raw = build_reply(view(), request, ALICE, "mx.example.test")
    reply = email.message_from_bytes(raw)
    assert reply["Subject"] == "Auto: Lunch?"
    assert reply.get_content_charset() == "utf-8"
    assert "zurück".encode() in raw


def test_reply_names_only_real_msg_ids_of_the_original():
    """RFC 2047 decodes an encoded CR LF: the ids come from the raw fields, and only those
    that are ``<left@right>`` (RFC 5322 3.6.4), so nothing can follow them into the reply."""
    hostile = BASE.replace(
        b"Message-ID: <m1@example.net>\r\nReferences: <m0@example.net>",
        b"Message-ID: =?us-ascii?q?<m1@example.net>=0D=0AX-Injected:_yes=0D=0A=0D=0A<h1>?=\r\n"
        b"References: <m0@example.net> =?us-ascii?q?<m2@x>=0D=0AX-Injected:_yes?=",
    )
    raw = build_reply(view(hostile), REQUEST, ALICE, "mx.example.test")
    assert b"X-Injected" not in raw and b"<h1>" not in raw
    reply = email.message_from_bytes(raw)
    assert reply["In-Reply-To"] is None and reply["References"] == "<m0@example.net>"
    assert reply.get_payload() == "I am away.\r\n"
    references = BASE.replace(
        b"References: <m0@example.net>",
        b"References: <m0@example.net> =?us-ascii?q?<m2@x>=0D=0AX-Injected:_yes?= <m3@x>",
    )
    reply = email.message_from_bytes(build_reply(view(references), REQUEST, ALICE, "mx"))
    assert reply["In-Reply-To"] == "<m1@example.net>"
    assert reply["References"].split() == ["<m0@example.net>", "<m3@x>", "<m1@example.net>"]


def test_a_long_thread_is_referenced_by_its_first_and_latest_ids_folded():
    thread = b" ".join(b"<m%d-%s@example.net>" % (i, b"x" * 40) for i in range(500))
    long = BASE.replace(b"References: <m0@example.net>", b"References: " + thread)
    raw = build_reply(view(long), REQUEST, ALICE, "mx.example.test")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    references = email.message_from_bytes(raw)["References"].split()
    assert len(references) == 20 and references[0].startswith("<m0-")
    assert references[-2].startswith("<m499-") and references[-1] == "<m1@example.net>"
