"""The settings pages in a real browser (Chromium through chromedriver, as
``test_webmail_browser.py``): a user changes their password, makes and revokes an app
password, turns on an away reply and saves a Sieve rule by filling the forms and pressing
their buttons, and each change is what IMAP, delivery and the CLI then see."""

from __future__ import annotations

import imaplib
import smtplib
import time
from email.message import EmailMessage

from tests.e2e.conftest import PASSWORD, client_context, imap_login
from tests.support.browser import (  # skips the module without Selenium
    BROWSER_MARKS,
    By,
    click,
    log_in,
    module_browser,  # noqa: F401 - the ``browser`` fixture
    page_errors,
    text_of,
    wait,
    web_base,
)

pytestmark = BROWSER_MARKS
ALICE = "alice@example.test"
H = "127.0.0.1"


def _main(browser) -> str:
    return " ".join(text_of(browser, "main").split())


def _button(browser, label: str) -> None:
    browser.find_element(By.XPATH, f"//main//button[normalize-space()='{label}']").click()


def _type(browser, element_id: str, value: str) -> None:
    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def test_a_user_changes_their_password_in_the_settings_page(shared_server, browser):
    user, old, new = "carol@example.test", "carols-first-password-1", "carols-second-password-2"
    shared_server.cli("user", "add", user, "--password-file", "-", stdin=old + "\n")
    base = web_base(shared_server)
    log_in(browser, base, user, old)
    browser.get(base + "/settings")
    _type(browser, "old", old)
    _type(browser, "new", new)
    _type(browser, "again", new)
    _button(browser, "Change password")
    wait(lambda: "Password changed" in _main(browser), what="the password changed notice")
    assert imap_login(shared_server, user, new)
    assert not imap_login(shared_server, user, old)
    # and the webmail takes the new one at the next login
    browser.find_element(By.XPATH, "//header//button[text()='Log out']").click()
    wait(lambda: browser.current_url.startswith(base + "/login"), what="the login page")
    log_in(browser, base, user, new)
    assert user in browser.find_element(By.TAG_NAME, "header").text
    assert page_errors(browser) == []


def test_an_app_password_is_made_used_by_imap_and_revoked(shared_server, browser):
    base = web_base(shared_server)
    log_in(browser, base, ALICE, PASSWORD)
    browser.get(base + "/settings")
    _type(browser, "app-name", "Phone")
    _button(browser, "Make an app password")
    wait(lambda: text_of(browser, "new-app-password").strip(), what="the new app password")
    secret = text_of(browser, "new-app-password").strip()
    assert "Phone" in _main(browser) and "never" in _main(browser)  # listed, not used yet
    assert imap_login(shared_server, ALICE, secret)

    browser.get(base + "/settings")
    assert not text_of(browser, "new-app-password")  # shown once only
    browser.find_element(By.XPATH, "//main//button[normalize-space()='Revoke Phone']").click()
    wait(lambda: "App password revoked" in _main(browser), what="the revoked notice")
    assert not imap_login(shared_server, ALICE, secret)
    assert page_errors(browser) == []


def test_the_away_reply_is_turned_on_and_off_in_the_settings_page(shared_server, browser):
    base = web_base(shared_server)
    log_in(browser, base, ALICE, PASSWORD)
    browser.get(base + "/settings")
    assert "The away reply is off" in _main(browser)
    _type(browser, "vac-subject", "Out sailing")
    _type(browser, "vac-body", "Back on Monday, with fish.")
    _type(browser, "vac-days", "3")
    _button(browser, "Turn the away reply on")
    wait(lambda: "The away reply is on" in _main(browser), what="the away reply on")
    assert shared_server.cli("user", "vacation", ALICE).stdout.strip() == f"{ALICE}: vacation on"
    click(browser, "Filter rules (Sieve)")
    click(browser, "vacation")
    script = browser.find_element(By.ID, "script-text").get_attribute("value")
    assert 'vacation :days 3 :subject "Out sailing" "Back on Monday, with fish.";' in script

    browser.get(base + "/settings")
    _button(browser, "Turn the away reply off")
    wait(lambda: "The away reply is off" in _main(browser), what="the away reply off")
    assert shared_server.cli("user", "vacation", ALICE).stdout.strip() == f"{ALICE}: vacation off"
    assert page_errors(browser) == []


def _junk_subjects(server) -> list[str]:
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    count = int(imap.select("Junk")[1][0])
    subjects = []
    if count:
        for item in imap.fetch(f"1:{count}", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1]:
            if isinstance(item, tuple):
                subjects.append(item[1].decode().split(":", 1)[1].strip())
    imap.logout()
    return subjects


def test_a_sieve_rule_typed_in_the_editor_is_saved_and_files_new_mail(shared_server, browser):
    base = web_base(shared_server)
    log_in(browser, base, ALICE, PASSWORD)
    browser.get(base + "/settings/sieve")
    _type(browser, "script-name", "rules")
    _type(browser, "script-text", 'fileinto "Junk";')  # no require: refused, with the line
    _button(browser, "Save")
    wait(lambda: "Not saved" in _main(browser), what="the refusal")
    assert "line" in _main(browser)
    assert ["400" in error for error in page_errors(browser)] == [True]  # (reads the log)
    _type(browser, "script-name", "rules")
    _type(browser, "script-text", 'require "fileinto";\nif header :contains "subject" '
                                  '"lottery" { fileinto "Junk"; }\n')  # fmt: skip
    browser.find_element(By.ID, "script-activate").click()
    _button(browser, "Save")
    wait(lambda: "rules (active)" in _main(browser), what="the saved, active script")

    message = EmailMessage()
    message["From"], message["To"] = "someone@remote.test", ALICE
    message["Subject"] = "You won the lottery"
    message.set_content("claim now")
    with smtplib.SMTP(H, shared_server.ports["smtp"], timeout=30) as s:
        s.send_message(message)
    deadline = time.time() + 15
    while "You won the lottery" not in _junk_subjects(shared_server):
        assert time.time() < deadline, "the rule did not file the message"
        time.sleep(0.2)
    assert page_errors(browser) == []
