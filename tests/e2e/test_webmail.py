"""Webmail against the real server (``twistd txmailhost``) over HTTPS on a loopback port: the
login and its throttling, the security headers and cookies, CSRF, the folder and message
pages, and the rule that a user reaches only their own mail, route by route."""

from __future__ import annotations

import html
import http.client
import imaplib
import os
import re
import smtplib
import socket
from email.message import EmailMessage
from urllib.parse import quote

import pytest

from tests.e2e.conftest import PASSWORD, client_context, start_from_template
from tests.support.web import Browser
from txmailhost.web.app import ROUTES

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"


def send(server, to: str, message: EmailMessage) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.send_message(message, from_addr="someone@remote.test", to_addrs=[to])


def plain(subject: str, body: str, to: str = ALICE) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Someone <someone@remote.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def logged_in(server, user: str = ALICE) -> Browser:
    browser = Browser(server.ports["web"])
    page = browser.login(user, PASSWORD)
    assert page.status == 200 and "INBOX" in page.text, page.text[:500]
    return browser


# -- login, headers, cookies, CSRF -------------------------------------------------------------


@pytest.mark.shared_server
def test_the_login_page_has_a_form_and_strict_security_headers(server):
    browser = Browser(server.ports["web"])
    first = browser.get("/", follow=False)
    assert (first.status, first.header("Location")) == (303, "/login")

    page = browser.get("/login")

    csp = page.header("Content-Security-Policy")
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "eval" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert page.header("X-Frame-Options") == "DENY"
    assert page.header("X-Content-Type-Options") == "nosniff"
    assert "<script>" not in page.text  # no inline script at all
    fields = page.form("/login")
    assert set(fields) == {"csrf", "username", "password"} and fields["csrf"]


