"""DKIM keys per domain: ``DATA/dkim/DOMAIN/``, an Ed25519 and an RSA-2048 key per selector.

Every message is signed twice (RFC 8463 section 6: an Ed25519 signature for receivers that
know it, an RSA one for all the others), so a *selector* here names a pair: the DNS selectors
``NAME-ed25519`` and ``NAME-rsa``, each with its own key file, ``NAME-ed25519.pem`` and
``NAME-rsa.pem`` (PKCS#8 PEM, mode 0600 in a 0700 directory: private keys).

``state.json`` (readable with ``cat``) says which selector signs now and which older ones are
still published. Rotation (``txmailhost dkim rotate``) makes a new pair and signs with it at
once; the old pair's records must stay in DNS until mail signed with it has been verified
(a few days), which is why ``dns DOMAIN`` keeps printing them until ``dkim retire``.
The key files are written with ``_safeio.write_atomic`` (temporary file, fsync, rename).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from txmailhost._safeio import makedirs_durably, write_atomic

ALGORITHMS = ("ed25519", "rsa")
_LOADED: dict[
    bytes, Any
] = {}  # PEM -> loaded key: parsing an RSA key costs more than a signature  # the order signatures are added in
RSA_BITS = 2048
_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


class DKIMKeyError(ValueError):
    """A DKIM key command that can't be done (unknown domain, bad selector); one line."""


@dataclass(frozen=True)
class SigningKey:
    """One DKIM key: the DNS selector it is published under and what signing needs."""

    domain: str
    selector: str  # the DNS selector: "NAME-ed25519" or "NAME-rsa"
    algorithm: str  # "ed25519" or "rsa"
    private_pem: bytes

    def private_key(self) -> Any:
        """The key as ``cryptography`` uses it (loaded once per SigningKey)."""
        loaded = _LOADED.get(self.private_pem)
        if loaded is None:
            loaded = serialization.load_pem_private_key(self.private_pem, None)
            _LOADED[self.private_pem] = loaded
        return loaded

    @property
    def dkimpy_key(self) -> bytes:
        """The private key as dkimpy takes it: PEM for RSA, the base64 seed for Ed25519."""
        if self.algorithm == "rsa":
            return self.private_pem
        key = serialization.load_pem_private_key(self.private_pem, None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)

    def txt_record(self) -> str:
        """The DKIM key record (RFC 6376 3.6.1; RFC 8463 for k=ed25519)."""
        return dkim_record(self.algorithm, self.public_key())

    def public_key(self) -> bytes:
        key = serialization.load_pem_private_key(self.private_pem, None)
        public = key.public_key()
        if self.algorithm == "ed25519":
            return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def dkim_record(algorithm: str, public: bytes) -> str:
    return f"v=DKIM1; k={algorithm}; p={base64.b64encode(public).decode()}"


@dataclass(frozen=True)
class Selector:
    name: str  # the pair's name; DNS selectors are NAME-ed25519 and NAME-rsa
    created: float
    active: bool


def check_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if not _DOMAIN.fullmatch(domain):
        raise DKIMKeyError(f"{domain!r} is not a domain name")
    return domain


def check_selector(name: str) -> str:
    name = name.strip().lower()
    if not _SELECTOR.fullmatch(name):
        raise DKIMKeyError(
            f"selector {name!r}: use letters, digits and '-' (at most 42 characters)"
        )
    return name


def new_private_keys() -> dict[str, bytes]:
    """A new key of each algorithm, PKCS#8 PEM: what one selector signs with."""
    made = {}
    for algorithm in ALGORITHMS:
        key = (
            ed25519.Ed25519PrivateKey.generate()
            if algorithm == "ed25519"
            else rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        )
        made[algorithm] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return made


