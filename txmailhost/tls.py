"""Certificates: the self-signed pair made on first start, and loading a pair for the listeners.

A fresh server must offer TLS at once (DESIGN invariant 6: STARTTLS before AUTH, implicit TLS
on 465/993/995), so the first start creates a self-signed certificate for ``server.hostname``,
``localhost`` and ``127.0.0.1`` in ``DATA/tls``. Clients will warn about it; the administrator
replaces it with a CA-signed chain through the ``[tls]`` section. It is written with the
cryptography package (already a pyOpenSSL dependency), the key first with mode 0600, each file
through ``_safeio.write_atomic`` so a crash never leaves half a PEM file behind.

The listeners use Twisted's ``CertificateOptions`` as it is: it builds a pyOpenSSL context with
sane defaults (no compression, single-use ECDH keys, no session tickets) that we only tighten to
TLS 1.2+ and AEAD ciphers with forward secrecy. A renewed certificate is picked up without a
restart by ``ReloadableTLS``, which swaps the options object behind the creator the listeners
hold (on SIGHUP, ``txmailhost reload-tls``, or when the files change); loading is checked
eagerly so a bad file is reported at load time with its path, not at a client's first
handshake.

Every handshake has a deadline (``[tls] handshake_timeout``): a client that connects to an
implicit-TLS port, or says STARTTLS, and then never finishes the handshake is cut off. The
protocols' idle timers can't be relied on: Twisted's TLS layer holds their greeting (or
their "idle timeout" reply) until the handshake completes and won't close before it, so such a
client kept its descriptor and connection slot for the idle timeout at best (10 minutes on
POP3) and the session limit at worst (an hour on SMTP, four on ManageSieve).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import weakref
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost import _safeio

VALIDITY = datetime.timedelta(days=3650)
# A certificate this close to its end, or past it, is warned about at start, on reload and by
# check-config (never refused: ACME, or certbot's timer, may be about to renew it).
EXPIRY_WARNING_DAYS = 14

log = Logger()

# Mozilla's "intermediate" TLS 1.2 list: ECDHE/DHE key exchange (forward secrecy) with AEAD
# ciphers only. TLS 1.3 suites are chosen by OpenSSL and are all fine. DHE suites stay unused
# unless DH parameters are configured. Mail clients older than this are not worth a downgrade.
MODERN_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def ensure_self_signed(cert_path: str, key_path: str, hostname: str) -> bool:
    """Create a self-signed certificate and key unless both exist; True when one was created.

    Never overwrites a certificate. A key without a certificate (a crash between the two
    writes, or a key the administrator put there) is kept and certified; a certificate without
    its key can't be repaired here and raises ValueError saying what to do.
    """
    cert_exists, key_exists = os.path.exists(cert_path), os.path.exists(key_path)
    if cert_exists and key_exists:
        return False
    if cert_exists:
        raise ValueError(
            f"{key_path}: missing, but its certificate {cert_path} exists; restore the key, "
            "or remove the certificate to have a new self-signed pair made"
        )
    for path in (key_path, cert_path):
        _safeio.makedirs_durably(os.path.dirname(os.path.abspath(path)), 0o700)
    if key_exists:
        key = _load_private_key(key_path)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _safeio.write_atomic(key_path, pem, mode=0o600)
    certificate = _self_signed_certificate(key, hostname)
    _safeio.write_atomic(
        cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    return True


def _self_signed_certificate(key: PrivateKeyTypes, hostname: str) -> x509.Certificate:
    """A leaf certificate for ``hostname``, localhost and the loopback addresses.

    The extensions are those strict verifiers (Python 3.13's VERIFY_X509_STRICT) ask of a
    certificate a client pins as its own trust anchor: SAN, key identifiers, key usage.
    """
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    # X.520 limits commonName to 64 characters; the SAN is what clients check anyway.
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, hostname if len(hostname) <= 64 else "txmailhost")]
    )
    public_key = key.public_key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate clients' clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what}: {e.strerror}") from None


def _load_private_key(path: str) -> PrivateKeyTypes:
    data = _read(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(
            f"{path}: the private key is encrypted; txmailhost needs it unencrypted "
            "(and readable by the server's user only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path}: not a PEM private key") from None


def _load_certificates(path: str) -> list[x509.Certificate]:
    data = _read(path, "certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(
            f"{path}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
        ) from None


def check_ca_file(path: str) -> int:
    """How many certificates the CA file ``path`` holds (``relay.tls_ca_file``,
    ``tls.acme_ca_file``); ValueError naming the file when it can't be read or holds none,
    so the start refuses it rather than the first delivery or renewal that trusts it. Read
    by OpenSSL, as the relay's and the ACME client's TLS read it (stricter parsers refuse
    certificates of the system bundle that OpenSSL takes)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        pass  # nothing OpenSSL could take: counted below
    except OSError as e:
        raise ValueError(f"{path}: cannot read the CA file: {e.strerror}") from None
    count = int(context.cert_store_stats()["x509"])
    if not count:
        raise ValueError(f"{path}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")
    return count


def expiry_warning(cert_path: str, now: datetime.datetime | None = None) -> str | None:
    """What to say when the server's certificate (the first in ``cert_path``) has expired or
    expires within :data:`EXPIRY_WARNING_DAYS` days, naming the file and the date; None
    otherwise, and when the file can't be read (loading it says why)."""
    try:
        ends = _load_certificates(cert_path)[0].not_valid_after_utc
    except ValueError:
        return None
    left = ends - (now or datetime.datetime.now(datetime.UTC))
    when = ends.strftime("%Y-%m-%d %H:%M UTC")
    if left <= datetime.timedelta(0):
        return f"{cert_path}: the certificate expired on {when}; clients that check it refuse it"
    if left <= datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        return f"{cert_path}: the certificate expires on {when}, in {left.days} day(s)"
    return None


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_certificate_options(cert_path: str, key_path: str) -> CertificateOptions:
    """``CertificateOptions`` for the listeners: the chain in ``cert_path``, the key in
    ``key_path``, TLS 1.2 minimum, :data:`MODERN_CIPHERS`.

    The first certificate in the file must be the server's own, the rest its intermediates in
    order (the usual ``fullchain.pem``). Raises ``ValueError("PATH: ...")`` for an unreadable,
    malformed, encrypted or mismatched file.
    """
    chain = _load_certificates(cert_path)
    key = _load_private_key(key_path)
    if _public_der(chain[0].public_key()) != _public_der(key.public_key()):
        raise ValueError(
            f"{key_path}: this key does not belong to the first certificate in {cert_path} "
            "(the server's own certificate must come first, then its intermediates)"
        )
    try:
        # cryptography objects, not pyOpenSSL's X509/PKey wrappers: CertificateOptions only
        # hands them to pyOpenSSL's Context, which deprecated the wrappers (pyOpenSSL 24.3+).
        options = CertificateOptions(
            privateKey=key,  # type: ignore[arg-type]
            certificate=chain[0],  # type: ignore[arg-type]
            extraCertChain=chain[1:],  # type: ignore[arg-type]
            raiseMinimumTo=TLSVersion.TLSv1_2,
            acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(MODERN_CIPHERS),
        )
        options.getContext()  # builds and caches the context: fail now, not at a handshake
    except (SSL.Error, TypeError, ValueError) as e:
        raise ValueError(f"{cert_path}: cannot use this certificate and key: {e}") from None
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """The TLS creator every listener and STARTTLS hold; ``reload()`` swaps what is behind it.

    ``CertificateOptions`` caches its ``SSL.Context``, so a renewed certificate (certbot every
    60 days) takes effect by building new options and swapping the reference: connections
    already open keep their session, new handshakes use the new certificate (audit §7,
    observed). ``reload`` keeps the old certificate when the new files are broken, so a
    half-written renewal never takes TLS down.
    """

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._options = load_certificate_options(cert_path, key_path)
        self._stamp = self._file_stamp()
        self._warn_of_expiry()
        self._clock: Any = None
        self._handshake_timeout = 0.0

    def set_handshake_deadline(self, clock: Any, seconds: float) -> None:
        """From now on, abort every connection whose handshake hasn't finished ``seconds``
        after it began, on the reactor ``clock``; until this is called there is no deadline
        (the relay's tests and tools that only handshake once)."""
        self._clock = clock
        self._handshake_timeout = seconds

    def _warn_of_expiry(self) -> None:
        """At start and after each reload: an expired certificate is served all the same
        (better than no TLS, and a renewal may be on its way), but not without a word."""
        warning = expiry_warning(self.cert_path)
        if warning is not None:
            log.warn("txmailhost TLS: {warning}", warning=warning)

    def _file_stamp(self) -> tuple[float, ...]:
        stamps = []
        for path in (self.cert_path, self.key_path):
            try:
                st = os.stat(path)
                stamps += [st.st_mtime_ns, st.st_size, st.st_ino]
            except OSError:
                stamps += [0, 0, 0]
        return tuple(stamps)

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        """The TLS connection for one client, implicit or after STARTTLS (Twisted's TLS
        layer, ``protocol``, asks for it when the handshake is about to start)."""
        connection = self._options.serverConnectionForTLS(protocol)
        if self._clock is not None:
            # A weak reference: a timer must not keep a closed connection's buffers alive for
            # the whole timeout when clients connect and go by the thousand.
            self._clock.callLater(
                self._handshake_timeout, _handshake_deadline, weakref.ref(protocol)
            )
        return connection

    def getContext(self) -> SSL.Context:
        """For APIs that still want an old-style context factory."""
        return self._options.getContext()

    def reload(self) -> None:
        """Load the files again; raises ValueError (and keeps serving the old pair) if broken."""
        self._options = load_certificate_options(self.cert_path, self.key_path)
        self._stamp = self._file_stamp()
        self._warn_of_expiry()

    def reload_if_changed(self) -> bool:
        """Reload when either file changed on disk since the last load; True if reloaded."""
        if self._file_stamp() == self._stamp:
            return False
        self.reload()
        return True


def _handshake_deadline(reference: weakref.ref[Any]) -> None:
    """Abort the connection of Twisted's TLS layer ``reference`` (a ``TLSMemoryBIOProtocol``)
    if it is still open with its handshake unfinished.

    The client's Finished message is the last of the handshake as the server sees it, in TLS
    1.2 and 1.3 alike, so pyOpenSSL's ``get_peer_finished`` is None until it is done. Abort,
    not loseConnection: Twisted's TLS layer won't close a connection mid-handshake while it
    holds data for it (a greeting), which is the stall this ends.
    """
    protocol = reference()
    if protocol is None or not getattr(protocol, "connected", False):
        return
    connection = protocol.getHandle()
    if connection is None or connection.get_peer_finished() is not None:
        return
    peer = protocol.transport.getPeer() if protocol.transport is not None else None
    log.info(
        "txmailhost TLS: handshake with {peer} not finished in time, connection aborted",
        peer=getattr(peer, "host", "?"),
    )
    protocol.abortConnection()
