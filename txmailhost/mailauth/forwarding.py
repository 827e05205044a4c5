"""ARC sealing (RFC 8617) of mail we forward: aliases and forwards to other domains.

A message that arrived on the inbound listener and leaves again (an alias or forward whose
target is elsewhere) no longer passes SPF at its next hop, and a mailing-list-like change
would break DKIM; the ARC set we add carries our verdict (our Authentication-Results,
as ``ARC-Authentication-Results``), signs the message as it leaves us
(``ARC-Message-Signature``) and seals the chain (``ARC-Seal``, ``cv=`` from the ``arc=``
result we found), so the next receiver can trust what we saw.

``ForwardSealing`` sits in front of the delivery hand-off of the inbound listener: when an
envelope has remote routes, the set is computed over the message (in a worker thread; the
body hash streamed as for DKIM) and put on top before ``submit`` makes it durable, so what
is queued is what is sent. Users' Sieve scripts hand it what they send (``submit_bytes``):
a ``redirect`` elsewhere is sealed the same way; their vacation replies and refusals carry
no Authentication-Results of ours and go out unsealed. Sealing needs an RSA key (ARC allows no Ed25519 yet) of the host
name's domain or a parent (``txmailhost dkim init``); without one, or without our
Authentication-Results on the message, mail is forwarded unsealed.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import dkim
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost.delivery.interfaces import ISubmission
from txmailhost.mailauth.bodyhash import BodySpec, HeaderTooLarge, body_hashes, split_header
from txmailhost.mailauth.keys import SigningKey
from txmailhost.mailauth.signing import Signer, sign_header
from txmailhost.routing import RouteKind

log = Logger()

_BODY = BodySpec("relaxed", "sha256")
AMS_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)  # fmt: skip (dkimpy refuses DKIM-Signature in an AMS's h=)


class _StreamedARC(dkim.ARC):
    """dkimpy's ARC.sign (the AAR from our results, instance and cv rules, the seal's
    header order) with the AMS body hash computed over the stream and the signatures made
    by ``sign_header`` (OpenSSL)."""

    def seal(self, key: SigningKey, srv_id: str, body_hash: bytes) -> list[bytes]:
        self._key = key
        self._body_hash = base64.b64encode(body_hash)
        self.body = b""  # the body hash is given: nothing of the body is kept
        present = {name.lower() for name, _ in self.headers}
        include = [f.encode() for f in AMS_FIELDS if f.encode() in present]
        return self.sign(key.selector.encode(), key.domain.encode(), key.private_pem,
                         srv_id.encode(), include_headers=include)  # fmt: skip

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk,
                   standardize=False):  # fmt: skip
        fields = [(k, self._body_hash if k == b"bh" else v) for k, v in fields]
        return sign_header(self.headers, fields, include_headers, header_name, self._key)


class Sealer:
    """ARC sets for ``authserv_id`` (our host name) with its domain's RSA key."""

    def __init__(self, signer: Signer, authserv_id: str) -> None:
        self.signer = signer
        self.authserv_id = authserv_id

    def key(self) -> SigningKey | None:
        keys = self.signer.keys_for(self.authserv_id)
        return next((k for k in keys if k.algorithm == "rsa"), None)

    def arc_set(self, stream: Any) -> bytes:
        """The three ARC fields (CRLF-terminated) for the message in ``stream``; b"" when it
        can't be sealed (no key, no results of ours on it, a malformed header)."""
        key = self.key()
        if key is None:
            return b""
        try:
            header, first = split_header(stream)
            sealer = _StreamedARC(header)
            body_hash = body_hashes(first, stream, {_BODY})[_BODY]
            fields = sealer.seal(key, self.authserv_id, body_hash)
        except (HeaderTooLarge, dkim.DKIMException, ValueError) as e:
            log.warn("arc: not sealing: {error}", error=e)
            return b""
        return b"".join(f if f.endswith(b"\r\n") else f + b"\r\n" for f in fields)


@implementer(ISubmission)
class ForwardSealing:
    """The inbound listener's hand-off: seals what leaves again, passes the rest through."""

    def __init__(self, delivery: Any, sealer: Sealer, reactor: Any, pool: Any) -> None:
        self._delivery = delivery
        self._sealer = sealer
        self._reactor = reactor
        self._pool = pool

    def open(self) -> Any:
        return self._delivery.open()

    def submit_bytes(self, envelope: Any, data: bytes) -> Deferred[Any]:
        """A whole message (a Sieve redirect): sealed when it leaves, then handed on."""
        return Deferred.fromCoroutine(self._submit_bytes(envelope, data))

    async def _submit_bytes(self, envelope: Any, data: bytes) -> Any:
        if any(route.kind is RouteKind.REMOTE for route in envelope.routes):
            try:
                fields = await threads.deferToThreadPool(
                    self._reactor, self._pool, self._seal_bytes, data
                )
                data = fields + data
            except Exception:  # forwarding unsealed beats not forwarding
                log.failure("arc: sealing a forwarded message failed")
        return await self._delivery.submit_bytes(envelope, data)

    def _seal_bytes(self, data: bytes) -> bytes:
        if self._sealer.key() is None:
            return b""
        return self._sealer.arc_set(io.BytesIO(data))

    def submit(self, envelope: Any, message: Any) -> Deferred[Any]:
        if not any(route.kind is RouteKind.REMOTE for route in envelope.routes):
            return self._delivery.submit(envelope, message)  # nothing leaves: nothing to seal
        return Deferred.fromCoroutine(self._submit(envelope, message))

    async def _submit(self, envelope: Any, message: Any) -> Any:
        if any(route.kind is RouteKind.REMOTE for route in envelope.routes):
            try:
                fields = await threads.deferToThreadPool(
                    self._reactor, self._pool, self._read_and_seal, message
                )
                if fields:
                    message.prepend(fields)
            except Exception:  # forwarding unsealed beats not forwarding
                log.failure("arc: sealing {queue_id} failed", queue_id=message.queue_id)
        return await self._delivery.submit(envelope, message)

    def _read_and_seal(self, message: Any) -> bytes:
        if self._sealer.key() is None:
            return b""
        stream = message.reader()
        try:
            return self._sealer.arc_set(stream)
        finally:
            stream.close()
