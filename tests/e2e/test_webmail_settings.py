"""Self-service settings in the webmail against the real server: each one changes what the
other protocols and the CLI see (IMAP logins, routing, the Sieve scripts delivery runs)."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import PASSWORD, client_context, imap_login
from tests.e2e.test_webmail_compose import imap_messages
from tests.support.web import Browser

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"
NEW_PASSWORD = "a-much-longer-new-pass-92"


def logged_in(server, user: str = ALICE, password: str = PASSWORD, agent: str = "test") -> Browser:
    browser = Browser(server.ports["web"])
    fields = browser.get("/login").form("/login")
    fields.update(username=user, password=password)
    page = browser.post("/login", fields, headers={"User-Agent": agent})
    assert page.status == 200, page.text[:300]
    return browser


def imap_subjects(server, user: str, folder: str = "INBOX", wait: int = 0) -> list[str]:
    """The subjects in ``folder``; waits until ``wait`` messages are there."""
    return [
        str(message["Subject"]) for _flags, message in imap_messages(server, user, folder, wait)
    ]


def send(server, subject: str, to: str = ALICE) -> None:
    message = EmailMessage()
    message["From"] = "someone@remote.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("body\n")
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.send_message(message, from_addr="someone@remote.test", to_addrs=[to])


def test_changing_the_password_needs_the_old_one_and_ends_other_sessions(server):
    other = logged_in(server, agent="Other browser")
    browser = logged_in(server, agent="This browser")
    token = browser.csrf
    page = browser.get("/settings")
    assert "Other browser" in page.text and "This browser" in page.text

    wrong = browser.post("/settings/password", {"csrf": token, "old": "not-it",
                                                "new": NEW_PASSWORD, "again": NEW_PASSWORD})  # fmt: skip
    assert wrong.status == 403 and "current password is not right" in wrong.text
    assert "web login failed for alice@example.test" in server.log()  # counted as a failure
    differ = browser.post("/settings/password", {"csrf": token, "old": PASSWORD,
                                                 "new": NEW_PASSWORD, "again": "x"})  # fmt: skip
    assert differ.status == 400
    done = browser.post("/settings/password", {"csrf": token, "old": PASSWORD,
                                               "new": NEW_PASSWORD, "again": NEW_PASSWORD})  # fmt: skip
    assert done.status == 200 and "Password changed" in done.text

    assert other.get("/mail", follow=False).header("Location") == "/login"
    assert browser.get("/mail").status == 200  # this one stays
    assert imap_login(server, ALICE, NEW_PASSWORD)


def test_forwarding_set_here_is_what_routing_follows(server):
    browser = logged_in(server)
    token = browser.csrf
    bad = browser.post("/settings/forward", {"csrf": token, "targets": "bob\r\nx"})
    assert bad.status == 400
    page = browser.post("/settings/forward", {"csrf": token, "targets": BOB, "keep_copy": "1"})
    assert "Forwarding saved" in page.text and f'value="{BOB}"' in page.text
    time.sleep(2.5)  # routing's positive cache (2 s) forgets alice's old routes
    send(server, "forward me")
    assert "forward me" in imap_subjects(server, BOB, wait=1)
    assert "forward me" in imap_subjects(server, ALICE, wait=1)
    off = browser.post("/settings/forward", {"csrf": token, "targets": ""})
    assert "Forwarding off" in off.text


def test_a_forward_that_closes_a_loop_is_refused_and_changes_nothing(server):
    """What ``user forward`` refuses is refused here too: bob forwards to alice, so alice
    forwarding to bob would have the server refuse both's mail with 550 5.4.6."""
    server.cli("user", "forward", BOB, ALICE)
    try:
        browser = logged_in(server)
        page = browser.post("/settings/forward", {"csrf": browser.csrf, "targets": BOB})
        assert page.status == 400
        assert f"would loop ({ALICE} -&gt; {BOB} -&gt; {ALICE})" in page.text
        assert server.cli("user", "forward", ALICE).stdout.strip() == "no forwarding"
    finally:
        server.cli("user", "forward", BOB, "--off")


def test_the_away_reply_is_the_clis_vacation_script(server):
    browser = logged_in(server)
    token = browser.csrf
    on = browser.post("/settings/vacation", {"csrf": token, "state": "on", "subject": "Away",
                                             "body": "Back on Monday.", "days": "3"})  # fmt: skip
    assert on.status == 200 and "The away reply is <strong>on</strong>" in on.text
    shown = server.cli("user", "vacation", ALICE).stdout
    assert shown.strip() == f"{ALICE}: vacation on"
    script = browser.get("/settings/sieve?name=vacation").text
    assert "vacation :days 3 :subject &#34;Away&#34; &#34;Back on Monday.&#34;;" in script
    off = browser.post("/settings/vacation", {"csrf": token, "state": "off"})
    assert "The away reply is <strong>off</strong>" in off.text
    assert server.cli("user", "vacation", ALICE).stdout.strip() == f"{ALICE}: vacation off"


def test_an_away_reply_every_so_many_days_takes_1_to_365_in_digits(server):
    browser = logged_in(server)
    token = browser.csrf
    for days in ("abc", "0", "366", "\u0665", "1e3", "-3"):
        page = browser.post("/settings/vacation", {"csrf": token, "state": "on", "body": "Away.",
                                                   "days": days})  # fmt: skip
        assert page.status == 400 and "once in 1 to 365 days" in page.text, (days, page.text[:300])
        assert "invalid literal" not in page.text
    assert server.cli("user", "vacation", ALICE).stdout.strip() == f"{ALICE}: vacation off"


