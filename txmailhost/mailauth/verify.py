"""DKIM verification of every signature of a message (RFC 6376 6), over the spooled stream.

Each ``DKIM-Signature`` gets one result as RFC 8601 2.7.1 names them: ``pass``, ``fail``
(the signature or body hash doesn't match), ``neutral`` (a syntactically broken signature
we can't judge — counted as ``permerror`` here, which receivers treat alike), ``temperror``
(the key's DNS lookup failed for now), ``permerror`` (no key, a malformed key or
signature, a key too small) or ``policy`` (valid, but its ``l=`` leaves part of the body
unsigned). Nothing a sender writes raises out of here: a message with
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

from txmailhost.mailauth.bodyhash import (
    CHUNK,
    BodyHashing,
    BodySpec,
    HeaderTooLarge,
    split_header,
)
from txmailhost.mailauth.resolver import DNSTempError, MailAuthResolver

MAX_SIGNATURES = 8
MIN_RSA_BITS = 1024  # RFC 8301 3.2: smaller keys MUST NOT be considered valid
# A key the sender chooses costs what its size says: RSA verification is a power by the
# public exponent, so one of 320,000 bits took 2.7 s a signature, holding the interpreter
# (every connection waited). Keys are 1024-4096 bits with exponent 3 or 65537 (RFC 8301).
MAX_RSA_BITS = 8192
MAX_RSA_EXPONENT_BITS = 64
MAX_ARC_SETS = 50  # RFC 8617 4.2.1: a chain longer than 50 sets fails
_HASHES = {b"rsa-sha256": "sha256", b"ed25519-sha256": "sha256"}
# RFC 8301 3.1: rsa-sha1 "MUST NOT be used for signing or verifying" (a permerror here, which
# DMARC doesn't count as a pass; it counted as one).
_REFUSED = {b"rsa-sha1": "rsa-sha1 must not be used for verifying (RFC 8301 3.1)"}


def _select_headers(
    headers: list[tuple[bytes, bytes]], include_headers: list[bytes]
) -> list[tuple[bytes, bytes]]:
    """dkimpy's ``select_headers`` (RFC 6376 5.4.2: each name of h= takes the last instance
    of that field not taken yet, bottom to top; a name with none left takes nothing) in one
    pass. dkimpy's scans the header section afresh for each distinct name, so a signature
    whose h= listed 12,000 names over 12,000 fields (189 KiB) took 11 s of CPU, with the
    interpreter's lock, and a 1 MiB header section minutes. Installed in dkimpy for the
    header hashes of DKIM and ARC, signing and verifying alike."""
    return [headers[i] for i in _chosen(_positions(headers), include_headers)]


def _positions(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[int]]:
    """Per lower-cased field name, where its fields are, top to bottom."""
    positions: dict[bytes, list[int]] = {}
    for index, (name, _value) in enumerate(headers):
        positions.setdefault(name.lower(), []).append(index)
    return positions


def _chosen(positions: dict[bytes, list[int]], include_headers: list[bytes]) -> list[int]:
    """Where the fields ``include_headers`` selects are, in its order (``_select_headers``);
    ``positions`` is left as it was, so it can serve every signature of a message."""
    taken: dict[bytes, int] = {}
    chosen = []
    for name in include_headers:
        fields = positions.get(name, [])
        used = taken.get(name, 0)
        if used < len(fields):
            chosen.append(fields[len(fields) - 1 - used])
            taken[name] = used + 1
    return chosen


dkim.select_headers = _select_headers  # hash_headers looks it up at each call


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
    if algorithm in _REFUSED:
        raise dkim.MessageFormatError(_REFUSED[algorithm])
    if algorithm not in _HASHES:
        raise dkim.MessageFormatError(f"unknown a= value {algorithm!r}")
    length = sig.get(b"l")
    return BodySpec(body_canon, _HASHES[algorithm], int(length) if length is not None else None)


class _BodyHashed:
    """Mixin for dkimpy's DKIM and ARC: the body-hash check uses the hashes computed over
    the stream, and the header hash sees only the fields the signature selects; the rest
    (header hash, key, signature) is dkimpy's.

    dkimpy canonicalizes the whole header section for every signature before selecting
    from it: 8 signatures and 50 ARC sets over a header padded to 941 KiB took 20-48 s of
    CPU a message, a cost the sender chose. Selecting first gives the same fields to hash
    (canonicalization maps field to field and keeps their order; names are compared in
    lower case either way)."""

    headers: list[tuple[bytes, bytes]]
    body_hashes: dict[BodySpec, bytes] = {}
    partial: set[BodySpec] = set()  # specs whose l= left part of the body unsigned
    _positions: dict[bytes, list[int]] | None = None  # per lower-cased name, its fields

    def signed_indices(self, include_headers: list[bytes]) -> list[int]:
        """Where the fields ``include_headers`` selects are (``_select_headers``'s choice,
        with the extra From dkimpy's verification adds), in the header section's order."""
        if self._positions is None:
            self._positions = _positions(self.headers)
        names = list(include_headers) + ([b"from"] if b"from" in include_headers else [])
        return sorted(_chosen(self._positions, names))

    def verify_sig_process(self, sig: Any, include_headers: Any, sig_header: Any, dnsfunc: Any):
        if b"bh" in sig:
            try:
                wanted = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
            except (ValueError, TypeError) as e:
                raise dkim.MessageFormatError(f"bad bh= value: {e}") from None
            if self.body_hashes.get(_spec(sig)) != wanted:
                raise dkim.ValidationError("body hash mismatch")
            sig = {k: v for k, v in sig.items() if k != b"bh"}  # checked: dkimpy skips it
        every = self.headers
        self.headers = [every[i] for i in self.signed_indices(include_headers)]
        try:
            return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)  # type: ignore[misc]
        finally:
            self.headers = every


class _HashedVerifier(_BodyHashed, dkim.DKIM):
    pass


class _HashedARC(_BodyHashed, dkim.ARC):
    """Only the newest set's ARC-Message-Signature is checked (RFC 8617 5.2: step 5; the
    older ones, step 6, are optional): each costs a key lookup and a header hash, and the
    chain's result depends on the newest alone. The seals (step 7) are all checked."""

    newest = b""  # the newest set's i=

    def keep_only(self, newest: bytes, include_headers: list[bytes]) -> None:
        """The header section cut to what validation reads: the ARC fields (the seals
        sign those alone) and the fields the newest AMS selects. dkimpy scans the whole
        section again for each set (50 of them, at most)."""
        self.newest = newest
        kept = set(self.signed_indices(include_headers))
        kept.update(i for i, (name, _v) in enumerate(self.headers) if name.lower() in _ARC_FIELDS)
        self.headers = [self.headers[i] for i in sorted(kept)]
        self._positions = None

    def verify_sig(self, sig: Any, include_headers: Any, sig_header: Any, dnsfunc: Any):
        if sig_header[0].lower() == b"arc-message-signature" and sig.get(b"i") != self.newest:
            return False  # not checked; dkimpy reports it, nothing reads it
        if sig.get(b"a") in _REFUSED:  # a seal's (a message signature's fails in _spec)
            return False
        return super().verify_sig(sig, include_headers, sig_header, dnsfunc)


