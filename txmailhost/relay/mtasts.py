"""Outbound MTA-STS (RFC 8461): which MX hosts of a domain may take its mail, over verified TLS.

A domain that publishes ``_mta-sts.DOMAIN TXT "v=STSv1; id=..."`` serves its policy at
``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``::

    version: STSv1
    mode: enforce
    mx: mail.example.com
    mx: *.example.net
    max_age: 604800

In ``enforce`` mode we deliver only to MX hosts the policy names (a ``*.`` pattern matches
one leftmost label) and only over TLS with a certificate valid for that host (``verify``);
no such host means the recipients are deferred (4.7.5), never delivered in clear or to an
unlisted host. ``testing`` only logs what enforce would refuse; ``none`` does nothing.

Fetching (RFC 8461 3.3): HTTPS with a verified certificate for ``mta-sts.DOMAIN`` (the system
trust store, or ``relay.tls_ca_file``), no redirects, status 200, ``text/plain``, at most
64 KiB, within ``timeout`` seconds. Caching (5.1): a policy is kept for its ``max_age``
(at most one year) in memory and in ``DATA/queue/mta-sts/DOMAIN.json``, so it survives a
restart (an attacker who blocks the TXT lookup or the fetch can't switch it off); the TXT
record is checked on each use (dnspython's cache keeps that to once per TTL) and a new ``id``
fetches the policy again. When the fetch fails, a cached, unexpired policy stays in force.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import dns.exception
import dns.resolver
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from txmailhost import _safeio
from txmailhost.asciinum import is_number

log = Logger()

ENFORCE = "enforce"
TESTING = "testing"
NONE = "none"
MAX_POLICY = 64 * 1024  # RFC 8461 3.3: "policy bodies ... at most 64 KiB" is our bound
MAX_AGE = 31557600  # RFC 8461 3.2: at most one year
_RECORD = re.compile(r"^v=STSv1;(?:\s*[a-zA-Z0-9_.-]+=[^;\s]*;?)*\s*$")
_ID = re.compile(r"(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)")
_DOMAIN = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)+$")
_MX = re.compile(
    r"^(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"
)


class PolicyError(ValueError):
    """A TXT record or policy body that doesn't parse (RFC 8461 3.1, 3.2)."""


@dataclass(frozen=True)
class STSPolicy:
    """One domain's policy as fetched: ``mode``, the ``mx`` patterns, ``max_age`` seconds,
    the TXT ``policy_id`` it was fetched for and when (``fetched``, Unix time)."""

    mode: str
    mx: tuple[str, ...]
    max_age: int
    policy_id: str = ""
    fetched: float = 0.0

    def expired(self, now: float) -> bool:
        return now >= self.fetched + self.max_age

    def allows(self, host: str) -> bool:
        """Does an ``mx`` pattern match ``host`` (RFC 8461 4.1: ``*.`` is one label)?"""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, dot, rest = host.partition(".")
                if dot and label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def record_id(texts: list[str]) -> str | None:
    """The ``id`` of the one STSv1 TXT record among ``texts``; None if there isn't exactly one
    valid one (RFC 8461 3.1: several mean no policy)."""
    found = [t for t in texts if t.startswith("v=STSv1")]
    if len(found) != 1 or not _RECORD.match(found[0]):
        return None
    match = _ID.search(found[0][len("v=STSv1") :])
    return match.group(1) if match else None


