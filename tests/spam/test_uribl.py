"""URI block lists (``uribl.py``): which domains of a message's links are looked up, what a
list's answer means, and that a listed link reaches the spam score, in the filters' thread
and from the scoring process, against the twisted.names test DNS."""

from __future__ import annotations

import io
import time

import pytest

from tests.spam.test_connection import _Answers
from txmailhost.filters.fairness import run_in_share
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.filters.registry import FilterConfigError, FilterHost, build_chain
from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.spam import scoring
from txmailhost.spam.links import HOSTS_READ, LINK_DOMAINS_CAP, link_domains, url_host
from txmailhost.spam.scoring import SpamFilter
from txmailhost.spam.uribl import UriblChecks

OUTSIDE = Client("192.0.2.1", listener="smtp")
LINKED = (
    b"From: Deals <deals@promo.test>\r\nTo: alice@example.test\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <d1@promo.test>\r\n"
    b"Subject: this week\r\n\r\nSee http://www.shop.spamvertised.test/offer?id=7 and\r\n"
    b"http://docs.fine.test/ for the terms.\r\n"
)


def test_a_urls_host_is_its_name_in_lower_case_a_labels():
    assert url_host("http://WWW.Example.COM/path?q=1") == "www.example.com"
    assert url_host("https://user:secret@mail.example.com:8443/#top") == "mail.example.com"
    assert url_host("www.example.com/offer") == "www.example.com"
    assert url_host("http://example.com.") == "example.com"
    assert url_host("http://example.com\\@evil.test/") == "example.com"  # as browsers split
    assert url_host("http://%77%77%77.spammer.test/") == "www.spammer.test"
    assert url_host("http://bücher.example/") == "xn--bcher-kva.example"
    assert url_host("http://a@b@shop.example.com/") == "shop.example.com"  # the last "@"
    assert url_host("http://cafe.de/") == "cafe.de"  # hexadecimal-looking, but a name


def test_hosts_dns_lists_dont_take_are_not_looked_up():
    for url in (
        "http://192.0.2.1/x",  # an address: the DBL refuses those
        "http://3627734091/",  # the same, as one number
        "http://0xd8.0x3a.0xd6.0xce/",
        "http://[2001:db8::1]/",
        "http://localhost/",  # no dot
        "ftp://files.example.com/",  # not a web link
        "mailto:someone@example.com",
        "Privacy.html",  # a relative link
        "http://exa mple.com/",
        "http://bad_label.example.com/",
        "http://%ff%fe.example/",  # not UTF-8
        "http://" + "a" * 64 + ".example/",  # a label too long
    ):
        assert url_host(url) is None, url


def test_link_domains_are_registrable_distinct_in_order_and_capped():
    urls = [
        "http://www.shop.example.co.uk/a",
        "http://img.example.co.uk/b.gif",  # the same registrable domain
        "https://spam.test/",
        "http://co.uk/",  # a public suffix itself: nothing to list
        "http://192.0.2.1/",
        "www.third.example.org",
    ]
    assert link_domains(urls) == ["example.co.uk", "spam.test", "example.org"]
    many = [f"http://d{i}.test/" for i in range(100)]
    assert link_domains(many, cap=7) == [f"d{i}.test" for i in range(7)]
    assert len(link_domains(many)) == LINK_DOMAINS_CAP
    same_host = [f"http://www.one.test/{i}" for i in range(5000)] + ["http://two.test/"]
    assert link_domains(same_host) == ["one.test"]  # only the first URLS_READ links read
    bad_hosts = [f"http://{i}.{i}.{i}.{i}/" for i in range(HOSTS_READ)] + ["http://late.test/"]
    assert link_domains(bad_hosts) == []  # only the first HOSTS_READ hosts taken apart


def test_a_listed_link_scores_its_zones_weight_once_and_refusals_do_not():
    resolver = _Answers({
        "spamvertised.test.dbl.test": "127.0.1.2",
        "other.test.dbl.test": "127.0.1.2",
        "spamvertised.test.multi.surbl.test": "127.0.0.1",  # "query blocked": not listed
        "fine.test.multi.uribl.test": "10.0.0.1",  # not a 127/8 answer: ignored
    })  # fmt: skip
    checks = UriblChecks(
        resolver, {"dbl.test": 2.5, "multi.surbl.test": 3.0, "multi.uribl.test": 3.0}
    )
    hits = checks.hits(["fine.test", "spamvertised.test", "other.test"])
    assert [(r.name, r.score) for r in hits] == [("URIBL:dbl.test", 2.5)]
    assert "spamvertised.test" in hits[0].description  # the first listed, named in the report
    assert "other.test.dbl.test" not in resolver.asked  # one listing is enough for a zone


def test_the_skip_list_our_own_domain_and_the_cap_bound_the_queries():
    resolver = _Answers({f"d{i}.test.dbl.test": "127.0.1.2" for i in range(30)})
    checks = UriblChecks(
        resolver, {"dbl.test": 2.5}, skip=["www.d0.test"], own="mx.d1.test", most=3
    )
    assert checks.asked([f"d{i}.test" for i in range(30)]) == ["d2.test", "d3.test", "d4.test"]
    assert checks.hits(["d0.test", "d1.test"]) == []
    assert resolver.asked == []  # nothing asked about the skipped domains


def test_settings_that_are_not_lists_of_zones_stop_the_server_at_start(tmp_path):
    for settings, said in (
        ({"uribl": "dbl.test"}, "table of zone = weight"),
        ({"uribl": {"dbl.test": "high"}}, "high"),
        ({"uribl": {"dbl.test": 2.0}, "uribl_skip": "example.com"}, "uribl_skip"),
        ({"uribl": {"dbl.test": 2.0}, "uribl_max_domains": 0}, "1 or more"),
    ):
        with pytest.raises(FilterConfigError, match=said):
            build_chain(("spam",), {"spam": settings}, None, None, 5, "tempfail",
                        FilterHost(str(tmp_path), "mx"))  # fmt: skip