_ARC_FIELDS = frozenset(name.lower() for name in dkim.ARC.ARC_HEADERS)


@dataclass(frozen=True)
class ARCResult:
    """RFC 8617 5.2: the chain's validation status (pass, fail, none) and who sealed last."""

    result: str
    domain: str = ""  # the newest ARC-Seal's d=
    reason: str = ""


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
    hashing = BodyHashing({_spec(sig) for sig in parsed if isinstance(sig, dict)})
    hashing.update(first)
    while chunk := stream.read(CHUNK):
        hashing.update(chunk)
    verifier.body_hashes = hashing.finish()
    verifier.partial = hashing.partial
    return [_one(verifier, index, sig, resolver) for index, sig in enumerate(parsed)]


def authenticate_message(
    header: bytes, first: bytes, stream: BinaryIO, resolver: MailAuthResolver
) -> tuple[list[DKIMResult], ARCResult]:
    """DKIM results and the ARC chain's validation (RFC 8617), body hashes for both from one
    pass over the stream."""
    lowered = header.lower()
    if b"arc-seal" not in lowered:
        return verify_message(header, first, stream, resolver), ARCResult("none")
    if len(re.findall(rb"(?m)^arc-seal[ \t]*:", lowered)) > MAX_ARC_SETS:
        # each set's seal covers every set before it: the work grows with the square
        reason = f"more than {MAX_ARC_SETS} ARC sets (RFC 8617 4.2.1)"
        return verify_message(header, first, stream, resolver), ARCResult("fail", "", reason)
    arc_specs: set[BodySpec] = set()
    newest: tuple[int, bytes, list[bytes]] = (0, b"", [])  # (i, i as written, h= names)
    try:
        checker = _HashedARC(header, minkey=MIN_RSA_BITS)
        for name, value in checker.headers:
            if name.lower() == b"arc-message-signature":
                sig = parse_tag_value(value)
                sig.setdefault(b"c", b"relaxed/relaxed")  # ARC's default (RFC 8617 4.1.2)
                arc_specs.add(_spec(sig))
                instance = sig.get(b"i", b"")
                if instance.isdigit() and int(instance) > newest[0]:
                    names = [n.lower() for n in re.split(rb"\s*:\s*", sig.get(b"h", b""))]
                    newest = (int(instance), instance, names)
        checker.keep_only(newest[1], newest[2])
    except Exception as e:  # a broken ARC set: the chain fails, DKIM is still checked
        return verify_message(header, first, stream, resolver), ARCResult("fail", "", str(e))
    hashed = _Tee(first, stream, arc_specs)
    dkim_results = verify_message(header, b"", hashed, resolver)  # type: ignore[arg-type]
    checker.body_hashes = hashed.finish()
    return dkim_results, _arc(checker, resolver)


