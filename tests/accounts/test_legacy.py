"""Dovecot's password hashes (made by ``doveadm pw``) accepted at login, then replaced by ours."""

from __future__ import annotations

import pytest
from twisted.cred.credentials import UsernamePassword

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts import syscrypt
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.legacy import scheme_of, verify_legacy
from txmailhost.accounts.passwords import needs_rehash, verify_password

PASSWORD = "old-secret-1"
# doveadm pw -s SCHEME -p old-secret-1 (Dovecot 2.3.19)
DOVECOT = {
    "SHA512-CRYPT": "{SHA512-CRYPT}$6$d0trImSIg0Octlby$TuORMOJcEEbS3flDWmyk9wvbIsk3fmep.X.oFk2kjo7"
    "K0e.Us7AhG1hwHt2Sr9oGZtLI2BQDjqbVUj0VqRen01",
    "SHA256-CRYPT": "{SHA256-CRYPT}$5$4bkBO9CHPcY3sdQH$0R5ZOE/dVqctAYgV/mrmGI0Y5sQQOzS4ereP2W/Jgs7",
    "BLF-CRYPT": "{BLF-CRYPT}$2y$05$yrDO5nXL8h4As1ejbxHoAuFkY9HDeMhGl6Zt3DbGvxPk4M3MRIVM6",
    "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$xGLHHJL9k23CNJdxYfEJGQ$igcYdZFuGvfdkBAG"
    "Kc0/2pTc8Pu/Evb0yRwSpsen3Xc",
    "ARGON2I": "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$z8LThKu47uUkV/BCRMFtmA$YVBczoH77+nFPIdN254"
    "EV8c6H95pHwPXOvD8SfJsiPE",
    "SSHA512": "{SSHA512}4nAusyFTlt4shaqSdlhVwlpOWmHWCQ9O3rMDRo/y4RFH7CNOUIQntmX0og0oB1Rr7bqPcUzd8"
    "ZTKLkoTFF50kJmYg6s=",
    "SSHA256": "{SSHA256}P2Mkh4gEAB4u2+QKPixRgkhtLhnEu65cWb/gOz3/lwXfO3bb",
    "SSHA": "{SSHA}friZD8R5xJ2Y14miRTlFDrbw8ffsG0Gq",
    "MD5-CRYPT": "{MD5-CRYPT}$1$1aXddk9o$0k3nEVx57H7Zyry5juPAA.",
    "CRYPT": "{CRYPT}$6$d0trImSIg0Octlby$TuORMOJcEEbS3flDWmyk9wvbIsk3fmep.X.oFk2kjo7K0e.Us7AhG1hw"
    "Ht2Sr9oGZtLI2BQDjqbVUj0VqRen01",
}


@pytest.mark.parametrize("scheme", sorted(DOVECOT))
def test_each_dovecot_scheme_checks_the_password(scheme: str) -> None:
    encoded = DOVECOT[scheme]
    assert scheme_of(encoded) == scheme and needs_rehash(encoded)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password("old-secret-2", encoded)
    assert not verify_password(PASSWORD + "x" * 80, encoded)  # bcrypt's 72-byte limit: False


@pytest.mark.parametrize(
    "encoded",
    ["{PLAIN}old-secret-1", "{SHA512-CRYPT}garbage", "{ARGON2ID}$argon2id$v=19$m=1$xx$yy",
     "{CRYPT}zz", "{NOPE}x", "{SSHA512}", ""],
)  # fmt: skip
def test_unknown_or_malformed_hashes_never_match(encoded: str) -> None:
    assert not verify_legacy(PASSWORD, encoded)
    assert not verify_password(PASSWORD, encoded)


def test_the_first_login_replaces_a_dovecot_hash_with_scrypt(tmp_path) -> None:
    accounts = AccountsDB(str(tmp_path / "accounts.sqlite"))
    accounts.add_domain("example.test")
    accounts.add_user_with_hash("carol@example.test", DOVECOT["SHA512-CRYPT"])
    checker = AccountsChecker(accounts, SyncReactor(), SyncThreadPool())

    def login(password: str):
        out = []
        checker.requestAvatarId(UsernamePassword(b"carol@example.test", password.encode()))\
            .addBoth(out.append)  # fmt: skip
        return out[0]

    assert login("wrong-password").check(Exception)
    assert accounts.password_hash("carol@example.test") == DOVECOT["SHA512-CRYPT"]
    assert login(PASSWORD) == "carol@example.test"
    stored = accounts.password_hash("carol@example.test")
    assert stored.startswith("$scrypt$") and verify_password(PASSWORD, stored)
    assert login(PASSWORD) == "carol@example.test"  # and again, with ours


def test_a_password_changed_meanwhile_is_not_overwritten(tmp_path) -> None:
    accounts = AccountsDB(str(tmp_path / "accounts.sqlite"))
    accounts.add_domain("example.test")
    accounts.add_user_with_hash("carol@example.test", DOVECOT["SSHA"])
    accounts.set_password("carol@example.test", "a-new-password-9")
    assert not accounts.replace_password_hash("carol@example.test", DOVECOT["SSHA"], "$scrypt$x")
    assert verify_password("a-new-password-9", accounts.password_hash("carol@example.test"))


# yescrypt as Debian 11+ writes it to /etc/shadow (libxcrypt's crypt with its default cost
# "j9T"); Dovecot 2.3.19 checks it: ``doveadm pw -t '{CRYPT}...' -p old-secret-1`` says
# "(verified)".
YESCRYPT = "$y$j9T$abcdefghijklmnop$WjvwQB2C.KNsE109LdgVCPWCss7LT5yAszlk0F.FUo2"


@pytest.mark.skipif(syscrypt.problem(YESCRYPT) is not None, reason="no libxcrypt here")
def test_yescrypt_in_crypt_checks_the_password_and_is_replaced(tmp_path) -> None:
    encoded = "{CRYPT}" + YESCRYPT
    assert scheme_of(encoded) == "CRYPT" and needs_rehash(encoded)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password("old-secret-2", encoded)
    assert not verify_password(PASSWORD + "\0tail", encoded)  # crypt() would stop at the NUL
    assert not verify_password(PASSWORD, encoded[:-1] + ("A" if encoded[-1] != "A" else "B"))
    assert not verify_password(PASSWORD, "{CRYPT}$y$j9T$abc$short")

    accounts = AccountsDB(str(tmp_path / "accounts.sqlite"))
    accounts.add_domain("example.test")
    accounts.add_user_with_hash("erin@example.test", encoded)
    checker = AccountsChecker(accounts, SyncReactor(), SyncThreadPool())
    out: list = []
    checker.requestAvatarId(UsernamePassword(b"erin@example.test", PASSWORD.encode())).addBoth(
        out.append
    )
    assert out == ["erin@example.test"]
    assert accounts.password_hash("erin@example.test").startswith("$scrypt$")


def test_yescrypt_without_libxcrypt_matches_nothing(monkeypatch) -> None:
    monkeypatch.setattr(syscrypt, "_library", lambda: None)
    assert not verify_password(PASSWORD, "{CRYPT}" + YESCRYPT)
    assert "lacks" in syscrypt.problem(YESCRYPT)
