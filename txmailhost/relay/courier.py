"""``RelayCourier``: the queue's way to the rest of the internet (``ICourier``).

For one message and one destination domain: resolve the domain's MX hosts (``mx.py``), then
try their addresses in order — at most ``max_addresses`` per attempt, like Postfix's
``smtp_mx_address_limit`` — until one host runs the transaction (``session.py``). A host
failure (refused, timed out, garbage, closed mid-transaction) moves on to the next address; if
none succeeds every recipient is deferred with the last reason, so the queue keeps it.

TLS policy per destination (``relay.tls`` and ``relay.tls_domains``): ``opportunistic`` uses
STARTTLS when offered without checking the certificate and, if the handshake itself fails,
tries that address once more in clear (what Postfix's "may" level does); ``required`` needs
STARTTLS but accepts any certificate; ``verify`` needs STARTTLS and a certificate valid for the
MX host name (service-identity, RFC 6125), checked against ``relay.tls_ca_file`` or the system
trust store; ``none`` never uses TLS.

With a smarthost (``relay.smarthost``), every remote message goes to that one server instead of
the recipient domain's MX, with its own TLS mode (``required`` by default) and, when a username
is configured, AUTH PLAIN — sent only over TLS or to a loopback address.

Connections are reused (RFC 5321 3.3 allows several transactions per session): after a message
the session is parked for ``reuse_idle`` seconds, and the next message for the same address,
port and TLS mode takes it instead of connecting, handshaking and saying EHLO again — up to
``reuse_max_messages`` per connection. A parked connection that the server closed or spoke on
is dropped; if a reused one fails before any message byte was sent, a fresh one is tried.

MTA-STS (``mtasts.py``, RFC 8461): when the destination publishes a policy in ``enforce``
mode, only the MX hosts it lists are tried, and only with ``verify``; none listed defers the
recipients (4.7.5). ``testing`` mode only logs. A message with ``TLS-Required: No`` (RFC 8689)
ignores the policy; one with REQUIRETLS is always sent with ``verify``. Sessions that had to
use TLS are counted per domain for its daily TLS report (``tlsrpt.py``, RFC 8460).

DANE (``dane.py``, RFC 7672) needs ``relay.dnssec`` (the nameservers are a trusted validating
resolver). For each MX host whose MX and address answers were authenticated, its
``_25._tcp`` TLSA records are looked up; with usable ones, the host gets TLS checked against
them and nothing else (not the CA store, not MTA-STS: RFC 8461 2 lets DANE win, so such a host
is tried even when an enforce policy doesn't list it); with only unusable ones, TLS without
checks but never clear text; a failed TLSA lookup makes that host unusable for this attempt.
A DANE-verified session is verified TLS for REQUIRETLS; ``TLS-Required: No`` skips DANE too
(RFC 8689 5). DANE sessions count in the TLS report as ``policy-type: tlsa``.

NXDOMAIN stays a temporary failure for ``nxdomain_grace`` seconds after the message arrived
(a new or briefly broken zone recovers; chasquid retries these too), then bounces with 5.1.2;
so do mail servers that all have no address records (RFC 5321 5.1), with 5.4.4.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import ssl, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost.queue.interfaces import (
    DeliveryResult,
    ICourier,
    MessageOptions,
    RecipientOptions,
)
from txmailhost.relay.client import (
    CHUNK,
    Capabilities,
    HostFailure,
    SMTPClientProtocol,
    Timeouts,
)
from txmailhost.relay.dane import DANEClientTLS, DANEPolicy
from txmailhost.relay.mtasts import ENFORCE, MTASTS, TESTING, STSPolicy
from txmailhost.relay.mtasts import NONE as NONE_POLICY
from txmailhost.relay.mx import DNSProblem, DomainNotFound, MXHost, MXResolver, NoMailHost
from txmailhost.relay.session import (
    DANE,
    NO_TLS,
    OPPORTUNISTIC,
    REQUIRED,
    VERIFIED_MODES,
    VERIFY,
    open_session,
    quit_session,
    transaction,
)
from txmailhost.relay.tlsrpt import (
    DNSSEC_INVALID,
    STARTTLS_NOT_SUPPORTED,
    VALIDATION_FAILURE,
    TLSReports,
)

log = Logger()


@dataclass(frozen=True)
class TLSPolicy:
    """Which TLS mode applies to a destination domain, and how to build the TLS client."""

    default: str = OPPORTUNISTIC
    per_domain: dict[str, str] = field(default_factory=dict)
    ca_file: str = ""

    def mode_for(self, domain: str) -> str:
        return self.per_domain.get(domain.lower(), self.default)

    def trust_root(self) -> Any:
        """What ``verify`` trusts: every certificate of ``ca_file``, else the system's store."""
        if self.ca_file:
            return bundle_trust(self.ca_file)
        return ssl.platformTrust()

    def creator(self, mode: str, server_name: str) -> Any:
        if mode == VERIFY:
            return ssl.optionsForClientTLS(server_name, trustRoot=self.trust_root())
        return ssl.CertificateOptions(verify=False)


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_bundles: dict[str, tuple[tuple[int, int], Any]] = {}


