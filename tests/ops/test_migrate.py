"""Reading Dovecot's and Postfix's files for ``txmailhost migrate``."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from passlib.hash import ldap_salted_sha512

from txmailhost.accounts import syscrypt
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.passwords import verify_password
from txmailhost.cli import main
from txmailhost.ops.mailbox_admin import result_of
from txmailhost.ops.migrate import (
    UidListError,
    folder_name,
    messages_of,
    read_alias_map,
    read_keywords,
    read_uidlist,
)
from txmailhost.ops.sourcefiles import RegularFileSource, SourceFileError
from txmailhost.store.maildir import MaildirStore

DOMAIN = "audit.test"
PASSWORD_HASH = ldap_salted_sha512.hash("old-password")


def maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    return path


def test_uidlist_version_3_and_keywords_give_uids_and_flags(tmp_path: Path) -> None:
    box = maildir(tmp_path / "box")
    (box / "dovecot-uidlist").write_text(
        "3 V1700000000 N12 G0123456789abcdef\n"
        "4 W120 S118 :1700000001.M1P1.host,S=118,W=120\n"
        "9 :1700000002.M2P1.host\n"
    )
    (box / "dovecot-keywords").write_text("0 $Important\n1 Customer\n")
    (box / "cur" / "1700000001.M1P1.host,S=118,W=120:2,RSb").write_bytes(b"Subject: a\n\nx\n")
    (box / "cur" / "1700000002.M2P1.host:2,Fa").write_bytes(b"Subject: b\n\ny\n")
    (box / "new" / "1700000003.M3P1.host").write_bytes(b"Subject: c\n\nz\n")  # no UID yet
    uidlist = read_uidlist(str(box), [])
    assert (uidlist.uidvalidity, uidlist.uidnext) == (1700000000, 12)
    assert read_keywords(str(box), []) == {"a": "$Important", "b": "Customer"}
    validity, uidnext, messages = messages_of(str(box), uidlist, [])
    assert validity == 1700000000 and uidnext == 13
    assert [(m.uid, sorted(m.flags)) for m in messages] == [
        (4, ["Customer", "\\Answered", "\\Seen"]),
        (9, ["$Important", "\\Flagged"]),
        (12, []),
    ]
    assert messages[2].source.read() == b"Subject: c\n\nz\n"


def test_uidlist_version_3_records_above_the_header_next_uid_are_kept(tmp_path: Path) -> None:
    """What Dovecot 2.3 leaves after one APPEND to a new folder: it adds the record without
    rewriting the header."""
    (tmp_path / "dovecot-uidlist").write_text("3 V1796552043 N1 Gd008\n1 :1796552042.M3P2.vm\n")
    uidlist = read_uidlist(str(tmp_path), [])
    assert (uidlist.uidvalidity, uidlist.uidnext, uidlist.uids) == (
        1796552043, 2, {"1796552042.M3P2.vm": 1},
    )  # fmt: skip


def test_uidlist_version_1(tmp_path: Path) -> None:
    box = maildir(tmp_path / "old")
    (box / "dovecot-uidlist").write_text("1 1100000000 5\n2 1100000001.M1.host\n")
    uidlist = read_uidlist(str(box), [])
    assert (uidlist.uidvalidity, uidlist.uidnext, uidlist.uids) == (
        1100000000, 5, {"1100000001.M1.host": 2},
    )  # fmt: skip
    assert read_uidlist(str(tmp_path), []) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3 V0 N5\n", r"uidlist:1: UIDVALIDITY '0' is not a number from 1 to 4294967295"),
        ("3 V1700000000 N4294967299\n", r":1: UIDNEXT '4294967299' is not a number from 1 "),
        ("3 V-5 N-3\n", r":1: UIDVALIDITY '-5' is not"),
        ("3 Vabc Nxyz\n", r":1: UIDVALIDITY 'abc' is not"),
        ("3 V\u00b2 N5\n", r":1: UIDVALIDITY '\u00b2' is not"),
        ("3 N5\n", r":1: UIDVALIDITY missing is not"),
        ("3 V1700000000\n", r":1: UIDNEXT missing is not"),
        ("1 1700000000 0\n", r":1: UIDNEXT '0' is not"),
        ("3 V1700000000 N9\n3 :a\n3 :b\n", r"uidlist:3: UID 3 listed twice"),
        ("1 1700000000 9\n9 a\n", r"uidlist:2: UID 9 not from 1 to 8"),
        (
            "3 V1700000000 N9\n4294967295 :a\n",
            r"uidlist:2: UID 4294967295 not from 1 to 4294967294",
        ),
        ("3 V1700000000 N9\n0 :a\n", r"uidlist:2: UID 0 not from 1 to 4294967294"),
    ],
)
def test_a_uidlist_with_numbers_imap_cant_serve_is_refused_naming_file_and_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "dovecot-uidlist").write_text(text)
    with pytest.raises(UidListError, match=problem):
        read_uidlist(str(tmp_path), [])


class Site:
    """A data directory serving ``audit.test``, and a Dovecot source tree beside it:
    ``src/audit.test/USER`` Maildirs and the passwd-file ``passwd``."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = str(tmp_path / "data")
        self.root = tmp_path / "src"
        self.passwd = tmp_path / "passwd"
        assert main(["--data", self.data, "init", "--hostname", f"mx.{DOMAIN}"]) == 0
        assert main(["--data", self.data, "domain", "add", DOMAIN]) == 0

    def maildir(self, user: str, folder: str = "") -> Path:
        """The user's Maildir (``folder``: a Maildir++ folder of it, ``.Name``)."""
        path = self.root / DOMAIN / user / folder
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def users(self, *users: str) -> None:
        self.passwd.write_text("".join(f"{u}@{DOMAIN}:{PASSWORD_HASH}::::\n" for u in users))

    def command(self, before: str = "") -> list[str]:
        """``txmailhost migrate dovecot`` in its own process (``before``: Python to run
        first): a hang fails the test, and a test may kill it."""
        run = f"import sys\n{before}\nfrom txmailhost.cli import main\nsys.exit(main(sys.argv[1:]))"
        return [sys.executable, "-c", run, "--data", self.data, "migrate", "dovecot",
                "--passwd-file", str(self.passwd), "--maildir-root", str(self.root)]  # fmt: skip

    def migrate(self, timeout: float = 60, before: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(before), capture_output=True, text=True, timeout=timeout)

    def mail(self, user: str) -> dict[str, tuple[int, dict[int, bytes]]]:
        """Per mailbox of the migrated user: UIDVALIDITY and each UID's octets."""
        store = MaildirStore(os.path.join(self.data, "mail"))
        out = {}
        for name in result_of(store.list_mailboxes(f"{user}@{DOMAIN}")):
            mailbox = result_of(store.open(f"{user}@{DOMAIN}", name))
            snapshot = result_of(mailbox.snapshot())
            out[name] = (snapshot.uidvalidity, {
                m.uid: result_of(mailbox.open_message(m.uid)).read() for m in snapshot.messages
            })  # fmt: skip
        return out


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_links_fifos_and_directories_in_a_maildir_are_skipped_and_reported(
    site: Site, tmp_path: Path
) -> None:
    user1 = site.maildir("user1")
    (user1 / "cur" / "1700000000.M1P1.host:2,S").write_bytes(b"Subject: one\n\nuser1's\n")
    user2 = site.maildir("user2")
    (user2 / "new" / "1700000001.M2P2.host").write_bytes(b"Subject: two\n\nuser2's\n")
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret\n")
    stolen = user2 / "cur" / "1700000000.M9P9.host:2,S"
    stolen.symlink_to(secret)
    (user2 / ".Stolen").symlink_to(user1)
    os.mkfifo(user2 / "cur" / "1700000002.M3P3.host")
    (user2 / "cur" / "1700000003.M4P4.host").mkdir()
    os.mkfifo(user2 / "dovecot-keywords")
    (user2 / ".Also").mkdir()
    (user2 / ".Also" / "cur").symlink_to(user1 / "cur")
    (user2 / ".Also" / "new").mkdir()
    site.users("user1", "user2")

    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert f"  skipped {stolen}: a symbolic link (not followed)" in result.stdout
    assert f"  skipped {user2 / '.Stolen'}: a symbolic link (not followed)" in result.stdout
    assert f"  skipped {user2 / '.Also' / 'cur'}: a symbolic link (not followed)" in result.stdout
    assert f"  skipped {user2 / 'cur' / '1700000002.M3P3.host'}: a FIFO" in result.stdout
    assert f"  skipped {user2 / 'cur' / '1700000003.M4P4.host'}: a directory" in result.stdout
    assert f"  skipped {user2 / 'dovecot-keywords'}: a FIFO" in result.stdout
    mail = site.mail("user2")
    assert "Stolen" not in mail
    assert list(mail["INBOX"][1].values()) == [b"Subject: two\r\n\r\nuser2's\r\n"]
    assert mail["Also"][1] == {}
    assert list(site.mail("user1")["INBOX"][1].values()) == [b"Subject: one\r\n\r\nuser1's\r\n"]


