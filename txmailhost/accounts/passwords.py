"""Password hashes: scrypt from the standard library, in a self-describing string.

Format: ``$scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>`` (the same shape passlib uses), so the
cost parameters travel with each hash and can be raised later without breaking old ones.
scrypt is memory-hard (RFC 7914); hashlib ships it, so no extra dependency is needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from importlib import resources

from txmailhost.accounts.legacy import scheme_of, verify_legacy

# 2**15 * 128 * 8 = 32 MiB of memory per hash, ~50 ms on a 2 GHz core: slow for an attacker,
# tolerable for a login.
LOG_N, R, P = 15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_KEYLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, log_n: int | None = None) -> str:
    """A new salted hash of ``password``, at ``LOG_N`` unless ``log_n`` says otherwise.
    ``LOG_N`` is read at each call, so the test suite can make the hashes it makes by the
    thousand cheaper (tests/conftest.py); the server and the CLI never change it."""
    log_n = LOG_N if log_n is None else log_n
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=2**log_n, r=R, p=P, maxmem=_MAXMEM, dklen=_KEYLEN
    )
    return f"$scrypt$ln={log_n},r={R},p={P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for a malformed hash, never an error.
    A ``{SCHEME}`` hash moved in from Dovecot is checked by ``legacy.py``."""
    if encoded.startswith("{"):
        return verify_legacy(password, encoded)
    try:
        _, scheme, params, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        settings = dict(item.split("=", 1) for item in params.split(","))
        log_n, r, p = int(settings["ln"]), int(settings["r"]), int(settings["p"])
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=2**log_n,
            r=r,
            p=p,
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str) -> bool:
    """Is ``encoded`` a hash to replace with ours once the password is known (a login)?"""
    return scheme_of(encoded) is not None


_dummy_hash: str | None = None


def dummy_hash() -> str:
    """A hash to verify against when the user doesn't exist, so a login for an unknown account
    costs the same time as one for a known account and timing doesn't reveal who exists."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password("not a real password")
    return _dummy_hash


MIN_LENGTH = 8
_common: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """The shipped list of the most common passwords (lower case), read once."""
    global _common
    if _common is None:
        text = (
            resources.files("txmailhost.accounts")
            .joinpath("common-passwords.txt")
            .read_text("utf-8")
        )
        _common = frozenset(line for line in text.splitlines() if line and not line.startswith("#"))
    return _common


def weakness(password: str, address: str) -> str | None:
    """Why ``password`` is too weak for ``address``, as a one-line error; None when it will do.

    The first words of a password-spraying or credential-stuffing attack are the address
    itself, its local part and the list everyone's attack tools start with, so those are
    refused outright (NIST SP 800-63B 5.1.1.2 asks verifiers to check exactly these: "commonly
    used, expected, or compromised" values and "context-specific words such as the username").
    Compared case-insensitively, as attack tools try every casing of them.
    """
    if len(password) < MIN_LENGTH:
        return f"password too short: use at least {MIN_LENGTH} characters"
    folded = password.casefold()
    local = address.rpartition("@")[0].casefold()
    if folded in (address.casefold(), local):
        return "password refused: it is the address or its local part"
    if folded in common_passwords():
        return "password refused: it is one of the most common passwords; choose another"
    return None
