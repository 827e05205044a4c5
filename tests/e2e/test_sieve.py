"""Sieve end to end: scripts uploaded with real ManageSieve clients (sievelib, Debian's
sieve-connect) act on mail sent with smtplib and read with imaplib."""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import subprocess
import time

import pytest
from sievelib.managesieve import Client

from tests.e2e.conftest import PASSWORD, start_from_template

pytestmark = [
    pytest.mark.slow,
    # Clear text on purpose: the server allows it from its own address (peer.PlaintextAuth).
    pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection"),
]

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"


def upload(server, script: str, name: str = "main") -> Client:
    """Upload and activate ``script`` as alice with sievelib (PLAIN, loopback: no TLS needed)."""
    client = Client(H, server.ports["managesieve"])
    assert client.connect(ALICE, PASSWORD, authmech="PLAIN"), client.errmsg
    assert "vacation" in client.get_sieve_capabilities()
    assert client.putscript(name, script), client.errmsg
    assert client.setactive(name), client.errmsg
    return client


def send(server, sender: str, recipient: str, subject: str, extra: str = "") -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail(
            sender,
            [recipient],
            f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n{extra}\r\nhello\r\n",
        )


def subjects(server, user: str, mailbox: str = "INBOX", want: int = 0) -> list[str]:
    """The subjects in ``mailbox``, waiting up to 10 s for at least ``want`` of them."""
    fields = fetched(server, user, mailbox, want, "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    return [field.decode().split(":", 1)[1].strip() for field in fields]


def fetched(server, user: str, mailbox: str, want: int, item: str) -> list[bytes]:
    """``item`` of each message in ``mailbox``, waiting up to 10 s for at least ``want``."""
    deadline = time.time() + 10
    while True:
        imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
        imap.login(user, PASSWORD)
        found: list[bytes] = []
        typ, _ = imap.select(mailbox, readonly=True)
        if typ == "OK":
            _, data = imap.fetch("1:*", f"({item})")
            found = [part[1] for part in data if isinstance(part, tuple)]
        imap.logout()
        if len(found) >= want or time.time() > deadline:
            return found
        time.sleep(0.2)


def test_vacation_answers_a_sender_once_within_days(server):
    upload(server, 'require "vacation";\r\nvacation :days 1 :subject "Away" "I am away.";\r\n')
    for i in range(3):
        send(server, BOB, ALICE, f"hello {i}")
    assert subjects(server, ALICE, want=3) == ["hello 0", "hello 1", "hello 2"]
    assert subjects(server, BOB, want=1) == ["Away"]
    time.sleep(1)
    assert subjects(server, BOB) == ["Away"]
    # A list message is kept but not answered.
    send(server, "carol@example.test", ALICE, "list mail", "List-Id: <x.example.test>\r\n")
    assert "list mail" in subjects(server, ALICE, want=4)


def test_fileinto_create_redirect_copy_and_script_errors_keep_mail(server):
    script = """require ["fileinto", "mailbox", "copy", "variables"];
if header :matches "subject" "[*] *" {
    fileinto :create "${1}";
} elsif header :contains "subject" "share" {
    redirect :copy "bob@example.test";
} elsif header :contains "subject" "loop" {
    redirect "a@example.test"; redirect "b@example.test"; redirect "c@example.test";
    redirect "d@example.test"; redirect "e@example.test";
}
"""
    upload(server, script)
    send(server, "carol@example.test", ALICE, "[Lists] weekly")
    send(server, "carol@example.test", ALICE, "please share")
    send(server, "carol@example.test", ALICE, "loop me")  # more than 4 redirects: an error
    assert subjects(server, ALICE, "Lists", want=1) == ["[Lists] weekly"]
    assert sorted(subjects(server, ALICE, want=3)) == [
        'Your mail filter script "main" has a problem',  # told once about the error
        "loop me",
        "please share",
    ]
    assert subjects(server, BOB, want=1) == ["please share"]
    log = server.log()
    assert "more than 4 redirects" in log and "kept in INBOX" in log


def test_reject_sends_one_refusal_to_the_sender(server):
    upload(
        server, 'require "reject";\r\nif header :contains "subject" "spam" { reject "No."; }\r\n'
    )
    send(server, BOB, ALICE, "spam offer")
    send(server, BOB, ALICE, "real mail")
    assert subjects(server, ALICE, want=1) == ["real mail"]
    assert subjects(server, BOB, want=1) == ["Rejected: spam offer"]


def test_managesieve_with_sievelib_lists_gets_renames_deletes(server):
    client = upload(server, "keep;\r\n", "one")
    assert client.putscript("two", 'require "fileinto";\r\nfileinto "x";\r\n')
    assert not client.putscript("bad", "fileinto;\r\n")
    assert client.listscripts() == ("one", ["two"])
    # sievelib hands back the script's lines joined without their last line end
    assert client.getscript("two").splitlines() == ['require "fileinto";', 'fileinto "x";']
    assert client.havespace("big", 10 * 1024)
    assert not client.havespace("big", 10 * 1024 * 1024)
    assert not client.deletescript("one")  # active
    assert client.renamescript("two", "three")
    assert client.deletescript("three")
    assert client.checkscript("keep;")
    client.logout()


@pytest.mark.skipif(shutil.which("sieve-connect") is None, reason="sieve-connect not installed")
def test_sieve_connect_uploads_over_starttls_and_the_script_acts(server, tmp_path):
    script = tmp_path / "rules.sieve"
    script.write_text('require "fileinto";\nif header :contains "subject" "x" { discard; }\n')
    base = [
        "sieve-connect", "--server", H, "--port", str(server.ports["managesieve"]),
        "--user", ALICE, "--passwordfd", "0", "--notlsverify", "--noclearchan",
    ]  # fmt: skip

    def run(*args: str) -> str:
        done = subprocess.run(
            [*base, *args], input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("--upload", "--localsieve", str(script), "--remotesieve", "rules")
    run("--activate", "--remotesieve", "rules")
    assert "rules" in run("--list")
    send(server, BOB, ALICE, "x marks")
    send(server, BOB, ALICE, "kept")
    assert subjects(server, ALICE, want=1) == ["kept"]


FLAGS_SCRIPT = r"""require ["imap4flags", "fileinto", "mailbox", "variables"];
if header :contains "subject" "newsletter" {
    addflag "\\Seen";
}
if header :matches "subject" "boss: *" {
    fileinto :create :flags ["\\Flagged $Label1", "\\Seen"] "Boss";
    stop;
}
if header :contains "subject" "label" {
    setflag "tags" "$Label2 Urgent";
    keep :flags "${tags}";
}
"""


def flags_of(server, user: str, mailbox: str, want: int) -> dict[str, set[str]]:
    """Subject -> the flags IMAP FETCH FLAGS reports, waiting up to 10 s for ``want``
    messages; read-only (EXAMINE and BODY.PEEK): nothing here sets \\Seen."""
    deadline = time.time() + 10
    while True:
        imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
        imap.login(user, PASSWORD)
        found: dict[str, set[str]] = {}
        typ, _ = imap.select(mailbox, readonly=True)
        if typ == "OK":
            _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            for part in data:
                if isinstance(part, tuple):
                    subject = part[1].decode().split(":", 1)[1].strip()
                    listed = imaplib.ParseFlags(part[0]) or ()
                    found[subject] = {f.decode() for f in listed} - {"\\Recent"}
        imap.logout()
        if len(found) >= want or time.time() > deadline:
            return found


def check_flags_reach_the_mailboxes(server) -> None:
    client = upload(server, FLAGS_SCRIPT)
    assert "imap4flags" in client.get_sieve_capabilities()
    client.logout()
    send(server, BOB, ALICE, "weekly newsletter")
    send(server, BOB, ALICE, "boss: budget")
    send(server, BOB, ALICE, "a label please")
    send(server, BOB, ALICE, "plain mail")
    assert flags_of(server, ALICE, "INBOX", want=3) == {
        "weekly newsletter": {"\\Seen"},
        "a label please": {"$Label2", "Urgent"},
        "plain mail": set(),
    }
    assert flags_of(server, ALICE, "Boss", want=1) == {
        "boss: budget": {"\\Flagged", "\\Seen", "$Label1"}
    }
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX", readonly=True)
    assert imap.search(None, "UNSEEN")[1][0].split() == [b"2", b"3"]  # the newsletter is read
    assert imap.search(None, "KEYWORD", "$Label2")[1][0].split() == [b"2"]
    imap.logout()


def test_flags_set_by_a_script_are_what_imap_fetch_flags_shows(server):
    check_flags_reach_the_mailboxes(server)
    # The Maildir copy in Boss was linked into cur/ with its flags in its name.
    boss = os.path.join(server.data_dir, "mail", "example.test", "alice", ".Boss")
    (name,) = os.listdir(os.path.join(boss, "cur"))
    assert name.endswith(":2,FS") and os.listdir(os.path.join(boss, "new")) == []


def test_flags_set_by_a_script_reach_the_memory_store_too(server_template, tmp_path):
    proc = start_from_template(
        server_template, str(tmp_path / "data"), '[store]\nbackend = "memory"\n'
    )
    try:
        check_flags_reach_the_mailboxes(proc)
    finally:
        proc.stop()


def messages(server, user: str, want: int, mailbox: str = "INBOX") -> list[bytes]:
    """The whole messages in ``mailbox``, waiting up to 10 s for at least ``want`` of them."""
    return fetched(server, user, mailbox, want, "BODY.PEEK[]")


def test_vacation_reply_names_only_real_message_ids_of_a_hostile_original(server):
    """An encoded CR LF in the original's Message-ID or References (RFC 2047 decodes it)
    writes no field and no body into the reply sent as the user."""
    upload(server, 'require "vacation";\r\nvacation :days 1 "I am away.";\r\n')
    crlf = "=0D=0AX-Injected:_yes=0D=0AContent-Type:_text/html=0D=0A=0D=0A<h1>Reset</h1>=0D=0A"
    hostile = (
        f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: =?utf-8?q?hi=0D=0AX-Subject-Injected:_yes?=\r\n"
        f"Message-ID: =?us-ascii?Q?<x@evil.test>{crlf}?=\r\n"
        f"References: <r1@example.test> =?us-ascii?Q?<r2@evil.test>{crlf}?=\r\n"
        "\r\nare you there?\r\n"
    )
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail(BOB, [ALICE], hostile)
    [reply] = messages(server, BOB, want=1)
    head, _, body = reply.partition(b"\r\n\r\n")
    names = [line.partition(b":")[0].lower() for line in head.split(b"\r\n")]
    assert not [n for n in names if n.startswith(b"x-")] and names.count(b"content-type") == 1
    assert b"text/html" not in head and body == b"I am away.\r\n"
    assert b"in-reply-to" not in names  # the original has no msg-id to name
    assert b"\r\nReferences: <r1@example.test>\r\n" in head
    assert b"\r\nSubject: Auto: hi X-Subject-Injected: yes\r\n" in head


def test_vacation_answers_a_subject_that_is_not_utf8(server):
    """Octets of another charset in the Subject are no reason to lose the reply."""
    upload(server, 'require "vacation";\r\nvacation :days 1 "I am away.";\r\n')
    raw = (
        f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: caf\xe9\r\nMessage-ID: <c1@example.test>\r\n"
        "\r\nhello\r\n"
    ).encode("latin-1")
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail(BOB, [ALICE], raw)
    assert len(messages(server, ALICE, want=1)) == 1
    [reply] = messages(server, BOB, want=1)
    assert b"\r\nIn-Reply-To: <c1@example.test>\r\n" in reply


def send_raw(server, raw: bytes) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail(BOB, [ALICE], raw)


def test_a_date_past_the_year_9999_matches_nothing_and_the_rest_of_the_script_runs(server):
    """In UTC "31 Dec 9999 23:59:59 -1200" is in the year 10000, which Python can't hold:
    RFC 5260 4 makes the date test false, not the whole script an error."""
    upload(
        server,
        'require ["date", "relational", "fileinto"];\r\n'
        'if date :value "ge" "date" "year" "2000" { fileinto "Trash"; stop; }\r\n'
        'if header :contains "subject" "probe" { discard; }\r\n',
    )
    send_raw(server, b"From: bob@example.test\r\nSubject: probe\r\n"
                     b"Date: Sun, 31 Dec 9999 23:59:59 -1200\r\n\r\nhi\r\n")  # fmt: skip
    send(server, BOB, ALICE, "after")
    assert subjects(server, ALICE, want=1) == ["after"]  # discarded, and no notice
    log = server.log()
    assert "OverflowError" not in log and "kept in INBOX" not in log


def test_body_raw_of_a_message_nested_300_levels_is_searched(server):
    upload(server, 'require "body";\r\nif body :raw :contains "needle" { discard; }\r\n')
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(300)
    )
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(300)))
    send_raw(server, b"From: bob@example.test\r\nSubject: deep\r\n" + opening
             + b"Content-Type: text/plain\r\n\r\nneedle" + closing + b"\r\n")  # fmt: skip
    send(server, BOB, ALICE, "after")
    assert subjects(server, ALICE, want=1) == ["after"]
    assert "nested too deeply" not in server.log()


