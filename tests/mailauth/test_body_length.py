"""DKIM ``l=``: a valid signature over only the start of the body does not pass for DMARC
when text follows what it signed (RFC 6376 8.2, RFC 8601 2.7.1 ``policy``)."""

from __future__ import annotations

import io

import dkim

from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.mailauth.checks import InboundChecks
from txmailhost.mailauth.verify import verify_stream

CLIENT = Client("127.0.0.9", helo="mx.sender.test", listener="smtp")


def _signed_with_length(evil, body: bytes) -> bytes:
    [rsa] = [k for k in evil.keys("evil.test") if k.algorithm == "rsa"]
    message = b"From: ceo@evil.test\r\nTo: bob@x.test\r\nSubject: news\r\n\r\n" + body
    return dkim.sign(message, rsa.selector.encode(), b"evil.test", rsa.private_pem,
                     length=True, include_headers=[b"from", b"to", b"subject"]) + message  # fmt: skip


def test_text_added_past_l_is_not_a_dkim_pass_for_dmarc(evil, names, resolver):
    names.add("_dmarc.evil.test", "TXT", "v=DMARC1; p=reject")
    checks = InboundChecks(resolver, "mx.example.test")
    signed = _signed_with_length(evil, b"Our newsletter.\r\n")
    verdict = checks.end_of_data(CLIENT, Transaction("x@forger.test", ("bob@x.test",), "Q"),
                                 io.BytesIO(signed))  # fmt: skip
    assert verdict.action is Action.ACCEPT  # l= covering the whole body: a pass
    assert "dkim=pass" in verdict.headers[0][1]
    forged = signed + b"\r\nWire the money to IBAN XX00 0000 today.\r\n"
    [result] = verify_stream(io.BytesIO(forged), resolver)
    assert result.result == "policy", result  # valid, but not for what follows l=
    verdict = checks.end_of_data(CLIENT, Transaction("x@forger.test", ("bob@x.test",), "Q"),
                                 io.BytesIO(forged))  # fmt: skip
    assert verdict.action is Action.REJECT, verdict  # dkim=pass, dmarc=pass before


def test_trailing_empty_lines_past_l_are_no_added_text(evil, resolver):
    signed = _signed_with_length(evil, b"Our newsletter.\r\n")
    [result] = verify_stream(io.BytesIO(signed + b"\r\n\r\n"), resolver)
    assert result.result == "pass"  # canonical bodies drop them (RFC 6376 3.4.3, 3.4.4)
