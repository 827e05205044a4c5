"""Shared mailboxes on the real server (twistd txmailhost) with imaplib and three users: ACLs
set over IMAP and with the CLI, enforced on the other users' sessions, kept across a restart,
the Other Users/ and Shared/ namespaces, and IDLE on another user's mailbox."""

from __future__ import annotations

import contextlib
import imaplib
import select

import pytest

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PROJECTS = '"Other Users/alice@example.test/Projects"'
MSG = b"From: alice@example.test\r\nSubject: plan\r\n\r\nthe plan\r\n"


def ok(result) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def refused(result, code: bytes) -> None:
    typ, data = result
    assert typ == "NO" and data[0].startswith(b"[" + code + b"]"), data


@contextlib.contextmanager
def client(server, user: str):
    imap = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    imap.login(user, PASSWORD)
    try:
        yield imap
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()


@pytest.fixture
def shared(server):
    """Alice's Projects (one message), opened to Bob for reading and flagging \\Seen."""
    server.add_user(CAROL, PASSWORD)
    with client(server, ALICE) as alice:
        ok(alice.create("Projects"))
        ok(alice.append("Projects", None, None, MSG))
        ok(alice.setacl("Projects", BOB, "lrs"))
    return server


def test_bob_reads_alices_shared_mailbox_and_carol_cannot_see_it(shared):
    with client(shared, BOB) as bob:
        caps = ok(bob.capability())[0].split()
        assert {b"ACL", b"RIGHTS=texk", b"LIST-MYRIGHTS"} <= set(caps)
        assert ok(bob.namespace()) == [b'(("" "/")) (("Other Users/" "/")) (("Shared/" "/"))']
        listing = b"\n".join(ok(bob.list('""', '"Other Users/*"')))
        assert b'"Other Users/alice@example.test/Projects"' in listing
        typ, data = bob.select(PROJECTS)
        assert typ == "OK" and data == [b"1"]
        assert bob.fetch("1", "(BODY[])")[1][0][1] == MSG
        assert b"\\Seen" in ok(bob.fetch("1", "(FLAGS)"))[0]
        refused(bob.store("1", "+FLAGS", "(\\Flagged)"), b"NOPERM")
        refused(bob.expunge(), b"NOPERM")
        refused(bob.append(PROJECTS, None, None, MSG), b"NOPERM")
        refused(bob.getacl(PROJECTS), b"NOPERM")
        assert ok(bob.myrights(PROJECTS)) == [b'"Other Users/alice@example.test/Projects" lrs']
    with client(shared, CAROL) as carol:
        assert b"Other Users" not in b"\n".join(ok(carol.list()))
        refused(carol.select(PROJECTS), b"NONEXISTENT")


def test_rights_survive_a_restart(shared):
    with client(shared, ALICE) as alice:
        ok(alice.setacl("Projects", "anyone", "lr"))
        ok(alice.setacl("Projects", "-" + CAROL, "r"))
    shared.stop()
    shared.start()
    with client(shared, ALICE) as alice:
        acl = ok(alice.getacl("Projects"))[0]
        assert acl == (
            b'"Projects" alice@example.test lrswipkxteacd -carol@example.test r anyone lr'
            b" bob@example.test lrs"
        )
    with client(shared, BOB) as bob:
        ok(bob.select(PROJECTS))
    with client(shared, CAROL) as carol:
        refused(carol.select(PROJECTS), b"NOPERM")  # "l" from anyone, "r" taken away


def test_cli_lists_and_sets_rights_the_server_enforces_at_once(shared):
    assert shared.cli("acl", "list", ALICE, "Projects").stdout.splitlines() == [
        "alice@example.test lrswipkxtea",
        "bob@example.test lrs",
    ]
    with client(shared, BOB) as bob:
        refused(bob.append(PROJECTS, None, None, MSG), b"NOPERM")
        shared.cli("acl", "set", ALICE, "Projects", BOB, "+i")
        ok(bob.append(PROJECTS, None, None, MSG))
        shared.cli("acl", "delete", ALICE, "Projects", BOB)
        refused(bob.select(PROJECTS), b"NONEXISTENT")
    bad = shared.cli("acl", "set", ALICE, "Projects", BOB, "lrq", check=False)
    assert bad.returncode == 1 and "'q' right is not supported" in bad.stderr
    assert "alice@example.test Projects" not in shared.cli("acl", "shared-with", BOB).stdout


def test_shared_folder_of_the_domain(shared):
    shared.cli("acl", "share", "example.test", "Support", "--rights", "lrsi")
    with client(shared, CAROL) as carol:
        listing = b"\n".join(ok(carol.list('""', '"Shared/*"')))
        assert b'"Shared/Support"' in listing
        ok(carol.append("Shared/Support", None, None, MSG))
        assert ok(carol.select("Shared/Support")) == [b"1"]
        refused(carol.delete("Shared/Support"), b"NOPERM")


def test_idle_on_another_users_mailbox_hears_of_new_mail(shared):
    with client(shared, BOB) as bob:
        ok(bob.select(PROJECTS))
        tag = bob._new_tag()
        bob.send(tag + b" IDLE\r\n")
        assert bob.readline().startswith(b"+")
        with client(shared, ALICE) as alice:
            ok(alice.append("Projects", None, None, MSG))
        ready, _, _ = select.select([bob.sock], [], [], 10)
        assert ready, "no untagged response while IDLEing"
        assert bob.readline() == b"* 2 EXISTS\r\n"
        bob.send(b"DONE\r\n")
        while not bob.readline().startswith(tag):
            pass
