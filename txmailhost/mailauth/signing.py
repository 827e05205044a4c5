"""DKIM signing of our users' mail and of our DSNs: two signatures, Ed25519 and RSA (RFC 8463).

Signatures are made with dkimpy, relaxed/relaxed (RFC 6376 3.4: survives re-folding and
trailing-space changes on the way), over From, To, Subject, Date and Message-ID *oversigned*
(each listed once more than it occurs, RFC 6376 8.15: nobody can add a second From or
Subject afterwards without breaking the signature) and the other fields that carry meaning
when present (Cc, Reply-To, MIME ones, threading ones). The signing domain is the From
address's domain, so the signature aligns for DMARC (RFC 7489 3.1.1), or a parent domain's
when it has none (still aligned under relaxed alignment); without keys (``keys.py``) the
message goes unsigned.

The body hash is computed over the spooled message in chunks (``bodyhash.py``) and handed to
dkimpy, which canonicalises and signs the header section: a 50 MiB message is read once and
never held whole. ``SigningFilter`` does this at the end of data of an authenticated
submission, so the ``DKIM-Signature`` fields are on top of the message before it is made
durable and queued: what is queued is what is sent. ``SigningSubmission`` does the same
for the DSNs and notices the server writes itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from typing import Any, BinaryIO

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from dkim.canonicalization import CanonicalizationPolicy
from twisted.internet import threads
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost.delivery.incoming import in_memory
from txmailhost.delivery.interfaces import ISubmission
from txmailhost.filters.base import MessageFilter
from txmailhost.filters.interfaces import Client, Transaction, Verdict
from txmailhost.mailauth.authors import author_domains
from txmailhost.mailauth.bodyhash import BodySpec, HeaderTooLarge, body_hashes, split_header
from txmailhost.mailauth.keys import KeyStore, SigningKey

log = Logger()

OVERSIGNED = ("from", "to", "subject", "date", "message-id")
SIGNED_WHEN_PRESENT = (
    "cc", "reply-to", "in-reply-to", "references", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "sender",
)  # fmt: skip
_BODY = BodySpec("relaxed", "sha256")
_ALGORITHM = {"ed25519": b"ed25519-sha256", "rsa": b"rsa-sha256"}


def from_domain(header: bytes) -> str | None:
    """The one author domain of the message (RFC 5322 3.6.2), or None where From names none
    or several (``authors.py``): nothing to sign for."""
    domains = author_domains(header)
    return domains[0] if len(domains) == 1 else None


def signed_fields(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The h= list: oversigned fields once more than they occur, the others as they occur."""
    counts: dict[bytes, int] = {}
    for name, _ in headers:
        key = name.lower().strip()
        counts[key] = counts.get(key, 0) + 1
    names: list[bytes] = []
    for field in OVERSIGNED:
        names += [field.encode()] * (counts.get(field.encode(), 0) + 1)
    for field in SIGNED_WHEN_PRESENT:
        names += [field.encode()] * counts.get(field.encode(), 0)
    return names


def sign_header(
    headers: list[Any],
    fields: list[tuple[bytes, bytes]],
    include: list[bytes] | tuple[bytes, ...],
    header_name: bytes,
    key: SigningKey,
) -> bytes:
    """The value of a signature field (DKIM-Signature, ARC-Message-Signature, ARC-Seal) over
    ``headers`` (dkimpy's parsed list), as dkimpy's ``gen_header`` makes it: the field with a
    placeholder b=, folded, b= emptied, hashed after the signed fields relaxed (RFC 6376 3.7);
    then b= filled in and folded. The signature itself is OpenSSL's (``cryptography``):
    dkimpy's RSA is pure Python, 80 ms per RSA-2048 signature here against under 1 ms."""
    fields = [(name, value) for name, value in fields if name != b"b"] + [(b"b", b"0" * 60)]
    canonicalization = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    folded = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(header_name))
    unsigned = dkim.RE_BTAG.sub(b"\\1", folded)
    digest = hashlib.sha256()
    dkim.hash_headers(
        digest,
        canonicalization,
        canonicalization.canonicalize_headers(headers),
        list(include),
        (header_name, b" " + unsigned),
        dict(fields),
    )
    private = key.private_key()
    if key.algorithm == "ed25519":
        signature = private.sign(digest.digest())  # PureEdDSA over the hash (RFC 8463 3)
    else:
        signature = private.sign(
            digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
    fields[-1] = (b"b", base64.b64encode(signature))
    return dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(header_name))


class _HashedDKIM(dkim.DKIM):
    """dkimpy's DKIM parsing, with the body hash given (computed over the stream)."""

    def sign_hashed(self, key: SigningKey, include: list[bytes], body_hash: bytes) -> bytes:
        fields = [
            (b"v", b"1"),
            (b"a", _ALGORITHM[key.algorithm]),
            (b"c", b"relaxed/relaxed"),
            (b"d", key.domain.encode()),
            (b"s", key.selector.encode()),
            (b"t", str(int(time.time())).encode()),
            # " : " as dkimpy's signer writes it: folding may break a line only at white
            # space, and in h= white space is allowed only around the colons (RFC 6376 3.5).
            # Joined by ":" alone, the fold at column 72 split a field name ("mime-\r\n
            # version") and every verifier but OpenDKIM's failed the signature.
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(body_hash)),
        ]
        return sign_header(self.headers, fields, include, b"DKIM-Signature", key)


