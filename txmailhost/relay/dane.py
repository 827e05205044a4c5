"""DANE for SMTP (RFC 7672, RFC 6698/7671): TLSA records say which certificate an MX presents.

Where a destination's MX host has DNSSEC-authenticated TLSA records at ``_25._tcp.HOST``,
TLS to it is mandatory and its certificate must match one of them; nothing else (no CA, no
MTA-STS policy) is consulted. What the records mean, as RFC 7672 3.1 restricts them for SMTP:

- ``DANE-EE(3)``: the server's own certificate (selector 0) or public key (selector 1) is
  published. Nothing else is checked — no name, no expiry (RFC 7672 3.1.1): the record *is*
  the trust decision.
- ``DANE-TA(2)``: a certificate in the chain the server sends (below its own) is a trust
  anchor. The chain from the server's certificate up to it must verify (signatures, validity
  dates, CA constraints — OpenSSL's own chain check with that anchor, partial-chain allowed),
  and the server's certificate must name the TLSA base domain, the MX name or the
  destination domain (RFC 7672 3.2.2; wildcards per RFC 6125 via service-identity). An anchor
  published as a bare public key (``2 1 0``) that the server doesn't send is not supported.
- ``PKIX-TA(0)``/``PKIX-EE(1)`` are "unusable" in SMTP (RFC 7672 3.1.3), as are unknown
  usages, selectors and matching types. Matching types 0 (exact), 1 (SHA-256), 2 (SHA-512).

A TLSA RRset whose records are all unusable still proves the server does TLS: the session must
use TLS but its certificate is not checked (RFC 7672 2.2). Which answers count as
authenticated is the resolver's business (``mx.py``: the AD bit of a validating resolver the
admin declared trusted); this module only matches certificates.

The check runs inside the handshake (pyOpenSSL's verify callback, at depth 0, with the chain
the server sent), so a mismatch aborts the handshake before any SMTP command is sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

PKIX_TA, PKIX_EE, DANE_TA, DANE_EE = 0, 1, 2, 3
CERT, SPKI = 0, 1
FULL, SHA256, SHA512 = 0, 1, 2


@dataclass(frozen=True)
class TLSA:
    """One TLSA record (RFC 6698 2.1): usage, selector, matching type and the data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        """Whether RFC 7672 3.1 lets SMTP use this record."""
        return (
            self.usage in (DANE_TA, DANE_EE)
            and self.selector in (CERT, SPKI)
            and self.mtype in (FULL, SHA256, SHA512)
        )

    def matches(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` (or its public key, per the selector) is what this names."""
        return association_data(certificate, self.selector, self.mtype) == self.data

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def association_data(certificate: x509.Certificate, selector: int, mtype: int) -> bytes:
    """The "certificate association data" of RFC 6698 2.1.4 for ``certificate``."""
    if selector == CERT:
        selected = certificate.public_bytes(serialization.Encoding.DER)
    else:
        selected = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if mtype == SHA256:
        return hashlib.sha256(selected).digest()
    if mtype == SHA512:
        return hashlib.sha512(selected).digest()
    return selected


def tlsa_record_for(pem: bytes) -> str:
    """The ``3 1 1`` record for a PEM certificate: what to publish for our own server."""
    certificate = x509.load_pem_x509_certificate(pem)
    return f"{DANE_EE} {SPKI} {SHA256} {association_data(certificate, SPKI, SHA256).hex()}"


@dataclass(frozen=True)
class DANEPolicy:
    """The authenticated TLSA RRset of one MX host, and the names its certificate may bear."""

    base_domain: str
    records: tuple[TLSA, ...]
    names: tuple[str, ...] = ()
    """Reference identifiers for DANE-TA: the TLSA base domain first, then the MX name and the
    destination domain (RFC 7672 3.2.2)."""

    @property
    def usable(self) -> tuple[TLSA, ...]:
        return tuple(r for r in self.records if r.usable)

    def check(self, chain: list[x509.Certificate]) -> str:
        """Why ``chain`` (the server's certificate first) fails the policy; "" when it passes."""
        if not chain:
            return "the server sent no certificate"
        leaf = chain[0]
        usable = self.usable
        if any(r.usage == DANE_EE and r.matches(leaf) for r in usable):
            return ""
        anchors = [r for r in usable if r.usage == DANE_TA]
        for depth, candidate in enumerate(chain[1:], 1):
            if not any(r.matches(candidate) for r in anchors):
                continue
            problem = _verify_up_to(leaf, chain[1:depth], candidate)
            if problem:
                return f"chain to the DANE-TA anchor does not verify: {problem}"
            if not any(_names(leaf, name) for name in self.names or (self.base_domain,)):
                return f"certificate does not name {self.base_domain}"
            return ""
        return f"no TLSA record of {self.base_domain} matches the server's certificate"


def _verify_up_to(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], anchor: x509.Certificate
) -> str:
    """OpenSSL's chain check of ``leaf`` with ``anchor`` as the only trust anchor."""
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(anchor))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    context = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(leaf),
        [crypto.X509.from_cryptography(c) for c in intermediates],
    )
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as e:
        return str(e)
    return ""


def _names(certificate: x509.Certificate, name: str) -> bool:
    try:
        verify_certificate_hostname(certificate, name)
    except (VerificationError, ValueError, x509.ExtensionNotFound):
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class DANEClientTLS:
    """A TLS client that accepts exactly the servers ``policy`` describes (TLS 1.2+).

    ``failure`` keeps why the last handshake was refused, for the log and the TLS report.
    """

    def __init__(self, policy: DANEPolicy) -> None:
        self.policy = policy
        self.failure = ""
        self._context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self._context.set_min_proto_version(SSL.TLS1_2_VERSION)
        self._context.set_verify(SSL.VERIFY_PEER, self._verify)

    def _verify(self, connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
        # OpenSSL's own verdict (an unknown CA, a self-signed certificate) doesn't matter: the
        # TLSA records decide. The leaf (depth 0) comes last; the peer's chain is known by then.
        if depth != 0:
            return True
        sent = connection.get_peer_cert_chain() or [certificate]
        chain = [c.to_cryptography() for c in sent]
        self.failure = self.policy.check(chain)
        if self.failure:
            log.info("dane: {host}: {why}", host=self.policy.base_domain, why=self.failure)
        return not self.failure

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        # RFC 7672 8.1: send SNI with the TLSA base domain.
        connection.set_tlsext_host_name(self.policy.base_domain.encode("idna"))
        return connection
