"""The delivery agent's Sieve step: from a user's active script to mailboxes and outgoing
mail, over a real script directory and a real Router on a real accounts database."""

from __future__ import annotations

import email
import email.header

import pytest
from twisted.internet.defer import succeed

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts.db import AccountsDB
from txmailhost.routing import RouteKind, Router
from txmailhost.sieve.delivery import SieveStep
from txmailhost.sieve.scripts import ScriptStore

ALICE, BOB = "alice@example.test", "bob@example.test"
MESSAGE = (
    b"Return-Path: <bob@example.test>\r\nFrom: bob@example.test\r\nTo: alice@example.test\r\n"
    b"Subject: [news] hello\r\nMessage-ID: <m1@example.test>\r\n\r\nhi\r\n"
)


@pytest.fixture(scope="module")
def accounts(tmp_path_factory) -> AccountsDB:
    db = AccountsDB(str(tmp_path_factory.mktemp("accounts") / "accounts.sqlite"))
    db.add_domain("example.test")
    db.add_user(ALICE, "correct horse battery")
    db.add_user(BOB, "correct horse battery")
    return db


class World:
    def __init__(self, tmp_path, accounts) -> None:
        self.scripts = ScriptStore(str(tmp_path / "sieve"))
        self.created: list[tuple[str, str]] = []
        router = Router(accounts, SyncReactor(), SyncThreadPool())
        reactor = SyncReactor()
        reactor.running = True  # as in the delivery thread (not recovery before the start)
        self.step = SieveStep(
            self.scripts, router.resolve_sync, None, reactor, "mx.example.test",
            pool=SyncThreadPool(), create_mailbox_sync=lambda u, m: self.created.append((u, m)),
        )  # fmt: skip
        self.path = str(tmp_path / "message")
        self.folders = ["INBOX", "Junk", "Work"]

    def script(self, text: str) -> None:
        self.scripts.put(ALICE, "main", text)
        self.scripts.set_active(ALICE, "main")

    def decide(self, message: bytes = MESSAGE, junk: bool = False):
        with open(self.path, "wb") as f:
            f.write(message)
        return self.step.decide_sync(ALICE, self.path, lambda user: self.folders, junk)


@pytest.fixture
def world(tmp_path, accounts) -> World:
    return World(tmp_path, accounts)


def test_no_active_script_leaves_the_agent_its_rules(world):
    assert world.decide() is None


def test_fileinto_existing_missing_and_created_mailboxes(world):
    world.script('require "fileinto"; fileinto "Work";')
    assert world.decide().mailboxes == ["Work"]
    world.script('require "fileinto"; fileinto "Nowhere";')
    assert world.decide().mailboxes == ["INBOX"]
    world.script('require ["fileinto", "mailbox"]; fileinto :create "New";')
    assert world.decide().mailboxes == ["New"]
    assert world.created == [(ALICE, "New")]


@pytest.mark.parametrize("name", ["*", "a%b", "a\u0085b", "a\u2028b", "a//b", "/top"])
def test_fileinto_create_makes_only_what_imap_create_would(world, name):
    """Names IMAP's CREATE refuses (wildcards, C1 controls, line separators, empty levels)
    were made by ``:create``; the copy now goes to INBOX instead."""
    world.script(f'require ["fileinto", "mailbox"]; fileinto :create "{name}";')
    assert world.decide().mailboxes == ["INBOX"]
    assert world.created == []


def test_fileinto_reads_inbox_in_any_case_as_inbox(world):
    """``Inbox/Sub`` made a tree of its own beside INBOX; IMAP's CREATE makes INBOX/Sub."""
    world.folders.append("INBOX/Sub")
    world.script('require "fileinto"; fileinto "Inbox/Sub";')
    assert world.decide().mailboxes == ["INBOX/Sub"]
    world.script('require ["fileinto", "mailbox"]; fileinto :create "inbox/New";')
    assert world.decide().mailboxes == ["INBOX/New"]
    assert world.created == [(ALICE, "INBOX/New")]


def test_a_field_after_a_long_header_still_meets_the_rules(world):
    """Up to SMTP's 1 MiB of header fields, the script sees them all: a Subject after 300 KiB
    of padding (the script read only the first 256 KiB) is filed as the rule says."""
    world.script('require "fileinto"; if header :contains "subject" "invoice" {fileinto "Work";}')
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 90) for n in range(3200))
    assert len(pad) > 300 * 1024
    message = MESSAGE.replace(b"Subject: [news] hello", pad + b"Subject: invoice 42")
    assert world.decide(message).mailboxes == ["Work"]