# How long a domain found without keys is taken to have none on the reactor thread, which
# doesn't read the key store (``Signer.surely_unsigned``): ``dkim init`` takes effect within it.
UNSIGNED_FRESH = 5.0


class Signer:
    """Signs messages with the keys of ``KeyStore`` (read again when they change)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._unsigned: dict[str, float] = {}  # domain -> when it was last found keyless

    def surely_unsigned(self, header: bytes) -> bool:
        """Whether the message with this header section certainly gets no signature, known
        without reading the key store: its From names no one domain, or its domain had no
        keys when looked at less than ``UNSIGNED_FRESH`` seconds ago (``keys_for``)."""
        domain = from_domain(header)
        if domain is None:
            return True
        found = self._unsigned.get(domain)
        return found is not None and time.monotonic() - found < UNSIGNED_FRESH

    def signature_fields(self, stream: BinaryIO) -> tuple[tuple[str, str], ...]:
        """The ``DKIM-Signature`` fields (name, value) for the message in ``stream``, Ed25519
        first; () when its From domain has no keys or the message can't be signed."""
        try:
            header, first = split_header(stream)
        except HeaderTooLarge:
            return ()
        keys = self.keys_for(from_domain(header))
        if not keys:
            return ()
        try:
            signer = _HashedDKIM(header + b"\r\n" if not header.endswith(b"\n\n") else header)
        except dkim.DKIMException as e:
            log.warn("dkim: not signing, the header is malformed: {error}", error=e)
            return ()
        include = signed_fields(signer.headers)
        body_hash = body_hashes(first, stream, {_BODY})[_BODY]
        fields = []
        for key in keys:
            try:
                value = signer.sign_hashed(key, include, body_hash)
            except (dkim.DKIMException, ValueError) as e:
                log.error("dkim: signing for {domain} with {selector} failed: {error}",
                          domain=key.domain, selector=key.selector, error=e)  # fmt: skip
                continue
            fields.append(("DKIM-Signature", value.decode("ascii").strip()))
        return tuple(fields)

    def keys_for(self, domain: str | None) -> list[SigningKey]:
        """The From domain's keys, else those of a parent domain (relaxed alignment still
        holds: MAILER-DAEMON@mx.example.org signed as example.org)."""
        if not domain:
            return []
        labels = domain.split(".")
        while len(labels) >= 2:
            keys = self.keys.keys(".".join(labels))
            if keys:
                self._unsigned.pop(domain, None)
                return keys
            labels = labels[1:]
        if len(self._unsigned) >= 4096:
            self._unsigned.clear()
        self._unsigned[domain] = time.monotonic()
        return []

    def sign_bytes(self, message: bytes) -> bytes:
        """``message`` with its signature fields on top (small messages the server wrote)."""
        fields = self.signature_fields(io.BytesIO(message))
        added = b"".join(f"{name}: {value}\r\n".encode() for name, value in fields)
        return added + message


class SigningFilter(MessageFilter):
    """Signs at the end of data what an authenticated user submits (never inbound mail).

    Not a blocking filter: inbound mail, which it doesn't touch, then costs no trip to a
    worker thread; a submission is signed in ``pool`` (RSA and reading the message), or
    inline when no reactor is given (tests, embedding without one). A message held in
    memory whose From domain was just found without keys (``Signer.surely_unsigned``) is
    passed on the reactor: a trip to a thread to sign nothing cost more than a small
    message's whole delivery."""

    name = "dkim-sign"
    blocking = False

    def __init__(self, signer: Signer, reactor: Any = None, pool: Any = None) -> None:
        self.signer = signer
        self._reactor = reactor
        self._pool = pool

    def skips(self, client: Client) -> bool:
        """Only what our users submit is signed."""
        return not client.authenticated_as

    def end_of_data(self, client: Client, transaction: Transaction, message: BinaryIO) -> Any:
        if not client.authenticated_as:
            return Verdict.accept()
        if self._reactor is None:
            return self._sign(message)
        if in_memory(message):
            data = message.read()
            try:
                header, _first = split_header(io.BytesIO(data))
            except HeaderTooLarge:
                return Verdict.accept()  # as ``signature_fields`` answers it
            if self.signer.surely_unsigned(header):
                return Verdict.accept()
            message = io.BytesIO(data)
        return threads.deferToThreadPool(self._reactor, self._pool, self._sign, message)

    def _sign(self, message: BinaryIO) -> Verdict:
        return Verdict.accept(headers=self.signer.signature_fields(message))


@implementer(ISubmission)
class SigningSubmission:
    """``ISubmission`` in front of the real one, signing what ``submit_bytes`` is given (the
    queue's DSNs, notices). ``open``/``submit`` pass through: SMTP signs with the filter."""

    def __init__(self, delivery: Any, signer: Signer) -> None:
        self._delivery = delivery
        self._signer = signer

    def open(self) -> Any:
        return self._delivery.open()

    def submit(self, envelope: Any, message: Any) -> Any:
        return self._delivery.submit(envelope, message)

    def submit_bytes(self, envelope: Any, data: bytes) -> Any:
        try:
            data = self._signer.sign_bytes(data)
        except Exception:  # an unsigned DSN is better than none
            log.failure("dkim: signing a message of our own failed; sent unsigned")
        return self._delivery.submit_bytes(envelope, data)