@pytest.mark.shared_server
def test_login_shows_the_folders_and_sets_a_strict_session_cookie(server):
    browser = Browser(server.ports["web"])
    page = browser.login(ALICE, PASSWORD)

    assert page.status == 200 and page.url == "/mail"
    for folder in ("INBOX", "Sent", "Drafts", "Trash", "Junk"):
        assert f"folder={folder}" in page.text
    [session_cookie] = [c for c in browser.set_cookie_lines if c.startswith("__Host-txm_session=")]
    flags = {part.strip().lower() for part in session_cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    assert ALICE in page.text


def test_a_wrong_password_is_refused_logged_and_counted_with_imap_failures(
    server_template, tmp_path
):
    server = start_from_template(
        server_template, str(tmp_path / "data"), "[security]\nlogin_failures_per_ip = 2\n"
    )
    try:
        browser = Browser(server.ports["web"])
        for _ in range(2):
            page = browser.login(ALICE, "wrong-password")
            assert page.status == 401 and "Wrong address or password" in page.text
            assert "__Host-txm_session" not in browser.cookies
        assert "web login failed for alice@example.test from 127.0.0.1" in server.log()

        # The same throttle as IMAP: this address is now refused there too, right password
        # or not, and on the web as well.
        imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
        imap.starttls(ssl_context=client_context())
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            imap.login(ALICE, PASSWORD)
        assert browser.login(ALICE, PASSWORD).status == 429
    finally:
        server.stop()


@pytest.mark.shared_server
def test_state_changing_posts_need_the_session_csrf_token(server):
    browser = logged_in(server)
    token = browser.csrf

    assert browser.post("/logout", {}, follow=False).status == 403
    assert browser.post("/logout", {"csrf": "x" + token}, follow=False).status == 403
    cross_site = browser.post(
        "/logout", {"csrf": token}, headers={"Origin": "https://evil.example"}, follow=False
    )
    assert cross_site.status == 403
    # a sandboxed frame (the message body) or a no-referrer page posts with "Origin: null"
    opaque = browser.post("/logout", {"csrf": token}, headers={"Origin": "null"}, follow=False)
    assert opaque.status == 403
    assert browser.get("/mail").status == 200  # still logged in

    # htmx sends the token as a header instead of a form field
    out = browser.post("/logout", {}, headers={"X-CSRF-Token": token}, follow=False)
    assert (out.status, out.header("Location")) == (303, "/login")
    assert browser.get("/mail", follow=False).header("Location") == "/login"


@pytest.mark.shared_server
def test_the_login_form_needs_its_own_token_from_this_browser(server):
    attacker = Browser(server.ports["web"])
    stolen = attacker.get("/login").form("/login")
    victim = Browser(server.ports["web"])
    victim.get("/login")

    page = victim.post("/login", {**stolen, "username": ALICE, "password": PASSWORD})

    assert page.status == 403 and "__Host-txm_session" not in victim.cookies


@pytest.mark.shared_server
def test_logout_ends_the_session_on_the_server_not_only_the_cookie(server):
    browser = logged_in(server)
    cookie = dict(browser.cookies)
    browser.post("/logout", {"csrf": browser.csrf})

    replay = Browser(server.ports["web"], cookies=cookie)
    assert replay.get("/mail", follow=False).header("Location") == "/login"


@pytest.mark.shared_server
def test_logout_everywhere_ends_every_session_of_the_user(server):
    first, second = logged_in(server), logged_in(server)
    first.post("/logout", {"csrf": first.csrf, "everywhere": "1"})
    assert second.get("/mail", follow=False).status == 303


# -- folders and messages ------------------------------------------------------------------------


def test_folders_show_unread_counts_and_the_list_sorts_and_pages(server):
    for n, subject in enumerate(["banana", "apple", "cherry"]):
        send(server, ALICE, plain(subject, "x" * (100 * (n + 1))))
    browser = logged_in(server)
    page = browser.wait_for("/mail", "cherry")
    assert '<span class="count" title="unread">3' in page.text

    by_subject = browser.get("/mail?folder=INBOX&sort=subject&order=asc").text
    assert by_subject.index("apple") < by_subject.index("banana") < by_subject.index("cherry")
    by_size = browser.get("/mail?folder=INBOX&sort=size&order=desc").text
    assert by_size.index("cherry") < by_size.index("apple") < by_size.index("banana")
    # a sorted order is kept while the folder doesn't change: new mail makes a new one
    send(server, ALICE, plain("aardvark", "x"))
    again = browser.wait_for("/mail?folder=INBOX&sort=subject&order=asc", "aardvark").text
    assert again.index("aardvark") < again.index("apple") < again.index("cherry")
    fragment = browser.get(
        "/mail?folder=INBOX&sort=date", headers={"HX-Request": "true", "HX-Target": "message-list"}
    )
    assert fragment.text.lstrip().startswith('<section id="message-list"')


def test_reading_a_message_escapes_text_marks_it_read_and_serves_attachments(server):
    message = plain("hello <b>there</b>", "<script>alert('x')</script> plain body\n")
    message.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream",
                           filename="data.bin")  # fmt: skip
    send(server, ALICE, message)
    browser = logged_in(server)
    listing = browser.wait_for("/mail", "hello")
    link = next(a for a in _links(listing.text) if a.startswith("/message?"))

    page = browser.get(link)

    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; plain body" in page.text
    assert "<script>alert" not in page.text and "hello &lt;b&gt;there&lt;/b&gt;" in page.text
    assert 'class="count"' not in browser.get("/mail").text  # read now
    download = next(a for a in _links(page.text) if a.startswith("/message/part?"))
    part = browser.get(download)
    assert part.body == b"\x00\x01binary"
    assert part.header("Content-Disposition").startswith('attachment; filename="data.bin"')


def test_html_mail_is_sanitised_and_shown_in_a_sandbox_without_remote_images(server):
    message = plain("newsletter", "text version")
    message.add_alternative(
        '<p onclick="steal()">Hi<img src="https://tracker.example/p.gif">'
        '<script>alert(1)</script><a href="javascript:alert(2)">x</a></p>',
        subtype="html",
    )
    send(server, ALICE, message)
    browser = logged_in(server)
    link = next(a for a in _links(browser.wait_for("/mail", "newsletter").text) if "/message?" in a)
    page = browser.get(link)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
    body_url = html.unescape(page.text.split('<iframe class="body" src="', 1)[1].split('"')[0])

    body = browser.get(body_url)

    assert "Hi" in body.text and body.header("X-Blocked-Images") == "1"
    for bad in ("<script", "onclick", "javascript:", "tracker.example"):
        assert bad not in body.text
    csp = body.header("Content-Security-Policy")
    assert "sandbox" in csp and "img-src data:;" in csp and "script-src" not in csp
    shown = browser.get(body_url + "&images=1")
    assert "https://tracker.example/p.gif" in shown.text
    assert "img-src data: https:" in shown.header("Content-Security-Policy")


def test_flags_change_through_the_same_store_imap_reads(server):
    send(server, ALICE, plain("flag me", "body"))
    browser = logged_in(server)
    browser.wait_for("/mail", "flag me")
    result = browser.post(
        "/message/flags",
        {"csrf": browser.csrf, "folder": "INBOX", "uid": "1", "action": "flag"},
        follow=False,
    )
    assert result.status == 303
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    assert b"\\Flagged" in imap.fetch("1", "(FLAGS)")[1][0]
    imap.logout()


