"""The admin console's DKIM/DNS, event log and health pages against the real server: they say
what the CLI's ``dkim list``, ``dns --check``, ``log grep`` and ``who`` say, with DNS from a
twisted.names server the test runs on loopback (``tests/support/names.py``)."""

from __future__ import annotations

import html
import os
import re
import smtplib
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, client_context, start_from_template
from tests.support.names import NamesServer
from tests.support.web import Browser

H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"


def _admin(server) -> Browser:
    server.cli("user", "admin", ALICE, "on")
    browser = Browser(server.ports["web"])
    assert browser.login(ALICE, PASSWORD).status == 200
    return browser


def _text(page) -> str:
    """The page as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def _rows(page) -> dict[str, str]:
    """Records table: "TYPE NAME" -> the check cell's text."""
    found = {}
    for row in re.findall(r"<tr class=\"(?:record-[a-z]+)?\">(.*?)</tr>", page.text, re.S):
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<td>(.*?)</td>", row, re.S)]  # fmt: skip
        rtype, name = cells[0], cells[1].split()[0]
        found[f"{rtype} {name}"] = cells[2]
    return found


def _publish(names: NamesServer, server, domain: str) -> list[tuple[str, str, str]]:
    """Everything ``txmailhost dns DOMAIN`` says to publish, into the test zone."""
    published = []
    for line in server.cli("dns", domain).stdout.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, _ttl, _in, rtype, rest = line.split(None, 4)
        if rtype == "TXT":
            rest = "".join(rest.split('"')[1::2])
        names.add(name.rstrip("."), rtype, rest)
        published.append((name.rstrip("."), rtype, rest))
    return published


@pytest.fixture
def names(tmp_path):
    (tmp_path / "zone").mkdir()
    server = NamesServer(tmp_path / "zone").start()
    yield server
    server.stop()


@pytest.fixture
def dns_server(server_template, tmp_path, names):
    """The server with its resolver pointed at the test's DNS."""
    extra = (f'[relay]\nnameservers = ["{names.address}"]\n\n'
             "[mailauth]\ncheck_inbound = false\ndns_timeout = 1\n")  # fmt: skip
    proc = start_from_template(server_template, str(tmp_path / "data"), extra)
    yield proc
    proc.stop()


def test_dkim_keys_and_dns_records_are_listed_and_checked_against_the_servers_resolver(
    dns_server, names
):
    server = dns_server
    admin = _admin(server)
    page = admin.get("/admin/dns")
    assert page.status == 200 and "No DKIM keys yet" in page.text

    server.cli("dkim", "init", "example.test", "--selector", "web1")
    page = admin.get("/admin/dns")
    listed = server.cli("dkim", "list").stdout.split()
    assert listed[:3] == ["example.test", "web1", "active"]
    assert "web1" in page.text and "active (signs)" in page.text

    records = admin.get("/admin/dns?domain=example.test")
    cli_lines = [line for line in server.cli("dns", "example.test").stdout.splitlines()
                 if line and not line.startswith(";")]  # fmt: skip
    shown = [html.unescape(z) for z in re.findall(r'<code class="zone">(.*?)</code>', records.text)]
    assert shown == cli_lines  # the very records the CLI prints
    assert any("web1-ed25519._domainkey.example.test" in line for line in shown)

    nothing = admin.get("/admin/dns?domain=example.test&check=1")
    assert "0 of" in _text(nothing)
    assert set(_rows(nothing).values()) == {"FIX: missing"}

    _publish(names, server, "example.test")
    names.remove("web1-rsa._domainkey.example.test")
    names.add("web1-rsa._domainkey.example.test", "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqBADKEY")
    checked = admin.get("/admin/dns?domain=example.test&check=1")
    rows = _rows(checked)
    assert rows["MX example.test"] == "ok"
    assert rows["TXT web1-ed25519._domainkey.example.test"] == "ok"
    assert rows["TXT web1-rsa._domainkey.example.test"].startswith("FIX: differs: v=DKIM1; k=rsa")
    total = len(cli_lines)
    assert f"{total - 1} of {total} records as they should be" in _text(checked)
    # the same verdicts as the CLI's check
    cli = server.cli("dns", "example.test", "--check", check=False).stdout
    assert f"{total - 1} of {total} records as they should be" in cli

    bad = admin.get("/admin/dns?domain=exa%20mple")
    assert bad.status == 400


