"""Aliases, plus-addressing, postmaster@ and loops through the real server and its CLI."""

from __future__ import annotations

import os
import poplib
import smtplib

import pytest

from tests.e2e.conftest import PASSWORD
from txmailhost.accounts.db import AccountsDB

pytestmark = pytest.mark.slow


def subjects(server, user: str) -> list[bytes]:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user(user)
    p.pass_(PASSWORD)
    found = []
    for i in range(1, p.stat()[0] + 1):
        found += [line for line in p.retr(i)[1] if line.startswith(b"Subject: ")]
    p.quit()
    return found


def test_rules_made_with_the_cli_apply_to_the_next_message(server):
    server.cli("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
    server.cli("alias", "add", "loop1@example.test", "loop2@example.test")
    refused = server.cli("alias", "add", "loop2@example.test", "loop1@example.test", check=False)
    assert refused.returncode == 1 and "would loop" in refused.stderr
    # A loop made before the CLI refused them (or by another tool) is still refused at RCPT.
    rules = AccountsDB(os.path.join(server.data_dir, "accounts.sqlite")).address_rules()
    rules.add_alias("loop2@example.test", ["loop1@example.test"])
    server.cli("domain", "add", "old.test", "--alias-of", "example.test")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@r.test", ["team@example.test"], "Subject: to-team\r\n\r\nx\r\n")
        s.sendmail("x@r.test", ["alice+news@example.test"], "Subject: to-plus\r\n\r\nx\r\n")
        s.sendmail("x@r.test", ["postmaster@example.test"], "Subject: to-postmaster\r\n\r\nx\r\n")
        s.sendmail("x@r.test", ["bob@old.test"], "Subject: to-old-domain\r\n\r\nx\r\n")
        s.ehlo()
        s.mail("x@r.test")
        assert s.rcpt("loop1@example.test")[:2] == (
            550,
            b"5.4.6 routing loop detected in aliases or forwards",
        )
        s.rset()
        s.mail("x@r.test")
        assert s.rcpt("<Postmaster>")[0] == 250  # RFC 5321 4.1.1.3
    alice = subjects(server, "alice@example.test")
    bob = subjects(server, "bob@example.test")
    assert b"Subject: to-team" in alice and b"Subject: to-team" in bob
    assert b"Subject: to-plus" in alice
    assert b"Subject: to-postmaster" in alice  # the domain's oldest account
    assert bob.count(b"Subject: to-old-domain") == 1
    server.cli("alias", "del", "team@example.test", "bob@example.test")
    assert "team@example.test -> alice@example.test" in server.cli("alias", "list").stdout


def test_forward_without_relay_queue_or_with_it_never_loses_the_copy(server):
    server.cli("user", "forward", "bob@example.test", "alice@example.test", "--keep-copy")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@r.test", ["bob@example.test"], "Subject: fwd\r\n\r\nx\r\n")
    assert subjects(server, "alice@example.test") == [b"Subject: fwd"]
    assert subjects(server, "bob@example.test") == [b"Subject: fwd"]


def test_alias_and_forward_targets_elsewhere_go_to_the_relay_queue(server):
    server.cli("alias", "add", "list@example.test", "alice@example.test", "carol@remote.invalid")
    server.cli("user", "forward", "bob@example.test", "dave@remote.invalid", "--no-keep-copy")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@r.test", ["list@example.test"], "Subject: to-list\r\n\r\nx\r\n")
        s.sendmail("x@r.test", ["bob@example.test"], "Subject: to-bob\r\n\r\nx\r\n")
    queued = server.cli("queue", "list").stdout
    assert "carol@remote.invalid" in queued and "dave@remote.invalid" in queued
    assert subjects(server, "alice@example.test") == [b"Subject: to-list"]
    assert subjects(server, "bob@example.test") == []  # forwarded without a copy


def test_a_user_whose_name_holds_the_delimiter_receives_at_that_address(server):
    """``user add a+b@`` made an account RCPT refused (550 5.1.1): the tag was split off
    before the account was looked up."""
    server.add_user("a+b@example.test", PASSWORD)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@r.test", ["a+b@example.test"], "Subject: to-a-plus-b\r\n\r\nx\r\n")
        s.sendmail("x@r.test", ["alice+b@example.test"], "Subject: to-alice\r\n\r\nx\r\n")
    assert subjects(server, "a+b@example.test") == [b"Subject: to-a-plus-b"]
    assert subjects(server, "alice@example.test") == [b"Subject: to-alice"]
