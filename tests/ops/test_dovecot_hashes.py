"""A Dovecot hash is moved in only if a login can ever match it: each scheme's value is
parsed (length, alphabet, base64) by the library that verifies it at login."""

from __future__ import annotations

import argon2
import pytest
from passlib import hash as passlib_hash

from txmailhost.accounts.legacy import SCHEMES, verify_legacy
from txmailhost.ops.dovecot_hashes import SHAPES, hash_problem

PASSWORD = "old-password"


def _without_prefix(encoded: str) -> str:
    return encoded.partition("}")[2]


GOOD = {
    "SHA512-CRYPT": passlib_hash.sha512_crypt.hash(PASSWORD),
    "SHA256-CRYPT": passlib_hash.sha256_crypt.hash(PASSWORD),
    "MD5-CRYPT": passlib_hash.md5_crypt.hash(PASSWORD),
    "BLF-CRYPT": passlib_hash.bcrypt.using(rounds=5, ident="2y").hash(PASSWORD),
    "ARGON2ID": argon2.PasswordHasher().hash(PASSWORD),
    "ARGON2I": argon2.PasswordHasher(type=argon2.Type.I).hash(PASSWORD),
    "SSHA512": _without_prefix(passlib_hash.ldap_salted_sha512.hash(PASSWORD)),
    "SSHA256": _without_prefix(passlib_hash.ldap_salted_sha256.hash(PASSWORD)),
    "SSHA": _without_prefix(passlib_hash.ldap_salted_sha1.hash(PASSWORD)),
    "CRYPT": passlib_hash.sha512_crypt.hash(PASSWORD),
}


def test_every_scheme_checked_at_login_has_its_shape_checked() -> None:
    assert set(SHAPES) == set(SCHEMES) == set(GOOD)


@pytest.mark.parametrize("scheme", sorted(GOOD))
def test_a_hash_as_its_library_writes_it_passes_and_logs_in(scheme: str) -> None:
    assert hash_problem(scheme, GOOD[scheme]) is None
    assert verify_legacy(PASSWORD, f"{{{scheme}}}{GOOD[scheme]}")


@pytest.mark.parametrize(
    ("scheme", "value", "problem"),
    [
        ("SHA512-CRYPT", "garbage", "not a valid sha512_crypt hash"),
        ("SHA512-CRYPT", "$6$garbage", "a salt without a hash"),
        ("SHA512-CRYPT", "$6$salt$" + "!" * 86, "invalid characters"),
        ("BLF-CRYPT", "$2y$05$short", "salt too small"),
        ("SSHA", "!!!notbase64", "not a valid ldap_salted_sha1 hash"),
        ("SSHA512", "", "not a valid ldap_salted_sha512 hash"),
        ("CRYPT", "$1$abc$garbage", "checksum must be exactly 22 chars"),
        ("CRYPT", "$9$abc$def", "not a crypt format that is checked at login"),
        ("CRYPT", "$y$j9T$salt$short", "not $y$PARAMS$SALT$HASH"),
        ("CRYPT", "$y$j9T$sa!t$" + "a" * 43, "not $y$PARAMS$SALT$HASH"),
        ("ARGON2ID", "$argon2id$v=19$m=65536,t=3,p=4$!!!$!!!", "SALT and HASH in base64"),
        ("ARGON2I", "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ", "not $argon2id$"),
    ],
)
def test_a_malformed_hash_is_refused_with_its_reason(scheme: str, value: str, problem: str):
    found = hash_problem(scheme, value)
    assert found is not None and found.startswith(f"malformed {{{scheme}}} hash: ")
    assert problem in found
    assert not verify_legacy(PASSWORD, f"{{{scheme}}}{value}")  # what the account would be