def test_a_listed_link_sends_the_message_to_junk(tmp_path, names):
    """The whole path in the filters' thread: the sample's links, the test DNS, the score."""
    names.add("spamvertised.test.dbl.test", "A", "127.0.1.2")
    host = FilterHost(str(tmp_path), "mx.example.test", MailAuthResolver([names.address]))
    spam = SpamFilter(host=host, uribl={"dbl.test": 5.5}, bayes=False, rdns=False)
    verdict = spam.end_of_data(
        OUTSIDE, Transaction("deals@promo.test", ("alice@example.test",)), io.BytesIO(LINKED)
    )
    fields = dict(verdict.headers)
    assert (
        fields["X-Spam-Status"].startswith("Yes, score=")
        and "URIBL:dbl.test" in fields["X-Spam-Status"]
    )
    assert "links to spamvertised.test, listed in dbl.test" in fields["X-Spam-Report"]
    assert verdict.recipients == {"alice@example.test"}  # to Junk


def test_without_the_setting_or_without_dns_nothing_is_looked_up(tmp_path, names):
    names.add("spamvertised.test.dbl.test", "A", "127.0.1.2")
    resolver = MailAuthResolver([names.address])
    host = FilterHost(str(tmp_path), "mx.example.test", resolver)
    assert SpamFilter(host=host, bayes=False).uribl is None
    off = SpamFilter(host=host, uribl={"dbl.test": 5.5}, bayes=False, dns_checks=False)
    assert off.uribl is None
    verdict = off.end_of_data(
        OUTSIDE, Transaction("deals@promo.test", ("alice@example.test",)), io.BytesIO(LINKED)
    )
    assert "URIBL" not in dict(verdict.headers)["X-Spam-Status"]


def test_the_scoring_process_hands_back_the_domains_the_server_looks_up(
    tmp_path, names, monkeypatch
):
    """The offloaded path: the child reads the links, the reactor's filter asks DNS (in the
    filters' threads: nothing is cached yet, then from the cache) and adds the rule."""
    from twisted.python.threadpool import ThreadPool

    from tests.spam.test_offload import Live, trained_store, wait_ready

    trips = []

    def counted(*args):
        trips.append(args[4])
        return run_in_share(*args)

    monkeypatch.setattr(scoring, "run_in_share", counted)
    names.add("spamvertised.test.dbl.test", "A", "127.0.1.2")
    trained_store(tmp_path)
    live = Live()
    pool = ThreadPool(1, 2, name="test-filters")
    pool.start()
    try:
        host = FilterHost(
            str(tmp_path), "mx.example.test", MailAuthResolver([names.address]),
            reactor=live.reactor, pool=pool,
        )  # fmt: skip
        f = SpamFilter(host=host, uribl={"dbl.test": 5.5}, rdns=False, bayes_min_messages=3)
        assert f.offload is not None and f.uribl is not None

        def not_here(*args):
            raise AssertionError("scored in the filters' thread, not by the child")

        f._score_here = not_here
        f.offload.start_rate = 0
        wait_ready(live, f.offload)
        transaction = Transaction("deals@promo.test", ("alice@example.test",))
        pid = f.offload.pid
        for _ in range(2):  # the first looks up in a thread, the second from the cache
            verdict = live.call(f.end_of_data, OUTSIDE, transaction, io.BytesIO(LINKED))
            assert f.offload.pid == pid and f.offload.ready  # the child scored it
            status = dict(verdict.headers)["X-Spam-Status"]
            assert status.startswith("Yes") and "URIBL:dbl.test" in status, status
            assert verdict.recipients == {"alice@example.test"}
        assert trips == [f.uribl.hits]  # one trip to the threads: the second was cached
        live.call(f.close)
    finally:
        pool.stop()
        live.stop()


def test_a_dns_server_that_never_answers_costs_a_message_at_most_the_budget(names):
    for i in range(5):
        names.fail(f"d{i}.test.dbl.test", "silent")
    checks = UriblChecks(
        MailAuthResolver([names.address], timeout=1.0), {"dbl.test": 2.5}, dns_budget=1.5
    )
    started = time.monotonic()
    assert checks.hits([f"d{i}.test" for i in range(5)]) == []  # no answer: no verdict
    assert time.monotonic() - started < 3


def test_the_links_and_the_client_share_one_dns_budget():
    """With DNS black-holed, the connection checks spent the message's ``dns_budget`` and
    the URI block lists then took a budget of their own: twice the time, past the chain's
    timeout when both are at their defaults (15 s each against 30 s), so every message
    from outside would get the chain's ``on_error``. They now get what the checks left."""
    from tests.spam.test_connection import _BlackHole

    resolver = _BlackHole(timeout=1.0)
    host = FilterHost("/nonexistent", "mx.example.test", resolver)
    spam = SpamFilter(
        host=host, bayes=False, rdns=False, dnsbl={"bl.test": 1.0, "bl2.test": 1.0},
        uribl={"dbl.test": 2.5},
        dns_budget=2.0,
    )  # fmt: skip
    started = time.monotonic()
    verdict = spam.end_of_data(
        OUTSIDE, Transaction("deals@promo.test", ("alice@example.test",)), io.BytesIO(LINKED)
    )
    took = time.monotonic() - started  # two lists took the 2 s: before, the links took 2 more
    assert "DNSBL" not in dict(verdict.headers)["X-Spam-Status"]  # no answer: no verdict
    assert took < 3.0, f"{took:.1f}s for {resolver.asked} lookups"