def test_a_copy_judged_spam_that_is_only_kept_goes_to_junk(world):
    world.script('require "fileinto"; if header :contains "subject" "x" { fileinto "Work"; }')
    assert world.decide(junk=True).mailboxes == ["Junk"]
    world.script('require "fileinto"; fileinto "Work";')
    assert world.decide(junk=True).mailboxes == ["Work"]


def test_scripts_that_fail_keep_the_message_in_inbox(world, tmp_path):
    world.script('require "fileinto"; redirect "not an address";')
    assert world.decide().mailboxes == ["INBOX"]
    world.script("keep;")
    main = tmp_path / "sieve" / "example.test" / "alice" / "main.sieve"
    main.write_text("this is not sieve")  # an administrator's edit gone wrong
    decision = world.decide()
    assert decision.mailboxes == ["INBOX"]
    [(envelope, notice)] = decision.outgoing  # the user is told, once
    assert envelope.sender is None and envelope.routes[0].user == ALICE
    told = email.message_from_bytes(notice)
    assert told["Subject"] == 'Your mail filter script "main" has a problem'
    assert "line 1: expected ';'" in told.get_payload()
    assert world.decide().outgoing == []
    main.write_text("keep;\r\nfrob;")  # another problem: told again
    assert len(world.decide().outgoing) == 1


def test_discard_stores_nothing(world):
    world.script("discard;")
    assert world.decide().mailboxes == []


def test_redirect_keeps_the_envelope_sender_and_routes_local_and_remote(world):
    world.script('redirect "bob@example.test"; redirect "carol@elsewhere.example";')
    decision = world.decide()
    assert decision.mailboxes == []
    (local, data), (remote, _) = decision.outgoing
    assert (
        local.sender == BOB and data == b"X-Sieve-Redirected-From: alice@example.test\r\n" + MESSAGE
    )
    assert [(r.kind, r.user) for r in local.routes] == [(RouteKind.LOCAL, BOB)]
    assert [(r.kind, r.address) for r in remote.routes] == [
        (RouteKind.REMOTE, "carol@elsewhere.example")
    ]


def test_redirect_keeps_the_senders_options_and_passes_on_notify_but_success(world):
    """RFC 8689 6 / RFC 6531 3.2 / RFC 3461 5.2.7: a redirected copy leaves with REQUIRETLS,
    SMTPUTF8, BODY, RET and ENVID, and the copy's ORCPT and NOTIFY, SUCCESS apart (reported
    already for the user's address). They were dropped: a REQUIRETLS message went out
    without it. Replies the script makes are new messages of ours, without them."""
    from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions

    world.script('require ["vacation", "copy"]; redirect :copy "carol@elsewhere.example"; '
                 'redirect "bob@example.test"; vacation "Away.";')  # fmt: skip
    with open(world.path, "wb") as f:
        f.write(MESSAGE)
    options = MessageOptions("8BITMIME", smtputf8=True, ret="HDRS", envid="x1", requiretls=True)
    asked = RecipientOptions(("SUCCESS", "FAILURE"), "rfc822;alice@example.test")
    decision = world.step.decide_sync(ALICE, world.path, lambda user: world.folders,
                                      options=options, dsn=asked)  # fmt: skip
    (remote, _), (local, _), (reply, _) = decision.outgoing
    passed_on = RecipientOptions(("FAILURE",), "rfc822;alice@example.test")
    assert remote.options == local.options == options
    assert remote.recipient_options == {"carol@elsewhere.example": passed_on}
    assert local.recipient_options == {BOB: passed_on}
    assert reply.sender is None and reply.options == MessageOptions()
    assert reply.recipient_options == {}
    only_success = RecipientOptions(("SUCCESS",))
    world.script('redirect "carol@elsewhere.example";')
    [(remote, _)] = world.step.decide_sync(ALICE, world.path, lambda user: world.folders,
                                           dsn=only_success).outgoing  # fmt: skip
    assert remote.recipient_options["carol@elsewhere.example"].notify == ("NEVER",)


