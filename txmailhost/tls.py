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

More certificates may be served by name (``[tls] sni``): a client that sends SNI (RFC 6066 3)
for one of those names gets its certificate, as Postfix's ``tls_server_sni_maps`` and
Dovecot's ``local_name`` give it; every other client, with another name or none, gets the
default certificate, never an error. The choice is made in OpenSSL's servername callback on
the default context, which moves the connection to the name's context (built by the same
``CertificateOptions``, so TLS 1.2+, the ciphers and the handshake deadline are the same).

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
from collections.abc import Container, Iterable
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


class CertificateProblems(ValueError):
    """Certificates that could not be loaded; ``problems`` has one line for each, naming the
    file (and, for a ``tls.sni`` pair, its host name), so an administrator fixes them all in
    one round."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def sni_label(name: str) -> str:
    """How log lines and errors name the ``tls.sni`` entry for ``name``."""
    return f'tls.sni "{name}"'


def load_sni_options(name: str, cert_path: str, key_path: str) -> CertificateOptions:
    """:func:`load_certificate_options` for the ``tls.sni`` pair of ``name``; its
    ValueError names the entry as well as the file."""
    try:
        return load_certificate_options(cert_path, key_path)
    except ValueError as e:
        raise ValueError(f"{sni_label(name)}: {e}") from None


def certificate_names(cert_path: str) -> tuple[str, ...]:
    """The DNS names of the SAN of the first certificate in ``cert_path`` (lower case), or
    its commonName when it has no SAN; () when the file can't be read."""
    try:
        certificate = _load_certificates(cert_path)[0]
    except ValueError:
        return ()
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [
            str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return tuple(n.lower().rstrip(".") for n in names)


def name_matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` (a name of ``tls.sni`` or of a certificate) covers the host name
    ``name``, both lower-case A-labels: equal, or ``*.REST`` with ``name`` one label more than
    REST (RFC 6125 6.4.3: the wildcard stands for exactly one whole label)."""
    if not pattern.startswith("*."):
        return pattern == name
    label, dot, rest = name.partition(".")
    return bool(label) and bool(dot) and "*" not in label and rest == pattern[2:]


def sni_entry_for(name: str, entries: Container[str]) -> str | None:
    """Which of the ``tls.sni`` names ``entries`` serves the host name ``name`` (lower case,
    no trailing dot): ``name`` itself, else the wildcard one label up; None: the default
    certificate's. What a client asking for ``name`` by SNI is given, and so what ``txmailhost
    dns`` publishes a DANE record of."""
    if name in entries:
        return name
    label, dot, rest = name.partition(".")
    wildcard = f"*.{rest}"
    return wildcard if label and dot and wildcard in entries else None


def acme_sni_warnings(acme_names: Iterable[str], entries: Container[str]) -> list[str]:
    """ACME renews ``tls.certificate`` only. A name it gets the certificate for that a
    ``tls.sni`` entry also serves is given that entry's pair, which nothing renews: clients
    asking for the name never see the certificate ACME keeps fresh."""
    found = []
    for name in acme_names:
        entry = sni_entry_for(name.lower().rstrip("."), entries)
        if entry is not None:
            found.append(
                f"tls.acme_domains: {name} is served the certificate of {sni_label(entry)},"
                " not the one ACME renews (tls.certificate)"
            )
    return found


def name_warning(name: str, cert_path: str) -> str | None:
    """What to say when the certificate given for the ``tls.sni`` name ``name`` is not valid
    for it (a swapped pair of paths, a typo in the name): clients that check would refuse it.
    A wildcard entry is covered by the same wildcard in the certificate."""
    names = certificate_names(cert_path)
    if not names or name in names or any(name_matches(n, name) for n in names):
        return None
    return (
        f"{sni_label(name)}: {cert_path}: the certificate is not for {name} "
        f"(it names {', '.join(names)})"
    )


def sni_warnings(name: str, cert_path: str) -> list[str]:
    """What the start, reloads, check-config and reload-tls say of the ``tls.sni`` pair of
    ``name``: its certificate's expiry as :func:`expiry_warning` has it, and
    :func:`name_warning`; each line names the entry."""
    found = []
    if (expiry := expiry_warning(cert_path)) is not None:
        found.append(f"{sni_label(name)}: {expiry}")
    if (mismatch := name_warning(name, cert_path)) is not None:
        found.append(mismatch)
    return found


class _Pair:
    """One certificate and key as served: the loaded options, and the files' stamp that shows
    a renewal. ``name`` is the ``tls.sni`` name, or None for the default pair."""

    def __init__(self, cert_path: str, key_path: str, name: str | None) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.name = name
        self.options: CertificateOptions | None = None
        self.stamp: tuple[float, ...] = ()

    def load(self) -> None:
        """Read the files again; on ValueError the options loaded before stay."""
        stamp = self.file_stamp()
        if self.name is None:
            self.options = load_certificate_options(self.cert_path, self.key_path)
        else:
            self.options = load_sni_options(self.name, self.cert_path, self.key_path)
        self.stamp = stamp
        for warning in self.warnings():
            log.warn("txmailhost TLS: {warning}", warning=warning)

    def warnings(self) -> list[str]:
        """At start and after each reload: an expired certificate is served all the same
        (better than no TLS, and a renewal may be on its way), but not without a word; nor
        one that isn't for the name it is served for."""
        if self.name is not None:
            return sni_warnings(self.name, self.cert_path)
        warning = expiry_warning(self.cert_path)
        return [] if warning is None else [warning]

    def changed(self) -> bool:
        return self.file_stamp() != self.stamp

    def file_stamp(self) -> tuple[float, ...]:
        stamps = []
        for path in (self.cert_path, self.key_path):
            try:
                st = os.stat(path)
                stamps += [st.st_mtime_ns, st.st_size, st.st_ino]
            except OSError:
                stamps += [0, 0, 0]
        return tuple(stamps)


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """The TLS creator every listener and STARTTLS hold; ``reload()`` swaps what is behind it.

    ``CertificateOptions`` caches its ``SSL.Context``, so a renewed certificate (certbot every
    60 days) takes effect by building new options and swapping the reference: connections
    already open keep their session, new handshakes use the new certificate (audit §7,
    observed). ``reload`` keeps the old certificate when the new files are broken, so a
    half-written renewal never takes TLS down.

    ``sni`` maps host names (lower-case A-labels, ``*.NAME`` wildcards: ``tls.sni``) to more
    pairs. Every connection starts on the default pair's context, whose servername callback
    (RFC 6066 3) moves it to the context of the name the client asked for before the server
    answers; an unknown name, or none, stays on the default, as Postfix's
    ``tls_server_sni_maps`` and Dovecot's ``local_name`` do. Each pair is loaded, watched and
    kept on a broken renewal by itself: a bad file for one name never holds back another's.
    """

    def __init__(
        self, cert_path: str, key_path: str, sni: dict[str, tuple[str, str]] | None = None
    ) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._default = _Pair(cert_path, key_path, None)
        self._named = [_Pair(cert, key, name) for name, (cert, key) in (sni or {}).items()]
        self._contexts: dict[str, SSL.Context] = {}
        self._load(self._pairs())
        self._clock: Any = None
        self._handshake_timeout = 0.0

    @property
    def _options(self) -> CertificateOptions:
        assert self._default.options is not None  # loaded in __init__ or it raised
        return self._default.options

    def _pairs(self) -> list[_Pair]:
        return [self._default, *self._named]

    def _load(self, pairs: list[_Pair]) -> None:
        """Load ``pairs``, each by itself, then point the callback at what loaded; raise
        CertificateProblems naming every pair that didn't (those keep what they had)."""
        problems = []
        for pair in pairs:
            try:
                pair.load()
            except ValueError as e:
                problems.append(str(e))
        if self._default.options is not None:
            self._contexts = {
                pair.name: pair.options.getContext()
                for pair in self._named
                if pair.name is not None and pair.options is not None
            }
            if self._named:
                self._options.getContext().set_tlsext_servername_callback(self._select)
        if problems:
            raise CertificateProblems(problems)

    def _select(self, connection: SSL.Connection) -> None:
        """The servername callback: switch ``connection`` to the context of the name its
        client asked for. Never raises: whatever the client sent, the worst it gets is the
        default certificate."""
        context = self.context_for(connection.get_servername())
        if context is not None:
            connection.set_context(context)

    def context_for(self, server_name: bytes | None) -> SSL.Context | None:
        """The context for an SNI ``server_name``, None for the default: the exact name's
        pair, else the wildcard one label up. The name is compared as DNS names are: without
        case or a trailing dot; a name that isn't ASCII (RFC 6066 asks for A-labels), or that
        has a ``*`` itself, is no one's."""
        if not server_name:
            return None
        try:
            name = server_name.decode("ascii").rstrip(".").lower()
        except UnicodeDecodeError:
            return None
        if "*" in name:
            return None
        entry = sni_entry_for(name, self._contexts)
        return None if entry is None else self._contexts[entry]

    def set_handshake_deadline(self, clock: Any, seconds: float) -> None:
        """From now on, abort every connection whose handshake hasn't finished ``seconds``
        after it began, on the reactor ``clock``; until this is called there is no deadline
        (the relay's tests and tools that only handshake once)."""
        self._clock = clock
        self._handshake_timeout = seconds

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
        """Load every pair again; raises ValueError (CertificateProblems) naming the broken
        ones, which keep serving what they had; the others take their new files."""
        self._load(self._pairs())

    def reload_if_changed(self) -> bool:
        """Reload the pairs whose files changed on disk since their last load; True if one
        did and loaded (ValueError as ``reload`` for those that didn't)."""
        changed = [pair for pair in self._pairs() if pair.changed()]
        if not changed:
            return False
        self._load(changed)
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
