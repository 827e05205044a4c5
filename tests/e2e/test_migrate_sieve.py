"""Moving in from Dovecot brings the users' Sieve scripts and quotas: after ``migrate
dovecot`` (run with the server running), ManageSieve lists the scripts with the one that was
active, mail sent over SMTP is filed by the migrated rules, the migrated vacation script
answers, and IMAP GETQUOTAROOT shows the passwd-file's quota rule."""

from __future__ import annotations

import imaplib
import re

import pytest
from passlib.hash import ldap_salted_sha512
from sievelib.managesieve import Client

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_sieve import send, subjects
from tests.support.pigeonhole import DOVECOT_ONLY, FILING, VACATION, dovecot_home

pytestmark = [
    pytest.mark.slow,
    # Clear text on purpose: the server allows it from its own address (peer.PlaintextAuth).
    pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection"),
]

H = "127.0.0.1"
BOB, CAROL, DAVE = "bob@example.test", "carol@example.test", "dave@example.test"


@pytest.fixture
def moved_in(server, tmp_path):
    """carol (Pigeonhole's link to her filing rules, a script with a Dovecot-only extension
    and one with a hostile name; 1 GiB) and dave (a plain ``.dovecot.sieve`` vacation
    script) moved in from Dovecot homes, with the e2e users' password."""
    carol = dovecot_home(
        tmp_path / "home" / "carol",
        {"rules": FILING, "debug": DOVECOT_ONLY, "evil\x1b[2J\nname": "keep;\r\n"},
        active="rules",
    )
    dave = dovecot_home(tmp_path / "home" / "dave", {}, plain_active=VACATION)
    password_hash = ldap_salted_sha512.hash(PASSWORD)
    passwd = tmp_path / "passwd"
    passwd.write_text(
        f"{CAROL}:{password_hash}:5000:5000::{carol}::userdb_quota_rule=*:storage=1G\n"
        f"{DAVE}:{password_hash}:5000:5000::{dave}::\n"
    )
    result = server.cli("migrate", "dovecot", "--passwd-file", str(passwd))
    assert f"{CAROL}: account created" in result.stdout
    return result.stdout


def listing(server, user: str) -> tuple[str | None, list[str]]:
    """LISTSCRIPTS over ManageSieve: (the active script, the others)."""
    client = Client(H, server.ports["managesieve"])
    assert client.connect(user, PASSWORD, authmech="PLAIN"), client.errmsg
    active, others = client.listscripts()
    client.logout()
    return active, sorted(others)


def test_managesieve_lists_the_migrated_scripts_with_the_active_one(server, moved_in):
    assert listing(server, CAROL) == ("rules", ["debug", "evil_[2J_name"])
    assert listing(server, DAVE) == ("dovecot.orig", [])
    assert "our Sieve refuses it: line 1: unsupported extension 'vnd.dovecot.debug'" in moved_in


def test_mail_is_filed_by_the_migrated_rules(server, moved_in):
    send(server, BOB, CAROL, "[work] plan")
    send(server, BOB, CAROL, "lunch")
    assert subjects(server, CAROL, "Work", want=1) == ["[work] plan"]
    assert subjects(server, CAROL, want=1) == ["lunch"]


def test_the_migrated_vacation_script_answers(server, moved_in):
    send(server, BOB, DAVE, "are you there")
    assert subjects(server, DAVE, want=1) == ["are you there"]
    assert subjects(server, BOB, want=1) == ["Away"]


def test_imap_getquotaroot_shows_the_passwd_files_quota(server, moved_in):
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    imap.login(CAROL, PASSWORD)
    typ, data = imap.getquotaroot("INBOX")
    imap.logout()
    assert typ == "OK"
    quota = b" ".join(x for x in data[1] if isinstance(x, bytes))
    assert re.search(rb"\(STORAGE \d+ 1048576\)", quota), quota
