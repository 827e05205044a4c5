"""The mail-auth resolver against the twisted.names test server: data, no data, temp errors."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from txmailhost.dnscache import MAX_CACHED_ANSWER
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


def test_an_answer_too_large_to_keep_is_used_but_asked_again(names, resolver):
    """A sender's DNS chooses the size of its answers: 60,000-octet TXT records at names made
    up per message filled the cache's 10,000 places with 1.3 GB."""
    key = "v=DKIM1; k=rsa; p=" + "A" * (MAX_CACHED_ANSWER + 100)
    names.add("big._domainkey.example.test", "TXT", key)
    assert resolver.txt("big._domainkey.example.test") == [key.encode()]
    names.remove("big._domainkey.example.test").add("big._domainkey.example.test", "TXT", "new")
    assert resolver.txt("big._domainkey.example.test") == [b"new"]


def test_the_cache_costs_the_bytes_of_the_answers_it_keeps(names, resolver):
    """Kept as dnspython's objects, an answer cost up to 16 times its size: a TXT record of
    1,300 two-octet strings (3.9 KB) held 60 KB. The cache keeps the answers' bytes."""
    for n in range(16):
        names.add(f"s{n}._domainkey.example.test", "TXT", ["ab"] * 1300)
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(16):
            assert resolver.txt(f"s{n}._domainkey.example.test") == [b"ab" * 1300]
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 16 * 2 * MAX_CACHED_ANSWER  # as dnspython's objects: 1 MB
    names.remove("s0._domainkey.example.test").add("s0._domainkey.example.test", "TXT", "new")
    assert resolver.txt("s0._domainkey.example.test") == [b"ab" * 1300]  # kept all the same
