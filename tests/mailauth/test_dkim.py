"""DKIM signing and verification, checked against dkimpy and OpenDKIM (Debian's
opendkim-tools), with keys served by the twisted.names test server."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import textwrap

import dkim
import pytest

from tests.support.names import ROOT
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.mailauth.keys import KeyStore
from txmailhost.mailauth.signing import Signer, SigningFilter
from txmailhost.mailauth.verify import verify_stream

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: dkim test\r\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <dkim-test@example.test>\r\n"
    b"\r\n"
    b"Hello Bob,  \r\n"
    b"\r\n"
    b"a second   line\twith space.\r\n"
    b"\r\n\r\n"
)


@pytest.fixture
def keys(tmp_path, names):
    store = KeyStore(str(tmp_path / "dkim"))
    store.create("example.test", "sel")
    for key in store.published("example.test"):
        names.add(f"{key.selector}._domainkey.example.test", "TXT", key.txt_record())
    return store


def _signed(keys: KeyStore, message: bytes = MESSAGE) -> bytes:
    return Signer(keys).sign_bytes(message)


def test_message_gets_ed25519_then_rsa_signature_relaxed_oversigned(keys):
    signed = _signed(keys)
    fields = [v for n, v in dkim.rfc822_parse(signed)[0] if n.lower() == b"dkim-signature"]
    assert len(fields) == 2
    first, second = (dkim.util.parse_tag_value(f) for f in fields)
    assert first[b"a"] == b"ed25519-sha256" and second[b"a"] == b"rsa-sha256"
    assert first[b"s"] == b"sel-ed25519" and first[b"d"] == b"example.test"
    assert first[b"c"] == b"relaxed/relaxed"
    signed_names = [name.strip() for name in first[b"h"].split(b":")]
    for name in (b"from", b"to", b"subject", b"date", b"message-id"):
        assert signed_names.count(name) == 2, name  # once more than present: oversigned


def test_our_verifier_passes_both_signatures(keys, resolver):
    results = verify_stream(io.BytesIO(_signed(keys)), resolver)
    assert [(r.result, r.algorithm) for r in results] == [
        ("pass", "ed25519-sha256"),
        ("pass", "rsa-sha256"),
    ]


def test_dkimpy_whole_message_verifier_agrees(keys, resolver):
    signed = _signed(keys)
    assert dkim.verify(signed, dnsfunc=resolver.dkim_txt)
    checker = dkim.DKIM(signed)
    assert checker.verify(idx=1, dnsfunc=resolver.dkim_txt)


MIME_MESSAGE = MESSAGE.replace(
    b"Message-ID: <dkim-test@example.test>\r\n",
    b"Message-ID: <dkim-test@example.test>\r\n"
    b"In-Reply-To: <earlier@remote.test>\r\n"
    b"References: <earlier@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n",
)


def test_a_long_list_of_signed_fields_folds_between_names_and_verifies(keys, resolver):
    """The h= of mail with MIME fields is longer than a line: it was folded in the middle
    of a field name ("mime-" CRLF " version"), so dkimpy (and our verifier) failed every
    such signature; only OpenDKIM passed them."""
    signed = _signed(keys, MIME_MESSAGE)
    fields = [v for n, v in dkim.rfc822_parse(signed)[0] if n.lower() == b"dkim-signature"]
    for value in fields:
        names = [n.strip() for n in dkim.util.parse_tag_value(value)[b"h"].split(b":")]
        assert b"mime-version" in names and b"content-transfer-encoding" in names
        assert all(re.fullmatch(rb"[a-z-]+", name) for name in names), names
    assert dkim.verify(signed, dnsfunc=resolver.dkim_txt)
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=resolver.dkim_txt)
    assert [r.result for r in verify_stream(io.BytesIO(signed), resolver)] == ["pass", "pass"]


def test_changed_body_fails(keys, resolver):
    signed = _signed(keys).replace(b"Hello Bob", b"Hello Eve")
    assert {r.result for r in verify_stream(io.BytesIO(signed), resolver)} == {"fail"}


def test_added_second_subject_fails_because_oversigned(keys, resolver):
    signed = _signed(keys).replace(b"\r\n\r\nHello", b"\r\nSubject: pay now\r\n\r\nHello", 1)
    assert {r.result for r in verify_stream(io.BytesIO(signed), resolver)} == {"fail"}


def test_refolded_header_and_spaces_still_pass_relaxed(keys, resolver):
    signed = _signed(keys).replace(b"Subject: dkim test", b"Subject:  dkim\r\n\ttest")
    assert {r.result for r in verify_stream(io.BytesIO(signed), resolver)} == {"pass"}


def test_large_message_is_signed_and_verified_in_chunks(keys, resolver):
    body = b"".join(b"line %d of a large message  \r\n" % i for i in range(300_000))
    message = MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body
    assert len(message) > 8 * 1024 * 1024
    signed = _signed(keys, message)
    assert {r.result for r in verify_stream(io.BytesIO(signed), resolver)} == {"pass"}


def test_domain_without_keys_is_not_signed(keys):
    other = MESSAGE.replace(b"alice@example.test", b"alice@elsewhere.test")
    assert _signed(keys, other) == other


def test_parent_domain_keys_sign_a_subdomain_sender(keys, resolver):
    bounce = MESSAGE.replace(b"alice@example.test", b"MAILER-DAEMON@mx.example.test")
    results = verify_stream(io.BytesIO(_signed(keys, bounce)), resolver)
    assert {(r.result, r.domain) for r in results} == {("pass", "example.test")}


def test_signing_filter_signs_only_authenticated_clients(keys):
    signing = SigningFilter(Signer(keys))
    transaction = Transaction("alice@example.test", ("bob@remote.test",))
    inbound = signing.end_of_data(Client("192.0.2.1"), transaction, io.BytesIO(MESSAGE))
    assert inbound.headers == ()
    user = Client("127.0.0.1", authenticated_as="alice@example.test", listener="submission")
    submitted = signing.end_of_data(user, transaction, io.BytesIO(MESSAGE))
    assert [name for name, _ in submitted.headers] == ["DKIM-Signature", "DKIM-Signature"]


# -- malformed signatures, keys and records: a result, never an exception ----------------------


@pytest.mark.parametrize(
    "signature, expected",
    [
        (b"garbage", "permerror"),
        (b"v=1; a=rsa-sha256; d=example.test; s=sel-rsa; h=from; bh=AAAA; b=AAAA", "fail"),
        (b"v=1; a=rsa-sha512; d=example.test; s=sel-rsa; h=from; bh=AAAA; b=AAAA", "permerror"),
        (b"v=1; a=rsa-sha256; d=example.test; s=nokey; h=from; bh=AAAA; b=AAAA", "permerror"),
        (b"v=1; a=rsa-sha256; d=example.test; s=bad; h=from; bh=AAAA; b=AAAA", "permerror"),
        (b"v=1; a=rsa-sha256; d=example.test; s=small; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA", "permerror"),
        (b"v=1; a=rsa-sha256; d=broken.test; s=x; h=from; bh=AAAA; b=AAAA", "temperror"),
        (b"v=1; a=rsa-sha256; c=odd/odd; d=example.test; s=sel-rsa; h=from; bh=AAAA; b=AAAA", "permerror"),
    ],
)  # fmt: skip
def test_malformed_signatures_give_a_result_never_an_exception(
    keys, names, resolver, signature, expected
):
    names.add("bad._domainkey.example.test", "TXT", "v=DKIM1; k=rsa; p=!!notbase64!!")
    small = (
        "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAK6LVTm4k79cFpr4+SRgCqiQxEJ3YgT+vo6N+2UxEhFk"
        "1Qp4vqSkIdLv9s7w5QNrAjEVSKfSHgKqSTsG2+JIwNUCAwEAAQ=="
    )
    names.add("small._domainkey.example.test", "TXT", f"v=DKIM1; k=rsa; p={small}")
    names.fail("x._domainkey.broken.test", "servfail")
    message = b"DKIM-Signature: " + signature + b"\r\n" + MESSAGE
    (result,) = verify_stream(io.BytesIO(message), resolver)
    assert result.result == expected, result


def test_unsigned_message_has_no_results(resolver):
    assert verify_stream(io.BytesIO(MESSAGE), resolver) == []


# -- OpenDKIM, independently ------------------------------------------------------------------

needs_opendkim = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("opendkim-testmsg", "unshare", "ip"))
    or os.geteuid() != 0,
    reason="needs Debian's opendkim-tools, and root, unshare and ip for a private network",
)


def _opendkim_verify(names, message: bytes, tmp_path) -> subprocess.CompletedProcess:
    """opendkim-testmsg verifying ``message`` with DNS from our zone: in a private network
    and mount namespace, the test server listens on 127.0.0.1:53 and /etc/resolv.conf
    points there (OpenDKIM uses the system resolver, with no port option)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    (tmp_path / "message.eml").write_bytes(message)
    script = textwrap.dedent(f"""
        ip link set lo up
        mount --bind {resolv} /etc/resolv.conf
        cd {ROOT}
        {sys.executable} -m tests.support.names_server {names.zone_path} 53 \
            > {tmp_path}/port 2>&1 &
        server=$!
        for i in $(seq 50); do [ -s {tmp_path}/port ] && break; sleep 0.1; done
        opendkim-testmsg < {tmp_path}/message.eml
        rc=$?
        kill $server
        exit $rc
    """)
    return subprocess.run(
        ["unshare", "--mount", "--net", "sh", "-c", script],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@needs_opendkim
def test_opendkim_verifies_our_signatures(keys, names, tmp_path):
    done = _opendkim_verify(names, _signed(keys), tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout


@needs_opendkim
def test_opendkim_verifies_our_signatures_of_mime_mail(keys, names, tmp_path):
    done = _opendkim_verify(names, _signed(keys, MIME_MESSAGE), tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout


@needs_opendkim
def test_opendkim_rejects_our_signature_on_a_changed_message(keys, names, tmp_path):
    signed = _signed(keys).replace(b"Hello Bob", b"Hello Eve")
    done = _opendkim_verify(names, signed, tmp_path)
    assert done.returncode != 0


@needs_opendkim
def test_our_verifier_accepts_opendkim_signed_mail(names, resolver, tmp_path):
    subprocess.run(
        ["opendkim-genkey", "-b", "2048", "-d", "example.test", "-s", "odk", "-D", str(tmp_path)],
        check=True,
    )
    record = (tmp_path / "odk.txt").read_text()
    p = "".join(part for part in record.split('"')[1::2])
    names.add("odk._domainkey.example.test", "TXT", p)
    done = subprocess.run(
        ["opendkim-testmsg", "-C", "-d", "example.test", "-s", "odk", "-k",
         str(tmp_path / "odk.private")],
        input=MESSAGE, capture_output=True, check=True,
    )  # fmt: skip
    signed = done.stdout
    assert signed.lower().startswith(b"dkim-signature:")
    (result,) = verify_stream(io.BytesIO(signed), resolver)
    if b"a=rsa-sha1;" in signed.split(b"\r\n\r\n", 1)[0]:
        # opendkim-testmsg signs with rsa-sha1 (the milter's default is rsa-sha256), which
        # RFC 8301 3.1 forbids verifiers to accept
        assert result.result == "permerror" and "RFC 8301" in result.reason
        return
    assert (result.result, result.domain, result.selector) == ("pass", "example.test", "odk")
    tampered = signed.replace(b"Hello Bob", b"Hello Eve")
    assert verify_stream(io.BytesIO(tampered), resolver)[0].result == "fail"


# -- RFC 8463 Appendix A: the Ed25519 example message, key and signature ------------------------

RFC8463_MESSAGE = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
)


def test_rfc_8463_example_verifies(names, resolver):
    names.add("brisbane._domainkey.football.example.com", "TXT",
              "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")  # fmt: skip
    (result,) = verify_stream(io.BytesIO(RFC8463_MESSAGE), resolver)
    assert (result.result, result.domain, result.algorithm) == (
        "pass", "football.example.com", "ed25519-sha256",
    )  # fmt: skip
    changed = RFC8463_MESSAGE.replace(b"hungry", b"thirsty")
    assert verify_stream(io.BytesIO(changed), resolver)[0].result == "fail"


# -- ARC (RFC 8617): a chain sealed by dkimpy validates; a changed body fails it --------------


def test_arc_chain_sealed_by_dkimpy_validates_and_tampering_fails(keys, names, resolver):
    from txmailhost.mailauth.bodyhash import split_header
    from txmailhost.mailauth.verify import authenticate_message

    rsa = keys.keys("example.test")[1]
    sealed_fields = dkim.arc_sign(
        MESSAGE.replace(b"From: Alice", b"Authentication-Results: fwd.example.test; spf=pass\r\nFrom: Alice"),
        b"sel-rsa", b"example.test", rsa.dkimpy_key, b"fwd.example.test",
    )  # fmt: skip
    sealed = b"".join(sealed_fields) + MESSAGE.replace(
        b"From: Alice", b"Authentication-Results: fwd.example.test; spf=pass\r\nFrom: Alice"
    )

    def check(message: bytes):
        stream = io.BytesIO(message)
        header, first = split_header(stream)
        return authenticate_message(header, first, stream, resolver)[1]

    assert check(sealed).result == "pass"
    assert check(sealed).domain == "example.test"
    assert check(sealed.replace(b"Hello Bob", b"Hello Eve")).result == "fail"
    assert check(MESSAGE).result == "none"


def test_dsns_the_server_writes_are_signed_before_submission(keys, resolver):
    from txmailhost.mailauth.signing import SigningSubmission

    handed: list[bytes] = []

    class Recording:
        def submit_bytes(self, envelope, data):
            handed.append(data)
            return "receipt"

    dsn = (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\nTo: a@remote.test\r\n"
           b"Subject: Undelivered Mail\r\n\r\nsorry\r\n")  # fmt: skip
    assert SigningSubmission(Recording(), Signer(keys)).submit_bytes(None, dsn) == "receipt"
    [data] = handed
    assert data.endswith(dsn) and data.startswith(b"DKIM-Signature: ")
    assert {r.result for r in verify_stream(io.BytesIO(data), resolver)} == {"pass"}


# RFC 8463 Appendix A as dkimpy's tests ship it: the example message signed by
# football.example.com with both an Ed25519 (selector brisbane) and an RSA (selector test)
# key, and the keys' DNS records (A.2). Our verifier, with the keys served by the test DNS,
# must pass both as published (the test above has the Ed25519 signature alone).
RFC8463_DUAL_KEYS = {
    "brisbane._domainkey.football.example.com": (
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    ),
    "test._domainkey.football.example.com": (
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5"
        "qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4h"
        "stT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
    ),
}
RFC8463_DUAL_FILE = os.path.join(
    os.path.dirname(__file__), "..", "fixtures", "dkim", "rfc8463-a3.eml"
)


def _rfc8463_dual_message() -> bytes:
    with open(RFC8463_DUAL_FILE, "rb") as f:
        data = f.read()
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as it arrives over SMTP


def test_rfc8463_example_verifies_with_both_algorithms(names, resolver):
    for name, record in RFC8463_DUAL_KEYS.items():
        names.add(name, "TXT", record)
    results = verify_stream(io.BytesIO(_rfc8463_dual_message()), resolver)
    assert {(r.algorithm, r.selector, r.result) for r in results} == {
        ("ed25519-sha256", "brisbane", "pass"),
        ("rsa-sha256", "test", "pass"),
    }


def test_rfc8463_example_fails_when_its_body_is_changed(names, resolver):
    for name, record in RFC8463_DUAL_KEYS.items():
        names.add(name, "TXT", record)
    changed = _rfc8463_dual_message().replace(b"We lost the game.", b"We won the game.")
    assert {r.result for r in verify_stream(io.BytesIO(changed), resolver)} == {"fail"}


def _der_rsa_public_key(modulus: int, exponent: int) -> bytes:
    """PKCS#1 RSAPublicKey, SEQUENCE { INTEGER n, INTEGER e }, written by hand: the
    cryptography package refuses the exponents this test needs."""

    def length(n: int) -> bytes:
        if n < 0x80:
            return bytes([n])
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([0x80 | len(raw)]) + raw

    def integer(value: int) -> bytes:
        raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0: positive
        return b"\x02" + length(len(raw)) + raw

    body = integer(modulus) + integer(exponent)
    return b"\x30" + length(len(body)) + body


def test_a_key_with_a_huge_exponent_is_refused_before_any_arithmetic(keys, names, resolver):
    """RSA verification raises the signature to the public exponent: one of 320,000 bits
    took 2.7 s a signature with the interpreter held (every connection waited)."""
    import base64
    import time

    rsa = keys.keys("example.test")[1]
    public = rsa.private_key().public_key().public_numbers()
    huge = (1 << 320_000) + 1
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(_der_rsa_public_key(public.n, huge)).decode()
    names.add("big._domainkey.example.test", "TXT", record)
    signed = _signed(keys).replace(b"s=sel-rsa", b"s=big")
    started = time.process_time()
    results = verify_stream(io.BytesIO(signed), resolver)
    assert time.process_time() - started < 1.0
    big = [r for r in results if r.selector == "big"]
    assert big and big[0].result == "permerror" and "too large" in big[0].reason


def test_a_chain_of_more_than_50_arc_sets_fails_without_being_checked(resolver):
    """RFC 8617 4.2.1: at most 50 sets. Each seal covers every set before it, so checking a
    longer chain costs the square of its length (300 sets: 4.5 s)."""
    from txmailhost.mailauth.verify import MAX_ARC_SETS, authenticate_message

    sets = b"".join(
        b"ARC-Seal: i=%d; a=rsa-sha256; cv=pass; d=x.test; s=s; b=AAAA\r\n" % n
        for n in range(1, MAX_ARC_SETS + 2)
    )
    header = sets + MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    _dkim, arc = authenticate_message(header, b"", io.BytesIO(b"body\r\n"), resolver)
    assert arc.result == "fail" and "50 ARC sets" in arc.reason


def test_a_submission_from_a_domain_without_keys_costs_no_thread_once_known(tmp_path, monkeypatch):
    """With a reactor, signing runs in the filters' threads; a message held in memory whose
    From domain was just found keyless (``UNSIGNED_FRESH``) is passed on the reactor, and a
    domain given keys meanwhile is signed again once that time is past."""
    from twisted.internet.defer import Deferred

    from tests.mailauth.test_inline import CountingPool
    from tests.mailauth.test_reports import InlineReactor
    from txmailhost.mailauth import signing as signing_module

    store = KeyStore(str(tmp_path / "dkim"))
    pool = CountingPool()
    signing = SigningFilter(Signer(store), InlineReactor(), pool)
    user = Client("127.0.0.1", authenticated_as="alice@example.test", listener="submission")
    transaction = Transaction("alice@example.test", ("bob@remote.test",))

    def submit():
        answer = signing.end_of_data(user, transaction, io.BytesIO(MESSAGE))
        if isinstance(answer, Deferred):
            found = []
            answer.addCallback(found.append)
            [answer] = found
        return [name for name, _ in answer.headers]

    now = [1000.0]
    monkeypatch.setattr(signing_module.time, "monotonic", lambda: now[0])
    assert submit() == [] and pool.trips == 1  # the key store read in a thread: no keys
    assert submit() == [] and pool.trips == 1  # known keyless: no trip
    store.create("example.test", "sel")
    now[0] += signing_module.UNSIGNED_FRESH
    assert submit() == ["DKIM-Signature", "DKIM-Signature"] and pool.trips == 2
    assert submit() == ["DKIM-Signature", "DKIM-Signature"] and pool.trips == 3
    nobody = MESSAGE.replace(b"From: ", b"From: a@one.test, b@two.test, ", 1)
    answer = signing.end_of_data(user, transaction, io.BytesIO(nobody))
    assert answer.headers == () and pool.trips == 3  # no one author domain: nothing to sign
