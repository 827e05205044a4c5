"""Mail authentication end to end: two txmailhost instances, DNS from the twisted.names test
server, from ``txmailhost dkim init`` to a verified message in the second server's mailbox.

Server A (127.0.0.2) serves a.test and relays through the test DNS to server B (127.0.0.3),
which serves b.test and checks SPF, DKIM and DMARC. A forged a.test message sent straight to
B is refused under a.test's p=reject. An alias on B forwarding back to a.test gets an ARC
set from B that A validates.
"""

from __future__ import annotations

import os
import poplib
import re
import smtplib
import socket
import time

import pytest

from tests.e2e.conftest import PASSWORD, client_context
from tests.support.names import NamesServer
from tests.support.server import LABELS, ServerProcess

pytestmark = pytest.mark.slow


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _server(
    data_dir: str,
    address: str,
    names: NamesServer,
    extra: str = "",
    smtp_port: int = 0,
    mailauth: str = "",
) -> ServerProcess:
    os.makedirs(data_dir)
    listen = "\n".join(
        f'{label} = "tcp:{smtp_port if label == "smtp" else 0}:interface={address}"'
        for label in LABELS
    )
    with open(os.path.join(data_dir, "txmailhost.toml"), "w") as f:
        f.write(
            f'[server]\nhostname = "mx.{os.path.basename(data_dir)}.test"\n\n[listen]\n{listen}\n\n'
            f'[relay]\nnameservers = ["{names.address}"]\ndns_timeout = 3\n{extra}\n'
            f"[mailauth]\ncheck_inbound = true\n{mailauth}"
        )
    proc = ServerProcess(data_dir)
    return proc.start()


