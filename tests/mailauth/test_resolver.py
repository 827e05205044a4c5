"""The mail-auth resolver against the twisted.names test server: data, no data, temp errors."""

from __future__ import annotations

import pytest

from txmailhost.mailauth.resolver import DNSTempError, MailAuthResolver


def test_txt_strings_of_one_record_are_joined(names, resolver):
    long_value = "v=DKIM1; k=rsa; p=" + "A" * 400
    names.add("sel._domainkey.example.test", "TXT", long_value)
    assert resolver.txt("sel._domainkey.example.test") == [long_value.encode()]


def test_missing_name_is_no_data_not_an_error(names, resolver):
    names.add("example.test", "A", "127.0.0.2")
    assert resolver.txt("nothing.example.test") == []
    assert resolver.txt("example.test") == []  # the name exists, no TXT


def test_servfail_is_a_temporary_error(names, resolver):
    names.fail("broken.test", "servfail")
    with pytest.raises(DNSTempError):
        resolver.txt("broken.test")


def test_silent_server_times_out_as_a_temporary_error(names):
    names.fail("slow.test", "silent")
    quick = MailAuthResolver([names.address], timeout=0.5)
    with pytest.raises(DNSTempError):
        quick.txt("slow.test")


def test_answers_are_cached(names, resolver):
    names.add("cached.test", "TXT", "first")
    assert resolver.txt("cached.test") == [b"first"]
    names.remove("cached.test").add("cached.test", "TXT", "second")
    assert resolver.txt("cached.test") == [b"first"]  # the TTL (300 s) has not run out


def test_impossible_name_is_no_data(resolver):
    assert resolver.txt("a" * 70 + ".test") == []


def test_spf_lookup_speaks_pyspf_contract(names, resolver):
    names.add("mx.example.test", "MX", "10 mail.example.test")
    ((key, (preference, exchange)),) = resolver.spf_lookup("mx.example.test", "MX")
    assert key == ("mx.example.test", "MX") and preference == 10
    assert str(exchange).rstrip(".") == "mail.example.test"