def test_spamtest_reads_our_filters_verdict_never_a_senders(server):
    """RFC 5235's tests read the fields our filters write, on top of our Received:. A user
    who submits mail (no filter scores it) with ``X-Spam-Status: Yes, score=50`` and
    ``X-Virus-Scanned`` of ours gets neither read: once Sieve took them."""
    upload(
        server,
        'require ["spamtest", "virustest", "relational", "comparator-i;ascii-numeric",'
        ' "fileinto", "mailbox"];\r\n'
        'if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto :create "Spam"; }\r\n'
        'elsif spamtest :value "ge" :comparator "i;ascii-numeric" "1" '
        '{ fileinto :create "Scored"; }\r\n'
        'elsif virustest "1" { fileinto :create "Scanned"; }\r\n',
    )
    forged = (
        "X-Spam-Status: Yes, score=50.0 required=5.0 tests=FORGED\r\n"
        "X-Virus-Scanned: clamd on mx.example.test\r\n"
    )
    with smtplib.SMTP(H, server.ports["submission"], timeout=10) as s:
        s.login(BOB, PASSWORD)
        s.sendmail(
            BOB,
            [ALICE],
            f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: submitted\r\n"
            f"Message-ID: <submitted@example.test>\r\n{forged}\r\nhello\r\n",
        )
    send(server, "carol@example.test", ALICE, "from outside", forged)  # the spam filter scores it
    assert subjects(server, ALICE, "Scored", want=1) == ["from outside"]
    assert subjects(server, ALICE, want=1) == ["submitted"]
    assert subjects(server, ALICE, "Spam") == [] and subjects(server, ALICE, "Scanned") == []


def test_a_mailbox_name_made_of_octets_that_are_not_utf8_keeps_the_mail_in_inbox(server):
    """``fileinto "${2}-${1}"`` of ``From: <Tom\\xe1?@football.example.com>``: the name holds
    an octet that is no UTF-8 (a surrogate escape here). Pigeonhole fails the script and
    keeps the message; so must we, and the log must not choke on the name."""
    upload(
        server,
        'require ["fileinto", "variables", "mailbox"];\r\n'
        'if address :matches "from" "*@*" { fileinto :create "${2}-${1}"; }\r\n',
    )
    send_raw(server, b"From: Tom\xe1? <Tom\xe1?@football.example.com>\r\nSubject: dinner\r\n"
                     b"\r\nhi\r\n")  # fmt: skip
    send(server, BOB, ALICE, "after")
    assert sorted(subjects(server, ALICE, want=2)) == ["after", "dinner"]
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    typ, listed = imap.list()
    imap.logout()
    assert typ == "OK" and not any(b"football" in line for line in listed), listed
    log = server.log()
    assert "Traceback" not in log
    # the event is in twistd's log too, the octet written as such (not lost to an error)
    assert "football.example.com-Tom\\xe1?" in log