def bundle_trust(path: str) -> Any:
    """A trust root of every certificate in the PEM file ``path`` (a CA bundle: Twisted's
    ``Certificate.loadPEM`` reads only the first, so a relay to a server under the bundle's
    second CA failed verification). Read again only when the file changes (its mtime or
    size): the relay asks for each verified connection, on the reactor thread."""
    stat = os.stat(path)
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _bundles.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    with open(path, "rb") as f:
        found = _PEM_CERTIFICATE.findall(f.read())
    if not found:
        raise ValueError(f"{path}: no PEM certificate found")
    trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(pem) for pem in found])
    _bundles[path] = (stamp, trust)
    return trust


@dataclass(frozen=True)
class Smarthost:
    """One server that takes all remote mail (an ISP's relay, a mail provider)."""

    host: str
    port: int = 587
    tls: str = "required"
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


class SpoolReader:
    """Reads the spooled message in chunks in the thread pool (never a big read on the reactor)."""

    def __init__(self, path: str, reactor: Any, pool: Any) -> None:
        self._path = path
        self._reactor = reactor
        self._pool = pool
        self._file: Any = None
        self.started = False

    def _read(self, size: int) -> bytes:
        if self._file is None:
            self._file = open(self._path, "rb")  # noqa: SIM115 - closed in close()
        return self._file.read(size)

    def read(self, size: int) -> Deferred[bytes]:
        self.started = True
        return threads.deferToThreadPool(self._reactor, self._pool, self._read, size)

    def eight_bit(self) -> Deferred[bool]:
        """Whether the message holds an octet above 127 (read whole, only for a server
        without 8BITMIME)."""
        return threads.deferToThreadPool(self._reactor, self._pool, _has_8bit, self._path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@implementer(ICourier)
class RelayCourier:
    def __init__(
        self,
        reactor: Any,
        pool: Any,
        resolver: MXResolver,
        *,
        hostname: str,
        port: int = 25,
        tls: TLSPolicy | None = None,
        timeouts: Timeouts | None = None,
        max_addresses: int = 5,
        nxdomain_grace: float = 3600.0,
        smarthost: Smarthost | None = None,
        reuse_idle: float = 5.0,
        reuse_max_messages: int = 100,
        mta_sts: MTASTS | None = None,
        tls_reports: TLSReports | None = None,
        dane: bool = True,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self.resolver = resolver
        self.hostname = hostname
        self.port = port
        self.tls = tls or TLSPolicy()
        self.timeouts = timeouts or Timeouts()
        self.max_addresses = max_addresses
        self.nxdomain_grace = nxdomain_grace
        self.smarthost = smarthost
        self.reuse_idle = reuse_idle
        self.reuse_max_messages = reuse_max_messages
        self._idle: dict[tuple[str, int, str], list[Any]] = {}
        self.mta_sts = mta_sts
        self.tls_reports = tls_reports
        self.dane = dane

    def deliver(
        self,
        sender: str | None,
        recipients: list[str],
        message_path: str,
        domain: str,
        age: float,
        options: MessageOptions | None = None,
        recipient_options: dict[str, RecipientOptions] | None = None,
    ) -> Deferred[dict[str, DeliveryResult]]:
        wishes = {"options": options or MessageOptions(), "dsn": recipient_options or {}}
        return Deferred.fromCoroutine(
            self._deliver(sender, recipients, message_path, domain, age, **wishes)
        )

    async def _deliver(
        self,
        sender: str | None,
        recipients: list[str],
        message_path: str,
        domain: str,
        age: float,
        options: MessageOptions,
        dsn: dict[str, RecipientOptions],
    ) -> dict[str, DeliveryResult]:
        def everyone(result: DeliveryResult) -> dict[str, DeliveryResult]:
            return {r: result for r in recipients}

        port, mode, credentials = self.port, self.tls.mode_for(domain), None
        try:
            if self.smarthost is not None:
                hosts = await self.resolver.lookup_host(self.smarthost.host)
                port, mode = self.smarthost.port, self.smarthost.tls
                credentials = self.smarthost.credentials
            else:
                hosts = await self.resolver.lookup(domain)
        except (DomainNotFound, NoMailHost) as e:
            if age >= self.nxdomain_grace:
                return everyone(DeliveryResult.permanent(e.status, str(e)))
            return everyone(DeliveryResult.temporary("4" + e.status[1:], str(e)))
        except DNSProblem as e:
            make = DeliveryResult.permanent if e.permanent else DeliveryResult.temporary
            return everyone(make(e.status, str(e)))
        size, tls_optional = await threads.deferToThreadPool(
            self._reactor, self._pool, _size_and_tls_wish, message_path
        )
        dane: dict[str, DANEPolicy] = {}
        tlsa_failed: dict[str, str] = {}  # host -> why its TLSA lookup failed
        if self.dane and self.resolver.dnssec and self.smarthost is None and not tls_optional:
            dane, tlsa_failed = await self._tlsa(domain, hosts, port)
        policy = None
        if self.mta_sts is not None and self.smarthost is None and not tls_optional:
            # RFC 8689 5: "TLS-Required: No" means the domain's MTA-STS policy is ignored.
            policy = await self.mta_sts.policy_for(domain)
            if policy is not None and policy.mode != NONE_POLICY:
                allowed = [h for h in hosts if policy.allows(h.name) or h.name in dane]
                if policy.mode == TESTING and len(allowed) < len(hosts):
                    log.info(
                        "mta-sts testing: {domain} MX {hosts} not in its policy",
                        domain=domain,
                        hosts=" ".join(h.name for h in hosts if h not in allowed),
                    )
                elif policy.mode == ENFORCE:
                    if not allowed:
                        return everyone(
                            DeliveryResult.temporary(
                                "4.7.5", f"no MX host of {domain} matches its MTA-STS policy"
                            )
                        )
                    hosts, mode = allowed, VERIFY  # RFC 8461 4.2: verified TLS or nothing
        if options.requiretls:
            mode = VERIFY  # RFC 8689 4.2.1: verified TLS or nothing, whatever the domain's mode
        elif tls_optional and mode in (REQUIRED, VERIFY):
            mode = OPPORTUNISTIC  # RFC 8689 5: "TLS-Required: No" relaxes our policy
        attempt = {
            "sender": sender,
            "recipients": recipients,
            "message_path": message_path,
            "size": size,
            "port": port,
            "credentials": credentials,
            "options": options,
            "dsn": dsn,
        }
        last = "no address to try"
        tried = 0
        for host in hosts:
            if host.name in tlsa_failed:
                last = tlsa_failed[host.name]
                continue
            tlsa = dane.get(host.name)
            host_mode = mode
            if tlsa is not None:
                # RFC 7672 2.2: usable records authenticate; only unusable ones still mean TLS.
                host_mode = DANE if tlsa.usable else (VERIFY if mode == VERIFY else REQUIRED)
            for address in host.addresses:
                if tried >= self.max_addresses:
                    break
                tried += 1
                try:
                    results = await self._try(host.name, address, host_mode, tlsa, **attempt)
                    self._count_tls(domain, policy, tlsa, host_mode, host.name, None)
                    return results
                except HostFailure as e:
                    self._count_tls(domain, policy, tlsa, host_mode, host.name, e)
                    if e.tls and host_mode == OPPORTUNISTIC:
                        log.info(
                            "{host}[{address}]: {error}; retrying without TLS",
                            host=host.name,
                            address=address,
                            error=e,
                        )
                        try:
                            return await self._try(host.name, address, NO_TLS, None, **attempt)
                        except HostFailure as again:
                            e = again
                    last = f"{host.name}[{address}]: {e}"
                    log.info("delivery to {domain} via {where} failed", domain=domain, where=last)
        if options.requiretls and "TLS" in last:
            # RFC 8689 4.2.1: no verified TLS to any host: returned to the sender, not retried
            # at the risk of a downgrade.
            return everyone(DeliveryResult.permanent("5.7.10", f"REQUIRETLS: {last}"))
        status = "4.7.5" if "TLS" in last else "4.4.1"
        return everyone(DeliveryResult.temporary(status, last))

    async def _tlsa(
        self, domain: str, hosts: list[MXHost], port: int
    ) -> tuple[dict[str, DANEPolicy], dict[str, str]]:
        """The hosts' authenticated TLSA RRsets, and the hosts whose TLSA lookup failed."""
        found: dict[str, DANEPolicy] = {}
        failed: dict[str, str] = {}
        for host in hosts:
            if not host.dnssec or host.name in found or host.name in failed:
                continue
            try:
                tlsa = await self.resolver.lookup_tlsa(host, domain, port)
            except DNSProblem as e:
                # RFC 7672 2.2: not a reason to send without DANE; this host can't be used.
                failed[host.name] = f"{host.name}: DANE: {e} (the host needs TLS authentication)"
                if self.tls_reports is not None:
                    self.tls_reports.record(
                        domain, None, tlsa=(), mx_host=host.name, failure=DNSSEC_INVALID
                    )
                continue
            if tlsa is not None:
                found[host.name] = tlsa
        return found, failed

    def _count_tls(
        self,
        domain: str,
        policy: STSPolicy | None,
        tlsa: DANEPolicy | None,
        mode: str,
        host: str,
        error: HostFailure | None,
    ) -> None:
        """A session that had to use TLS, for the domain's TLS report (``tlsrpt.py``)."""
        if self.tls_reports is None or self.smarthost is not None:
            return
        if mode not in (REQUIRED, VERIFY, DANE):
            return
        records = tuple(str(r) for r in tlsa.records) if tlsa is not None else None
        if error is None:
            self.tls_reports.record(domain, policy, tlsa=records, mx_host=host)
        elif error.tls:
            text = str(error)
            refused = "not offer STARTTLS" in text or "STARTTLS was refused" in text
            kind = STARTTLS_NOT_SUPPORTED if refused else VALIDATION_FAILURE
            self.tls_reports.record(domain, policy, tlsa=records, mx_host=host, failure=kind)

    async def _try(
        self,
        host: str,
        address: str,
        mode: str,
        tlsa: DANEPolicy | None,
        sender: str | None,
        recipients: list[str],
        message_path: str,
        size: int,
        port: int,
        credentials: tuple[str, str] | None,
        options: MessageOptions,
        dsn: dict[str, RecipientOptions],
    ) -> dict[str, DeliveryResult]:
        """One message over a parked connection to this address if there is one, else a new one.

        A DANE session is only reused for the same TLSA base domain: its check was for that.
        """
        dane_check = DANEClientTLS(tlsa) if mode == DANE and tlsa is not None else None
        key = (address, port, f"{DANE}:{tlsa.base_domain}" if dane_check and tlsa else mode)
        message = {
            "sender": sender,
            "recipients": recipients,
            "size": size,
            "options": options,
            "dsn": dsn,
        }
        idle = self._take_idle(key)
        if idle is not None:
            proto, caps = idle
            reader = SpoolReader(message_path, self._reactor, self._pool)
            try:
                return await self._transact(proto, caps, key, host, reader, **message)
            except HostFailure as e:
                proto.abort()
                if reader.started:
                    raise  # the message may have gone out: never send it twice at once
                log.info(
                    "reused connection to {address} failed ({error}); reconnecting",
                    address=address,
                    error=e,
                )
            finally:
                reader.close()
        endpoint_type = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint = endpoint_type(self._reactor, address, port, timeout=self.timeouts.connect)
        proto = SMTPClientProtocol(self._reactor)
        try:
            await connectProtocol(endpoint, proto)
        except Exception as e:
            raise HostFailure(f"connection failed: {e}") from None
        reader = SpoolReader(message_path, self._reactor, self._pool)
        try:
            caps = await open_session(
                proto,
                hostname=self.hostname,
                tls_mode=mode,
                tls_creator=lambda: dane_check or self.tls.creator(mode, host),
                timeouts=self.timeouts,
                credentials=credentials,
            )
            return await self._transact(proto, caps, key, host, reader, **message)
        except HostFailure:
            proto.abort()
            if dane_check is not None and dane_check.failure:
                why = f"DANE TLS authentication failed: {dane_check.failure}"
                raise HostFailure(why, tls=True) from None
            raise
        finally:
            reader.close()

    async def _transact(
        self,
        proto: SMTPClientProtocol,
        caps: Capabilities,
        key: tuple[str, int, str],
        host: str,
        reader: SpoolReader,
        *,
        sender: str | None,
        recipients: list[str],
        size: int,
        options: MessageOptions,
        dsn: dict[str, RecipientOptions],
    ) -> dict[str, DeliveryResult]:
        results, reusable = await transaction(
            proto,
            caps,
            remote_mta=host,
            sender=sender,
            recipients=recipients,
            size=size,
            read_chunk=reader.read,
            timeouts=self.timeouts,
            options=options,
            recipient_options=dsn,
            verified_tls=key[2] in VERIFIED_MODES or key[2].startswith(DANE + ":"),
            eight_bit=reader.eight_bit,
        )
        proto.messages_sent += 1
        if reusable and self.reuse_idle > 0 and proto.messages_sent < self.reuse_max_messages:
            self._park(key, proto, caps)
        else:
            await quit_session(proto, self.timeouts)
        return results

    # -- connection reuse: a session that just finished waits briefly for the next message --

    def _park(
        self, key: tuple[str, int, str], proto: SMTPClientProtocol, caps: Capabilities
    ) -> None:
        entry: list[Any] = [proto, caps, None]
        entry[2] = self._reactor.callLater(self.reuse_idle, self._expire, key, entry)
        self._idle.setdefault(key, []).append(entry)

    def _expire(self, key: tuple[str, int, str], entry: list[Any]) -> None:
        parked = self._idle.get(key, [])
        if entry in parked:
            parked.remove(entry)
            if not parked:
                del self._idle[key]
            Deferred.fromCoroutine(quit_session(entry[0], self.timeouts))

    def _take_idle(
        self, key: tuple[str, int, str]
    ) -> tuple[SMTPClientProtocol, Capabilities] | None:
        parked = self._idle.get(key, [])
        while parked:
            proto, caps, timer = parked.pop()
            if timer.active():
                timer.cancel()
            if proto.idle_ok():
                if not parked:
                    self._idle.pop(key, None)
                return proto, caps
            proto.abort()  # closed or spoke while parked (a 421 on idle timeout): not reusable
        self._idle.pop(key, None)
        return None

    def close_idle(self) -> None:
        """Say QUIT on every parked connection (service shutdown)."""
        for key in list(self._idle):
            for entry in list(self._idle.get(key, [])):
                self._expire(key, entry)


_TLS_NOT_REQUIRED = re.compile(rb"(?im)^tls-required[ \t]*:[ \t]*no[ \t]*\r?$")


def _size_and_tls_wish(path: str) -> tuple[int, bool]:
    """The message's size, and whether its header says ``TLS-Required: No`` (RFC 8689 5)."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
        size = os.fstat(f.fileno()).st_size
    end = head.find(b"\r\n\r\n")
    return size, bool(_TLS_NOT_REQUIRED.search(head if end < 0 else head[: end + 2]))


def _has_8bit(path: str) -> bool:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if not chunk.isascii():
                return True
    return False
