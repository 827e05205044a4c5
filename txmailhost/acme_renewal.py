"""Our own certificate from an ACME CA (RFC 8555), renewed before it expires (``[tls] acme``).

The protocol is spoken by the ``acme`` package, the client library certbot is built on and
maintained with it: JWS signing, nonces (retried on ``badNonce``), account, order, challenge
and finalisation objects. It is blocking (``requests``), so each attempt runs in a thread pool
of its own, never on the reactor; a hand-written client on Twisted's HTTP agent would have
to redo all of that JOSE work for no gain, since an attempt is a few requests a month.

What happens, in :class:`ACMEService` (the reactor side) and :class:`ACMEClient` (the thread):

- At start and then whenever it is due, the current certificate (``tls.certificate``) is
  looked at: none, self-signed (the first-start pair), not covering every name of
  ``tls.acme_domains``, or past two thirds of its lifetime (RFC 8555 leaves renewal timing to
  the client; Let's Encrypt's 90 days give a renewal at day 60) means an order.
- The account key and registration live in ``DATA/tls/acme/`` (``account.key``,
  ``account.json``, mode 0600); the first order registers the account (with
  ``tls.acme_contact``, agreeing to the CA's terms).
- HTTP-01 (RFC 8555 8.3): each authorisation's token and key authorisation are published in
  :class:`Challenges`, which the plain-HTTP listener (``web/redirect.py``) serves at
  ``/.well-known/acme-challenge/TOKEN``; the CA fetches it on port 80 of the name. The
  tokens are withdrawn when the order is done, whatever the outcome. TLS-ALPN-01 is not
  offered.
- The CSR is made with the key already in ``tls.key`` (a new EC P-256 key only when there
  is none): the key stays, so a published DANE ``3 1 1`` TLSA record stays valid.
- The full chain is written over ``tls.certificate`` atomically (``_safeio``: temporary file,
  fsync, rename, directory fsync) and the server's TLS is reloaded at once; the
  ``TLSReloadService`` would also see the file change.
- A failed attempt is logged and retried after 5 minutes, doubling up to a day; the current
  certificate stays in use meanwhile.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txmailhost import _safeio

log = Logger()

RENEW_AT = 2 / 3  # of the certificate's lifetime
RETRY_FIRST = 300.0
RETRY_MAX = 86400.0
CHECK_MAX = 86400.0  # look again at least daily (a certificate replaced by hand, a clock jump)
ORDER_TIMEOUT = 120.0  # seconds the CA may take to validate and issue


class ACMEError(Exception):
    """An order could not be completed; the message says which step and why."""


class Challenges:
    """HTTP-01 key authorisations waiting for the CA, by token (RFC 8555 8.3)."""

    PREFIX = "/.well-known/acme-challenge/"

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}

    def publish(self, token: str, key_authorization: str) -> None:
        self._answers[token] = key_authorization

    def withdraw(self, token: str) -> None:
        self._answers.pop(token, None)

    def answer(self, path: str) -> str | None:
        """The body for a request of ``path``, or None when it is no pending challenge."""
        if not path.startswith(self.PREFIX):
            return None
        return self._answers.get(path[len(self.PREFIX) :])


@dataclass(frozen=True)
class ACMESettings:
    directory: str
    contact: str
    domains: tuple[str, ...]
    certificate: str
    key: str
    state_dir: str  # DATA/tls/acme
    ca_file: str = ""  # trust for the ACME server's HTTPS; "" is the system's


def renewal_time(certificate_path: str, domains: tuple[str, ...]) -> float:
    """When the certificate at ``certificate_path`` should be replaced (Unix time; 0: now)."""
    try:
        with open(certificate_path, "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return 0.0
    if certificate.issuer == certificate.subject:
        return 0.0  # the self-signed pair of the first start
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = {n.lower() for n in san.value.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        names = set()
    if not set(domains) <= names:
        return 0.0
    start = certificate.not_valid_before_utc.timestamp()
    end = certificate.not_valid_after_utc.timestamp()
    return start + (end - start) * RENEW_AT


class ACMEClient:
    """One blocking ACME order at a time; call :meth:`issue` from a thread, never the reactor.

    ``publish(token, key_authorization)`` and ``withdraw(token)`` are called from that thread
    and must reach :class:`Challenges` on the reactor (the service wraps them).
    """

    def __init__(
        self,
        settings: ACMESettings,
        publish: Callable[[str, str], None],
        withdraw: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self._publish = publish
        self._withdraw = withdraw

    def issue(self) -> x509.Certificate:
        """Order a certificate for the domains, write it, and return it."""
        settings = self.settings
        key_pem = self._certificate_key()
        acme, account_key = self._client()
        try:
            order = acme.new_order(crypto_util.make_csr(key_pem, list(settings.domains)))
        except errors.Error as e:
            raise ACMEError(f"new order refused: {e}") from None
        tokens: list[str] = []
        try:
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # validated recently; the CA reuses it
                tokens.append(self._answer_http01(acme, account_key, authorization))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
            order = acme.poll_and_finalize(order, deadline)
        except errors.ValidationError as e:
            problems = [
                f"{a.body.identifier.value}: {c.error}"
                for a in e.failed_authzrs
                for c in a.body.challenges
                if c.error is not None
            ]
            raise ACMEError("validation failed: " + "; ".join(problems)) from None
        except (errors.Error, messages.Error) as e:
            raise ACMEError(f"order failed: {e}") from None
        finally:
            for token in tokens:
                self._withdraw(token)
        chain = order.fullchain_pem.encode("ascii")
        certificate = x509.load_pem_x509_certificate(chain)
        _safeio.write_atomic(settings.certificate, chain, mode=0o644)
        return certificate

    def _answer_http01(self, acme: client.ClientV2, account_key: jose.JWK, authz: Any) -> str:
        name = authz.body.identifier.value
        offered = [c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)]
        if not offered:
            raise ACMEError(f"the CA offers no http-01 challenge for {name}")
        challenge = offered[0]
        response, key_authorization = challenge.response_and_validation(account_key)
        token = challenge.chall.encode("token")
        self._publish(token, key_authorization)
        acme.answer_challenge(challenge, response)
        return token

    def _certificate_key(self) -> bytes:
        """The key of ``tls.key`` (kept across renewals), made when there is none."""
        try:
            with open(self.settings.key, "rb") as f:
                pem = f.read()
            serialization.load_pem_private_key(pem, password=None)
            return pem
        except (OSError, ValueError, TypeError):
            pass
        pem = _new_key_pem()
        os.makedirs(os.path.dirname(self.settings.key) or ".", exist_ok=True)
        _safeio.write_atomic(self.settings.key, pem, mode=0o600)
        return pem

    def _client(self) -> tuple[client.ClientV2, jose.JWK]:
        """A client for the directory with our account, registering it the first time."""
        settings = self.settings
        os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
        key_path = os.path.join(settings.state_dir, "account.key")
        if not os.path.exists(key_path):
            _safeio.write_atomic(key_path, _new_key_pem(), mode=0o600)
        with open(key_path, "rb") as f:
            account_key = jose.JWKEC(key=serialization.load_pem_private_key(f.read(), None))
        verify: Any = settings.ca_file or True
        net = client.ClientNetwork(
            account_key, alg=jose.ES256, verify_ssl=verify, user_agent="txmailhost"
        )
        try:
            directory = client.ClientV2.get_directory(settings.directory, net)
        except Exception as e:  # requests' and acme's errors alike: the CA is unreachable
            raise ACMEError(f"directory {settings.directory}: {e}") from None
        acme = client.ClientV2(directory, net)
        state_path = os.path.join(settings.state_dir, "account.json")
        try:
            with open(state_path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        if state.get("directory") == settings.directory and state.get("registration"):
            net.account = messages.RegistrationResource.from_json(state["registration"])
            return acme, account_key
        registration = self._register(acme)
        state = {"directory": settings.directory, "registration": registration.to_json()}
        _safeio.write_atomic(state_path, json.dumps(state, indent=1).encode(), mode=0o600)
        return acme, account_key

    def _register(self, acme: client.ClientV2) -> messages.RegistrationResource:
        contact = self.settings.contact
        new = messages.NewRegistration.from_data(
            email=contact or None, terms_of_service_agreed=True
        )
        try:
            return acme.new_account(new)
        except errors.ConflictError as e:  # this key has an account already: use it
            existing = messages.RegistrationResource(uri=e.location, body=messages.Registration())
            return acme.query_registration(existing)
        except (errors.Error, messages.Error) as e:
            raise ACMEError(f"account registration refused: {e}") from None


def _new_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ACMEService(Service):
    """Runs :class:`ACMEClient` when the certificate is due, from the reactor, with backoff.

    ``on_renewed()`` is called on the reactor after a new certificate is written (the
    server's ``ReloadableTLS.reload``). ``clock`` is the reactor's time, injected so tests can
    move past the renewal point.
    """

    def __init__(
        self,
        reactor: Any,
        pool: Any,
        settings: ACMESettings,
        challenges: Challenges,
        on_renewed: Callable[[], None] | None = None,
        clock: Any = None,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self.clock = clock or reactor
        self.settings = settings
        self.challenges = challenges
        self.on_renewed = on_renewed
        self.client = ACMEClient(settings, self._publish, self._withdraw)
        self.failures = 0
        self.last_error = ""  # why the last attempt failed, for the log and status pages
        self.next_check: float | None = None
        self._call: Any = None
        self._running: Deferred[None] | None = None

    def _publish(self, token: str, key_authorization: str) -> None:
        threads.blockingCallFromThread(
            self._reactor, self.challenges.publish, token, key_authorization
        )

    def _withdraw(self, token: str) -> None:
        threads.blockingCallFromThread(self._reactor, self.challenges.withdraw, token)

    def startService(self) -> None:
        super().startService()
        self._schedule(0.0)

    def stopService(self) -> Any:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        return self._running  # an order in flight finishes (its thread can't be stopped)

    def _schedule(self, delay: float) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.next_check = self.clock.seconds() + delay
        if self.running:
            self._call = self._reactor.callLater(delay, self.check)

    def check(self) -> Deferred[None]:
        """Renew now if due; then schedule the next look. Fires when this round is over."""
        self._running = Deferred.fromCoroutine(self._check())
        return self._running

    async def _check(self) -> None:
        settings = self.settings
        due = await threads.deferToThreadPool(
            self._reactor, self._pool, renewal_time, settings.certificate, settings.domains
        )
        now = self.clock.seconds()
        if due > now:
            self._schedule(min(due - now, CHECK_MAX))
            return
        log.info("acme: ordering a certificate for {domains}", domains=" ".join(settings.domains))
        try:
            certificate = await threads.deferToThreadPool(
                self._reactor, self._pool, self.client.issue
            )
        except Exception as e:
            self.failures += 1
            self.last_error = str(e)
            delay = min(RETRY_FIRST * 2 ** (self.failures - 1), RETRY_MAX)
            log.error(
                "acme: no certificate ({error}); retrying in {delay:.0f}s", error=e, delay=delay
            )
            self._schedule(delay)
            return
        self.failures, self.last_error = 0, ""
        log.info(
            "acme: new certificate for {domains}, valid until {until}",
            domains=" ".join(settings.domains),
            until=certificate.not_valid_after_utc.isoformat(),
        )
        if self.on_renewed is not None:
            try:
                self.on_renewed()
            except Exception:  # the file watch retries; the old certificate stays meanwhile
                log.failure("acme: reloading the new certificate failed")
        due = renewal_time(settings.certificate, settings.domains)
        self._schedule(min(max(due - self.clock.seconds(), RETRY_FIRST), CHECK_MAX))