def test_a_dns_check_against_a_silent_resolver_times_out_without_holding_the_server(
    dns_server, names
):
    server = dns_server
    admin = _admin(server)
    for name in ("example.test", "_dmarc.example.test", "_mta-sts.example.test"):
        names.fail(name, "silent")
    started = time.monotonic()
    page = admin.get("/admin/dns?domain=example.test&check=1")
    took = time.monotonic() - started
    assert page.status == 200 and "DNS did not answer within 3 seconds" in _text(page)
    assert 1.5 < took < 6
    rows = _rows(page)  # the records checked in the time, the others said to be unchecked
    assert rows["MX example.test"].startswith("FIX: lookup failed: DNS MX lookup of example.test")
    assert "not checked" in rows.values()
    # the reactor served others meanwhile, and serves them now
    assert admin.get("/mail").status == 200


def _queue_one(server, recipient: str) -> str:
    with smtplib.SMTP(H, server.ports["submission"], timeout=30) as s:
        s.starttls(context=client_context())
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, [recipient], "Subject: to the log\r\n\r\nhello\r\n")
    deadline = time.time() + 15
    while recipient not in (listing := server.cli("queue", "list").stdout):
        assert time.time() < deadline
        time.sleep(0.2)
    return next(line.split()[0] for line in listing.splitlines() if recipient in line)


def test_the_event_log_is_searched_by_queue_id_and_address_as_log_grep_does(server):
    admin = _admin(server)
    queue_id = _queue_one(server, "someone@faraway.test")
    # the queue page links the message to its events
    assert f'href="/admin/log?q={queue_id}"' in admin.get("/admin/queue").text

    deadline = time.time() + 15
    while True:
        page = admin.get(f"/admin/log?q={queue_id}")
        grep = server.cli("log", "grep", queue_id, check=False).stdout
        if grep.strip() or time.time() > deadline:
            break
        time.sleep(0.3)
    assert page.status == 200 and grep.strip()
    expected = len([line for line in grep.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)])
    assert f"{expected} event" in _text(page)
    assert queue_id in page.text and "someone@faraway.test" in page.text

    by_address = admin.get("/admin/log?q=someone@faraway.test")
    assert queue_id in by_address.text and "event" in _text(by_address)
    none = admin.get("/admin/log?q=nobody@nowhere.test")
    assert "0 events for nobody@nowhere.test" in _text(none)
    recent = admin.get("/admin/log")
    assert "The latest" in _text(recent) and queue_id in recent.text
    refused = admin.get("/admin/log?q=" + "x" * 10)
    assert refused.status == 400 and "queue id" in _text(refused)


def test_health_shows_listeners_disk_queue_process_and_certificate(server):
    admin = _admin(server)
    page = admin.get("/admin/health")
    assert page.status == 200
    text = _text(page)
    for label in ("smtp", "imap", "web"):
        assert f"{label} ok bound on 127.0.0.1:{server.ports[label]}" in text, label
    assert re.search(r"data directory ok [\d.]+ GiB free of [\d.]+ GiB", text)
    assert os.path.realpath(server.data_dir) in text or server.data_dir in text
    assert "relay queue ok empty" in text
    assert "server process ok running, " in text
    assert re.search(r"TLS certificate ok mx\.example\.test, expires \d{4}-\d\d-\d\d", text)

    _queue_one(server, "someone@faraway.test")
    assert re.search(r"relay queue ok 1 message, the oldest queued \d+ s ago",
                     _text(admin.get("/admin/health")))  # fmt: skip


def test_health_flags_a_certificate_about_to_expire(server_template, tmp_path):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    data = str(tmp_path / "data")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soon.example.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=80)).not_valid_after(now + timedelta(days=3))
            .sign(key, hashes.SHA256()))  # fmt: skip
    os.makedirs(tmp_path / "tls")
    (tmp_path / "tls" / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls" / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )  # fmt: skip
    )
    extra = (f'[tls]\ncertificate = "{tmp_path}/tls/cert.pem"\n'
             f'key = "{tmp_path}/tls/key.pem"\n')  # fmt: skip
    server = start_from_template(server_template, data, extra)
    try:
        page = _text(_admin(server).get("/admin/health"))
        assert re.search(r"TLS certificate ATTENTION soon\.example\.test, expires .* in [23] days",
                         page)  # fmt: skip
        assert "1 check needs attention" in page
    finally:
        server.stop()