class KeyStore:
    """The keys under ``DATA/dkim``. Reading is cheap and cached by file time, so the server
    picks up ``dkim init`` and ``dkim rotate`` from the CLI without a restart."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[float, list[SigningKey]]] = {}

    def _dir(self, domain: str) -> str:
        return os.path.join(self.directory, domain)

    def _state_path(self, domain: str) -> str:
        return os.path.join(self._dir(domain), "state.json")

    def _read_state(self, domain: str) -> dict:
        try:
            with open(self._state_path(domain)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"active": None, "selectors": {}}

    def _write_state(self, domain: str, state: dict) -> None:
        write_atomic(
            self._state_path(domain), json.dumps(state, indent=1, sort_keys=True).encode(), 0o600
        )

    def domains(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(self._state_path(n)))

    def selectors(self, domain: str) -> list[Selector]:
        state = self._read_state(check_domain(domain))
        return [
            Selector(name, created, name == state["active"])
            for name, created in sorted(state["selectors"].items(), key=lambda kv: kv[1])
        ]

    def create(self, domain: str, selector: str | None = None) -> str:
        """Make a new key pair for ``domain`` and sign with it from now on; returns its name.
        An existing selector name is refused (keys are never overwritten)."""
        domain = check_domain(domain)
        state = self._read_state(domain)
        name = check_selector(selector) if selector else self._next_name(state)
        if name in state["selectors"]:
            raise DKIMKeyError(f"{domain} already has a selector {name!r}")
        makedirs_durably(self._dir(domain), 0o700)
        for algorithm, pem in new_private_keys().items():
            write_atomic(os.path.join(self._dir(domain), f"{name}-{algorithm}.pem"), pem, 0o600)
        state["selectors"][name] = time.time()
        state["active"] = name
        self._write_state(domain, state)
        return name

    def retire(self, domain: str, selector: str) -> None:
        """Forget an old selector (after its DNS records were removed); never the active one."""
        domain = check_domain(domain)
        state = self._read_state(domain)
        if selector not in state["selectors"]:
            raise DKIMKeyError(f"{domain} has no selector {selector!r}")
        if selector == state["active"]:
            raise DKIMKeyError(f"{selector!r} signs {domain}'s mail now: rotate first")
        del state["selectors"][selector]
        self._write_state(domain, state)
        for algorithm in ALGORITHMS:
            path = os.path.join(self._dir(domain), f"{selector}-{algorithm}.pem")
            if os.path.exists(path):
                os.unlink(path)

    @staticmethod
    def _next_name(state: dict) -> str:
        base = time.strftime("s%Y%m", time.gmtime())
        name, n = base, 1
        while name in state["selectors"]:
            n += 1
            name = f"{base}-{n}"
        return name

    def keys(self, domain: str, selector: str | None = None) -> list[SigningKey]:
        """The keys of ``selector`` (the active one when None), Ed25519 first; [] when the
        domain has none. Cached until ``state.json`` changes."""
        domain = domain.rstrip(".").lower()
        try:
            stamp = os.stat(self._state_path(domain)).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return []
        if selector is None:
            cached = self._cache.get(domain)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        state = self._read_state(domain)
        name = selector or state["active"]
        if not name:
            return []
        found = []
        for algorithm in ALGORITHMS:
            path = os.path.join(self._dir(domain), f"{name}-{algorithm}.pem")
            with open(path, "rb") as f:
                found.append(SigningKey(domain, f"{name}-{algorithm}", algorithm, f.read()))
        if selector is None:
            self._cache[domain] = (stamp, found)
        return found

    def signing_problems(self) -> list[str]:
        """Why some domain's mail could not be signed, one line each, found by reading what
        signing reads: each domain's ``state.json`` and the key files of its active selector,
        which must be PEM private keys of their algorithm. For the start checks
        (``service.start_problems``): signing reads them only when a message is submitted,
        and then a key file that ``dkim rotate`` run as root left unreadable fails the
        submission (the filters' ``on_error``), a garbled one sends the mail unsigned. No
        ``DATA/dkim`` at all is no problem (no keys yet), nor is a domain directory without
        ``state.json``; older, published selectors sign nothing and are not read."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as e:
            return [f"dkim: can't list {self.directory!r}: {e.strerror}"]
        problems = []
        for domain in names:
            try:
                state = self._read_state(domain)
                active = state["active"]
                if active is not None and not isinstance(active, str):
                    raise TypeError
            except NotADirectoryError:
                continue  # a file beside the domains' directories
            except OSError as e:
                problems.append(f"dkim: {domain}: can't read {self._state_path(domain)!r}: "
                                f"{e.strerror}")  # fmt: skip
                continue
            except (ValueError, TypeError, KeyError):  # JSONDecodeError is a ValueError
                problems.append(f"dkim: {domain}: {self._state_path(domain)!r} is not a DKIM "
                                "state file (JSON with \"active\" and \"selectors\")")  # fmt: skip
                continue
            if active:
                problems += self._key_problems(domain, active)
        return problems

    def _key_problems(self, domain: str, name: str) -> list[str]:
        problems = []
        for algorithm, kind in (("ed25519", ed25519.Ed25519PrivateKey),
                                ("rsa", rsa.RSAPrivateKey)):  # fmt: skip
            path = os.path.join(self._dir(domain), f"{name}-{algorithm}.pem")
            try:
                with open(path, "rb") as f:
                    # Parsed, not validated: checking an RSA key's numbers costs ~50 ms, a
                    # minute at each start for a thousand domains; signing validates it.
                    key = serialization.load_pem_private_key(
                        f.read(), None, unsafe_skip_rsa_key_validation=True
                    )
            except OSError as e:
                problems.append(f"dkim: {domain}: can't read {path!r}: {e.strerror}")
                continue
            except (ValueError, TypeError, UnsupportedAlgorithm):
                key = None
            if not isinstance(key, kind):
                problems.append(f"dkim: {domain}: {path!r} is not an unencrypted PEM "
                                f"{algorithm} private key")  # fmt: skip
        return problems

    def published(self, domain: str) -> list[SigningKey]:
        """Every key whose record should be in DNS: the active selector's and older ones."""
        return [k for s in self.selectors(domain) for k in self.keys(domain, s.name)]
