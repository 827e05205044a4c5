"""``server.hostname``'s default: the machine's name, never "localhost" by accident."""

from __future__ import annotations

import socket

import pytest

from txmailhost.config import ServerConfig


def _default(monkeypatch, hostname: str, fqdn: str) -> str:
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    monkeypatch.setattr(socket, "getfqdn", lambda name="": fqdn)
    return ServerConfig().hostname


def test_default_hostname_is_the_machine_name_when_the_resolver_says_localhost(monkeypatch):
    # /etc/hosts with "127.0.0.1 localhost vm": getfqdn("vm") is "localhost".
    assert _default(monkeypatch, "vm", "localhost") == "vm.localdomain"


def test_default_hostname_takes_a_dotted_machine_name_as_it_is(monkeypatch):
    assert _default(monkeypatch, "Mail.Example.org", "localhost") == "mail.example.org"


def test_default_hostname_completes_a_short_name_from_the_resolver(monkeypatch):
    assert _default(monkeypatch, "mx1", "mx1.example.net") == "mx1.example.net"


@pytest.mark.parametrize("fqdn", ["other.example.net", "mx1", ""])
def test_default_hostname_ignores_a_resolver_answer_for_another_name(monkeypatch, fqdn):
    assert _default(monkeypatch, "mx1", fqdn) == "mx1.localdomain"


def test_default_hostname_is_localhost_only_when_the_machine_has_no_usable_name(monkeypatch):
    assert _default(monkeypatch, "under_score!", "localhost") == "localhost"
