"""Password hashes of the servers users move in from (Dovecot's ``{SCHEME}`` strings).

Moving from Postfix + Dovecot, the old passwords aren't known, only their hashes. This module
checks a login against such a hash, so users keep their passwords; ``checker.py`` then stores
our own scrypt hash in its place on the first successful login (``needs_rehash``), so each old
hash is used at most until its owner's next login.

Schemes, as Dovecot writes them (``doveadm pw -s SCHEME``): ``{SHA512-CRYPT}``,
``{SHA256-CRYPT}``, ``{MD5-CRYPT}``, ``{BLF-CRYPT}`` (bcrypt ``$2y$``), ``{ARGON2ID}``,
``{ARGON2I}``, ``{SSHA512}``, ``{SSHA256}``, ``{SSHA}``, and ``{CRYPT}`` holding one of the
crypt formats (``$6$``, ``$5$``, ``$2y$``, ``$1$``, and yescrypt's ``$y$``). Verification is
done by maintained libraries, never by crypto written here: argon2-cffi for Argon2 (the
reference implementation's bindings), the system's libxcrypt for yescrypt (``syscrypt.py``)
and libpass (the maintained fork of passlib, its bcrypt backend being pyca's bcrypt) for the
rest. Anything else never matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import argon2
from passlib import hash as passlib_hash

from txmailhost.accounts import syscrypt

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


# The schemes libpass verifies: its handler, and the prefix its own format starts with that
# Dovecot's value leaves out. ``ops/dovecot_hashes.py`` parses the same values with them.
PASSLIB_SCHEMES: dict[str, tuple[object, str]] = {
    "SHA512-CRYPT": (passlib_hash.sha512_crypt, ""),
    "SHA256-CRYPT": (passlib_hash.sha256_crypt, ""),
    "MD5-CRYPT": (passlib_hash.md5_crypt, ""),
    "BLF-CRYPT": (passlib_hash.bcrypt, ""),
    "SSHA512": (passlib_hash.ldap_salted_sha512, "{SSHA512}"),
    "SSHA256": (passlib_hash.ldap_salted_sha256, "{SSHA256}"),
    "SSHA": (passlib_hash.ldap_salted_sha1, "{SSHA}"),
}
# The crypt(3) formats ``{CRYPT}`` may hold, by their ``$id$``, and the scheme each is.
CRYPT_IDS = {"$6$": "SHA512-CRYPT", "$5$": "SHA256-CRYPT", "$2y$": "BLF-CRYPT",
             "$2b$": "BLF-CRYPT", "$2a$": "BLF-CRYPT", "$1$": "MD5-CRYPT"}  # fmt: skip
# yescrypt, which Dovecot has no scheme name for: only ever inside ``{CRYPT}``.
YESCRYPT_ID = "$y$"


def _crypt(password: str, encoded: str) -> bool:
    """``{CRYPT}``: the crypt(3) format its ``$id$`` names."""
    if encoded.startswith(YESCRYPT_ID):
        return syscrypt.verify(password, encoded)
    for prefix, scheme in CRYPT_IDS.items():
        if encoded.startswith(prefix):
            return SCHEMES[scheme](password, encoded)
    return False


SCHEMES: dict[str, Callable[[str, str], bool]] = {
    **{name: _passlib(*handler) for name, handler in PASSLIB_SCHEMES.items()},
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
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