def _wait_for(check, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def _inbox(server: ServerProcess, address: str, user: str) -> list[bytes]:
    p = poplib.POP3(address, server.ports["pop3"], timeout=10)
    p.stls(context=client_context())
    p.user(user)
    p.pass_(PASSWORD)
    messages = [b"\r\n".join(p.retr(i)[1]) for i in range(1, p.stat()[0] + 1)]
    p.quit()
    return messages


@pytest.fixture
def names(tmp_path):
    server = NamesServer(tmp_path).start()
    yield server
    server.stop()


def _publish(names: NamesServer, server: ServerProcess, domain: str) -> None:
    """Everything ``txmailhost dns DOMAIN`` says to publish, into the test zone."""
    out = server.cli("dns", domain).stdout
    for line in out.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, _ttl, _in, rtype, rest = line.split(None, 4)
        if rtype == "TXT":
            rest = "".join(rest.split('"')[1::2])
        names.add(name.rstrip("."), rtype, rest)


def test_signed_mail_passes_checks_at_the_other_server_and_forwarded_mail_is_arc_sealed(
    tmp_path, names
):
    # Each relays to the other's smtp port: both chosen before either starts.
    a_port, b_port = _free_port("127.0.0.2"), _free_port("127.0.0.3")
    b = _server(str(tmp_path / "b"), "127.0.0.3", names, f"port = {a_port}\n", b_port)
    a = _server(str(tmp_path / "a"), "127.0.0.2", names, f"port = {b_port}\n", a_port)
    try:
        a.add_user("alice@a.test", PASSWORD)
        b.add_user("bob@b.test", PASSWORD)
        a.cli("dkim", "init", "a.test")
        _publish(names, a, "a.test")
        names.add("mx.a.test", "A", "127.0.0.2")
        # The SPF record printed is "v=spf1 mx -all": the relay's connections to 127.0.0.3
        # leave from 127.0.0.1 on Linux loopback, so a.test's MX host gets that address too.
        names.add("mx.a.test", "A", "127.0.0.1")
        names.remove("_dmarc.a.test").add("_dmarc.a.test", "TXT", "v=DMARC1; p=reject")
        names.add("b.test", "MX", "10 mx.b.test")
        names.add("mx.b.test", "A", "127.0.0.3")

        with smtplib.SMTP("127.0.0.2", a.ports["submission"], timeout=10) as s:
            s.starttls(context=client_context())
            s.login("alice@a.test", PASSWORD)
            s.sendmail("alice@a.test", ["bob@b.test"],
                       "Authentication-Results: mx.b.test; dmarc=pass (forged)\r\n"
                       "Authentication-Results: elsewhere.test; spf=none\r\n"
                       "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n"
                       "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <s1@a.test>\r\n"
                       "\r\nverified?\r\n")  # fmt: skip
        [delivered] = _wait_for(lambda: _inbox(b, "127.0.0.3", "bob@b.test"))
        head = delivered.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"Return-Path:") or head.startswith(b"Authentication-Results:")
        assert head.count(b"DKIM-Signature:") == 2
        assert "Authentication-Results: mx.b.test;" in head.decode()
        ar = head.decode().split("Authentication-Results: mx.b.test;", 1)[1]
        ar = ar.split("\r\n\t", 1)[0] if "\r\n\t" not in ar else ar
        ar_text = ar.split("\r\nDKIM-Signature", 1)[0].replace("\r\n\t", " ")
        assert "spf=pass smtp.mailfrom=alice@a.test" in ar_text, ar_text
        assert "dmarc=pass header.from=a.test" in ar_text, ar_text
        assert ar_text.count("dkim=pass header.d=a.test") == 2, ar_text
        # The field that claimed B's name on arrival is gone; another server's stays.
        assert head.count(b"Authentication-Results: mx.b.test;") == 1
        assert b"(forged)" not in head
        assert b"Authentication-Results: elsewhere.test; spf=none" in head

        # A forged a.test message straight to B: refused under a.test's p=reject.
        # From 127.0.0.4, an address a.test's SPF doesn't list, and unsigned.
        forger = ("127.0.0.4", 0)
        with smtplib.SMTP("127.0.0.3", b.ports["smtp"], timeout=10, source_address=forger) as s:
            s.ehlo("forger.test")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                s.sendmail("ceo@a.test", ["bob@b.test"],
                           "From: ceo@a.test\r\nTo: bob@b.test\r\nSubject: pay\r\n\r\nnow\r\n")  # fmt: skip
        assert refused.value.smtp_code == 550
        assert b"5.7.1" in refused.value.smtp_error
        # The same spoof in From shapes a parser could read as no author, or as another
        # author than a mail client shows: still refused (mailauth/authors.py).
        for author in ("(" * 500 + "x" + ")" * 500 + " <ceo@a.test>",
                       "x@forger.test\r\nFrom: ceo@a.test", "x@forger.test ceo@a.test"):  # fmt: skip
            with smtplib.SMTP("127.0.0.3", b.ports["smtp"], timeout=10, source_address=forger) as s:
                s.ehlo("forger.test")
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    s.sendmail("x@forger.test", ["bob@b.test"],
                               f"From: {author}\r\nTo: bob@b.test\r\nSubject: pay\r\n\r\nnow\r\n")  # fmt: skip
            assert refused.value.smtp_code == 550, author

        # Forwarding: fwd@b.test is an alias for carol@a.test. B checks what A sent, seals an
        # ARC set over its verdict and relays it back to A, whose checks find arc=pass.
        a.add_user("carol@a.test", PASSWORD)
        b.cli("dkim", "init", "b.test")  # B's host name mx.b.test signs with b.test's keys
        _publish(names, b, "b.test")
        b.cli("alias", "add", "fwd@b.test", "carol@a.test")
        names.add("a.test", "MX", "10 mx.a.test")
        with smtplib.SMTP("127.0.0.2", a.ports["submission"], timeout=10) as s:
            s.starttls(context=client_context())
            s.login("alice@a.test", PASSWORD)
            s.sendmail("alice@a.test", ["fwd@b.test"],
                       "From: alice@a.test\r\nTo: fwd@b.test\r\nSubject: forward me\r\n"
                       "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <f1@a.test>\r\n"
                       "\r\nvia b\r\n")  # fmt: skip
        [forwarded] = _wait_for(lambda: _inbox(a, "127.0.0.2", "carol@a.test"), 30)
        head = forwarded.split(b"\r\n\r\n", 1)[0].decode()
        assert "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=b.test" in head, head
        assert "ARC-Authentication-Results: i=1; mx.b.test;" in head
        ours = head.split("Authentication-Results: mx.a.test;", 1)[1].split("\r\nReturn-Path")[0]
        assert "arc=pass" in ours and "dmarc=pass" in ours, ours
    finally:
        a.stop()
        b.stop()


