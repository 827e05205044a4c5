"""Password hashes of the servers users move in from (Dovecot's ``{SCHEME}`` strings).

Moving from Postfix + Dovecot, the old passwords aren't known, only their hashes. This module
checks a login against such a hash, so users keep their passwords; ``checker.py`` then stores
our own scrypt hash in its place on the first successful login (``needs_rehash``), so each old
hash is used at most until its owner's next login.

Schemes, as Dovecot writes them (``doveadm pw -s SCHEME``): ``{SHA512-CRYPT}``,
``{SHA256-CRYPT}``, ``{MD5-CRYPT}``, ``{BLF-CRYPT}`` (bcrypt ``$2y$``), ``{ARGON2ID}``,
``{ARGON2I}``, ``{SSHA512}``, ``{SSHA256}``, ``{SSHA}``, and ``{CRYPT}`` holding one of the
crypt formats (``$6$``, ``$5$``, ``$2y$``, ``$1$``). Verification is done by maintained
libraries, never by crypto written here: argon2-cffi for Argon2 (the reference
implementation's bindings) and libpass (the maintained fork of passlib, its bcrypt backend
being pyca's bcrypt) for the rest. Anything else never matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import argon2
from passlib import hash as passlib_hash

_PREFIX = re.compile(r"^\{([A-Z0-9-]+)\}(.*)$", re.DOTALL)
_ARGON2 = argon2.PasswordHasher()


def _argon2(password: str, encoded: str) -> bool:
    try:
        return _ARGON2.verify(encoded, password)
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        return False


def _passlib(handler: object, keep_prefix: str = "") -> Callable[[str, str], bool]:
    def verify(password: str, encoded: str) -> bool:
        return bool(handler.verify(password, keep_prefix + encoded))  # type: ignore[attr-defined]

    return verify


_CRYPT_FORMATS = {
    "$6$": _passlib(passlib_hash.sha512_crypt),
    "$5$": _passlib(passlib_hash.sha256_crypt),
    "$2y$": _passlib(passlib_hash.bcrypt),
    "$2b$": _passlib(passlib_hash.bcrypt),
    "$2a$": _passlib(passlib_hash.bcrypt),
    "$1$": _passlib(passlib_hash.md5_crypt),
}


def _crypt(password: str, encoded: str) -> bool:
    """``{CRYPT}``: the crypt(3) format its ``$id$`` names."""
    for prefix, verify in _CRYPT_FORMATS.items():
        if encoded.startswith(prefix):
            return verify(password, encoded)
    return False


SCHEMES: dict[str, Callable[[str, str], bool]] = {
    "SHA512-CRYPT": _passlib(passlib_hash.sha512_crypt),
    "SHA256-CRYPT": _passlib(passlib_hash.sha256_crypt),
    "MD5-CRYPT": _passlib(passlib_hash.md5_crypt),
    "BLF-CRYPT": _passlib(passlib_hash.bcrypt),
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
    "SSHA512": _passlib(passlib_hash.ldap_salted_sha512, "{SSHA512}"),
    "SSHA256": _passlib(passlib_hash.ldap_salted_sha256, "{SSHA256}"),
    "SSHA": _passlib(passlib_hash.ldap_salted_sha1, "{SSHA}"),
    "CRYPT": _crypt,
}


def scheme_of(encoded: str) -> str | None:
    """The ``{SCHEME}`` of a legacy hash we can check, else None."""
    found = _PREFIX.match(encoded)
    if found is None or found[1] not in SCHEMES:
        return None
    return found[1]


def verify_legacy(password: str, encoded: str) -> bool:
    """Does ``password`` match the ``{SCHEME}...`` hash? False for anything malformed."""
    found = _PREFIX.match(encoded)
    if found is None or found[1] not in SCHEMES:
        return False
    try:
        return SCHEMES[found[1]](password, found[2])
    except (ValueError, TypeError):  # malformed hash, or a password bcrypt refuses (> 72 bytes)
        return False