def test_the_console_pages_are_404_to_users_not_flagged_admin(server):
    bob = Browser(server.ports["web"])
    bob.login(BOB, PASSWORD)
    for path in ("/admin/dns", "/admin/dns?domain=example.test&check=1", "/admin/log",
                 "/admin/log?q=" + BOB, "/admin/health"):  # fmt: skip
        assert bob.get(path).status == 404, path
    page = bob.post("/admin/dns/keys", {"csrf": bob.csrf, "action": "init",
                                        "domain": "example.test"})  # fmt: skip
    assert page.status == 404 and server.cli("dkim", "list").stdout == ""


def test_health_asks_every_worker_process_and_says_which_does_not_answer(server_template, tmp_path):
    import shutil
    import signal

    from tests.support.server import ServerProcess
    from tests.support.workers import children

    data_dir = str(tmp_path / "data")
    shutil.copytree(server_template, data_dir, symlinks=True)
    server = ServerProcess(data_dir, workers=2)
    server.write_config()
    server.start()
    try:
        admin = _admin(server)
        text = _text(admin.get("/admin/health"))
        assert "worker 0 ok running" in text and "worker 1 ok running" in text
        assert f"web ok bound on 127.0.0.1:{server.ports['web']}" in text
        [second] = [pid for pid in children(server.process.pid)
                    if "--slot\x001\x00" in Path(f"/proc/{pid}/cmdline").read_text()]  # fmt: skip
        os.kill(second, signal.SIGSTOP)  # alive, but answers nothing
        try:
            text = _text(admin.get("/admin/health"))
        finally:
            os.kill(second, signal.SIGCONT)
        assert "worker 0 ok running" in text
        assert re.search(r"worker 1 ATTENTION not answering", text), text
        assert "1 check needs attention" in text
    finally:
        server.stop()


def test_an_admin_makes_rotates_and_retires_dkim_keys_as_the_cli_does(server):
    admin = _admin(server)
    token = admin.csrf
    made = admin.post("/admin/dns/keys", {"csrf": token, "action": "init",
                                          "domain": "example.test"})  # fmt: skip
    assert made.status == 200 and "signs from now on" in _text(made)
    [first] = server.cli("dkim", "list").stdout.splitlines()
    domain, selector, state = first.split()[:3]
    assert (domain, state) == ("example.test", "active")
    again = admin.post("/admin/dns/keys", {"csrf": token, "action": "init",
                                           "domain": "example.test"})  # fmt: skip
    assert again.status == 400 and "already" in again.text

    rotated = admin.post("/admin/dns/keys", {"csrf": token, "action": "rotate",
                                             "domain": "example.test"})  # fmt: skip
    assert rotated.status == 200
    listed = [line.split()[1:3] for line in server.cli("dkim", "list").stdout.splitlines()]
    assert [selector, "published"] in listed and len(listed) == 2
    [new] = [name for name, state in listed if state == "active"]
    assert f"Retire example.test {selector}" in _text(rotated)  # only the old one
    assert f"Retire example.test {new}" not in _text(rotated)
    # mail submitted now is signed with the new selector, by the running server
    with smtplib.SMTP(H, server.ports["submission"], timeout=30) as s:
        s.starttls(context=client_context())
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, [BOB], "Subject: signed\r\nFrom: alice@example.test\r\n\r\nhi\r\n")
    deadline = time.time() + 15
    while True:
        raw = _last_message(server, BOB)
        if b"signed" in raw or time.time() > deadline:
            break
        time.sleep(0.2)
    assert f"s={new}-".encode() in raw.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")

    active = admin.post("/admin/dns/keys", {"csrf": token, "action": "retire",
                                            "domain": "example.test", "selector": new})  # fmt: skip
    assert active.status == 400
    retired = admin.post("/admin/dns/keys", {"csrf": token, "action": "retire",
                                             "domain": "example.test", "selector": selector})  # fmt: skip
    assert retired.status == 200 and "retired" in _text(retired)
    assert [line.split()[1] for line in server.cli("dkim", "list").stdout.splitlines()] == [new]
    foreign = admin.post("/admin/dns/keys", {"csrf": token, "action": "init",
                                             "domain": "elsewhere.test"})  # fmt: skip
    assert foreign.status == 400 and "not a domain served here" in foreign.text


def _last_message(server, user: str) -> bytes:
    import imaplib

    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    imap.starttls(ssl_context=client_context())
    imap.login(user, PASSWORD)
    count = int(imap.select("INBOX")[1][0])
    raw = imap.fetch(str(count), "(BODY.PEEK[])")[1][0][1] if count else b""
    imap.logout()
    return raw