def test_hostile_headers_neither_forge_our_results_nor_skip_dmarc(tmp_path, names):
    """Authentication-Results claiming B's name in the shapes RFC 8601 allows are removed,
    and a p=reject spoof with a header section past 1 MiB is refused, not let through as
    mail without an author (it was delivered, with its forged dmarc=pass kept): by SMTP now,
    which takes no header section that long (``552 5.6.0``), before mail authentication's
    own refusal (550) of one it can't read."""
    b = _server(str(tmp_path / "b"), "127.0.0.3", names)
    try:
        b.add_user("bob@b.test", PASSWORD)
        names.add("bank.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
        names.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject")
        forged = ("Authentication-Results: (checked) mx.b.test; dmarc=pass header.from=bank.test\r\n"
                  'Authentication-Results: "mx.b.test"; dmarc=pass header.from=bank.test\r\n'
                  "Authentication-Results\r\n"
                  "Authentication-Results: mx.b.test; dmarc=pass header.from=bank.test\r\n")  # fmt: skip
        with smtplib.SMTP("127.0.0.3", b.ports["smtp"], timeout=30) as s:
            s.ehlo("forger.test")
            s.sendmail("x@forger.test", ["bob@b.test"],
                       forged + "From: x@forger.test\r\nTo: bob@b.test\r\nSubject: hi\r\n\r\nhi\r\n")  # fmt: skip
            filler = "".join(f"X-Filler-{i}: {'a' * 990}\r\n" for i in range(1100))
            with pytest.raises(smtplib.SMTPDataError) as refused:
                s.sendmail("x@forger.test", ["bob@b.test"],
                           forged + f"From: ceo@bank.test\r\nSubject: pay\r\n{filler}\r\nnow\r\n")  # fmt: skip
            assert refused.value.smtp_code == 552
            assert b"header section" in refused.value.smtp_error
        [delivered] = _wait_for(lambda: _inbox(b, "127.0.0.3", "bob@b.test"))
        assert b"dmarc=pass header.from=bank.test" not in delivered, delivered
        assert b"Subject: hi" in delivered
    finally:
        b.stop()


def test_mail_a_trusted_relay_hands_on_is_judged_by_the_client_before_it(tmp_path, names):
    """fetchmail (or a backup MX) on 127.0.0.1 hands B mail that bank.test's own server sent
    to the provider: with ``trusted_relays`` naming it, SPF judges that server (192.0.2.1,
    in bank.test's record) as the relay's Received: field names it, and the mail passes
    DMARC; without, the relay's own address fails bank.test's SPF. A client not listed
    that writes the same field is still refused at MAIL FROM (``spf_fail = "reject"``)."""
    b = _server(str(tmp_path / "b"), "127.0.0.3", names,
                mailauth='trusted_relays = ["127.0.0.1"]\nspf_fail = "reject"\n')  # fmt: skip
    try:
        b.add_user("bob@b.test", PASSWORD)
        names.add("bank.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
        names.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject")
        relayed = (
            "Received: from mx.bank.test (mx.bank.test [192.0.2.1])\r\n"
            "\tby pop.provider.test (Postfix) with ESMTPS id 4AB12\r\n"
            "\tfor <bob@b.test>; Thu, 03 Dec 2026 09:59:58 +0000 (UTC)\r\n"
            "From: ceo@bank.test\r\nTo: bob@b.test\r\nSubject: statement\r\n"
            "Date: Thu, 03 Dec 2026 09:59:50 +0000\r\nMessage-ID: <s1@bank.test>\r\n"
            "\r\nyour statement\r\n"
        )
        with smtplib.SMTP("127.0.0.3", b.ports["smtp"], timeout=30,
                          source_address=("127.0.0.1", 0)) as s:  # fmt: skip
            s.ehlo("localhost")
            s.sendmail("ceo@bank.test", ["bob@b.test"], relayed)
        with smtplib.SMTP("127.0.0.3", b.ports["smtp"], timeout=30,
                          source_address=("127.0.0.4", 0)) as s:  # fmt: skip
            s.ehlo("localhost")
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                s.sendmail("ceo@bank.test", ["bob@b.test"], relayed)
            assert refused.value.smtp_code == 550
        [delivered] = _wait_for(lambda: _inbox(b, "127.0.0.3", "bob@b.test"))
        unfolded = re.sub(rb"\r\n[ \t]+", b" ", delivered)
        ours = unfolded.split(b"Authentication-Results: mx.b.test;", 1)[1].split(b"\r\n")[0]
        assert b"spf=pass (relayed from 192.0.2.1) smtp.mailfrom=ceo@bank.test" in ours, ours
        assert b"dmarc=pass header.from=bank.test" in delivered, delivered
    finally:
        b.stop()
