"""InboundChecks: SPF, DKIM and DMARC verdicts against zones served by the test DNS server."""

from __future__ import annotations

import io
import os
import random

import pytest

from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.mailauth.checks import CheckPolicy, InboundChecks
from txmailhost.mailauth.dmarc import aligned, evaluate, organizational_domain, parse_record
from txmailhost.mailauth.keys import KeyStore
from txmailhost.mailauth.reports import ReportLog
from txmailhost.mailauth.results import claims_us
from txmailhost.mailauth.signing import Signer
from txmailhost.mailauth.spf import check_spf
from txmailhost.received import networks

CLIENT = Client("127.0.0.1", helo="mx.good.test", listener="smtp")


def message(author: str, subject: str = "hello") -> bytes:
    return (
        f"From: {author}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        f"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@test>\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture
def zone(names, tmp_path):
    """good.test: SPF allows 127.0.0.1, DKIM keys, DMARC p=reject. bank.test: SPF excludes
    us, p=reject. soft.test: p=quarantine."""
    keys = KeyStore(str(tmp_path / "dkim"))
    keys.create("good.test", "k")
    for key in keys.published("good.test"):
        names.add(f"{key.selector}._domainkey.good.test", "TXT", key.txt_record())
    names.add("good.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    names.add("_dmarc.good.test", "TXT", "v=DMARC1; p=reject")
    names.add("bank.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    names.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject; rua=mailto:r@bank.test")
    names.add("soft.test", "TXT", "v=spf1 -all")
    names.add("_dmarc.soft.test", "TXT", "v=DMARC1; p=quarantine")
    return Signer(keys)


def run(resolver, data: bytes, sender: str | None, policy: CheckPolicy | None = None,
        client: Client = CLIENT, **options):  # fmt: skip
    checks = InboundChecks(resolver, "mx.example.test", policy, **options)
    transaction = Transaction(sender, ("alice@example.test",), "Q1")
    return checks.end_of_data(client, transaction, io.BytesIO(data))


def ar(verdict) -> str:
    [(name, value)] = verdict.headers
    assert name == "Authentication-Results"
    return value


def test_good_mail_passes_spf_dkim_dmarc(zone, resolver):
    verdict = run(resolver, zone.sign_bytes(message("a@good.test")), "a@good.test")
    assert verdict.action is Action.ACCEPT
    value = ar(verdict)
    assert value.startswith("mx.example.test;")
    assert "spf=pass smtp.mailfrom=a@good.test" in value
    assert value.count("dkim=pass") == 2 and "header.d=good.test" in value
    assert "dmarc=pass header.from=good.test" in value


def test_forged_from_under_p_reject_is_refused(zone, resolver):
    verdict = run(resolver, message("ceo@bank.test"), "ceo@bank.test")
    assert verdict.action is Action.REJECT and "bank.test" in verdict.reason


def test_forged_from_with_our_own_spf_still_fails_dmarc_without_alignment(zone, resolver):
    # SPF passes for good.test, but From says bank.test: not aligned.
    verdict = run(resolver, message("ceo@bank.test"), "bounce@good.test")
    assert verdict.action is Action.REJECT


def test_p_reject_policy_can_be_junk_or_tag(zone, resolver):
    junk = run(resolver, message("ceo@bank.test"), "ceo@bank.test", CheckPolicy("junk"))
    assert junk.action is Action.JUNK and "dmarc=fail (p=reject)" in ar(junk)
    tag = run(resolver, message("ceo@bank.test"), "ceo@bank.test", CheckPolicy("tag"))
    assert tag.action is Action.ACCEPT and "dmarc=fail" in ar(tag)


def test_p_quarantine_goes_to_junk(zone, resolver):
    verdict = run(resolver, message("x@soft.test"), "x@soft.test")
    assert verdict.action is Action.JUNK
    assert "spf=fail" in ar(verdict)


def test_domain_without_dmarc_is_tagged_none(zone, resolver):
    verdict = run(resolver, message("x@nowhere.test"), "x@nowhere.test")
    assert verdict.action is Action.ACCEPT
    assert "spf=none" in ar(verdict) and "dkim=none" in ar(verdict)
    assert "dmarc=none" in ar(verdict)


def test_dmarc_dns_failure_is_451_only_when_policy_would_reject(zone, names, resolver):
    names.fail("_dmarc.flaky.test", "servfail")
    assert run(resolver, message("x@flaky.test"), "x@flaky.test").action is Action.TEMPFAIL
    tagged = run(resolver, message("x@flaky.test"), "x@flaky.test", CheckPolicy("tag"))
    assert tagged.action is Action.ACCEPT and "dmarc=temperror" in ar(tagged)


@pytest.mark.parametrize(
    "author",
    [
        # Python's parser raised RecursionError on these: "no author", permerror, accepted.
        "(" * 500 + "x" + ")" * 500 + " <ceo@bank.test>",
        "(" * 500 + " <ceo@bank.test>",
        # Two readings of one malformed list, and two From fields: each domain is judged.
        "a@good.test ceo@bank.test",
        "<a@good.test> ceo@bank.test",
        "a@good.test\r\nFrom: ceo@bank.test",
        "=?utf-8?b?Y2VvQGJhbmsudGVzdA==?=",
    ],
)
def test_p_reject_applies_to_a_spoofed_author_in_any_shape_of_from(zone, resolver, author):
    # Signed by good.test and sent from its SPF-listed address: good.test passes, so only
    # judging bank.test too refuses it.
    signed = zone.sign_bytes(message(author))
    verdict = run(resolver, signed, "a@good.test")
    assert verdict.action is Action.REJECT and "bank.test" in verdict.reason, verdict


def test_several_author_domains_take_the_strictest_failing_policy(zone, resolver):
    both = run(resolver, message("x@soft.test, ceo@bank.test"), "x@soft.test")
    assert both.action is Action.REJECT and "bank.test" in both.reason
    soft = run(resolver, zone.sign_bytes(message("a@good.test, x@soft.test")), "a@good.test")
    assert soft.action is Action.JUNK and "soft.test" in soft.reason
    # A domain with no record beside one that passed: the message isn't called a pass.
    mixed = run(resolver, zone.sign_bytes(message("a@good.test, x@nowhere.test")), "a@good.test")
    assert mixed.action is Action.ACCEPT and "dmarc=none header.from=nowhere.test" in ar(mixed)


def test_a_display_name_holding_an_address_is_not_an_author(zone, resolver):
    # Mailing lists rewrite From this way for DMARC ("'x' via list"): it must pass.
    author = '"ceo@bank.test via list" <a@good.test>'
    verdict = run(resolver, zone.sign_bytes(message(author)), "a@good.test")
    assert verdict.action is Action.ACCEPT and "dmarc=pass header.from=good.test" in ar(verdict)


def test_more_author_domains_than_judged_is_a_failure_under_dmarc_reject(zone, resolver):
    author = ", ".join(f"x@d{n}.test" for n in range(9)) + ", ceo@bank.test"
    refused = run(resolver, message(author), "x@d0.test")
    assert refused.action is Action.REJECT and "10 domains" in refused.reason
    tagged = run(resolver, message(author), "x@d0.test", CheckPolicy("tag"))
    assert tagged.action is Action.ACCEPT and "dmarc=fail" in ar(tagged)


def test_authenticated_submission_is_never_checked(zone, resolver):
    user = Client("127.0.0.1", authenticated_as="ceo@bank.test", listener="submission")
    verdict = run(resolver, message("ceo@bank.test"), "ceo@bank.test", client=user)
    assert verdict.action is Action.ACCEPT and verdict.headers == ()


def test_spf_fail_refused_at_mail_from_only_when_configured(zone, resolver):
    tagging = InboundChecks(resolver, "mx.example.test")
    assert "mail" not in tagging.stages
    rejecting = InboundChecks(resolver, "mx.example.test", CheckPolicy(spf_fail="reject"))
    assert rejecting.mail_from(CLIENT, "ceo@bank.test").action is Action.REJECT
    assert rejecting.mail_from(CLIENT, "a@good.test").action is Action.ACCEPT


# What a relay of ours (a backup MX, fetchmail) hands on: the field it added names bank.test's
# own server, which bank.test's SPF allows (192.0.2.1); the relay itself is 127.0.0.1.
RELAYED = (
    b"Received: from mx.bank.test (mx.bank.test [192.0.2.1])\r\n\tby relay.example.test"
    b" (Postfix) with ESMTPS id 4AB; Thu, 03 Dec 2026 09:59:58 +0000 (UTC)\r\n"
)
LOOPBACK_RELAY = {"trusted_relays": networks(["127.0.0.1"])}


def test_spf_of_mail_a_trusted_relay_hands_on_is_the_client_before_it(zone, resolver):
    # Judged as the relay, bank.test's SPF fails and its p=reject refuses the message.
    assert run(resolver, RELAYED + message("ceo@bank.test"), "ceo@bank.test").action is (
        Action.REJECT
    )
    verdict = run(resolver, RELAYED + message("ceo@bank.test"), "ceo@bank.test",
                  **LOOPBACK_RELAY)  # fmt: skip
    assert verdict.action is Action.ACCEPT, verdict
    assert "spf=pass (relayed from 192.0.2.1) smtp.mailfrom=ceo@bank.test" in ar(verdict)
    assert "dmarc=pass header.from=bank.test" in ar(verdict)


def test_a_relay_not_listed_is_judged_as_itself(zone, resolver):
    stranger = Client("127.0.0.9", helo="relay.example.test", listener="smtp")
    verdict = run(resolver, RELAYED + message("ceo@bank.test"), "ceo@bank.test",
                  client=stranger, **LOOPBACK_RELAY)  # fmt: skip
    assert verdict.action is Action.REJECT


def test_only_the_field_our_relay_wrote_is_read(zone, resolver):
    # The relay received it from 203.0.113.9; the field below, naming bank.test's server,
    # is that client's to write and so proves nothing.
    outer = (
        b"Received: from spammer.example (unknown [203.0.113.9])\r\n\tby relay.example.test"
        b" (Postfix) with ESMTP id 5CD; Thu, 03 Dec 2026 09:59:59 +0000 (UTC)\r\n"
    )
    verdict = run(resolver, outer + RELAYED + message("ceo@bank.test"), "ceo@bank.test",
                  **LOOPBACK_RELAY)  # fmt: skip
    assert verdict.action is Action.REJECT and "bank.test" in verdict.reason


def test_a_trusted_relay_that_names_no_client_is_the_client(zone, resolver):
    local = b"Received: from localhost by relay.example.test with local; Thu, 3 Dec 2026\r\n"
    verdict = run(resolver, local + message("a@good.test"), "a@good.test", **LOOPBACK_RELAY)
    assert "spf=pass smtp.mailfrom=a@good.test" in ar(verdict)  # 127.0.0.1 is good.test's


def test_a_trusted_relay_is_not_refused_at_mail_from(zone, resolver):
    rejecting = InboundChecks(resolver, "mx.example.test", CheckPolicy(spf_fail="reject"),
                              **LOOPBACK_RELAY)  # fmt: skip
    assert rejecting.mail_from(CLIENT, "ceo@bank.test").action is Action.ACCEPT
    stranger = Client("127.0.0.9", helo="relay.example.test", listener="smtp")
    assert rejecting.mail_from(stranger, "ceo@bank.test").action is Action.REJECT


def test_dmarc_reports_name_the_client_before_the_relay(zone, resolver, tmp_path):
    reports = ReportLog(str(tmp_path / "dmarc"))
    checks = InboundChecks(resolver, "mx.example.test", reports=reports, **LOOPBACK_RELAY)
    transaction = Transaction("ceo@bank.test", ("alice@example.test",), "Q1")
    data = RELAYED + message("ceo@bank.test")
    assert checks.end_of_data(CLIENT, transaction, io.BytesIO(data)).action is Action.ACCEPT
    [day] = os.listdir(tmp_path / "dmarc")
    [entry] = reports.entries(day.removesuffix(".jsonl"))
    assert entry["source_ip"] == "192.0.2.1" and entry["spf"]["result"] == "pass"


def test_null_sender_checks_the_helo_identity(zone, names, resolver):
    names.add("mx.good.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    result = check_spf(resolver, "127.0.0.1", None, "mx.good.test")
    assert (result.result, result.identity, result.domain) == ("pass", "helo", "mx.good.test")


def test_broken_spf_record_is_permerror_not_an_exception(zone, names, resolver):
    names.add("broken.test", "TXT", "v=spf1 include:%{z}nonsense ip4:300.1.1.1 -all")
    assert check_spf(resolver, "127.0.0.1", "a@broken.test", "x").result == "permerror"


def test_spf_dns_timeout_is_temperror(zone, names, resolver):
    names.fail("slow.test", "servfail")
    assert check_spf(resolver, "127.0.0.1", "a@slow.test", "x").result == "temperror"


def test_hostile_signature_values_cannot_forge_results(zone, resolver):
    forged = b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test dmarc=pass; s=a; h=from; bh=A; b=A\r\n"
    verdict = run(resolver, forged + message("x@nowhere.test"), "x@nowhere.test")
    assert "dmarc=pass" not in ar(verdict)


def test_organizational_domain_uses_the_public_suffix_list():
    assert organizational_domain("mail.example.co.uk") == "example.co.uk"
    assert organizational_domain("a.b.example.com") == "example.com"
    assert aligned("mail.example.co.uk", "example.co.uk", "r")
    assert not aligned("mail.example.co.uk", "example.co.uk", "s")
    assert not aligned("evil.co.uk", "example.co.uk", "r")


@pytest.mark.parametrize("pct", ["\u00b2", "\u0663", "9" * 5000, "-1", ""])
def test_a_dmarc_pct_that_is_no_number_is_the_default_not_an_error(pct: str) -> None:
    """The record is the sender's text: "²" is a digit to ``str.isdigit()`` that ``int()``
    refuses, and 5,000 digits are more than ``int()`` reads; each raised ``ValueError``."""
    policy = parse_record("x.test", f"v=DMARC1; p=reject; pct={pct}")
    assert policy is not None and (policy.p, policy.pct) == ("reject", 100)


def test_dmarc_records_parse_leniently_and_pct_samples():
    assert parse_record("x.test", "v=DMARC1; p=bogus") is None
    kept = parse_record("x.test", "v=DMARC1; p=bogus; rua=mailto:r@x.test")
    assert kept is not None and kept.p == "none"
    assert parse_record("x.test", "p=reject; v=DMARC1") is None  # v= must come first
    half = parse_record("x.test", "v=DMARC1; p=reject; pct=50")
    outcomes = {evaluate("x.test", half, None, [], random.Random(seed)).policy
                for seed in range(40)}  # fmt: skip
    assert outcomes == {"reject", "quarantine"}
    sub = parse_record("x.test", "v=DMARC1; p=reject; sp=none")
    assert evaluate("a.x.test", sub, None, []).policy == "none"


def test_claims_us_matches_our_authserv_id_only():
    assert claims_us("mx.example.test; spf=pass", "mx.example.test")
    assert claims_us("MX.Example.Test (comment); dkim=pass", "mx.example.test")
    assert not claims_us("mx.other.test; spf=pass", "mx.example.test")