def _event_stream(browser: Browser) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection(H, browser.port, context=client_context(), timeout=20)
    cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    conn.request("GET", "/events", headers={"Cookie": cookies, "Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert response.readline() == b"retry: 3000\n"
    assert response.readline() == b"\n"
    return response


def test_new_mail_is_pushed_to_the_owners_event_stream_only(server):
    alice, bob = logged_in(server, ALICE), logged_in(server, BOB)
    alice_events, bob_events = _event_stream(alice), _event_stream(bob)

    send(server, ALICE, plain("pushed", "body"))

    assert alice_events.readline() == b"event: mailbox\n"
    assert alice_events.readline() == b'data: "INBOX"\n'
    bob_events.fp.raw._sock.settimeout(1.5)  # nothing for bob: his read times out
    with pytest.raises(TimeoutError):
        bob_events.readline()
    alice_events.close()
    bob_events.close()


def test_the_event_stream_ends_when_the_session_is_logged_out(server):
    alice = logged_in(server)
    stream = _event_stream(alice)
    alice.post("/logout", {"csrf": alice.csrf})
    stream.fp.raw._sock.settimeout(5)  # well before the 25 s heartbeat
    assert stream.readline() == b""  # closed, nothing more said
    send(server, ALICE, plain("after logout", "body"))  # and nothing breaks


def _imap_folders(server, user: str) -> dict[str, int]:
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(user, PASSWORD)
    counts = {}
    for name in ("INBOX", "Sent", "Trash"):
        counts[name] = int(imap.select(name)[1][0])
    imap.logout()
    return counts


def test_move_and_delete_go_through_the_store_as_imap_move_does(server):
    for subject in ("keep", "move me", "delete me"):
        send(server, ALICE, plain(subject, "body"))
    browser = logged_in(server)
    browser.wait_for("/mail", "delete me")
    token = browser.csrf
    moved = browser.post("/message/move", {"csrf": token, "folder": "INBOX", "uid": "2",
                                           "target": "Sent"}, follow=False)  # fmt: skip
    assert (moved.status, moved.header("Location")) == (303, "/mail?folder=INBOX")
    browser.post("/message/delete", {"csrf": token, "folder": "INBOX", "uid": "3"})
    assert _imap_folders(server, ALICE) == {"INBOX": 1, "Sent": 1, "Trash": 1}
    assert "delete me" in browser.get("/mail?folder=Trash").text

    browser.post("/message/delete", {"csrf": token, "folder": "Trash", "uid": "1"})
    assert _imap_folders(server, ALICE) == {"INBOX": 1, "Sent": 1, "Trash": 0}
    page = browser.get("/message?folder=INBOX&uid=1")
    assert "Move" in page.text and '<option value="Sent">' in page.text


def test_moved_and_deleted_messages_keep_flags_date_and_leave_the_folder(server):
    """Over IMAP: a message moved, and one deleted to Trash, from the webmail arrive as IMAP
    MOVE leaves them (flags, INTERNALDATE, EMAILID) and are gone from INBOX, as a client that
    has INBOX selected is told."""
    date = '"01-Jan-2020 10:00:00 +0000"'
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(ALICE, PASSWORD)
    for subject in (b"move me", b"delete me"):
        imap.append("INBOX", r"(\Flagged $label)", date, b"Subject: %s\r\n\r\nhi\r\n" % subject)
    imap.select("INBOX")
    _typ, before = imap.fetch("1:2", "(EMAILID)")
    browser = logged_in(server)
    browser.wait_for("/mail", "delete me")
    for path, fields in (
        ("/message/move", {"folder": "INBOX", "uid": "1", "target": "Sent"}),
        ("/message/delete", {"folder": "INBOX", "uid": "2"}),
    ):
        done = browser.post(path, {"csrf": browser.csrf, **fields}, follow=False)
        assert (done.status, done.header("Location")) == (303, "/mail?folder=INBOX")
    imap.noop()
    assert len(imap.untagged_responses.pop("EXPUNGE", [])) == 2
    after = []
    for folder in ("Sent", "Trash"):
        assert imap.select(folder)[1] == [b"1"]
        _typ, fetched = imap.fetch("1", "(FLAGS INTERNALDATE EMAILID)")
        assert rb"\Flagged $label" in fetched[0] and date.encode() in fetched[0], fetched
        after.append(re.search(rb"EMAILID \(\S+\)", fetched[0])[0])
    assert after == [re.search(rb"EMAILID \(\S+\)", f)[0] for f in before]
    assert imap.select("INBOX")[1] == [b"0"]
    imap.logout()


# -- ownership: every route ----------------------------------------------------------------------

# For each route that needs a login: a request that names bob's message (UID 1 of his INBOX)
# or climbs out of alice's folders.
FOREIGN = {
    ("GET", "/mail"): [
        "/mail?folder=../bob@example.test",
        "/mail?folder=INBOX/../../bob",
        "/mail?folder=../bob@example.test&view=threads&expand=1",
    ],
    ("GET", "/folders"): None,  # takes no folder or message: always the session's own
    ("GET", "/message"): ["/message?folder=INBOX&uid=1", "/message?folder=../bob&uid=1"],
    ("GET", "/message/body"): ["/message/body?folder=INBOX&uid=1"],
    ("GET", "/message/part"): ["/message/part?folder=INBOX&uid=1&part=1"],
    ("POST", "/message/flags"): ["/message/flags"],
    ("POST", "/message/move"): ["/message/move"],
    ("POST", "/message/delete"): ["/message/delete"],
    ("POST", "/logout"): None,
    ("GET", "/search"): ["/search?folder=../bob@example.test&q=secret"],
    ("POST", "/message/junk"): [("/message/junk", {"verdict": "spam"})],
    ("GET", "/folders/manage"): None,  # the session's own folders only
    ("POST", "/folders/create"): None,  # creates among the session's own folders only
    ("POST", "/folders/rename"): [
        ("/folders/rename", {"folder": "../bob@example.test", "name": "mine"})
    ],
    ("POST", "/folders/delete"): [
        ("/folders/delete", {"folder": "../bob@example.test", "confirm": "1"})
    ],
    # settings name no message or folder: the session user's account, forwarding and
    # scripts only; ending another user's session: test_webmail_settings.py
    ("GET", "/settings"): None,
    ("POST", "/settings/password"): None,
    ("POST", "/settings/forward"): None,
    ("POST", "/settings/vacation"): None,
    ("POST", "/settings/sessions/end"): None,
    ("POST", "/settings/apps"): None,
    ("POST", "/settings/apps/revoke"): None,
    ("GET", "/settings/mobileconfig"): None,  # the session user's address only
    # the admin console: 404 to anyone not admin (test_webmail_admin.py)
    ("GET", "/admin"): None,
    ("POST", "/admin/domains"): None,
    ("POST", "/admin/users"): None,
    ("POST", "/admin/aliases"): None,
    ("GET", "/admin/queue"): None,
    ("POST", "/admin/queue"): None,
    ("GET", "/admin/dns"): None,  # and the console's other pages (test_webmail_admin_console.py)
    ("POST", "/admin/dns/keys"): None,
    ("GET", "/admin/log"): None,
    ("GET", "/admin/health"): None,
    ("GET", "/settings/sieve"): None,
    ("POST", "/settings/sieve"): None,
    ("POST", "/settings/sieve/action"): None,
    ("GET", "/compose"): [
        "/compose?mode=reply&folder=INBOX&uid=1",
        "/compose?mode=forward&folder=INBOX&uid=1",
        "/compose?draft=1",
        "/compose?mode=replyall&folder=../bob@example.test&uid=1",
    ],
    ("POST", "/compose"): [
        ("/compose", {"forward_folder": "INBOX", "forward_uid": "1"}),
        ("/compose", {"source_folder": "INBOX", "source_uid": "1", "keep_part": "1"}),
    ],
    ("GET", "/events"): None,  # the session's own folders only: see test_new_mail_is_pushed...
}


def test_every_route_that_needs_a_login_is_covered_below():
    assert {(r.method, r.path) for r in ROUTES if r.login} == set(FOREIGN)


def test_no_route_reaches_another_users_message(server):
    send(server, BOB, plain("bob's secret", "for bob only", to=BOB))
    bob = logged_in(server, BOB)
    assert "bob&#39;s secret" in bob.wait_for("/mail", "secret").text
    alice = logged_in(server, ALICE)  # her INBOX is empty: UID 1 exists only in bob's
    token = alice.csrf
    for (method, _path), urls in FOREIGN.items():
        for url in urls or []:
            if method == "GET":
                page = alice.get(url, follow=False)
            elif isinstance(url, tuple) and url[0] == "/compose":  # a message to attach
                fields = {"csrf": token, "to": BOB, "action": "draft", **url[1]}
                page = alice.post_multipart(url[0], fields, follow=False)
            elif isinstance(url, tuple):
                fields = {"csrf": token, "folder": "INBOX", "uid": "1", **url[1]}
                page = alice.post(url[0], fields, follow=False)
            else:
                fields = {"csrf": token, "folder": "INBOX", "uid": "1", "action": "read",
                          "target": "Sent"}  # fmt: skip
                page = alice.post(url, fields, follow=False)
            assert page.status == 404, (url, page.status, page.text[:300])
            assert "secret" not in page.text and "for bob only" not in page.body.decode("latin-1")
    assert "bob" not in alice.get("/folders").text
    # nor can alice move her own mail into bob's folders
    send(server, ALICE, plain("alice's", "hers"))
    alice.wait_for("/mail", "alice&#39;s")
    for target in ("../bob@example.test", "../bob@example.test/INBOX", "../../example.test/bob"):
        fields = {"csrf": token, "folder": "INBOX", "uid": "1", "target": target}
        assert alice.post("/message/move", fields, follow=False).status == 404, target
    assert "alice&#39;s" in alice.get("/mail").text and "alice" not in bob.get("/mail").text


@pytest.mark.shared_server
def test_without_a_session_every_route_sends_to_the_login(server):
    browser = Browser(server.ports["web"])
    for (method, path), _urls in FOREIGN.items():
        if method == "GET":
            page = browser.get(path, follow=False)
            assert (page.status, page.header("Location")) == (303, "/login"), path
            htmx = browser.get(path, headers={"HX-Request": "true"}, follow=False)
            assert (htmx.status, htmx.header("HX-Redirect")) == (401, "/login"), path
        else:
            assert browser.post(path, {}, follow=False).status == 401, path


# -- assets, autoconfiguration, the redirect -----------------------------------------------------


@pytest.mark.shared_server
def test_no_mta_sts_policy_is_served_unless_configured(server):
    assert Browser(server.ports["web"]).get("/.well-known/mta-sts.txt").status == 404


@pytest.mark.shared_server
def test_the_page_loads_htmx_and_our_script_from_us_with_integrity(server):
    browser = logged_in(server)
    page = browser.get("/mail").text
    scripts = [html.unescape(s.split('"', 1)[0]) for s in page.split('<script src="')[1:]]
    assert len(scripts) == 2 and all(s.startswith("/static/") for s in scripts)
    htmx = browser.get(scripts[0])
    assert htmx.status == 200 and b'version:"2.0.11"' in htmx.body
    assert htmx.header("Content-Type").startswith("text/javascript")
    assert browser.get("/static/../txmailhost.toml").status == 404
    wrong = browser.get("/logout", follow=False)  # a GET can't log out (no CSRF token)
    assert (wrong.status, wrong.header("Allow")) == (405, "POST")


@pytest.fixture(scope="module")
def advertising(server_template, tmp_path_factory):
    """A server whose IMAPS and submissions listeners have fixed ports (the others 0):
    (server, imaps port, submissions port)."""
    imaps, submissions = _free_port(), _free_port()
    server = start_from_template(server_template, str(tmp_path_factory.mktemp("adv") / "data"))
    server.stop()
    config = os.path.join(server.data_dir, "txmailhost.toml")
    with open(config) as f:
        text = f.read()
    text = text.replace('imaps = "tcp:0:', f'imaps = "tcp:{imaps}:')
    with open(config, "w") as f:
        f.write(text.replace('submissions = "tcp:0:', f'submissions = "tcp:{submissions}:'))
    server.start()
    yield server, imaps, submissions
    server.stop()


def test_thunderbird_autoconfig_names_our_imap_and_submission_servers(advertising):
    import xml.etree.ElementTree as ET

    server, imaps, submissions = advertising
    browser = Browser(server.ports["web"])
    for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
        page = browser.get(path + "?emailaddress=alice%40example.test")
        assert page.header("Content-Type").startswith("application/xml")
        provider = ET.fromstring(page.body).find("emailProvider")
        assert provider.get("id") == "example.test"
        servers = [
            (s.tag, s.get("type"), s.findtext("hostname"), s.findtext("port"),
             s.findtext("socketType"), s.findtext("username"))
            for s in provider
            if s.tag in ("incomingServer", "outgoingServer")
        ]  # fmt: skip
        # the other listeners of the test config have no fixed port (0): left out
        assert servers == [
            ("incomingServer", "imap", "mx.example.test", str(imaps), "SSL", "%EMAILADDRESS%"),
            ("outgoingServer", "smtp", "mx.example.test", str(submissions), "SSL",
             "%EMAILADDRESS%"),
        ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((H, 0))
        return sock.getsockname()[1]


def test_outlook_autodiscover_answers_the_pox_request(advertising):
    import xml.etree.ElementTree as ET

    server, imaps, submissions = advertising
    request = (
        b'<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        b'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.test'
        b"</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/"
        b"autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>"
        b"</Autodiscover>"
    )
    page = Browser(server.ports["web"]).request(
        "POST", "/autodiscover/autodiscover.xml", request, {"Content-Type": "text/xml"}
    )
    assert page.status == 200
    ns = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
    protocols = ET.fromstring(page.body).iter(ns + "Protocol")
    found = {
        (p.findtext(ns + "Type"), p.findtext(ns + "Port"), p.findtext(ns + "LoginName"))
        for p in protocols
    }
    assert found == {("IMAP", str(imaps), ALICE), ("SMTP", str(submissions), ALICE)}


def test_plain_http_redirects_to_the_public_https_address_and_mta_sts_is_served(
    server_template, tmp_path
):
    server = start_from_template(
        server_template,
        str(tmp_path / "data"),
        '[web]\npublic_url = "https://mail.example.test:8443"\nmta_sts_mode = "enforce"\n',
    )
    try:
        conn = http.client.HTTPConnection(H, server.ports["web_redirect"], timeout=30)
        conn.request("GET", "/mail?folder=INBOX", headers={"Host": "mail.example.test"})
        response = conn.getresponse()
        assert response.status == 308
        assert response.getheader("Location") == "https://mail.example.test:8443/mail?folder=INBOX"
        assert response.getheader("Set-Cookie") is None
        # the MTA-STS policy is served over HTTPS only, from [web] mta_sts_*
        policy = Browser(server.ports["web"]).get("/.well-known/mta-sts.txt")
        assert policy.status == 200 and policy.header("Content-Type").startswith("text/plain")
        assert policy.body == (
            b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n"
        )
    finally:
        server.stop()


def _links(page: str) -> list[str]:
    """Every href of the page, as the browser reads it (entities decoded)."""
    return [html.unescape(h.split('"', 1)[0]) for h in page.split('href="')[1:]]


def test_the_apple_profile_configures_the_logged_in_users_imap_and_submission(advertising):
    import plistlib

    server, imaps, submissions = advertising
    browser = logged_in(server, BOB)
    page = browser.get("/settings/mobileconfig")
    assert page.status == 200
    assert page.header("Content-Type") == "application/x-apple-aspen-config"
    assert page.header("Content-Disposition") == 'attachment; filename="example.test.mobileconfig"'
    document = plistlib.loads(page.body)
    assert document["PayloadType"] == "Configuration"
    [mail] = document["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert (mail["EmailAddress"], mail["IncomingMailServerUsername"]) == (BOB, BOB)
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"],
            mail["IncomingMailServerUseSSL"]) == ("mx.example.test", imaps, True)  # fmt: skip
    assert (mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"]) == (
        submissions, True)  # fmt: skip
    assert b"Password" not in page.body.replace(b"EmailAuthPassword", b"").replace(
        b"OutgoingPasswordSameAsIncomingPassword", b"")  # fmt: skip
    again = plistlib.loads(browser.get("/settings/mobileconfig").body)
    assert again["PayloadUUID"] == document["PayloadUUID"]  # a new download replaces it


def test_numbers_in_links_are_ascii_digits_only(server):
    """``str.isdigit`` is true of "²" (which ``int`` refuses: a 500 before) and of fullwidth
    digits (a number no page links to): a message address with either is no message, a
    page number with either is page 1."""
    send(server, ALICE, plain("numbered", "body"))
    alice = logged_in(server, ALICE)
    alice.wait_for("/mail", "numbered")
    for uid in ("²", "１", "1²"):
        for path in ("/message", "/message/body"):
            page = alice.get(f"{path}?folder=INBOX&uid={quote(uid)}", follow=False)
            assert page.status == 404, (path, uid, page.status, page.text[:200])
        compose = alice.get(f"/compose?mode=reply&folder=INBOX&uid={quote(uid)}", follow=False)
        assert compose.status in (200, 404) and "numbered" not in compose.text, uid
    assert alice.get("/mail?folder=INBOX&page=" + quote("²")).status == 200
    assert "Traceback" not in server.log()
