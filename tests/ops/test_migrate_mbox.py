"""``txmailhost migrate dovecot --mail-location mbox:...``: users whose mail is in mbox files
(``/var/mail/USER`` and ``~/mail``) move in with their UIDs, flags, keywords and folders."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ops.test_migrate import DOMAIN, PASSWORD_HASH
from txmailhost.cli import main
from txmailhost.ops.mailbox_admin import AdminError, result_of
from txmailhost.ops.mbox_tree import MailLocation
from txmailhost.store.maildir import MaildirStore

INBOX_FILE = (
    b"From alice@example.org  Sat Dec  5 09:30:01 2026\n"
    b"Return-Path: <alice@example.org>\n"
    b"Subject: first\n"
    b"X-IMAPbase: 1700000000 0000000009 $Important Customer\n"
    b"X-UID: 3\n"
    b"Status: RO\n"
    b"X-Status: A\n"
    b"X-Keywords: $Important\n"
    b"Content-Length: 33\n"
    b"\n"
    b">From the start.\n"
    b"second line\n"
    b"\n"
    b"\n"
    b"From bob@example.org Sat Dec  5 10:00:00 2026 +0100\n"
    b"Subject: second\n"
    b"X-UID: 7\n"
    b"Status: O\n"
    b"X-Status: FT\n"
    b"X-Keywords: Customer a(b \x1b[2J\n"
    b"\n"
    b"two\n"
    b"\n"
    b"From carol@example.org  Sat Dec  5 11:00:00 2026\n"
    b"Subject: new since Dovecot\n"
    b"\n"
    b"three\n"
    b"\n"
)


class Site:
    """A data directory serving ``audit.test``; users' homes (``home/USER/mail``), their
    INBOX files (``spool/USER``) and the passwd-file beside it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data = str(tmp_path / "data")
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        assert main(["--data", self.data, "init", "--hostname", f"mx.{DOMAIN}"]) == 0
        assert main(["--data", self.data, "domain", "add", DOMAIN]) == 0
        self.passwd = tmp_path / "passwd"

    def home(self, user: str) -> Path:
        """The user's ``~/mail``, made."""
        path = self.tmp / "home" / user / "mail"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def users(self, *users: str) -> None:
        self.passwd.write_text("".join(
            f"{u}@{DOMAIN}:{PASSWORD_HASH}:1000:1000::{self.tmp / 'home' / u}::\n" for u in users
        ))  # fmt: skip

    def migrate(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--data", self.data, "migrate", "dovecot", "--passwd-file",
                     str(self.passwd), "--mail-location",
                     f"mbox:~/mail:INBOX={self.spool}/%n", *extra])  # fmt: skip
        return code, capsys.readouterr().out

    def mail(self, user: str) -> dict[str, tuple[int, int, dict[int, tuple]]]:
        """Per mailbox: UIDVALIDITY, UIDNEXT, and per UID (flags, INTERNALDATE, octets)."""
        store = MaildirStore(os.path.join(self.data, "mail"))
        out = {}
        for name in result_of(store.list_mailboxes(f"{user}@{DOMAIN}")):
            box = result_of(store.open(f"{user}@{DOMAIN}", name))
            snapshot = result_of(box.snapshot())
            status = result_of(box.status())
            out[name] = (snapshot.uidvalidity, status.uidnext, {
                m.uid: (sorted(m.flags), m.internaldate,
                        result_of(box.open_message(m.uid)).read())
                for m in snapshot.messages
            })  # fmt: skip
        return out


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_an_mbox_inbox_keeps_uids_flags_keywords_and_dates(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (site.spool / "carol").write_bytes(INBOX_FILE)
    site.users("carol")
    code, out = site.migrate(capsys)
    assert code == 0, out
    inbox = site.spool / "carol"
    assert out.splitlines() == [
        f"carol@{DOMAIN}: account created",
        "  INBOX: 3 message(s), UIDVALIDITY 1700000000, UIDs kept",
        f"    {inbox}: 1 message(s) without a usable X-UID got new UIDs",
        f"    {inbox}: message at octet 257: keyword 'a(b' is not an IMAP keyword",
        f"    {inbox}: message at octet 257: keyword '\\x1b[2J' is not an IMAP keyword",
    ]
    validity, uidnext, messages = site.mail("carol")["INBOX"]
    assert (validity, uidnext) == (1700000000, 11)
    assert messages == {
        3: (
            ["$Important", "\\Answered", "\\Seen"],
            time.mktime((2026, 12, 5, 9, 30, 1, 0, 0, -1)),
            b"Return-Path: <alice@example.org>\r\nSubject: first\r\n\r\n"
            b">From the start.\r\nsecond line\r\n\r\n",
        ),
        7: (
            ["Customer", "\\Draft", "\\Flagged"],
            calendar.timegm((2026, 12, 5, 9, 0, 0)),
            b"Subject: second\r\n\r\ntwo\r\n",
        ),
        10: ([], time.mktime((2026, 12, 5, 11, 0, 0, 0, 0, -1)),
             b"Subject: new since Dovecot\r\n\r\nthree\r\n"),
    }  # fmt: skip


def test_uw_imaps_pseudo_message_is_left_out_and_its_numbers_kept(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (site.spool / "carol").write_bytes(
        b"From MAILER-DAEMON Sat Dec  5 09:00:00 2026\n"
        b"Date: Sat, 5 Dec 2026 09:00:00 +0000\n"
        b"From: Mail System Internal Data <MAILER-DAEMON@mx>\n"
        b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
        b"X-IMAP: 1600000000 0000000004 Work\n"
        b"Status: RO\n"
        b"\n"
        b"This text is part of the internal format of your mail folder.\n"
        b"\n"
        b"From a@b Sat Dec  5 09:30:01 2026\nSubject: one\nX-UID: 4\nStatus: R\n\nx\n\n"
    )
    site.users("carol")
    code, out = site.migrate(capsys)
    assert code == 0, out
    validity, uidnext, messages = site.mail("carol")["INBOX"]
    assert (validity, uidnext, list(messages)) == (1600000000, 5, [4])
    assert messages[4][0] == ["\\Seen"] and messages[4][2] == b"Subject: one\r\n\r\nx\r\n"


def test_an_x_imapbase_imap_cant_serve_gives_new_uids_under_a_new_uidvalidity(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (site.spool / "carol").write_bytes(
        b"From a@b Sat Dec  5 09:30:01 2026\nSubject: one\nX-IMAPbase: 1700000000 99999999999\n"
        b"X-UID: 5\n\nx\n\nFrom a@b Sat Dec  5 09:30:02 2026\nSubject: two\nX-UID: 6\n\ny\n\n"
    )
    site.users("carol")
    code, out = site.migrate(capsys)
    assert code == 0, out
    inbox = site.spool / "carol"
    first = int(time.mktime((2026, 12, 5, 9, 30, 1, 0, 0, -1)))  # the first From line's date
    assert out.splitlines()[1:] == [
        f"  INBOX: 2 message(s), UIDVALIDITY {first}, new UIDs, as the X-IMAPbase's can't be kept:",
        f"    {inbox}: X-IMAPbase '1700000000 99999999999' is not a UIDVALIDITY and a last UID "
        "from 1 to 4294967295",
    ]
    validity, uidnext, messages = site.mail("carol")["INBOX"]
    assert validity != 1700000000 and list(messages) == [1, 2] and uidnext == 3


def test_a_folder_tree_comes_over_with_its_names_and_subscriptions(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    mail = site.home("carol")
    one = b"From a@b Sat Dec  5 09:30:01 2026\nSubject: %s\n\nx\n\n"
    (mail / "Work").write_bytes(one % b"work")
    (mail / "Lists").mkdir()
    (mail / "Lists" / "twisted").write_bytes(one % b"twisted")
    (mail / "Caf&AOk-").write_bytes(one % b"cafe")
    (mail / "Empty").write_bytes(b"")
    (mail / ".imap" / "INBOX").mkdir(parents=True)
    (mail / ".imap" / "INBOX" / "dovecot.index.log").write_bytes(b"\x00\x01binary")
    (mail / "dovecot.index.cache").write_bytes(b"\x00\x01binary")
    (mail / ".subscriptions").write_text("V\t2\n\nLists\ttwisted\nCaf&AOk-\n")
    site.users("carol")
    code, out = site.migrate(capsys)
    assert code == 0, out
    assert "skipped" not in out
    mail_here = site.mail("carol")
    assert mail_here["Work"][2][1][2] == b"Subject: work\r\n\r\nx\r\n"
    assert mail_here["Lists/twisted"][2][1][2] == b"Subject: twisted\r\n\r\nx\r\n"
    assert mail_here["Café"][2][1][2] == b"Subject: cafe\r\n\r\nx\r\n"
    assert mail_here["Empty"][2] == {} and mail_here["INBOX"][2] == {}
    assert "Lists" not in mail_here or mail_here["Lists"][2] == {}
    capsys.readouterr()
    assert main(["--data", site.data, "mailbox", "list", f"carol@{DOMAIN}", "--json"]) == 0
    listed = {box["name"]: box["subscribed"] for box in json.loads(capsys.readouterr().out)}
    assert listed["Lists/twisted"] and listed["Café"] and not listed["Work"]


def test_links_odd_files_odd_names_and_files_that_are_no_mbox_are_skipped_and_reported(
    site: Site, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mail = site.home("carol")
    one = b"From a@b Sat Dec  5 09:30:01 2026\nSubject: %s\n\nx\n\n"
    secret = tmp_path / "shadow"
    secret.write_bytes(b"From root Sat Dec  5 09:30:01 2026\n\nroot:$6$secret\n")
    (mail / "Stolen").symlink_to(secret)
    other = site.home("dave")
    (other / "Private").write_bytes(one % b"dave's")
    (mail / "Theirs").symlink_to(other)
    os.mkfifo(mail / "Pipe")
    (mail / "Caf&AOk-").write_bytes(one % b"utf7")
    (mail / "Café").write_bytes(one % b"utf8")
    (mail / "inbox").write_bytes(one % b"not the INBOX")
    (mail / "a\n  INBOX: 9 message(s)\x1b[2J").write_bytes(one % b"odd")
    (mail / "notes.txt").write_bytes(b"shopping list\n")
    (mail / "Good").write_bytes(one % b"good")
    (mail / "&AC4ALg-").write_bytes(one % b"dots")  # ".." and "/etc" in modified UTF-7:
    (mail / "&AC8-etc").write_bytes(one % b"slash")  # not its canonical form, so literal
    (site.spool / "carol").symlink_to(secret)
    site.users("carol")
    code, out = site.migrate(capsys)
    assert code == 0, out
    lines = out.splitlines()
    assert "\x1b" not in out
    for expected in [
        f"  skipped {site.spool / 'carol'}: a symbolic link (not followed)",
        f"  skipped {mail / 'Pipe'}: a FIFO",
        f"  skipped {mail / 'Stolen'}: a symbolic link (not followed)",
        f"  skipped {mail / 'Theirs'}: a symbolic link (not followed)",
        f"  skipped {mail / 'Café'}: the same mailbox name as {mail / 'Caf&AOk-'} ('Café')",
        f"  skipped {mail / 'inbox'}: a folder named INBOX beside the INBOX file",
        f"  skipped {mail / 'notes.txt'}: not an mbox (its first line is not a 'From ' line)",
        f"  skipped {mail}/a\\n  INBOX: 9 message(s)\\x1b[2J: invalid mailbox name: "
        "'a\\n  INBOX: 9 message(s)\\x1b[2J'",
    ]:
        assert expected in lines, (expected, lines)
    here = site.mail("carol")
    assert set(here) == {"INBOX", "Drafts", "Junk", "Sent", "Trash", "Café", "Good",
                         "&AC4ALg-", "&AC8-etc"}  # fmt: skip
    assert here["Café"][2][1][2] == b"Subject: utf7\r\n\r\nx\r\n"
    assert here["INBOX"][2] == {}


def test_home_mail_as_a_link_is_not_followed(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    other = site.home("dave")
    (other / "Private").write_bytes(b"From a@b Sat Dec  5 09:30:01 2026\n\nsecret\n\n")
    (other / ".subscriptions").write_text("Private\n")
    home = site.tmp / "home" / "carol"
    home.mkdir(parents=True)
    (home / "mail").symlink_to(other)
    site.users("carol")
    code, out = site.migrate(capsys)
    assert code == 0, out
    assert f"  skipped {home / 'mail'}: a symbolic link (not followed), not a directory of " in out
    assert "Private" not in site.mail("carol")


@pytest.mark.parametrize("with_base", [True, False], ids=["x-imapbase", "postfix-only"])
def test_migrating_again_adds_only_what_came_since(
    site: Site, capsys: pytest.CaptureFixture[str], with_base: bool
) -> None:
    content = INBOX_FILE if with_base else INBOX_FILE.replace(b"X-IMAPbase", b"X-Old")
    (site.spool / "carol").write_bytes(content)
    (site.home("carol") / "Work").write_bytes(b"From a@b Sat Dec  5 09:30:01 2026\n\nw\n\n")
    site.users("carol")
    assert site.migrate(capsys)[0] == 0
    before = site.mail("carol")
    code, out = site.migrate(capsys)
    assert code == 0
    assert "  INBOX: 0 message(s) added, 3 there already" in out
    assert "  Work: 0 message(s) added, 1 there already" in out
    assert site.mail("carol") == before
    with open(site.spool / "carol", "ab") as f:  # Postfix delivered one more
        f.write(b"From d@e Sat Dec  5 12:00:00 2026\nSubject: later\n\nlater\n\n")
    code, out = site.migrate(capsys)
    assert "  INBOX: 1 message(s) added, 3 there already" in out
    after = site.mail("carol")["INBOX"][2]
    assert len(after) == 4 and after[max(after)][2] == b"Subject: later\r\n\r\nlater\r\n"


def test_a_file_rewritten_during_the_run_leaves_its_mailbox_untouched(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dovecot expunged (rewrote the file) while the run copied it: the copy stops at the
    message whose From line moved, the user is reported, nothing of the folder is in the
    mailbox, and the next run brings it whole."""
    (site.spool / "carol").write_bytes(INBOX_FILE)
    (site.spool / "dave").write_bytes(INBOX_FILE)
    site.users("carol", "dave")
    from txmailhost.store import restore

    stage, staged = restore._stage, []

    def expunge_first_after_one(directory: str, source: object) -> tuple[str, int]:
        staged.append(source)
        if len(staged) == 2 and "carol" in directory:
            data = INBOX_FILE[INBOX_FILE.index(b"From bob") :].replace(
                b"X-UID: 7\n", b"X-IMAPbase: 1700000000 0000000009\nX-UID: 7\n"
            )  # as Dovecot expunges the first message: its X-IMAPbase goes to the next
            with open(site.spool / "carol", "r+b") as f:
                f.write(data)
                f.truncate(len(data))
        return stage(directory, source)

    monkeypatch.setattr(restore, "_stage", expunge_first_after_one)
    code, out = site.migrate(capsys)
    assert code == 1
    assert (
        f"skipped carol@{DOMAIN}: {site.spool / 'carol'}: changed while being read (no From "
        "line at octet 257 any more)"
    ) in out
    assert site.mail("carol")["INBOX"][2] == {}
    assert len(site.mail("dave")["INBOX"][2]) == 3
    monkeypatch.setattr(restore, "_stage", stage)
    code, out = site.migrate(capsys)
    assert code == 0 and sorted(site.mail("carol")["INBOX"][2]) == [7, 10]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--mail-location", "mdbox:~/mdbox"], "only mbox:ROOT[:INBOX=PATH] or maildir:PATH"),
        (["--mail-location", "maildir:~/Maildir:LAYOUT=fs"], "only the Maildir++ layout"),
        (["--mail-location", "maildir:~/Maildir:INBOX=~/in"], "INBOX=PATH is not read here"),
        (["--mail-location", "mbox:~/mail", "--maildir-root", "/x"], "one or the other"),
    ],
)
def test_mail_location_mistakes_are_refused(
    site: Site, capsys: pytest.CaptureFixture[str], options: list[str], error: str
) -> None:
    site.users("carol")
    capsys.readouterr()
    code = main(["--data", site.data, "migrate", "dovecot", "--passwd-file", str(site.passwd),
                 *options])  # fmt: skip
    assert code == 1
    assert error in capsys.readouterr().err


def test_without_inbox_in_the_location_the_roots_inbox_file_is_the_inbox(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mail_location = mbox:~/mail``: Dovecot's INBOX is ``~/mail/inbox``."""
    (site.home("carol") / "inbox").write_bytes(b"From a@b Sat Dec  5 09:30:01 2026\n\nin\n\n")
    (site.home("carol") / "INBOX").write_bytes(b"From a@b Sat Dec  5 09:30:01 2026\n\nIN\n\n")
    site.users("carol")
    capsys.readouterr()
    code = main(["--data", site.data, "migrate", "dovecot", "--passwd-file", str(site.passwd),
                 "--mail-location", "mbox:~/mail"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"  skipped {site.home('carol') / 'inbox'}: a folder named INBOX beside the " in out
    assert [m[2] for m in site.mail("carol")["INBOX"][2].values()] == [b"\r\nIN\r\n"]


def test_a_first_from_line_without_a_date_gives_the_same_numbers_on_every_run(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file's mtime, which every delivery changes, gave it a new INTERNALDATE on the next
    run: taken for another message, the whole folder was appended again."""
    path = site.spool / "carol"
    path.write_bytes(b"From MAILER-DAEMON\nSubject: a\n\na\n\n"
                     b"From b@c Sat Dec  5 09:30:01 2026 +0000\nSubject: b\n\nb\n\n")  # fmt: skip
    site.users("carol")
    assert site.migrate(capsys)[0] == 0
    with open(path, "ab") as f:
        f.write(b"From d@e Sat Dec  5 12:00:00 2026 +0000\nSubject: c\n\nc\n\n")
    os.utime(path, (2_000_000_000, 2_000_000_000))
    code, out = site.migrate(capsys)
    assert "  INBOX: 1 message(s) added, 2 there already, UIDVALIDITY 1796463001" in out
    validity, _uidnext, messages = site.mail("carol")["INBOX"]
    assert [(uid, m[1]) for uid, m in messages.items()] == [
        (1, 1796463001), (2, 1796463001), (3, 1796472000),
    ]  # fmt: skip


_DIE_AFTER_LINKING = """
import os
from txmailhost import _safeio
real = _safeio.fsync_dirs
def fsync_then_die(paths):
    real(paths)
    os._exit(137)
_safeio.fsync_dirs = fsync_then_die
"""


def test_a_run_killed_while_linking_finishes_without_duplicates(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (site.spool / "carol").write_bytes(INBOX_FILE)
    (site.home("carol") / "Work").write_bytes(b"From a@b Sat Dec  5 09:30:01 2026\n\nw\n\n")
    site.users("carol")
    run = (f"import sys\n{_DIE_AFTER_LINKING}\nfrom txmailhost.cli import main\n"
           "sys.exit(main(sys.argv[1:]))")  # fmt: skip
    killed = subprocess.run(
        [sys.executable, "-c", run, "--data", site.data, "migrate", "dovecot", "--passwd-file",
         str(site.passwd), "--mail-location", f"mbox:~/mail:INBOX={site.spool}/%n"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert killed.returncode == 137
    code, out = site.migrate(capsys)
    assert code == 0, out
    assert sorted(site.mail("carol")["INBOX"][2]) == [3, 7, 10]
    assert list(site.mail("carol")["Work"][2]) == [1]
    assert "  INBOX: 0 message(s) added, 3 there already" in site.migrate(capsys)[1]


@pytest.mark.parametrize("user", ["../etc/x", "a/b", ".."])
def test_a_user_name_that_would_climb_out_of_the_spool_is_refused(user: str) -> None:
    """The passwd-file's reader refuses such names already; the path is checked again
    where it is made, so that ``%n`` of ``../../etc/x`` can never read ``/etc/x``."""
    location = MailLocation.parse("mbox:~/mail:INBOX=/var/mail/%n")
    with pytest.raises(AdminError, match="%n would be .* in a path"):
        location.paths(user, f"{user or 'x'}@{DOMAIN}", "/home/x")
    assert location.paths("carol", f"carol@{DOMAIN}", "/home/carol") == (
        "/home/carol/mail", "/var/mail/carol",
    )  # fmt: skip


def test_an_mbox_message_above_the_message_size_is_left_out_and_reported(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for a Maildir's files: a message of an mbox larger than ``--max-message-size``
    (judged by its octets in the file, not read) is named in the report and left out; the
    messages around it come over under their UIDs."""
    big = b"From bob@example.org Sat Dec  5 10:00:00 2026\nSubject: big\n\n" + b"x" * 2000 + b"\n\n"
    small = b"From carol@example.org Sat Dec  5 11:00:00 2026\nSubject: small\n\nhi\n\n"
    (site.spool / "carol").write_bytes(small + big + small)
    site.users("carol")
    code, out = site.migrate(capsys, "--max-message-size", "1000")
    assert code == 0, out
    assert (
        f"  skipped {site.spool / 'carol'} (the message at octet {len(small)}): 2015 bytes, "
        "larger than the 1000 copied (--max-message-size)\n"
    ) in out
    messages = site.mail("carol")["INBOX"][2]
    assert sorted(messages) == [1, 3]
    assert all(b"Subject: small" in octets for _flags, _date, octets in messages.values())
