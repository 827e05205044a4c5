"""``txmailhost who`` and ``kick`` against the running server, through its control socket."""

from __future__ import annotations

import base64
import json
import os
import poplib
import smtplib
import socket
import stat

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.web import Browser

pytestmark = pytest.mark.slow
H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"


def test_who_lists_logged_in_sessions_and_kick_closes_them(server):
    imap = socket.create_connection((H, server.ports["imap"]), timeout=10)
    reader = imap.makefile("rb")
    reader.readline()  # greeting
    imap.sendall(f'a LOGIN {ALICE} "{PASSWORD}"\r\n'.encode())
    while not reader.readline().startswith(b"a OK"):
        pass
    pop = poplib.POP3(H, server.ports["pop3"])
    pop.user(BOB)
    pop.pass_(PASSWORD)
    anonymous = smtplib.SMTP(H, server.ports["smtp"])
    anonymous.ehlo("client.test")

    sessions = json.loads(server.cli("who", "--json").stdout)
    mine = {(s["user"], s["protocol"], s["listener"]) for s in sessions}
    assert (ALICE, "imap", "imap") in mine and (BOB, "pop3", "pop3") in mine
    assert (None, "smtp", "smtp") in mine
    assert all(s["client"] == H and s["tls"] is False for s in sessions)
    text = server.cli("who", "--user", ALICE).stdout.splitlines()
    assert len(text) == 2 and text[1].split()[:3] == [ALICE, "imap", "imap"]

    assert server.cli("kick", ALICE).stdout == f"kicked 1 session(s) of {ALICE}\n"
    assert reader.readline() == b"* BYE [UNAVAILABLE] disconnected by the administrator\r\n"
    assert reader.readline() == b""  # and closed
    imap.close()
    pop.noop()  # bob's session is untouched
    assert server.cli("kick", "nobody@example.test", check=False).returncode == 1
    pop.quit()
    anonymous.quit()
    socket_mode = os.stat(os.path.join(server.data_dir, "run", "control.sock")).st_mode
    assert stat.S_IMODE(socket_mode) == 0o600


def test_who_says_when_the_server_is_not_running(server):
    server.stop()
    result = server.cli("who", check=False)
    assert result.returncode == 1
    assert "the server is not running" in result.stderr


def pop3_session(server, user: str):
    """A logged-in POP3 session on a raw socket: (socket, its reader)."""
    sock = socket.create_connection((H, server.ports["pop3"]), timeout=10)
    reader = sock.makefile("rb")
    reader.readline()  # greeting
    sock.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\n".encode())
    assert reader.readline().startswith(b"+OK")
    assert reader.readline().startswith(b"+OK")
    return sock, reader


KICKED = b"-ERR [SYS/PERM] disconnected by the administrator\r\n"


def test_user_del_ends_the_users_sessions_before_its_mail_goes(server):
    """Such a session once lived on: its next RETR got "-ERR [SYS/TEMP] internal error" and
    the log a sqlite3 traceback (the mailbox's index was gone)."""
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("x@remote.test", [BOB], b"Subject: x\r\n\r\nbody\r\n")
    sock, reader = pop3_session(server, BOB)
    other = poplib.POP3(H, server.ports["pop3"])
    other.user(ALICE)
    other.pass_(PASSWORD)

    out = server.cli("user", "del", BOB, "--purge").stdout
    assert out == f"removed user {BOB} and deleted its mail; ended 1 open session(s)\n"
    assert reader.readline() == KICKED
    assert reader.readline() == b""  # and closed
    sock.close()
    other.noop()  # alice's session is untouched
    other.quit()
    assert "Traceback" not in server.log() and "internal error" not in server.log()


def test_domain_del_ends_the_sessions_of_every_user_it_removes(server):
    sessions = [pop3_session(server, user) for user in (ALICE, BOB)]
    out = server.cli("domain", "del", "example.test", "--force", "--purge").stdout
    assert out == (
        "removed domain example.test and its 2 user(s) (their mail was deleted);"
        " ended 2 open session(s)\n"
    )
    for sock, reader in sessions:
        assert (reader.readline(), reader.readline()) == (KICKED, b"")
        sock.close()
    assert "Traceback" not in server.log()


def managesieve_session(server, user: str):
    """A logged-in ManageSieve session on a raw socket (PLAIN: loopback needs no TLS):
    (socket, its reader)."""
    sock = socket.create_connection((H, server.ports["managesieve"]), timeout=10)
    reader = sock.makefile("rb")
    while not reader.readline().startswith(b"OK"):  # the capabilities, then OK
        pass
    plain = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    sock.sendall(f'AUTHENTICATE "PLAIN" "{plain}"\r\n'.encode())
    assert reader.readline().startswith(b"OK")
    return sock, reader


