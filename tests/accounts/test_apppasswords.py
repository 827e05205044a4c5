"""App-specific passwords: made, listed, checked by the cred checker, refused where only the
account's password may be used, revoked, and gone with their user."""

from __future__ import annotations

import pytest
from twisted.cred.credentials import UsernamePassword
from zope.interface import alsoProvides

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts.apppasswords import IAccountPasswordOnly, lookup_of, new_password
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.interfaces import AccountError

USER = "carol@example.test"
PASSWORD = "carols-own-password-77"


@pytest.fixture(params=["sqlite", "postgres"])
def accounts(request, tmp_path) -> AccountsDB:
    if request.param == "postgres":  # the same SQL on the shared database (skipped without)
        from tests.support.postgres import shared_server
        from txmailhost.accounts.postgres import PostgresAccounts

        server = shared_server()
        dsn = server.database()
        db = PostgresAccounts(dsn)
        request.addfinalizer(lambda: (db.close(), server.drop(dsn)))
    else:
        db = AccountsDB(str(tmp_path / "accounts.sqlite"))
    db.add_domain("example.test")
    db.add_user(USER, PASSWORD)
    return db


def _login(checker: AccountsChecker, password: str, account_only: bool = False):
    credentials = UsernamePassword(USER.encode(), password.encode())
    if account_only:
        alsoProvides(credentials, IAccountPasswordOnly)
    out: list = []
    checker.requestAvatarId(credentials).addBoth(out.append)
    return out[0]


def test_an_app_password_logs_in_until_it_is_revoked(accounts):
    checker = AccountsChecker(accounts, SyncReactor(), SyncThreadPool())
    app_id, password = accounts.add_app_password(USER, "Phone")
    other_id, other = accounts.add_app_password(USER, "Laptop")

    assert _login(checker, password) == USER and _login(checker, other) == USER
    assert _login(checker, PASSWORD) == USER  # the account's own still works
    [phone, laptop] = accounts.list_app_passwords(USER)
    assert (phone.id, phone.name, laptop.name) == (app_id, "Phone", "Laptop")
    assert phone.last_used is not None
    assert accounts.remove_app_password(USER, app_id)
    assert _login(checker, password).check(Exception)
    assert _login(checker, other) == USER  # the other is untouched
    assert not accounts.remove_app_password(USER, app_id)
    assert not accounts.remove_app_password("bob@example.test", other_id)


def test_only_hashes_are_stored_each_its_own(accounts):
    _id, password = accounts.add_app_password(USER, "Phone")
    _id2, second = accounts.add_app_password(USER, "Phone")
    rows = accounts._db.execute("SELECT lookup, password_hash FROM app_passwords").fetchall()
    assert all(password not in h and second not in h for _lookup, h in rows)
    assert rows[0][1] != rows[1][1] and all(h.startswith("$scrypt$") for _l, h in rows)
    assert rows[0][0] == lookup_of(password)


def test_the_account_password_only_credentials_refuse_app_passwords(accounts):
    checker = AccountsChecker(accounts, SyncReactor(), SyncThreadPool())
    _id, password = accounts.add_app_password(USER, "Phone")
    assert _login(checker, password, account_only=True).check(Exception)
    assert _login(checker, PASSWORD, account_only=True) == USER


def test_wrong_and_malformed_passwords_and_unknown_users_are_refused(accounts):
    checker = AccountsChecker(accounts, SyncReactor(), SyncThreadPool())
    _id, password = accounts.add_app_password(USER, "Phone")
    wrong = password[:5] + ("a" if password[5] != "a" else "b") + password[6:]
    for attempt in (wrong, new_password(), "", "x-y", password.upper() + "x"):
        assert _login(checker, attempt).check(Exception), attempt
    with pytest.raises(AccountError):
        accounts.add_app_password("nobody@example.test", "Phone")
    with pytest.raises(AccountError):
        accounts.add_app_password(USER, "   ")


def test_app_passwords_go_with_their_user(accounts):
    accounts.add_app_password(USER, "Phone")
    accounts.remove_user(USER)
    assert accounts._db.execute("SELECT COUNT(*) FROM app_passwords").fetchone()[0] == 0


def test_the_form_is_five_groups_of_four():
    password = new_password()
    groups = password.split("-")
    assert len(groups) == 5 and all(len(g) == 4 and g.isalnum() for g in groups)
    assert lookup_of(password) == groups[0] and lookup_of("not-an-app-password") is None
