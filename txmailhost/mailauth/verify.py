"""DKIM verification of every signature of a message (RFC 6376 6), over the spooled stream.

Each ``DKIM-Signature`` gets one result as RFC 8601 2.7.1 names them: ``pass``, ``fail``
(the signature or body hash doesn't match), ``neutral`` (a syntactically broken signature
we can't judge — counted as ``permerror`` here, which receivers treat alike), ``temperror``
(the key's DNS lookup failed for now) or ``permerror`` (no key, a malformed key or
signature, a key too small). Nothing a sender writes raises out of here: a message with
hostile signatures is still delivered, with what we found in its header field.

Body hashes for all signatures come from one pass over the stream (``bodyhash.py``);
dkimpy checks the header hash and the signature against the key, which we fetch through
our resolver first so that a temporary DNS failure is told apart from a missing key
(dkimpy alone reports both as "fail"). At most ``MAX_SIGNATURES`` are checked: each costs
a DNS lookup and an RSA operation, and a sender choosing the count must not choose our cost.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from txmailhost.mailauth.bodyhash import BodySpec, HeaderTooLarge, body_hashes, split_header
from txmailhost.mailauth.resolver import DNSTempError, MailAuthResolver

MAX_SIGNATURES = 8
MIN_RSA_BITS = 1024  # RFC 8301 3.2: smaller keys MUST NOT be considered valid
_HASHES = {b"rsa-sha256": "sha256", b"ed25519-sha256": "sha256", b"rsa-sha1": "sha1"}


@dataclass(frozen=True)
class DKIMResult:
    result: str  # pass | fail | temperror | permerror
    domain: str  # d=
    selector: str  # s=
    b: str  # the start of b=, to tell signatures apart (RFC 6008)
    algorithm: str  # a=
    reason: str = ""


def _spec(sig: dict[bytes, bytes]) -> BodySpec:
    c = sig.get(b"c", b"simple/simple").decode("ascii", "replace")
    header_canon, _, body_canon = c.partition("/")
    body_canon = body_canon or "simple"
    if header_canon not in ("simple", "relaxed") or body_canon not in ("simple", "relaxed"):
        raise dkim.MessageFormatError(f"invalid c= value {c!r}")
    algorithm = sig.get(b"a", b"")
    if algorithm not in _HASHES:
        raise dkim.MessageFormatError(f"unknown a= value {algorithm!r}")
    length = sig.get(b"l")
    return BodySpec(body_canon, _HASHES[algorithm], int(length) if length is not None else None)


class _HashedVerifier(dkim.DKIM):
    """dkimpy's DKIM whose body-hash check uses hashes computed over the stream."""

    body_hashes: dict[BodySpec, bytes] = {}

    def verify_sig_process(self, sig: Any, include_headers: Any, sig_header: Any, dnsfunc: Any):
        if b"bh" in sig:
            try:
                wanted = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
            except (ValueError, TypeError) as e:
                raise dkim.MessageFormatError(f"bad bh= value: {e}") from None
            if self.body_hashes.get(_spec(sig)) != wanted:
                raise dkim.ValidationError("body hash mismatch")
            sig = {k: v for k, v in sig.items() if k != b"bh"}  # checked: dkimpy skips it
        return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


def verify_stream(stream: BinaryIO, resolver: MailAuthResolver) -> list[DKIMResult]:
    """One result per DKIM-Signature field (up to ``MAX_SIGNATURES``), top first; [] when
    the message has none. Blocking (DNS, hashing): a worker thread."""
    try:
        header, first = split_header(stream)
    except HeaderTooLarge:
        return []
    return verify_message(header, first, stream, resolver)


def verify_message(
    header: bytes, first: bytes, stream: BinaryIO, resolver: MailAuthResolver
) -> list[DKIMResult]:
    """``verify_stream`` for a message whose header section was read already (``first``:
    the body's octets read along with it, ``stream`` the rest)."""
    if b"dkim-signature" not in header.lower():
        return []
    try:
        verifier = _HashedVerifier(header, minkey=MIN_RSA_BITS)
    except dkim.DKIMException as e:
        return [DKIMResult("permerror", "", "", "", "", f"malformed header: {e}")]
    fields = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    parsed: list[dict[bytes, bytes] | str] = []
    for value in fields[:MAX_SIGNATURES]:
        try:
            sig = parse_tag_value(value)
            dkim.validate_signature_fields(sig)
            _spec(sig)
            parsed.append(sig)
        except (InvalidTagValueList, dkim.DKIMException, ValueError) as e:
            parsed.append(str(e) or "malformed signature")
    specs = {_spec(sig) for sig in parsed if isinstance(sig, dict)}
    verifier.body_hashes = body_hashes(first, stream, specs)
    return [_one(verifier, index, sig, resolver) for index, sig in enumerate(parsed)]


def _one(
    verifier: _HashedVerifier, index: int, sig: dict[bytes, bytes] | str, resolver: Any
) -> DKIMResult:
    if isinstance(sig, str):
        return DKIMResult("permerror", "", "", "", "", f"malformed signature: {sig}")
    domain, selector = _text(sig.get(b"d")), _text(sig.get(b"s"))
    b = re.sub(r"\s+", "", _text(sig.get(b"b")))[:8]

    def result(outcome: str, reason: str = "") -> DKIMResult:
        return DKIMResult(outcome, domain, selector, b, _text(sig.get(b"a")), reason)

    name = f"{selector}._domainkey.{domain}"
    try:
        record = resolver.dkim_txt(name)
    except dkim.DnsTimeoutError as e:
        return result("temperror", f"key lookup: {e}")
    except DNSTempError as e:
        return result("temperror", f"key lookup: {e}")
    if record is None:
        return result("permerror", "no key")
    try:
        _pk, bits, kind, _tlsrpt = dkim.evaluate_pk(name.encode(), record)
    except Exception as e:  # dkimpy raises more than its own errors on bad keys
        return result("permerror", f"bad key: {e}")
    if kind == b"rsa" and bits < MIN_RSA_BITS:
        return result("permerror", f"RSA key of {bits} bits is too small (RFC 8301)")
    try:
        good = verifier.verify(index, dnsfunc=lambda _name, timeout=5: record)
    except dkim.ValidationError as e:
        return result("fail", str(e))
    except Exception as e:
        return result("permerror", str(e) or type(e).__name__)
    return result("pass") if good else result("fail", "signature did not verify")