def _arc(checker: _HashedARC, resolver: MailAuthResolver) -> ARCResult:
    def key_record(name: Any, timeout: int = 5) -> Any:
        record = resolver.dkim_txt(name)
        # a key too costly to verify with is as good as none: the set fails
        return None if record is None or _key_problem(name, record) else record

    try:
        status, results, reason = checker.verify(dnsfunc=key_record)
    except Exception as e:
        return ARCResult("fail", "", str(e) or type(e).__name__)
    domain = _text(results[0].get("as-domain")) if results else ""
    if status == dkim.CV_Pass:
        return ARCResult("pass", domain)
    if status == dkim.CV_None:
        return ARCResult("none")
    return ARCResult("fail", domain, str(reason))


def _key_problem(name: Any, record: Any) -> str:
    """Why the key ``record`` can't be used (unparsable, an RSA key too small, or too large
    to verify with at a bounded cost), or "" for a usable one."""
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    try:
        pk, bits, kind, _tlsrpt = dkim.evaluate_pk(str(name).encode(), record)
    except Exception as e:  # dkimpy raises more than its own errors on bad keys
        return f"bad key: {e}"
    if kind != b"rsa":
        return ""
    if bits < MIN_RSA_BITS:
        return f"RSA key of {bits} bits is too small (RFC 8301)"
    exponent = pk.get("publicExponent", 0) if isinstance(pk, dict) else 0
    if bits > MAX_RSA_BITS or int(exponent).bit_length() > MAX_RSA_EXPONENT_BITS:
        return f"RSA key too large to verify with ({bits} bits, exponent of {int(exponent).bit_length()} bits)"
    return ""


class _Tee:
    """The stream as DKIM verification reads it, hashed for ARC's body specs on the way,
    so the body is read once for both."""

    def __init__(self, first: bytes, stream: BinaryIO, specs: set[BodySpec]) -> None:
        self._stream = stream
        self._hashing = BodyHashing(specs)
        self._hashing.update(first)
        self._first = first

    def read(self, size: int = -1) -> bytes:
        if self._first:  # given back once, already hashed
            data, self._first = self._first, b""
            return data
        data = self._stream.read(size)
        self._hashing.update(data)
        return data

    def finish(self) -> dict[BodySpec, bytes]:
        while self.read(1 << 18):  # whatever DKIM verification did not need to read
            pass
        return self._hashing.finish()


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
    problem = _key_problem(name, record)
    if problem:
        return result("permerror", problem)
    try:
        good = verifier.verify(index, dnsfunc=lambda _name, timeout=5: record)
    except dkim.ValidationError as e:
        return result("fail", str(e))
    except Exception as e:
        return result("permerror", str(e) or type(e).__name__)
    if not good:
        return result("fail", "signature did not verify")
    if _spec(sig) in verifier.partial:
        # RFC 6376 8.2: what follows l= octets is anyone's, e.g. "pay this account" under a
        # bank's valid signature. Valid, but not accepted here (RFC 8601 2.7.1 "policy"), so
        # DMARC doesn't count it: a signature whose l= covers the whole body still passes.
        return result("policy", "body goes on past l=: text added after signing")
    return result("pass")