def test_a_redirect_that_comes_back_is_a_loop_and_the_copy_is_kept(world):
    """RFC 5228 4.2: loop control. ``redirect`` to oneself (or round two users) resent the
    message for ever: 3,892 redirects in 10 s, and with ``:copy`` a copy each time."""
    world.script('require "copy"; redirect :copy "alice@example.test";')
    first = world.decide()
    assert first.mailboxes == ["INBOX"]
    [(_envelope, resent)] = first.outgoing
    again = world.decide(resent)  # it came back to alice
    assert again.mailboxes == ["INBOX"]
    assert [e.routes[0].user for e, _ in again.outgoing] == [ALICE]  # the notice, not a resend
    assert b"redirect loop" in again.outgoing[0][1]
    hops = b"".join(b"X-Sieve-Redirected-From: u%d@example.test\r\n" % n for n in range(10))
    world.script('redirect "bob@example.test";')
    assert world.decide(hops + MESSAGE).mailboxes == ["INBOX"]  # too many hops, whoever


@pytest.mark.parametrize("target", ["nosuch@example.test", "@example.test"])
def test_a_redirect_that_can_go_nowhere_keeps_the_copy(world, target):
    """It was dropped: no copy, no bounce, the implicit keep cancelled (RFC 5228 2.10.6)."""
    world.script(f'redirect "{target}"; redirect "bob@example.test";')
    decision = world.decide()
    assert decision.mailboxes == ["INBOX"]
    assert [e.routes[0].user for e, _ in decision.outgoing] == [BOB]


def test_reject_answers_the_sender_but_never_the_null_sender(world):
    world.script('require "reject"; reject "Not here.";')
    decision = world.decide()
    assert decision.mailboxes == []
    [(envelope, data)] = decision.outgoing
    assert envelope.sender is None and envelope.routes[0].user == BOB
    mdn = email.message_from_bytes(data)  # RFC 5429 2.1.1: an MDN (RFC 8098)
    assert mdn["Subject"] == "Rejected: [news] hello"
    assert mdn.get_content_type() == "multipart/report"
    assert mdn.get_param("report-type") == "disposition-notification"
    text, notification, original = mdn.get_payload()
    assert "Not here." in text.get_payload()
    fields = notification.get_payload()[0]
    assert fields["Disposition"] == "automatic-action/MDN-sent-automatically; deleted"
    assert fields["Final-Recipient"] == f"rfc822; {ALICE}"
    assert fields["Original-Message-ID"] == "<m1@example.test>"
    assert "Subject: [news] hello" in original.get_payload()
    null = MESSAGE.replace(b"<bob@example.test>", b"<>", 1)
    assert world.decide(null).outgoing == []


def test_vacation_replies_once_from_the_null_sender(world):
    world.script('require "vacation"; vacation :subject "Away" "Back soon.";')
    [(envelope, data)] = world.decide().outgoing
    assert envelope.sender is None and envelope.routes[0].user == BOB
    assert email.message_from_bytes(data)["Subject"] == "Away"
    decision = world.decide()
    assert decision.outgoing == [] and decision.mailboxes == ["INBOX"]


def test_decide_from_the_reactor_runs_in_the_pool(world):
    world.script('require "fileinto"; fileinto "Work";')
    with open(world.path, "wb") as f:
        f.write(MESSAGE)
    found = []
    world.step.decide(ALICE, world.path, lambda user: succeed(world.folders), False).addCallback(
        found.append
    )
    assert found[0].mailboxes == ["Work"]


def test_include_reads_the_users_and_the_global_scripts(world, tmp_path):
    world.scripts.put(ALICE, "work", 'require "fileinto"; fileinto "Work";')
    global_dir = tmp_path / "sieve" / "global"
    global_dir.mkdir(parents=True)
    (global_dir / "common.sieve").write_text('require "fileinto"; fileinto "Junk";')
    world.script('require "include"; include "work"; include :global "common";')
    assert world.decide().mailboxes == ["Work", "Junk"]
    world.script('require "include"; include :global "missing";')
    assert world.decide().mailboxes == ["INBOX"]  # a runtime error: kept in INBOX
    (global_dir / "common.sieve").write_text("not sieve")
    world.script('require "include"; include :global "common";')
    assert world.decide().mailboxes == ["INBOX"]


