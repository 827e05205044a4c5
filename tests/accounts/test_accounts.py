"""Accounts database, password hashes, the cred checker and the realm."""

from __future__ import annotations

import subprocess
import sys

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from tests.support.fixtures import make_world
from txmailhost.accounts import AccountError, IMailAccount, canonical_address
from txmailhost.accounts.addresses import new_address
from txmailhost.accounts.passwords import hash_password, verify_password


def fired(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_password_hash_is_scrypt_and_verifies_only_the_right_password():
    encoded = hash_password("correct horse")
    assert encoded.startswith("$scrypt$ln=") and "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert hash_password("correct horse") != encoded  # salted


def test_the_server_and_the_cli_hash_at_scrypt_cost_2_to_the_15():
    """The cost tests/conftest.py lowers for this process's own hashes is not what the server
    uses: a fresh interpreter hashes at ln=15 (32 MiB of memory a hash)."""
    made = subprocess.run(
        [sys.executable, "-c", "from txmailhost.accounts.passwords import hash_password as h;"
         "print(h('correct horse'))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert made.startswith("$scrypt$ln=15,r=8,p=1$")
    assert verify_password("correct horse", made.strip())


@pytest.mark.parametrize(
    "garbage", ["", "$scrypt$", "plain", "$scrypt$ln=x,r=8,p=1$aa$bb", "$md5$a$b$c"]
)
def test_malformed_hash_never_verifies_and_never_raises(garbage):
    assert not verify_password("anything", garbage)


@pytest.mark.parametrize(
    "address, canonical",
    [("Alice@Example.TEST", "alice@example.test"), ("a.b+c@example.test.", "a.b+c@example.test")],
)
def test_addresses_are_canonicalised(address, canonical):
    assert canonical_address(address) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "noat",
        "@example.test",
        "a@b",
        "../x@example.test",
        "a b@example.test",
        "a..b@example.test",
        "a@exa_mple.test",
    ],
)
def test_bad_addresses_are_refused_with_a_reason(bad):
    with pytest.raises(AccountError):
        canonical_address(bad)


@pytest.mark.parametrize(
    "typed", ["J\u030c@example.test", "\u01f0@example.test", "j\u030c@example.test"]
)
def test_case_folding_ends_in_nfc(typed):
    """``J`` + U+030C has no precomposed capital; lower-cased, it composes to U+01F0: one
    account however it was typed (RFC 6532 3.1), as SMTP's lookup folds it too."""
    assert canonical_address(typed) == "\u01f0@example.test"


@pytest.mark.parametrize(
    "local",
    [
        "admin\u202e",  # RIGHT-TO-LEFT OVERRIDE: shows as another name
        "\u00ad",  # SOFT HYPHEN: shows as nothing
        "\ufeffbob",  # ZERO WIDTH NO-BREAK SPACE
        "bo\u200bb",  # ZERO WIDTH SPACE
        "\ue000x",  # private use
        "x\U000e0001",  # LANGUAGE TAG (Cf)
        "x\u0378",  # unassigned
        "x\udc80",  # a lone surrogate: an undecodable byte of a command line
        "bo\u200db",  # ZERO WIDTH JOINER between Latin letters: no script joins there
        "\u200cx",  # ZERO WIDTH NON-JOINER at the start
    ],
)
def test_new_names_refuse_invisible_and_unassigned_characters(local):
    with pytest.raises(AccountError, match="unsupported local part"):
        new_address(f"{local}@example.test")


def test_new_names_take_letters_of_any_script():
    assert new_address("Dörte@Bücher.example") == "dörte@xn--bcher-kva.example"
    assert new_address("用户@example.test") == "用户@example.test"
    # Joiners where RFC 5892's CONTEXTJ rules allow them (PRECIS IdentifierClass): after a
    # virama (Devanagari "kssa" as half-forms), ZWNJ between Persian joining letters.
    assert new_address("\u0915\u094d\u200d\u0937@example.test").startswith("\u0915")
    assert new_address("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645@example.test")


@pytest.mark.parametrize("accounts_in", ["sqlite", "postgres"])
def test_invisible_names_are_refused_for_users_and_aliases_only(tmp_path, accounts_in):
    """Lookups stay wide, so an account made before the check can still be removed."""
    world = make_world(tmp_path, accounts_in=accounts_in)
    world.accounts.add_domain("example.test")
    with pytest.raises(AccountError, match="U\\+202E"):
        world.accounts.add_user("admin\u202e@example.test", "long-enough")
    rules = world.accounts.address_rules()
    for source, target in (("\u00ad@example.test", "a@example.test"),
                           ("team@example.test", "\ufeffa@example.test")):  # fmt: skip
        with pytest.raises(AccountError, match="unsupported local part"):
            rules.add_alias(source, [target])
    assert rules.list_aliases() == []
    world.accounts.add_user_with_hash("a@example.test", hash_password("long-enough"))
    with pytest.raises(AccountError, match="unsupported local part"):
        rules.set_forward("a@example.test", ["x\u202e@far.test"], keep_copy=True)
    world.accounts._db.execute(  # as an earlier version let it be made
        "INSERT INTO users (address, domain, password_hash, created) VALUES (?, ?, ?, 0)",
        ("admin\u202e@example.test", "example.test", hash_password("long-enough")),
    )
    assert world.accounts.remove_user("admin\u202e@example.test") == "admin\u202e@example.test"


@pytest.mark.parametrize(
    "source", ["\u2028@example.test", " @example.test", "\t@example.test", "\u3000@example.test"]
)
def test_only_a_literal_at_sign_makes_an_alias_the_catch_all(tmp_path, source):
    """Stripped, these once became ``@example.test``: every unknown address's mail."""
    world = make_world(tmp_path)
    world.accounts.add_domain("example.test")
    rules = world.accounts.address_rules()
    with pytest.raises(AccountError, match="not an address"):
        rules.add_alias(source, ["b@example.test"])
    assert rules.list_aliases() == []
    assert rules.add_alias("@Example.test", ["b@example.test"])[0] == "@example.test"


@pytest.mark.parametrize("domain", ["10.0.0.1", "999.1.1.1", "1.2.3.4.5", "example.123"])
def test_a_domain_whose_last_label_is_all_digits_is_not_served(tmp_path, domain):
    """No top-level domain is all digits (RFC 1123 2.1, RFC 3696 2): ``domain add 10.0.0.1``
    made RCPT TO:<u@10.0.0.1> accepted. One added before the check can still be removed."""
    world = make_world(tmp_path)
    with pytest.raises(AccountError, match="its last label is all digits"):
        world.accounts.add_domain(domain)
    assert world.accounts.list_domains() == []
    assert world.accounts.add_domain("123.example") == "123.example"
    world.accounts._db.execute("INSERT INTO domains (name, created) VALUES (?, 0)", (domain,))
    assert world.accounts.remove_domain(domain) == []


@pytest.mark.parametrize("accounts_in", ["sqlite", "postgres"])
def test_users_need_their_domain_and_unique_addresses(tmp_path, accounts_in):
    world = make_world(tmp_path, accounts_in=accounts_in)
    with pytest.raises(AccountError, match="not served here"):
        world.accounts.add_user("a@example.test", "long-enough")
    world.accounts.add_domain("example.test")
    with pytest.raises(AccountError, match="already exists"):
        world.accounts.add_domain("EXAMPLE.test")
    world.accounts.add_user("a@example.test", "long-enough")
    with pytest.raises(AccountError, match="already exists"):
        world.accounts.add_user("A@example.test", "long-enough")
    with pytest.raises(AccountError, match="too short"):
        world.accounts.add_user("b@example.test", "short")
    with pytest.raises(AccountError, match="still has 1 user"):
        world.accounts.remove_domain("example.test")
    assert world.accounts.lookup("a@example.test") == (True, True)
    assert world.accounts.lookup("z@example.test") == (True, False)
    assert world.accounts.lookup("a@other.test") == (False, False)
    assert world.accounts.remove_domain("example.test", force=True) == ["a@example.test"]
    assert world.accounts.list_users() == []


@pytest.mark.parametrize("accounts_in", ["sqlite", "postgres"])
def test_checker_and_realm_log_a_user_in_by_canonical_address(tmp_path, accounts_in):
    world = make_world(tmp_path, accounts_in=accounts_in)
    world.add_user("alice@example.test")
    interface, avatar, logout = fired(
        world.portal.login(
            UsernamePassword(b"Alice@Example.test", b"secret-pw"), None, IMailAccount
        )
    )
    assert interface is IMailAccount and avatar.address == "alice@example.test"
    assert avatar.store is world.store


@pytest.mark.parametrize(
    "username, password",
    [(b"alice@example.test", b"wrong-pw"), (b"nobody@example.test", b"secret-pw"), (b"\xff", b"x")],
)
def test_wrong_credentials_fail_with_unauthorized_login(tmp_path, username, password):
    world = make_world(tmp_path)
    world.add_user("alice@example.test")
    failure = fired(world.portal.login(UsernamePassword(username, password), None, IMailAccount))
    assert failure.check(UnauthorizedLogin)