def webmail_session(server, user: str) -> Browser:
    browser = Browser(server.ports["web"])
    assert browser.login(user, PASSWORD).url == "/mail"
    return browser


def signed_out(browser: Browser) -> bool:
    """The browser's session cookie no longer opens the mail page: it is sent to log in."""
    page = browser.get("/mail", follow=False)
    return (page.status, page.header("Location")) == (303, "/login")


SIEVE_KICKED = b'BYE "disconnected by the administrator"\r\n'


def test_kick_ends_managesieve_and_webmail_sessions_and_who_lists_them(server):
    sieve, reader = managesieve_session(server, ALICE)
    browser = webmail_session(server, ALICE)
    bobs = webmail_session(server, BOB)

    sessions = json.loads(server.cli("who", "--json", "--user", ALICE).stdout)
    assert sorted((s["protocol"], s["listener"], s["tls"]) for s in sessions) == [
        ("managesieve", "managesieve", False),
        ("web", "web", True),
    ]
    assert all(s["user"] == ALICE and s["client"] == H for s in sessions)

    assert server.cli("kick", ALICE).stdout == f"kicked 2 session(s) of {ALICE}\n"
    assert reader.readline() == SIEVE_KICKED
    assert reader.readline() == b""  # and closed
    sieve.close()
    assert signed_out(browser)
    assert not signed_out(bobs)  # bob's session is untouched
    assert json.loads(server.cli("who", "--json", "--user", ALICE).stdout) == []


def test_user_del_ends_the_users_managesieve_and_webmail_sessions(server):
    sieve, reader = managesieve_session(server, BOB)
    browser = webmail_session(server, BOB)

    out = server.cli("user", "del", BOB).stdout
    assert out.endswith("; ended 2 open session(s)\n")
    assert (reader.readline(), reader.readline()) == (SIEVE_KICKED, b"")
    sieve.close()
    assert signed_out(browser)
    assert "Traceback" not in server.log()


def test_a_removed_users_webmail_cookie_stops_working_without_a_kick(server):
    """The control socket can't always be reached (another node of a PostgreSQL cluster
    removed the user, or the CLI ran as a user who can't open it): the webmail checks
    that the account still exists on each request."""
    browser = webmail_session(server, BOB)
    sock = os.path.join(server.data_dir, "run", "control.sock")
    os.rename(sock, sock + ".away")  # user del now finds no server to ask
    try:
        assert server.cli("user", "del", BOB).stdout == f"removed user {BOB} (mail kept in " + (
            f"{os.path.join(server.data_dir, 'mail', 'example.test', 'bob')})\n"
        )
    finally:
        os.rename(sock + ".away", sock)
    assert signed_out(browser)
    assert browser.login(BOB, PASSWORD).status == 401


def test_user_passwd_logs_the_users_browsers_out_and_leaves_imap_connected(server):
    """A browser's cookie stayed logged in with the old password, for days (the webmail's
    own password change logged the other browsers out; the CLI's didn't)."""
    browser = webmail_session(server, ALICE)
    bobs = webmail_session(server, BOB)
    sieve, reader = managesieve_session(server, ALICE)
    try:
        out = server.cli("user", "passwd", ALICE, "--password-file", "-", stdin="new-pass-9\n")
        assert out.stdout == f"changed the password of {ALICE}; ended 1 webmail session(s)\n"
        assert signed_out(browser) and not signed_out(bobs)
        sieve.sendall(b"NOOP\r\n")  # connections stay, as Dovecot's do
        assert reader.readline().startswith(b"OK")
        assert browser.login(ALICE, "new-pass-9").url == "/mail"
    finally:
        sieve.close()
        server.cli("user", "passwd", ALICE, "--password-file", "-", stdin=PASSWORD + "\n")


def test_a_cookie_dies_with_its_password_and_its_account_even_unasked(server):
    """With the control socket out of reach, a password changed from the CLI (or on
    another node) left the browser logged in, and an account removed and made again
    under the same address took the old cookie back."""
    sock = os.path.join(server.data_dir, "run", "control.sock")
    changed = webmail_session(server, ALICE)
    recreated = webmail_session(server, BOB)
    os.rename(sock, sock + ".away")
    try:
        server.cli("user", "passwd", ALICE, "--password-file", "-", stdin="new-pass-9\n")
        server.cli("user", "del", BOB)
        server.cli("user", "add", BOB, "--password-file", "-", stdin=PASSWORD + "\n")
    finally:
        os.rename(sock + ".away", sock)
        server.cli("user", "passwd", ALICE, "--password-file", "-", stdin=PASSWORD + "\n")
    assert signed_out(changed)
    assert signed_out(recreated)
    assert not signed_out(webmail_session(server, BOB))  # a new login works