def test_flags_follow_each_copy_to_the_mailbox_it_really_goes_into(world):
    world.script(
        'require ["imap4flags", "fileinto", "copy"]; addflag "\\\\Flagged";'
        ' fileinto :copy :flags "\\\\seen $Label1" "Work";'
        ' fileinto :copy :flags "$Label2" "Nowhere";'  # missing: the copy goes to INBOX
    )
    decision = world.decide()
    assert decision.mailboxes == ["INBOX", "Work"]
    assert decision.flags == {
        "Work": {"\\Seen", "$Label1"},
        "INBOX": {"\\Flagged", "$Label2"},  # the implicit keep's and the fallback's: one copy
    }


def test_a_kept_copy_judged_spam_goes_to_junk_with_its_flags(world):
    world.script('require "imap4flags"; addflag "\\\\Seen";')
    decision = world.decide(junk=True)
    assert decision.mailboxes == ["Junk"] and decision.flags == {"Junk": {"\\Seen"}}


def test_a_failed_script_stores_no_flags(world):
    world.script('require "imap4flags"; addflag "\\\\Seen"; redirect "not an address";')
    decision = world.decide()
    assert decision.mailboxes == ["INBOX"] and decision.flags == {}


HOSTILE = (
    b"Return-Path: <bob@example.test>\r\nFrom: bob@example.test\r\nTo: alice@example.test\r\n"
    b"Subject: =?utf-8?q?hi=0D=0ABcc:_victim@example.net=00=E2=80=A8X-Sep:_1=C2=85X-Nel:_1?=\r\n"
    b"Message-ID: =?us-ascii?q?<m1@example.test>=0D=0AX-Injected:_yes=0D=0A=0D=0Abody?=\r\n"
    b"\r\nhi\r\n"
)


def _header_lines(data: bytes) -> list[bytes]:
    """The header section's lines, split on CR LF only, continuation lines included."""
    return data.partition(b"\r\n\r\n")[0].split(b"\r\n")


def _one_line_fields(data: bytes) -> None:
    """Every header line is a field or a fold, of printable ASCII (tab allowed)."""
    for line in _header_lines(data):
        assert line[:1] in (b" ", b"\t") or b":" in line, line
        assert all(0x20 <= octet < 0x7F or octet == 0x09 for octet in line), line
    assert not any(line.startswith((b"X-", b"Bcc")) for line in _header_lines(data))


def test_a_refusal_takes_no_field_from_a_hostile_original(world):
    """The decoded Subject (CR LF, NUL, U+2028, NEL) and an encoded Message-ID write
    nothing into the MDN's header; a Message-ID that isn't a msg-id isn't named."""
    world.script('require "reject"; reject "Not here.";')
    [(_envelope, data)] = world.decide(HOSTILE).outgoing
    _one_line_fields(data)
    mdn = email.message_from_bytes(data)
    assert mdn["In-Reply-To"] is None
    assert "Original-Message-ID" not in data.decode("utf-8")
    assert str(email.header.make_header(email.header.decode_header(mdn["Subject"]))) == (
        "Rejected: hi Bcc: victim@example.net X-Sep: 1 X-Nel: 1"
    )


def test_a_vacation_subject_and_from_taken_by_variables_stay_one_line(world):
    world.script(
        'require ["vacation", "variables"]; if header :matches "subject" "*" { set "s" "${1}"; }'
        ' vacation :subject "Re: ${s}" :from "${s} <alice@example.test>" "Away.";'
    )
    [(_envelope, data)] = world.decide(HOSTILE).outgoing
    _one_line_fields(data)
    reply = email.message_from_bytes(data)
    assert reply["In-Reply-To"] is None and reply["References"] is None
    assert reply.get_payload() == "Away.\r\n"


def test_an_original_whose_subject_is_not_utf8_is_answered_and_refused(world):
    latin1 = MESSAGE.replace(b"[news] hello", b"caf\xe9")
    world.script('require "vacation"; vacation "Away.";')
    [(_envelope, reply)] = world.decide(latin1).outgoing
    assert b"\r\nSubject: =?utf-8?" in reply and b"\r\nIn-Reply-To: <m1@example.test>\r\n" in reply
    world.script('require "reject"; reject "Not here.";')
    [(_envelope, mdn)] = world.decide(latin1).outgoing
    assert b"\r\nSubject: =?utf-8?" in mdn