@pytest.mark.parametrize(
    ("layout", "options"),
    [
        # mail_location = maildir:~/Maildir, homes /var/vmail/%d/%n, none in the passwd-file
        ("{root}/{domain}/{user}/Maildir", []),
        ("{root}/{user}/Maildir", []),  # one domain: homes /var/vmail/%n
        ("{root}/{domain}/{user}/Maildir", ["--mail-location", "maildir:{root}/%d/%n/Maildir"]),
    ],
)
def test_a_maildir_in_a_maildir_subfolder_of_the_users_directory_is_found_and_reported(
    site: Site, layout: str, options: list[str]
) -> None:
    """Dovecot's common ``mail_location = maildir:~/Maildir`` with homes under the Maildir
    root: the user's mail was not found (``DIR/DOMAIN/USER/Maildir`` was never tried) and
    the account moved in empty without a word. The report says which path was taken."""
    path = Path(layout.format(root=site.root, domain=DOMAIN, user="alice"))
    maildir(path)
    (path / "cur" / "1700000000.M1P1.host:2,S").write_bytes(b"Subject: one\n\nalice's\n")
    (path.parent / "notes").mkdir()  # the home's other directories are no mail
    site.users("alice")
    command = site.command()
    if options:
        command = command[: command.index("--maildir-root")]
        command += [o.format(root=site.root) for o in options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"  Maildir {path}\n" in result.stdout
    assert list(site.mail("alice")["INBOX"][1].values()) == [b"Subject: one\r\n\r\nalice's\r\n"]


def test_a_directory_without_cur_is_not_taken_for_a_maildir_and_the_places_are_reported(
    site: Site,
) -> None:
    home = site.root / DOMAIN / "alice"
    (home / "Maildir" / "new").mkdir(parents=True)  # no cur/: no Maildir, as for Dovecot
    site.users("alice")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert "  Maildir " not in result.stdout
    assert f"  skipped no Maildir (a directory with cur/) in {home}, {home / 'Maildir'}, " in (
        result.stdout
    )


def test_a_link_as_the_users_own_maildir_is_not_followed(site: Site, tmp_path: Path) -> None:
    other = site.maildir("user1")
    (other / "cur" / "1700000000.M1P1.host:2,S").write_bytes(b"Subject: one\n\nuser1's\n")
    home = tmp_path / "home" / "user2"
    home.mkdir(parents=True)
    (home / "Maildir").symlink_to(other)
    site.passwd.write_text(f"user2@{DOMAIN}:{PASSWORD_HASH}:1000:1000::{home}::\n")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert f"  skipped {home / 'Maildir'}: a symbolic link (not followed)" in result.stdout
    assert site.mail("user2")["INBOX"][1] == {}


def test_a_bad_uidlist_gives_its_folder_new_uids_and_the_run_goes_on(site: Site) -> None:
    """Dovecot's ``3 V0 N4294967299`` made UIDNEXT 4294967299 (the next delivery's UID broke
    SELECT); ``3 Vabc Nxyz`` stopped the run at this user; a UID listed twice left the
    files in the INBOX under fresh UIDs and stopped the run."""
    headers = {"user1": "3 V0 N4294967299", "user2": "3 Vabc Nxyz", "user3": "3 V1700000000 N9"}
    for user, header in headers.items():
        box = site.maildir(user)
        for n in (1, 2):
            (box / "cur" / f"170000000{n}.M{n}P1.host:2,S").write_bytes(b"Subject: %d\n\n" % n)
        (box / "dovecot-uidlist").write_text(
            f"{header}\n3 :1700000001.M1P1.host\n3 :1700000002.M2P1.host\n"
        )
    site.users("user1", "user2", "user3", "user4")
    site.maildir("user4")

    result = site.migrate()
    assert result.returncode == 0, result.stderr
    uidlist = site.root / DOMAIN / "{}" / "dovecot-uidlist"
    for user, problem in [
        ("user1", ":1: UIDVALIDITY '0' is not a number from 1 to 4294967295"),
        ("user2", ":1: UIDVALIDITY 'abc' is not a number from 1 to 4294967295"),
        ("user3", ":3: UID 3 listed twice"),
    ]:
        assert f"    {str(uidlist).format(user)}{problem}\n" in result.stdout
        validity, messages = site.mail(user)["INBOX"]
        assert 1 <= validity < 2**32 and sorted(messages) == [1, 2]
        status = MaildirStore(os.path.join(site.data, "mail"))
        inbox = result_of(status.open(f"{user}@{DOMAIN}", "INBOX"))
        assert result_of(inbox.status()).uidnext == 3
    assert result.stdout.count("new UIDs, as the dovecot-uidlist's can't be kept:") == 3
    assert f"user4@{DOMAIN}: account created" in result.stdout


def test_a_user_that_fails_is_reported_with_the_file_and_the_others_move_in(
    site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for user in ("user1", "user2", "user3"):
        box = site.maildir(user)
        (box / "cur" / "1700000001.M1P1.host:2,S").write_bytes(b"Subject: hello\n\n")
    site.users("user1", "user2", "user3")
    unreadable = str(site.root / DOMAIN / "user2" / "cur" / "1700000001.M1P1.host:2,S")
    from txmailhost.store import restore

    stage = restore._stage

    def refuse_user2(directory: str, source: object) -> tuple[str, int]:
        if "user2" in directory:  # what a non-root migration meets in a 0600 file of root's
            raise PermissionError(errno.EACCES, "Permission denied", unreadable)
        return stage(directory, source)

    monkeypatch.setattr(restore, "_stage", refuse_user2)
    capsys.readouterr()
    code = main(["--data", site.data, "migrate", "dovecot", "--passwd-file", str(site.passwd),
                 "--maildir-root", str(site.root)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert f"skipped user2@{DOMAIN}: {unreadable}: Permission denied\n" in out
    assert f"user3@{DOMAIN}: account created\n" in out
    assert len(site.mail("user3")["INBOX"][1]) == 1


def fill(site: Site, user: str, folders: dict[str, int]) -> None:
    """A Dovecot Maildir: per folder ('' for INBOX) that many messages, all in its uidlist."""
    for folder, count in folders.items():
        box = site.maildir(user, folder)
        names = [f"17{n:08d}.M{n}P1.host" for n in range(1, count + 1)]
        for n, name in enumerate(names, 1):
            (box / "cur" / f"{name}:2,S").write_bytes(b"Subject: %d\n\n%s\n" % (n, folder.encode()))
        uids = "".join(f"{n} :{name}\n" for n, name in enumerate(names, 1))
        (box / "dovecot-uidlist").write_text(f"3 V17000{len(folder):05d} N{count + 1}\n{uids}")


def test_migrating_again_changes_nothing_and_brings_what_came_since(site: Site) -> None:
    """The second run put every message in again under new UIDs ("new UIDs (the mailbox
    held mail)"): 6,000 messages in an INBOX of 3,000."""
    fill(site, "user1", {"": 3, ".Work": 2})
    site.users("user1")
    assert site.migrate().returncode == 0
    before = site.mail("user1")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert "  INBOX: 0 message(s) added, 3 there already, UIDVALIDITY 1700000000, UIDs kept\n" in (
        result.stdout
    )
    assert "  Work: 0 message(s) added, 2 there already, UIDVALIDITY 1700000005, UIDs kept\n" in (
        result.stdout
    )
    assert site.mail("user1") == before
    work = site.maildir("user1", ".Work")
    (work / "new" / "1800000000.M9P1.host").write_bytes(b"Subject: later\n\n")
    result = site.migrate()
    assert "  Work: 1 message(s) added, 2 there already, UIDVALIDITY 1700000005" in result.stdout
    assert site.mail("user1")["Work"][1][3] == b"Subject: later\r\n\r\n"


# Dies (as kill -9 would) once a folder's files are linked into the mailbox, before the
# index transaction that names them commits.
_DIE_AFTER_LINKING = """
import os
from txmailhost import _safeio
real = _safeio.fsync_dirs
def fsync_then_die(paths):
    real(paths)
    os._exit(137)
_safeio.fsync_dirs = fsync_then_die
"""


@pytest.mark.parametrize("reconciled", [False, True], ids=["rerun", "server-first"])
def test_a_run_killed_while_linking_a_folder_finishes_without_duplicates(
    site: Site, reconciled: bool
) -> None:
    """The files linked before the kill were taken by the next look at the mailbox (the
    re-run's, or the running server's) for mail of their own, under fresh UIDs and the
    mailbox's own UIDVALIDITY: the re-run then added every message again."""
    fill(site, "user1", {"": 3, ".Work": 4})
    site.users("user1")
    assert site.migrate(before=_DIE_AFTER_LINKING).returncode == 137
    if reconciled:  # what a session of the running server does when it opens the mailbox
        store = MaildirStore(os.path.join(site.data, "mail"))
        for name in result_of(store.list_mailboxes(f"user1@{DOMAIN}")):
            result_of(result_of(store.open(f"user1@{DOMAIN}", name)).snapshot())
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    mail = site.mail("user1")
    assert mail["INBOX"] == (1700000000, {n: b"Subject: %d\r\n\r\n\r\n" % n for n in (1, 2, 3)})
    assert mail["Work"] == (
        1700000005, {n: b"Subject: %d\r\n\r\n.Work\r\n" % n for n in (1, 2, 3, 4)}
    )  # fmt: skip
    leftovers = site.migrate()
    assert "0 message(s) added, 3 there already" in leftovers.stdout


@pytest.mark.slow
def test_a_migration_killed_again_and_again_finishes_with_each_message_once(site: Site) -> None:
    """kill -9 at moments further and further into the run (each run starts over, the
    folders done before kept), until one run finishes by itself: the mailboxes are what one
    uninterrupted run makes."""
    fill(site, "user1", {"": 150, ".Work": 150, ".Lists": 150})
    fill(site, "user2", {"": 150})
    site.users("user1", "user2")
    delay, kills = 0.3, 0
    while True:
        process = subprocess.Popen(site.command(), stdout=subprocess.DEVNULL)
        try:
            if process.wait(timeout=delay) == 0:
                break
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
        delay += 0.15
    assert kills >= 3  # or the run is too quick to be cut where it matters
    for user, folders in (("user1", ("", ".Work", ".Lists")), ("user2", ("",))):
        mail = site.mail(user)
        for folder in folders:
            body = folder.encode()
            expected = {n: b"Subject: %d\r\n\r\n%s\r\n" % (n, body) for n in range(1, 151)}
            assert mail[folder[1:] or "INBOX"] == (1700000000 + len(folder), expected), folder
    again = site.migrate()
    assert again.stdout.count(" 0 message(s) added, 150 there already") == 4


def test_a_passwd_file_listing_a_user_twice_is_refused(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.passwd.write_text(
        f"user1@{DOMAIN}:{PASSWORD_HASH}::::\n# the same user again\n"
        f"USER1@{DOMAIN}:{{SSHA}}other::::\n"
    )
    result = site.migrate()
    assert result.returncode == 1
    assert f"{site.passwd}:3: user1@{DOMAIN} is listed again (first on line 1)" in result.stderr
    capsys.readouterr()
    assert main(["--data", site.data, "user", "list"]) == 0
    assert f"user1@{DOMAIN}" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("levels", "name"),
    [
        (["Caf&AOk-"], "Café"),
        (["Lists", "&ZeVnLIqe-"], "Lists/日本語"),
        (["Café"], "Café"),
        (["R&D"], "R&D"),
        (["&AOk"], "&AOk"),  # Twisted decodes it, but it isn't modified UTF-7
        (["a&-b"], "a&b"),
        (["Latin\udce9"], None),
    ],
)
def test_folder_levels_are_read_as_modified_utf7_when_valid_else_as_utf8(
    levels: list[str], name: str | None
) -> None:
    assert folder_name(levels) == name


def test_folder_names_in_modified_utf7_or_utf8_come_over_and_others_are_reported(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """``.Café`` (Dovecot's UTF-8 layout) stopped the run with "'ascii' codec can't
    encode", the user half migrated."""
    home = site.maildir("user1")
    for folder in (".Caf&AOk-", ".Ümlaut.Sub", ".R&D", ".Bad..Name"):
        box = site.maildir("user1", folder)
        (box / "new" / "1700000001.M1P1.host").write_bytes(b"Subject: %s\n\n" % folder.encode())
    undecodable = os.fsencode(home) + b"/.Latin\xe9"
    for sub in (b"", b"/cur", b"/new"):
        os.mkdir(undecodable + sub)
    (home / "subscriptions").write_text("V\t2\n\nCaf&AOk-\nÜmlaut\tSub\nR&D\n")
    site.users("user1")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert f"  skipped {home}/.Latin\\xe9: a name neither modified UTF-7 nor UTF-8" in result.stdout
    assert f"  skipped {home}/.Bad..Name: invalid mailbox name: 'Bad//Name'" in result.stdout
    mail = site.mail("user1")
    assert mail["Café"][1] == {1: b"Subject: .Caf&AOk-\r\n\r\n"}
    assert mail["Ümlaut/Sub"][1] == {1: b"Subject: .\xc3\x9cmlaut.Sub\r\n\r\n"}
    assert mail["R&D"][1] == {1: b"Subject: .R&D\r\n\r\n"}
    capsys.readouterr()
    assert main(["--data", site.data, "mailbox", "list", f"user1@{DOMAIN}", "--json"]) == 0
    listed = {box["name"]: box["subscribed"] for box in json.loads(capsys.readouterr().out)}
    assert listed["Café"] and listed["Ümlaut/Sub"] and listed["R&D"]


def test_a_user_whose_hash_no_login_can_match_is_skipped_with_the_reason(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """``{SHA512-CRYPT}garbage`` and the like made "account created": an account nobody
    could ever log in to."""
    site.passwd.write_text(
        f"user1@{DOMAIN}:{{SHA512-CRYPT}}garbage::::\n"
        f"user2@{DOMAIN}:{{BLF-CRYPT}}$2y$05$short::::\n"
        f"user3@{DOMAIN}:{{SSHA}}!!!notbase64::::\n"
        f"user4@{DOMAIN}:{{SSHA512}}::::\n"
        f"user5@{DOMAIN}:$1$abc$garbage::::\n"
        f"user6@{DOMAIN}:{PASSWORD_HASH}::::\n"
    )
    result = site.migrate()
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for n, problem in enumerate(
        [
            "malformed {SHA512-CRYPT} hash: not a valid sha512_crypt hash",
            "malformed {BLF-CRYPT} hash: salt too small (bcrypt requires exactly 22 chars)",
            "malformed {SSHA} hash: not a valid ldap_salted_sha1 hash",
            "malformed {SSHA512} hash: not a valid ldap_salted_sha512 hash",
            "malformed {CRYPT} hash: malformed md5_crypt hash (checksum must be exactly 22 chars)",
        ],
        1,
    ):
        assert lines[n - 1] == f"skipped user{n}@{DOMAIN}: {site.passwd}:{n}: {problem}"
    assert lines[5] == f"user6@{DOMAIN}: account created"
    capsys.readouterr()
    assert main(["--data", site.data, "user", "list"]) == 0
    assert capsys.readouterr().out.split() == [f"user6@{DOMAIN}"]


# What Debian 11+ writes to /etc/shadow, a passwd-file made of it holds it bare (no {CRYPT}).
YESCRYPT = "$y$j9T$abcdefghijklmnop$WjvwQB2C.KNsE109LdgVCPWCss7LT5yAszlk0F.FUo2"  # old-secret-1


@pytest.mark.skipif(syscrypt.problem(YESCRYPT) is not None, reason="no libxcrypt here")
def test_system_users_with_yescrypt_hashes_move_in_and_keep_their_passwords(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users of a Dovecot that logged system users in (PAM) were all skipped on Debian 11
    and later, whose shadow file holds yescrypt: now only a hash that can't match is."""
    site.passwd.write_text(
        f"user1@{DOMAIN}:{YESCRYPT}:1000:1000::::\n"
        f"user2@{DOMAIN}:{{CRYPT}}{YESCRYPT}::::\n"
        f"user3@{DOMAIN}:$y$j9T$salt$short::::\n"
    )
    for user in ("user1", "user2", "user3"):
        site.maildir(user)
    result = site.migrate()
    lines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert lines == [
        f"user1@{DOMAIN}: account created", f"user2@{DOMAIN}: account created",
        f"skipped user3@{DOMAIN}: {site.passwd}:3: malformed {{CRYPT}} hash: "
        "not $y$PARAMS$SALT$HASH in crypt's base64 alphabet",
    ], result.stdout  # fmt: skip
    accounts = AccountsDB(os.path.join(site.data, "accounts.sqlite"))
    for user in ("user1", "user2"):
        stored = accounts.password_hash(f"{user}@{DOMAIN}")
        assert stored == "{CRYPT}" + YESCRYPT
        assert verify_password("old-secret-1", stored)
        assert not verify_password("old-password", stored)


def test_a_file_that_is_not_utf8_is_named_with_its_line(site: Site, tmp_path: Path) -> None:
    site.passwd.write_bytes(f"user1@{DOMAIN}:{PASSWORD_HASH}::::\n".encode() + b"j\xffrg::::\n")
    result = site.migrate()
    assert result.returncode == 1
    assert (
        result.stderr == f"txmailhost: error: {site.passwd}:2: not UTF-8 (byte 0xff at column 2)\n"
    )
    virtual = tmp_path / "virtual"
    virtual.write_bytes(b"# aliases\ninfo@audit.test  j\xe9rg@audit.test\n")
    command = site.command()
    aliases = [*command[: command.index("migrate")], "migrate", "postfix-aliases", str(virtual)]
    result = subprocess.run(aliases, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"txmailhost: error: {virtual}:2: not UTF-8 (byte 0xe9 at column 19)\n"


def test_postfix_alias_map_with_comments_and_continuations(tmp_path: Path) -> None:
    source = tmp_path / "virtual"
    source.write_text(
        "# virtual_alias_maps\n"
        "info@example.test   alice@example.test, bob@example.test\n"
        "sales@example.test  alice@example.test\n"
        "    carol@elsewhere.test\n"
        "\n"
    )
    assert read_alias_map(str(source)) == [
        ("info@example.test", ["alice@example.test", "bob@example.test"]),
        ("sales@example.test", ["alice@example.test", "carol@elsewhere.test"]),
    ]


def _alias_map(tmp_path: Path, capsys, content: str | bytes) -> tuple[str, Path]:
    """A data directory serving example.test, and a Postfix alias map holding ``content``."""
    data = str(tmp_path / "data")
    assert main(["--data", data, "init", "--hostname", "mx.example.test"]) == 0
    assert main(["--data", data, "domain", "add", "example.test"]) == 0
    source = tmp_path / "virtual"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content)
    capsys.readouterr()
    return data, source


def test_migrate_postfix_aliases_adds_them(tmp_path: Path, capsys) -> None:
    data, source = _alias_map(
        tmp_path, capsys, "info@example.test  someone@elsewhere.test\nbad@other.test x@y.test\n"
    )
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "info@example.test -> someone@elsewhere.test"
    assert out[1].startswith("bad@other.test -> x@y.test: skipped: ")
    assert main(["--data", data, "alias", "list"]) == 0
    assert "info@example.test" in capsys.readouterr().out


def test_migrate_postfix_aliases_exits_1_when_an_entry_is_skipped_0_when_all_are_there(
    tmp_path: Path, capsys
) -> None:
    """As ``migrate dovecot`` exits 1 when a user failed: a script running the migration
    learns from the exit status that part of the map didn't come in (it exited 0). A map
    brought in whole exits 0, and so does a second run of it (the aliases are there)."""
    data, source = _alias_map(tmp_path, capsys, "bad@other.test x@y.test\n")
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 1
    source.write_text("info@example.test someone@elsewhere.test\n")
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 0
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 0
    capsys.readouterr()
    assert main(["--data", data, "migrate", "postfix-aliases", "--json", str(source)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["added"] is True


def test_an_alias_of_the_map_closing_a_loop_is_skipped_and_the_rest_added(
    tmp_path: Path, capsys
) -> None:
    """The check ``alias add`` runs: l2 -> l1 after l1 -> l2 would have the server refuse mail
    for both with 550 5.4.6; it is reported and left out, the next line still comes in."""
    data, source = _alias_map(
        tmp_path,
        capsys,
        "l1@example.test l2@example.test\n"
        "l2@example.test l1@example.test\n"
        "info@example.test someone@elsewhere.test\n",
    )
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "l2@example.test -> l1@example.test: skipped: mail for l2@example.test would loop "
        "(l2@example.test -> l1@example.test -> l2@example.test); nothing was changed"
    )
    assert main(["--data", data, "alias", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "info@example.test -> someone@elsewhere.test",
        "l1@example.test -> l2@example.test",
    ]


def test_an_alias_map_line_separated_by_a_tab_comes_in(tmp_path: Path, capsys) -> None:
    """postmap's key ends at any white space; a tab-separated line was one key without a
    value, dropped without a word."""
    data, source = _alias_map(
        tmp_path, capsys, "info@example.test\tsomeone@elsewhere.test,\tother@elsewhere.test\n"
    )
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 0
    assert capsys.readouterr().out == (
        "info@example.test -> someone@elsewhere.test, other@elsewhere.test\n"
    )
    assert main(["--data", data, "alias", "list"]) == 0
    assert capsys.readouterr().out == (
        "info@example.test -> other@elsewhere.test, someone@elsewhere.test\n"
    )


def test_an_alias_map_key_without_a_target_is_refused_with_its_line_and_nothing_added(
    tmp_path: Path, capsys
) -> None:
    data, source = _alias_map(
        tmp_path, capsys, "info@example.test someone@elsewhere.test\n# x\nsales@example.test\n"
    )
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 1
    assert capsys.readouterr().err == (
        f"txmailhost: error: {source}:3: 'sales@example.test' has no target "
        "(expected 'alias target, target')\n"
    )
    assert main(["--data", data, "alias", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_control_characters_of_an_alias_map_are_shown_escaped_in_the_report(
    tmp_path: Path, capsys
) -> None:
    """An escape sequence in the file must not drive the administrator's terminal."""
    data, source = _alias_map(tmp_path, capsys, b"a@example.test \x1b]0;owned\x07@elsewhere.test\n")
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert out.startswith("a@example.test -> \\x1b]0;owned\\x07@elsewhere.test: skipped: ")


@pytest.mark.parametrize("command", ["dovecot", "postfix-aliases"])
def test_a_line_longer_than_any_real_one_is_refused_before_it_is_read_whole(
    tmp_path: Path, command: str
) -> None:
    """One 2 GB line was read into memory and its first field repeated in the error."""
    site = Site(tmp_path)
    site.passwd.write_bytes(b"#\n" + b"a" * 5_000_000 + b"@audit.test:{PLAIN}x\n")
    run = site.command()
    if command == "postfix-aliases":
        run = [*run[: run.index("migrate")], "migrate", "postfix-aliases", str(site.passwd)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"txmailhost: error: {site.passwd}:2: longer than 65536 octets\n"


def test_a_passwd_file_user_longer_than_an_address_is_refused_in_a_short_line(
    site: Site,
) -> None:
    site.passwd.write_text("b" * 3000 + f"@{DOMAIN}:{PASSWORD_HASH}::::\n")
    result = site.migrate()
    assert result.returncode == 1
    assert result.stderr == (
        f"txmailhost: error: {site.passwd}:1: user {'b' * 80!r}... is longer than an "
        "address can be (254 octets)\n"
    )


@pytest.mark.parametrize("folder", [".INBOX", ".inbox", ".InBox"])
def test_a_folder_named_inbox_is_skipped_not_appended_to_inbox_on_every_run(
    site: Site, folder: str
) -> None:
    """INBOX is the Maildir itself; a ``.INBOX`` folder was restored into it too, its mail
    appended under new UIDs (the mailbox held mail) again on every run."""
    user = site.maildir("user1")
    (user / "cur" / "1700000000.M1P1.host:2,S").write_bytes(b"Subject: one\n\nreal\n")
    odd = site.maildir("user1", folder)
    (odd / "cur" / "1700000001.M2P2.host:2,S").write_bytes(b"Subject: two\n\nodd\n")
    site.users("user1")
    for _run in (1, 2):
        result = site.migrate()
        assert result.returncode == 0, result.stderr
        assert f"  skipped {odd}: a folder named INBOX beside the Maildir's own" in (
            result.stdout.splitlines()
        )
    mail = site.mail("user1")
    assert list(mail["INBOX"][1].values()) == [b"Subject: one\r\n\r\nreal\r\n"]


def test_a_dovecot_keyword_imap_cant_carry_is_left_out_and_reported(site: Site) -> None:
    """``1 a b (x`` became the keyword "a b (x", written as it was into ``FETCH FLAGS``;
    the message keeps its other flags, the user and the folder still come over."""
    user = site.maildir("user1")
    (user / "dovecot-keywords").write_text(
        "0 $Important\n1 a b (x\n2 \\Bogus\n\u00b2 Other\n" + "9" * 5000 + " Long\n"
    )  # "²" and 5,000 digits: int() raised on both
    (user / "cur" / "1700000000.M1P1.host:2,Sabc").write_bytes(b"Subject: one\n\nx\n")
    site.users("user1")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    keywords = user / "dovecot-keywords"
    assert f"  skipped {keywords}:2: keyword 'a b (x' is not an IMAP keyword" in result.stdout
    assert f"  skipped {keywords}:3: keyword '\\\\Bogus' is not an IMAP keyword" in result.stdout
    store = MaildirStore(os.path.join(site.data, "mail"))
    inbox = result_of(store.open(f"user1@{DOMAIN}", "INBOX"))
    [message] = result_of(inbox.snapshot()).messages
    assert sorted(message.flags) == ["$Important", "\\Seen"]


def test_control_characters_in_a_folder_name_are_shown_escaped_in_the_report(
    site: Site,
) -> None:
    """The Maildir's owner names its folders: ``.a<LF>  INBOX: ...`` wrote a line of its
    making into the administrator's report, ``\\x1b[...`` drove the terminal."""
    user = site.maildir("user1")
    odd = site.maildir("user1", ".a\n  INBOX: 9 message(s)\x1b[2J")
    site.users("user1")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert [line for line in result.stdout.splitlines() if "INBOX: 9" in line] == [
        f"  skipped {user}/.a\\n  INBOX: 9 message(s)\\x1b[2J: invalid mailbox name: "
        "'a\\n  INBOX: 9 message(s)\\x1b[2J'"
    ]
    assert odd.is_dir()


def test_flag_letters_are_read_from_a_file_name_as_dovecot_reads_them(tmp_path: Path) -> None:
    """Dovecot takes the letters after the last ``:`` when it is ``:2,``, up to the next
    ``,`` (maildir-filename.c); the first ``:2,`` and everything after it gave ``x:2,S:2,T``
    \\Seen and \\Deleted, and ``x:2,F,ab`` the keywords of ``a`` and ``b`` too."""
    box = maildir(tmp_path / "box")
    (box / "dovecot-uidlist").write_text("3 V1700000000 N9\n4 :1.a\n5 :2.b\n6 :3.c\n")
    (box / "dovecot-keywords").write_text("0 $Important\n1 Customer\n")
    (box / "cur" / "1.a:2,S:2,T").write_bytes(b"Subject: a\n\nx\n")
    (box / "cur" / "2.b:2,F,ab").write_bytes(b"Subject: b\n\ny\n")
    (box / "cur" / "3.c:2,Sa:1,").write_bytes(b"Subject: c\n\nz\n")
    _validity, _uidnext, messages = messages_of(str(box), read_uidlist(str(box), []), [])
    assert [(m.uid, sorted(m.flags)) for m in messages] == [
        (4, ["\\Deleted"]),
        (5, ["\\Flagged"]),
        (6, []),
    ]


def test_a_huge_dovecot_uidlist_is_skipped_unread_and_the_folder_gets_new_uids(
    site: Site,
) -> None:
    """The Maildir's owner can make ``dovecot-uidlist`` a sparse file of any size: it was
    read into memory whole (and decoded, and split)."""
    user = site.maildir("user1")
    (user / "cur" / "1700000000.M1P1.host:2,S").write_bytes(b"Subject: one\n\nx\n")
    with open(user / "dovecot-uidlist", "wb") as f:
        f.truncate(256 * 1024 * 1024 + 1)
    site.users("user1")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert f"  skipped {user / 'dovecot-uidlist'}: larger than 268435456 bytes" in (
        result.stdout.splitlines()
    )
    assert list(site.mail("user1")["INBOX"][1].values()) == [b"Subject: one\r\n\r\nx\r\n"]


def test_two_folders_whose_names_decode_alike_are_not_merged_into_one_mailbox(
    site: Site,
) -> None:
    """``.Caf&AOk-`` (modified UTF-7) and ``.Café`` (UTF-8) are both ``Café``: the second was
    appended into the first's mailbox under new UIDs, again on every run."""
    site.maildir("user1")
    for folder in (".Caf&AOk-", ".Café"):
        box = site.maildir("user1", folder)
        (box / "cur" / "1700000001.M1P1.host:2,S").write_bytes(b"Subject: %s\n\n" % folder.encode())
    site.users("user1")
    for _run in (1, 2):
        result = site.migrate()
        assert result.returncode == 0, result.stderr
    user = site.root / DOMAIN / "user1"
    assert (
        f"  skipped {user / '.Café'}: the same mailbox name as {user / '.Caf&AOk-'} ('Café')"
        in result.stdout.splitlines()
    )
    assert site.mail("user1")["Café"][1] == {1: b"Subject: .Caf&AOk-\r\n\r\n"}


def _peak_rss_at_exit() -> str:
    """Python for ``Site.command(before=)``: the process prints its peak RSS (KiB) last.
    ``VmHWM`` of /proc, the peak of this process's own memory: ``ru_maxrss`` keeps the peak
    of the process it was forked from (the kernel carries it over ``exec``), so under
    ``pytest -n 2`` late in a run it said 226 MiB, the forking test worker's size."""
    return ("import atexit, sys\n"
            "def _peak():\n"
            "    with open('/proc/self/status') as f:\n"
            "        kib = next(l.split()[1] for l in f if l.startswith('VmHWM'))\n"
            "    print('maxrss', kib, file=sys.stderr)\n"
            "atexit.register(_peak)")  # fmt: skip


def test_a_message_file_above_the_servers_message_size_is_skipped_and_reported(
    site: Site,
) -> None:
    """A sparse file of 10 GiB in a user's Maildir was copied into the store (10 GiB written
    out) although SMTP and IMAP APPEND refuse a message over 50 MiB: above the larger of
    ``[smtp] max_message_size`` and ``[imap] max_literal_size`` it is left out, unread,
    and named in the report; the folder's other mail comes over under its UIDs."""
    box = site.maildir("alice")
    huge = box / "cur" / "1700000001.M1P1.host:2,S"
    with open(huge, "wb") as f:
        f.truncate(10 * 2**30)
    (box / "cur" / "1700000002.M2P1.host:2,S").write_bytes(b"Subject: small\n\nhello\n")
    (box / "dovecot-uidlist").write_text(
        "3 V1700000000 N3\n1 :1700000001.M1P1.host\n2 :1700000002.M2P1.host\n"
    )
    site.users("alice")
    result = site.migrate()
    assert result.returncode == 0, result.stderr
    assert (
        f"  skipped {huge}: 10737418240 bytes, larger than the 52428800 copied "
        "(--max-message-size)\n"
    ) in result.stdout
    validity, messages = site.mail("alice")["INBOX"]
    assert validity == 1700000000
    assert messages == {2: b"Subject: small\r\n\r\nhello\r\n"}


def test_a_large_sparse_message_copied_with_no_limit_is_streamed_not_read_into_memory(
    site: Site,
) -> None:
    """``--max-message-size 0`` copies whatever size; the file goes to the store in pieces,
    so a 256 MiB message costs the process far less than 256 MiB."""
    box = site.maildir("alice")
    big = box / "cur" / "1700000001.M1P1.host:2,S"
    with open(big, "wb") as f:
        f.write(b"Subject: big\n\n")
        f.truncate(256 * 2**20)
    site.users("alice")
    command = [*site.command(_peak_rss_at_exit()), "--max-message-size", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stdout
    peak_kib = int(result.stderr.split("maxrss")[-1])
    assert peak_kib < 200 * 1024, peak_kib
    store = MaildirStore(os.path.join(site.data, "mail"))
    inbox = result_of(store.open(f"alice@{DOMAIN}", "INBOX"))
    sizes = [m.size for m in result_of(inbox.snapshot()).messages]
    assert sizes == [256 * 2**20 + 2]  # its two bare LFs are served as CRLF


def test_a_message_file_that_grows_after_it_was_listed_is_not_read_past_its_size(
    tmp_path: Path,
) -> None:
    """The size judged (``--max-message-size``) is the size read: a file its owner makes
    grow between the look and the copy is refused, not copied at its new size."""
    path = tmp_path / "1700000001.M1P1.host"
    path.write_bytes(b"Subject: small\n\n")
    source = RegularFileSource(str(path), os.lstat(path))
    with open(path, "ab") as f:
        f.write(b"x" * 100_000)
    with pytest.raises(SourceFileError, match="changed while being read"), source.open() as f:
        while f.read(1 << 20):
            pass
    path.write_bytes(b"Subject: small\n\n")
    with RegularFileSource(str(path), os.lstat(path)).open() as f:
        assert f.read() == b"Subject: small\n\n"
