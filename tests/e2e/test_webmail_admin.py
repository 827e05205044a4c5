"""The admin console against the real server: only users flagged admin (by the CLI) reach
it, and what it does is what the CLI does (accounts, aliases, the queue's requests)."""

from __future__ import annotations

import imaplib
import smtplib
import time
from email.message import EmailMessage

from tests.e2e.conftest import PASSWORD, client_context
from tests.support.web import Browser

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"
CAROL_PASSWORD = "carols-password-for-admin-test"


def logged_in(server, user: str, password: str = PASSWORD) -> Browser:
    browser = Browser(server.ports["web"])
    assert browser.login(user, password).status == 200
    return browser


def imap_count(server, user: str, password: str = PASSWORD) -> int:
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(user, password)
    count = int(imap.select("INBOX")[1][0])
    imap.logout()
    return count


def _wait(condition, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_only_admins_reach_the_console(server):
    bob = logged_in(server, BOB)
    for path in ("/admin", "/admin/queue"):
        assert bob.get(path).status == 404
    token = bob.csrf
    for path in ("/admin/users", "/admin/domains", "/admin/aliases", "/admin/queue"):
        page = bob.post(path, {"csrf": token, "action": "add", "address": "x@example.test",
                               "password": CAROL_PASSWORD, "domain": "evil.test"})  # fmt: skip
        assert page.status == 404, path
    assert "evil.test" not in server.cli("domain", "list").stdout
    assert "Admin console" not in bob.get("/settings").text

    assert server.cli("user", "admin", BOB, "on").stdout.strip() == f"{BOB}: admin on"
    assert bob.get("/admin").status == 200 and "Admin console" in bob.get("/settings").text
    server.cli("user", "admin", BOB, "off")
    assert bob.get("/admin").status == 404


def test_an_admin_adds_a_domain_a_user_and_an_alias_that_work_at_once(server):
    server.cli("user", "add", "root@example.test", "--admin", "--password-file", "-",
               stdin=PASSWORD + "\n")  # fmt: skip
    admin = logged_in(server, "root@example.test")
    token = admin.csrf
    page = admin.post("/admin/domains", {"csrf": token, "action": "add", "domain": "other.test"})
    assert "Domain other.test added" in page.text
    page = admin.post("/admin/users", {"csrf": token, "action": "add",
                                       "address": "carol@other.test", "password": CAROL_PASSWORD})  # fmt: skip
    assert "User carol@other.test added" in page.text
    assert "carol@other.test" in server.cli("user", "list").stdout
    assert imap_count(server, "carol@other.test", CAROL_PASSWORD) == 0  # logs in, has an INBOX
    logged_in(server, "carol@other.test", CAROL_PASSWORD)  # and in the webmail

    weak = admin.post("/admin/users", {"csrf": token, "action": "add",
                                       "address": "dave@other.test", "password": "x"})  # fmt: skip
    assert weak.status == 400
    page = admin.post("/admin/aliases", {"csrf": token, "action": "add",
                                         "address": "team@example.test",
                                         "targets": f"{BOB}, carol@other.test"})  # fmt: skip
    assert "Alias team@example.test" in page.text
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "x@remote.test", "team@example.test", "t"
    message.set_content("to the team")
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.send_message(message)
    _wait(lambda: imap_count(server, BOB) == 1)
    _wait(lambda: imap_count(server, "carol@other.test", CAROL_PASSWORD) == 1)

    quota = admin.post("/admin/users", {"csrf": token, "action": "quota",
                                        "address": "carol@other.test", "quota": "5M"})  # fmt: skip
    assert "Quota of carol@other.test: 5242880 bytes" in quota.text
    assert server.cli("user", "quota", "carol@other.test").stdout.strip() == "5M"
    bad = admin.post("/admin/users", {"csrf": token, "action": "quota",
                                      "address": "carol@other.test", "quota": "lots"})  # fmt: skip
    assert bad.status == 400
    default = admin.post("/admin/domains", {"csrf": token, "action": "quota",
                                            "domain": "other.test", "quota": "1G"})  # fmt: skip
    assert "Default quota of other.test: 1073741824 bytes" in default.text
    # their own account however written: the accounts database would act on it all the same
    for action in ("remove", "unadmin"):
        for written in ("root@example.test", "root@ example.test", "Root@Example.TEST."):
            own = admin.post("/admin/users", {"csrf": token, "action": action,
                                              "address": written})  # fmt: skip
            assert own.status == 400, (action, written)
    # a password reset (after a break-in, say) ends the user's web sessions, not the admin's
    intruder = logged_in(server, "carol@other.test", CAROL_PASSWORD)
    reset = admin.post("/admin/users", {"csrf": token, "action": "password",
                                        "address": "carol@other.test",
                                        "password": CAROL_PASSWORD + "-new"})  # fmt: skip
    assert (
        "Password of carol@other.test set; 2 web session(s) ended" in reset.text
    )  # and the one above
    assert intruder.get("/mail", follow=False).header("Location") == "/login"
    own_reset = admin.post("/admin/users", {"csrf": token, "action": "password",
                                            "address": "root@example.test",
                                            "password": PASSWORD})  # fmt: skip
    assert "0 web session(s) ended" in own_reset.text
    assert admin.get("/admin").status == 200
    CAROL_NEW = CAROL_PASSWORD + "-new"
    carol = logged_in(server, "carol@other.test", CAROL_NEW)
    gone = admin.post("/admin/users", {"csrf": token, "action": "remove",
                                       "address": "carol@other.test"})  # fmt: skip
    assert "User carol@other.test removed" in gone.text
    assert carol.get("/mail", follow=False).header("Location") == "/login"
    assert "carol@other.test" not in server.cli("user", "list").stdout


def test_the_queue_is_listed_and_a_message_deleted_as_the_cli_would(server):
    server.cli("user", "admin", ALICE, "on")
    with smtplib.SMTP(H, server.ports["submission"], timeout=30) as s:
        s.starttls(context=client_context())
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, ["someone@faraway.test"], "Subject: queued\r\n\r\nhello\r\n")
    _wait(lambda: "faraway.test" in server.cli("queue", "list").stdout)
    queue_id = server.cli("queue", "list").stdout.split()[0]
    admin = logged_in(server, ALICE)
    page = admin.get("/admin/queue")
    assert queue_id in page.text and "someone@faraway.test" in page.text
    assert admin.post("/admin/queue", {"csrf": admin.csrf, "action": "delete",
                                       "id": "NOSUCHID0000"}).status == 404  # fmt: skip
    done = admin.post("/admin/queue", {"csrf": admin.csrf, "action": "delete", "id": queue_id})
    assert f"delete of {queue_id} requested" in done.text
    _wait(lambda: queue_id not in server.cli("queue", "list").stdout)


def test_an_alias_that_closes_a_loop_is_refused_as_the_cli_refuses_it(server):
    """The console runs ``alias add``'s check: l2 -> l1 after l1 -> l2 would have the server
    refuse mail for both with 550 5.4.6."""
    server.cli("user", "admin", ALICE, "on")
    admin = logged_in(server, ALICE)
    first = admin.post("/admin/aliases", {"csrf": admin.csrf, "action": "add",
                                          "address": "l1@example.test",
                                          "targets": "l2@example.test"})  # fmt: skip
    assert "Alias l1@example.test" in first.text
    loop = admin.post("/admin/aliases", {"csrf": admin.csrf, "action": "add",
                                         "address": "l2@example.test",
                                         "targets": "l1@example.test"})  # fmt: skip
    assert loop.status == 400
    assert "l2@example.test -&gt; l1@example.test -&gt; l2@example.test" in loop.text
    listed = server.cli("alias", "list").stdout
    assert "l1@example.test -> l2@example.test" in listed and "l2@example.test ->" not in listed
    server.cli("alias", "del", "l1@example.test")