def test_an_away_reply_ending_on_a_past_day_is_refused_as_the_cli_refuses_it(server):
    """It was saved and shown "on", a script whose currentdate test never holds: no
    reply was ever sent (``user vacation --until`` refuses such a day)."""
    browser = logged_in(server)
    token = browser.csrf
    page = browser.post("/settings/vacation", {"csrf": token, "state": "on", "body": "Away.",
                                               "until": "2001-01-01", "days": "7"})  # fmt: skip
    assert page.status == 400 and "is past" in page.text, page.text[:500]
    assert "The away reply is <strong>off</strong>" in page.text
    assert server.cli("user", "vacation", ALICE).stdout.strip() == f"{ALICE}: vacation off"


def test_sieve_scripts_are_checked_saved_activated_and_run_by_delivery(server):
    browser = logged_in(server)
    token = browser.csrf
    broken = browser.post("/settings/sieve", {"csrf": token, "name": "rules",
                                              "script": 'fileinto "x"'})  # fmt: skip
    assert broken.status == 400 and "Not saved" in broken.text and "line" in broken.text
    script = (
        'require "fileinto";\r\nif header :contains "subject" "report" { fileinto "Trash"; }\r\n'
    )
    saved = browser.post("/settings/sieve", {"csrf": token, "name": "rules", "script": script,
                                             "activate": "1"})  # fmt: skip
    assert saved.status == 200 and "(active)" in saved.text
    send(server, "weekly report")
    assert imap_subjects(server, ALICE, "Trash", wait=1) == ["weekly report"]
    browser.post("/settings/sieve/action", {"csrf": token, "name": "rules", "action": "deactivate"})
    gone = browser.post("/settings/sieve/action", {"csrf": token, "name": "rules",
                                                   "action": "delete"})  # fmt: skip
    assert gone.status == 200 and "No scripts yet" in gone.text


@pytest.mark.shared_server
def test_a_session_is_ended_from_the_list_and_only_the_users_own(server):
    first = logged_in(server, agent="First")
    second = logged_in(server, agent="Second")
    page = second.get("/settings")
    assert "B used" in page.text or "KiB used" in page.text  # the storage line
    forms = [f for f in page.forms() if f["action"] == "/settings/sessions/end"]
    assert len(forms) >= 2
    ids = [dict(f["fields"])["session"] for f in forms]
    rows = page.text.split("<tbody>", 1)[1].split("</tr>")
    first_id = next(i for i, row in zip(ids, rows, strict=False) if "First" in row)
    bob = logged_in(server, BOB)
    assert bob.post("/settings/sessions/end", {"csrf": bob.csrf, "session": first_id},
                    follow=False).status == 404  # fmt: skip
    assert first.get("/mail").status == 200
    ended = second.post("/settings/sessions/end", {"csrf": second.csrf, "session": first_id})
    assert "Session ended" in ended.text
    assert first.get("/mail", follow=False).header("Location") == "/login"


def test_an_app_password_works_for_imap_and_smtp_not_the_webmail_until_revoked(server):
    browser = logged_in(server)
    token = browser.csrf
    page = browser.post("/settings/apps", {"csrf": token, "name": "Phone"})
    assert page.status == 200
    password = page.text.split('id="new-app-password">', 1)[1].split("<", 1)[0]
    assert len(password) == 24 and "Phone" in page.text
    assert password not in browser.get("/settings").text  # shown once

    assert imap_login(server, ALICE, password)
    with smtplib.SMTP(H, server.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=client_context())
        smtp.login(ALICE, password)
    web = Browser(server.ports["web"])
    fields = web.get("/login").form("/login")
    fields.update(username=ALICE, password=password)
    assert web.post("/login", fields).status == 401  # mail clients only

    bob = logged_in(server, BOB)
    app_id = browser.get("/settings").form("/settings/apps/revoke")["id"]
    assert bob.post("/settings/apps/revoke", {"csrf": bob.csrf, "id": app_id},
                    follow=False).status == 404  # fmt: skip
    assert imap_login(server, ALICE, password)
    revoked = browser.post("/settings/apps/revoke", {"csrf": token, "id": app_id})
    assert "App password revoked" in revoked.text
    assert not imap_login(server, ALICE, password)
    assert imap_login(server, ALICE, PASSWORD)


def test_a_done_notice_shows_only_the_text_this_session_was_given(server):
    """The notice after an action comes from the redirect's query: a link from elsewhere
    (``/settings?done=Your+password+expired...``) must not put its words in the page, nor
    may another session's notice be replayed here."""
    browser = logged_in(server)
    forged = "Your password expired: sign in again at evil.example"
    page = browser.get("/settings?" + urlencode({"done": forged}))
    assert page.status == 200 and "evil.example" not in page.text
    done = browser.post("/settings/forward", {"csrf": browser.csrf, "targets": BOB}, follow=False)
    where = done.header("Location")
    assert "Forwarding saved" in browser.get(where).text
    other = logged_in(server, agent="Other")
    assert "Forwarding saved" not in other.get(where).text
    for path in ("/folders/manage", "/settings/sieve"):
        assert "evil.example" not in browser.get(path + "?" + urlencode({"done": forged})).text