def parse_policy(body: bytes, policy_id: str = "", fetched: float = 0.0) -> STSPolicy:
    """The policy body (RFC 8461 3.2: ``key: value`` lines, LF or CRLF)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise PolicyError("policy is not ASCII") from None
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"not a policy line: {line[:80]!r}")
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            if not _MX.match(value.lower()):
                raise PolicyError(f"bad mx pattern {value[:80]!r}")
            mx.append(value.lower())
        elif key not in fields:  # later duplicates are ignored (3.2)
            fields[key] = value
    if fields.get("version") != "STSv1":
        raise PolicyError("version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in (ENFORCE, TESTING, NONE):
        raise PolicyError(f"bad mode {mode[:20]!r}")
    age = fields.get("max_age", "")
    if not is_number(age) or len(age) > 10:
        raise PolicyError("max_age missing or not a number")
    if mode != NONE and not mx:
        raise PolicyError("no mx in an enforce/testing policy")
    return STSPolicy(mode, tuple(mx), min(int(age), MAX_AGE), policy_id, fetched)


class _BoundedBody(Protocol):
    """Collects a response body up to ``MAX_POLICY`` octets; more fails the fetch."""

    def __init__(self, done: defer.Deferred[bytes]) -> None:
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_POLICY:
            self.transport.stopProducing()
            if not self._done.called:
                self._done.errback(PolicyError("policy larger than 64 KiB"))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self._done.called:
            return
        if reason is not None and not reason.check(ResponseDone):
            self._done.errback(reason)
        else:
            self._done.callback(b"".join(self._parts))


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """Connects to the address our own resolver found, with TLS verified for the URL's host
    (so tests and split-horizon setups resolve through ``relay.nameservers`` too)."""

    def __init__(self, reactor: Any, address: str, port: int, trust: Any, timeout: float) -> None:
        self._reactor, self._address, self._port = reactor, address, port
        self._trust, self._timeout = trust, timeout

    def endpointForURI(self, uri: Any) -> Any:
        host = uri.host.decode("ascii")
        kind = TCP6ClientEndpoint if ":" in self._address else TCP4ClientEndpoint
        plain = kind(self._reactor, self._address, self._port, timeout=self._timeout)
        return wrapClientTLS(optionsForClientTLS(host, trustRoot=self._trust), plain)


class MTASTS:
    """Finds, fetches and caches MTA-STS policies; ``policy_for`` never fails."""

    def __init__(
        self,
        reactor: Any,
        pool: Any,
        resolver: Any,
        cache_dir: str | None,
        *,
        trust: Any = None,
        port: int = 443,
        timeout: float = 60.0,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._resolver = resolver  # an MXResolver: its dnspython resolver and addresses
        self._cache_dir = cache_dir
        self._trust = trust
        self._port = port
        self._timeout = timeout
        self._cache: dict[str, STSPolicy] = {}
        self._http = HTTPConnectionPool(reactor, persistent=False)

    async def policy_for(self, domain: str) -> STSPolicy | None:
        """The domain's policy in force now, or None (no policy, or none could be had)."""
        domain = domain.rstrip(".").lower()
        if not _DOMAIN.match(domain):  # an address literal, or nothing to look up
            return None
        now = time.time()
        cached = self._cache.get(domain)
        if cached is None:
            cached = await self._in_pool(self._load, domain)
        if cached is not None and cached.expired(now):
            cached = None
        try:
            policy_id = await self._in_pool(self._lookup_id, domain)
        except dns.exception.DNSException as e:
            log.info("mta-sts: TXT lookup for {domain} failed: {e}", domain=domain, e=e)
            return cached
        if policy_id is None or (cached is not None and cached.policy_id == policy_id):
            return cached  # no record: a cached policy still holds until it expires (5.1)
        try:
            policy = await self._fetch(domain, policy_id, now)
        except Exception as e:
            log.info("mta-sts: policy for {domain} not fetched: {e}", domain=domain, e=e)
            return cached
        self._cache[domain] = policy
        if self._cache_dir is not None:
            await self._in_pool(self._save, domain, policy)
        log.info(
            "mta-sts: {domain} policy {id}: mode {mode}, mx {mx}, max_age {age}",
            domain=domain,
            id=policy_id,
            mode=policy.mode,
            mx=" ".join(policy.mx),
            age=policy.max_age,
        )
        return policy

    def _in_pool(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self._reactor, self._pool, f, *args)

    def _lookup_id(self, domain: str) -> str | None:
        try:
            answer = self._resolver.resolver.resolve(f"_mta-sts.{domain}", "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        texts = [b"".join(rr.strings).decode("ascii", "replace") for rr in answer]
        return record_id(texts)

    async def _fetch(self, domain: str, policy_id: str, now: float) -> STSPolicy:
        host = f"mta-sts.{domain}"
        addresses = await self._in_pool(self._resolver.lookup_host_sync, host)
        address = addresses[0].addresses[0]
        trust = self._trust() if callable(self._trust) else self._trust
        agent = Agent.usingEndpointFactory(
            self._reactor,
            _Endpoints(self._reactor, address, self._port, trust, self._timeout),
            pool=self._http,
        )
        url = f"https://{host}/.well-known/mta-sts.txt".encode("ascii")
        request = agent.request(b"GET", url, Headers({b"User-Agent": [b"txmailhost"]}))
        request.addTimeout(self._timeout, self._reactor)
        response = await request
        if response.code != 200:  # redirects are not followed (3.3)
            raise PolicyError(f"HTTP status {response.code}")
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0].lower()
        if not kind.startswith(b"text/plain"):
            raise PolicyError(f"content type {kind[:40]!r} is not text/plain")
        done: defer.Deferred[bytes] = defer.Deferred()
        response.deliverBody(_BoundedBody(done))
        done.addTimeout(self._timeout, self._reactor)
        return parse_policy(await done, policy_id, now)

    def _path(self, domain: str) -> str:
        assert self._cache_dir is not None
        return os.path.join(self._cache_dir, f"{domain}.json")

    def _load(self, domain: str) -> STSPolicy | None:
        if self._cache_dir is None:
            return None
        try:
            with open(self._path(domain), "rb") as f:
                data = json.loads(f.read())
            policy = STSPolicy(
                data["mode"],
                tuple(data["mx"]),
                int(data["max_age"]),
                data["policy_id"],
                float(data["fetched"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._cache[domain] = policy
        return policy

    def _save(self, domain: str, policy: STSPolicy) -> None:
        assert self._cache_dir is not None
        _safeio.makedirs_durably(self._cache_dir)
        _safeio.write_atomic(self._path(domain), json.dumps(asdict(policy)).encode())
