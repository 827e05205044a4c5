"""The webmail in a real browser: Debian's Chromium, headless, driven by Selenium through
chromedriver, against the real server. Skipped where Chromium, chromedriver or Selenium is
missing (``.ci/run`` installs them).

What only a browser can show: that our pages run under their own Content-Security-Policy
(htmx loads, nothing is refused), that a user can log in with the keyboard, that new mail
appears without a reload, and that hostile HTML mail runs no script and loads nothing remote
until images are allowed. A loopback HTTPS "tracker" counts every request the message makes.
"""

from __future__ import annotations

import http.server
import os
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage

from tests.e2e.conftest import PASSWORD
from tests.support.browser import (  # skips the module without Selenium
    BROWSER_MARKS,
    By,
    Keys,
    click,
    log_in,
    module_browser,  # noqa: F401 - the ``browser`` fixture
    page_errors,
    text_of,
    wait,
    web_base,
)
from tests.web.xss_corpus import VECTORS

pytestmark = BROWSER_MARKS
ALICE = "alice@example.test"


class Tracker:
    """An HTTPS server on loopback that records every path requested of it."""

    def __init__(self, certificate: str, key: str) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send(server, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.send_message(message, from_addr="someone@remote.test", to_addrs=[ALICE])


def _message(subject: str, text: str, html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Someone <someone@remote.test>"
    message["To"] = ALICE
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def test_log_in_by_keyboard_see_the_inbox_and_get_new_mail_without_reload(shared_server, browser):
    base = web_base(shared_server)
    browser.get(base + "/")
    assert browser.current_url == base + "/login"
    browser.find_element(By.ID, "username").send_keys(ALICE)  # autofocused
    browser.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    wait(lambda: browser.current_url.startswith(base + "/mail"), what="the mail page")
    wait(lambda: "Inbox" in text_of(browser, "folder-list"), what="the folders")
    assert browser.execute_script("return window.htmx && window.htmx.version") == "2.0.11"

    _send(shared_server, _message("pushed without reload", "hello"))

    wait(
        lambda: "pushed without reload" in text_of(browser, "message-list"),
        what="the pushed message in the list",
    )
    wait(lambda: "1 unread" in " ".join(text_of(browser, "folder-list").split()),
          what="the unread count")  # fmt: skip
    assert page_errors(browser) == []


def test_hostile_html_mail_runs_no_script_and_loads_nothing_until_images_are_allowed(
    shared_server, browser
):
    tls = os.path.join(shared_server.data_dir, "tls")
    tracker = Tracker(os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem"))
    try:
        own = [
            f"<img src=x onerror=\"fetch('{tracker.url}/onerror')\">",
            f"<script>new Image().src='{tracker.url}/script'</script>",
            f"<svg onload=\"fetch('{tracker.url}/svg')\"></svg>",
            f'<div style="background:url({tracker.url}/css)">css</div>',
            f'<link rel=stylesheet href="{tracker.url}/link">',
            f'<meta http-equiv=refresh content="0;url={tracker.url}/refresh">',
            f'<iframe src="{tracker.url}/iframe"></iframe>',
            f'<form action="{tracker.url}/form"><button>x</button></form>',
            f'<img src="{tracker.url}/pixel.gif" width=1 height=1>',
        ]
        corpus = [v.replace("http://xss.example", tracker.url) for v in VECTORS]
        html = "<p>Hostile test</p>" + "".join(own + corpus)
        _send(shared_server, _message("hostile html", "text", html))
        base = web_base(shared_server)
        browser.get(base + "/mail")
        click(browser, "hostile html")
        frame = browser.find_element(By.CSS_SELECTOR, "iframe.body")
        assert frame.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
        browser.switch_to.frame(frame)
        wait(lambda: "Hostile test" in browser.find_element(By.TAG_NAME, "body").text)
        browser.switch_to.default_content()
        time.sleep(1.5)  # anything the message could start has had time to reach the tracker
        assert tracker.hits == []

        click(browser, "Show images in this message")
        wait(lambda: "/pixel.gif" in tracker.hits, what="the allowed image")
        time.sleep(1)
        # only images were fetched: no script, style sheet, frame, refresh or form
        assert {hit.split("?")[0] for hit in tracker.hits} <= {"/pixel.gif"}
        assert page_errors(browser) == []
    finally:
        tracker.close()


def _logged_in(browser, base: str) -> None:
    """Log alice in unless the module's browser is already."""
    log_in(browser, base, ALICE, PASSWORD)


def test_compose_with_an_attachment_and_the_recipient_receives_it(shared_server, browser, tmp_path):
    import email
    import email.policy
    import imaplib

    from tests.e2e.conftest import client_context

    base = web_base(shared_server)
    _logged_in(browser, base)
    click(browser, "Compose")
    wait(lambda: browser.current_url.startswith(base + "/compose"), what="the compose page")
    attachment = tmp_path / "plan \u00e9t\u00e9.pdf"
    attachment.write_bytes(b"%PDF-1.4 browser upload " + bytes(range(256)) * 200)
    browser.find_element(By.ID, "to").send_keys("Bob <bob@example.test>")
    browser.find_element(By.ID, "subject").send_keys("from the browser")
    browser.find_element(By.ID, "body").send_keys("Hello Bob,\nthe plan is attached.")
    browser.find_element(By.ID, "attachment").send_keys(str(attachment))
    browser.find_element(By.CSS_SELECTOR, "button[value=send]").click()
    wait(lambda: browser.current_url == base + "/mail?folder=Sent", what="the Sent folder")
    wait(lambda: "from the browser" in text_of(browser, "message-list"), what="the sent copy")

    deadline = time.time() + 15
    while True:
        imap = imaplib.IMAP4("127.0.0.1", shared_server.ports["imap"], timeout=30)
        imap.starttls(ssl_context=client_context())
        imap.login("bob@example.test", PASSWORD)
        count = int(imap.select("INBOX")[1][0])
        raw = imap.fetch(str(count), "(BODY.PEEK[])")[1][0][1] if count else b""
        imap.logout()
        if b"from the browser" in raw or time.time() > deadline:
            break
        time.sleep(0.2)
    received = email.message_from_bytes(raw, policy=email.policy.default)
    assert received["Subject"] == "from the browser"
    assert "the plan is attached." in received.get_body(("plain",)).get_content()
    [part] = list(received.iter_attachments())
    assert part.get_filename() == "plan \u00e9t\u00e9.pdf"
    assert part.get_content() == attachment.read_bytes()
    assert page_errors(browser) == []


def test_search_mark_spam_and_an_admin_creates_a_user_who_logs_in(shared_server, browser):
    base = web_base(shared_server)
    _send(shared_server, _message("zebra crossing notes", "about zebras"))
    _logged_in(browser, base)
    wait(lambda: "zebra crossing" in text_of(browser, "message-list"), what="the message")
    search = browser.find_element(By.ID, "search-q")
    search.send_keys("zebras" + Keys.ENTER)
    wait(lambda: browser.current_url.startswith(base + "/search"), what="the results")
    wait(lambda: "1 message found" in " ".join(text_of(browser, "main").split()),
          what="the result count")  # fmt: skip
    click(browser, "zebra crossing notes")
    browser.find_element(By.XPATH, "//button[text()='Spam']").click()
    # The move is done when its answer (a redirect to the folder) has come: going to Junk
    # before then may cancel the form's request, or show Junk without the message.
    wait(lambda: "/message" not in browser.current_url, what="the move's answer")
    browser.get(base + "/mail?folder=Junk")
    wait(lambda: "zebra crossing" in text_of(browser, "message-list"), what="the message in Junk")

    shared_server.cli("user", "admin", ALICE, "on")
    browser.get(base + "/settings")
    click(browser, "Admin console")
    browser.find_element(By.ID, "user-address").send_keys("erin@example.test")
    browser.find_element(By.ID, "user-password").send_keys("erins-browser-password")
    browser.find_element(By.XPATH, "//button[text()='Add user']").click()
    wait(lambda: "User erin@example.test added" in " ".join(text_of(browser, "main").split()),
          what="the new user")  # fmt: skip
    browser.find_element(By.XPATH, "//header//button[text()='Log out']").click()
    wait(lambda: browser.current_url.startswith(base + "/login"), what="the login page")
    browser.find_element(By.ID, "username").send_keys("erin@example.test")
    browser.find_element(By.ID, "password").send_keys("erins-browser-password" + Keys.ENTER)
    wait(lambda: "erin@example.test" in browser.find_element(By.TAG_NAME, "header").text,
          what="erin's mail page")  # fmt: skip
    assert page_errors(browser) == []


def test_the_threads_view_groups_a_conversation_and_expands_it(shared_server, browser):
    base = web_base(shared_server)
    first = _message("kayak trip", "shall we?")
    first["Message-ID"] = "<kayak-1@remote.test>"
    reply = _message("Re: kayak trip", "yes, Sunday")
    reply["Message-ID"], reply["References"] = "<kayak-2@remote.test>", "<kayak-1@remote.test>"
    _send(shared_server, first)
    _send(shared_server, reply)
    _logged_in(browser, base)
    wait(lambda: "Re: kayak trip" in text_of(browser, "message-list"), what="the reply")
    click(browser, "Threads")
    wait(lambda: "2 messages, 2 unread" in " ".join(text_of(browser, "message-list").split()),
          what="the conversation's row")  # fmt: skip
    assert "view=threads" in browser.current_url  # pushed to the history: reload keeps it
    assert "Re: kayak trip" not in text_of(browser, "message-list")  # one row for both
    click(browser, "kayak trip")  # expands, by htmx, in place
    wait(lambda: "Re: kayak trip" in text_of(browser, "message-list"), what="the thread's messages")
    click(browser, "Re: kayak trip")
    wait(lambda: "yes, Sunday" in text_of(browser, "main"), what="the reply opened")
    browser.back()
    wait(lambda: "1 unread" in " ".join(text_of(browser, "message-list").split()),
          what="the thread with one message read")  # fmt: skip
    assert page_errors(browser) == []


def test_the_admin_consoles_pages_are_reached_by_their_links_and_load_cleanly(
    shared_server, browser
):
    base = web_base(shared_server)
    shared_server.cli("user", "admin", ALICE, "on")
    _logged_in(browser, base)
    browser.get(base + "/admin")
    for link, heading, content in (
        ("Health", "Health", "bound on 127.0.0.1"),
        ("Event log", "Event log", "The latest"),
        ("DKIM and DNS", "DKIM keys and DNS records", "No DKIM keys yet"),
        ("Relay queue", "Relay queue", "The queue is empty"),
    ):
        click(browser, link)
        wait(lambda heading=heading: browser.find_element(By.TAG_NAME, "h1").text.startswith(heading),
             what=heading)  # fmt: skip
        assert content in text_of(browser, "main"), link
    # the records of a domain, chosen with the keyboard from the form
    click(browser, "DKIM and DNS")
    wait(lambda: browser.find_elements(By.ID, "dns-domain"), what="the domain list")
    browser.find_element(By.ID, "dns-domain").send_keys("example.test")
    browser.find_element(By.XPATH, "//button[text()='Show records']").click()
    wait(lambda: "10 mx.example.test." in text_of(browser, "main"), what="the MX record")
    assert page_errors(browser) == []
