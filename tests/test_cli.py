"""The ``txmailhost`` admin command, run in-process through ``main`` and as a real process.

Each password costs one scrypt hash (~0.1 s), so tests add as few users as they can.
"""

from __future__ import annotations

import datetime
import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.certificates import write_pair
from tests.support.readonly import read_only
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.passwords import verify_password
from txmailhost.cli import main
from txmailhost.store.index import forget

PASSWORD = "correct horse"
BAD_CONFIGS = Path(__file__).parent / "fixtures" / "bad_configs"
# Configs that load but name files the server refuses at start: NAME.toml must make
# check-config fail with exactly the lines of NAME.expected (tests/fixtures/bad_starts).
BAD_STARTS = Path(__file__).parent / "fixtures" / "bad_starts"


@dataclass
class Result:
    status: int
    out: str
    err: str


class Run(Protocol):
    def __call__(self, *args: str, stdin: str | io.StringIO = "") -> Result: ...


MakeRun = Callable[[Path], Run]


@pytest.fixture
def make_run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> MakeRun:
    """``make_run(path)``: a ``run`` for the data directory ``path``."""

    def make(data: Path) -> Run:
        def run_command(*args: str, stdin: str | io.StringIO = "") -> Result:
            monkeypatch.setattr(
                sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin
            )
            status = main(["--data", str(data), *args])
            captured = capsys.readouterr()
            return Result(status, captured.out, captured.err)

        return run_command

    return make


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """Where a data directory will be: nothing there yet."""
    return tmp_path / "fresh"


@pytest.fixture
def data(tmp_path: Path, make_run: MakeRun) -> Path:
    """A data directory set up by ``init``."""
    path = tmp_path / "data"
    assert make_run(path)("init").status == 0
    return path


@pytest.fixture
def run(data: Path, make_run: MakeRun) -> Run:
    """``run("user", "add", ..., stdin="pw\\n")``: main() on ``data`` with captured output."""
    return make_run(data)


def accounts(data: Path) -> AccountsDB:
    return AccountsDB(str(data / "accounts.sqlite"))


def maildir(data: Path, address: str) -> Path:
    local, domain = address.split("@")
    return data / "mail" / domain / local


def test_init_creates_config_database_and_certificate(make_run: MakeRun, fresh: Path) -> None:
    data = fresh
    result = make_run(data)("init", "--hostname", "mail.example.org")
    assert result.status == 0
    for path in ("txmailhost.toml", "accounts.sqlite", "tls/cert.pem", "tls/key.pem"):
        assert (data / path).is_file()
        assert str(data / path) in result.out
    assert 'hostname = "mail.example.org"' in (data / "txmailhost.toml").read_text()


def test_init_twice_changes_nothing(run: Run, data: Path) -> None:
    run("init")
    (data / "txmailhost.toml").write_text("[smtp]\nmax_recipients = 10\n")
    cert = (data / "tls" / "cert.pem").read_bytes()

    result = run("init")
    assert result.status == 0
    assert result.out == f"nothing to do: {data} is already set up\n"
    assert (data / "txmailhost.toml").read_text() == "[smtp]\nmax_recipients = 10\n"
    assert (data / "tls" / "cert.pem").read_bytes() == cert


def test_domain_add_list_del(run: Run) -> None:
    assert run("domain", "add", "Example.ORG").out == "added domain example.org\n"
    assert run("domain", "add", "example.net").status == 0
    assert run("domain", "list").out == "example.net\nexample.org\n"

    assert run("domain", "del", "example.net").out == "removed domain example.net\n"
    assert run("domain", "list").out == "example.org\n"


def test_domain_add_twice_is_an_error(run: Run) -> None:
    run("domain", "add", "example.org")
    result = run("domain", "add", "example.org")
    assert (result.status, result.err) == (
        1,
        "txmailhost: error: domain example.org already exists\n",
    )


def test_domain_add_of_an_ip_address_is_an_error(run: Run) -> None:
    result = run("domain", "add", "10.0.0.1")
    assert (result.status, result.err) == (
        1,
        "txmailhost: error: not a valid domain name: '10.0.0.1' (its last label is all digits,"
        " which no top-level domain is; an IP address is not a mail domain)\n",
    )
    assert run("domain", "list").out == ""


def test_domain_del_with_users_needs_force_and_keeps_mail(run: Run, data: Path) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "ann@example.org", stdin=PASSWORD + "\n")

    refused = run("domain", "del", "example.org")
    assert refused.status == 1
    assert "--force" in refused.err
    assert run("domain", "list").out == "example.org\n"

    forced = run("domain", "del", "example.org", "--force")
    assert forced.status == 0
    assert "1 user(s)" in forced.out
    assert run("domain", "list").out == ""
    assert run("user", "list").out == ""
    assert (maildir(data, "ann@example.org") / "cur").is_dir()


def test_domain_del_force_purge_deletes_mail(run: Run, data: Path) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "ann@example.org", stdin=PASSWORD + "\n")

    assert run("domain", "del", "example.org", "--force", "--purge").status == 0
    assert not (data / "mail" / "example.org").exists()


def test_user_add_from_password_file_provisions_maildir(
    run: Run, data: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\nignored second line\n")
    run("domain", "add", "example.org")

    result = run("user", "add", "Bob@Example.org", "--password-file", str(secret))
    assert result.status == 0
    assert result.out.startswith("added user bob@example.org")
    assert verify_password(PASSWORD, accounts(data).password_hash("bob@example.org") or "")
    for folder in ("cur", "new", "tmp", ".Sent/cur", ".Trash/cur"):
        assert (maildir(data, "bob@example.org") / folder).is_dir()
    assert run("user", "list").out == "bob@example.org\n"


def test_user_add_reads_password_from_stdin(run: Run, data: Path) -> None:
    run("domain", "add", "example.org")
    assert run("user", "add", "carol@example.org", stdin=PASSWORD + "\r\n").status == 0
    assert verify_password(PASSWORD, accounts(data).password_hash("carol@example.org") or "")


def test_user_add_existing_user_is_an_error(run: Run) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "dan@example.org", stdin=PASSWORD + "\n")
    result = run("user", "add", "DAN@example.org", stdin="another password\n")
    assert (result.status, result.err) == (
        1,
        "txmailhost: error: user dan@example.org already exists\n",
    )


def test_user_add_in_unknown_domain_is_an_error(run: Run, data: Path) -> None:
    result = run("user", "add", "eve@example.com", stdin=PASSWORD + "\n")
    assert result.status == 1
    assert result.err == (
        "txmailhost: error: domain example.com is not served here; "
        "add it with 'domain add example.com'\n"
    )
    assert not (data / "mail" / "example.com").exists()


def test_user_add_bad_address_is_an_error(run: Run) -> None:
    result = run("user", "add", "no-at-sign", stdin=PASSWORD + "\n")
    assert result.status == 1
    assert result.err == "txmailhost: error: not an address: 'no-at-sign' (expected user@domain)\n"


def test_user_add_short_password_creates_nothing(run: Run, data: Path) -> None:
    run("domain", "add", "example.org")
    result = run("user", "add", "fay@example.org", stdin="short\n")
    assert result.status == 1
    assert "password too short" in result.err
    assert run("user", "list").out == ""
    assert not maildir(data, "fay@example.org").exists()


def test_user_add_unreadable_password_file_creates_nothing(run: Run, tmp_path: Path) -> None:
    run("domain", "add", "example.org")
    missing = tmp_path / "missing"
    result = run("user", "add", "gus@example.org", "--password-file", str(missing))
    assert result.status == 1
    assert result.err == (
        f"txmailhost: error: {missing}: cannot read the password: No such file or directory\n"
    )
    assert run("user", "list").out == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_user_add_on_a_terminal_requires_matching_prompts(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("domain", "add", "example.org")
    answers = iter(["first password", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))

    result = run("user", "add", "hal@example.org", stdin=Terminal())
    assert result.status == 1
    assert result.err == "txmailhost: error: the passwords don't match\n"
    assert run("user", "list").out == ""


def test_user_list_by_domain(run: Run) -> None:
    run("domain", "add", "example.org")
    run("domain", "add", "example.net")
    run("user", "add", "ivy@example.net", stdin=PASSWORD + "\n")

    assert run("user", "list", "--domain", "example.net").out == "ivy@example.net\n"
    assert run("user", "list", "--domain", "example.org").out == ""
    unknown = run("user", "list", "--domain", "example.com")
    assert (unknown.status, unknown.err) == (1, "txmailhost: error: no such domain: example.com\n")


def test_user_passwd_changes_the_password(run: Run, data: Path, tmp_path: Path) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "jo@example.org", stdin=PASSWORD + "\n")
    new = tmp_path / "new"
    new.write_text("a brand new secret\n")

    result = run("user", "passwd", "jo@example.org", "--password-file", str(new))
    assert (result.status, result.out) == (0, "changed the password of jo@example.org\n")
    stored = accounts(data).password_hash("jo@example.org") or ""
    assert verify_password("a brand new secret", stored)
    assert not verify_password(PASSWORD, stored)


def test_a_purged_user_leaves_no_sieve_script_or_spam_training_to_the_next_with_the_address(
    run: Run, data: Path
) -> None:
    """``user del --purge`` deleted the mail only: an account made later under the address
    ran the old one's active script (a redirect sent the new user's mail away) and was
    judged by the old one's training, threshold and sender lists."""
    from txmailhost.sieve.scripts import ScriptStore
    from txmailhost.spam.bayes import TokenStore
    from txmailhost.spam.scoring import store_path

    run("domain", "add", "example.org")
    run("user", "add", "lee@example.org", stdin=PASSWORD + "\n")
    scripts = ScriptStore(str(data / "sieve"))
    scripts.put("lee@example.org", "away", 'redirect "thief@elsewhere.test";')
    scripts.set_active("lee@example.org", "away")
    assert run("spam", "threshold", "--user", "lee@example.org", "3.5").status == 0
    assert run("spam", "block", "--user", "lee@example.org", "boss@example.org").status == 0
    store = TokenStore(store_path(str(data)))
    store.learn("lee@example.org", "d1", {"cheap", "pills"}, True)
    store.close()

    assert run("user", "del", "lee@example.org", "--purge").status == 0
    run("user", "add", "lee@example.org", stdin=PASSWORD + "\n")
    assert scripts.list("lee@example.org") == [] and scripts.active_name("lee@example.org") is None
    store = TokenStore(store_path(str(data)))
    assert store.threshold("lee@example.org") is None
    assert store.senders("lee@example.org") == []
    assert store.totals("lee@example.org") == (0, 0)
    assert store.totals("") == (1, 0)  # the global set keeps what it was taught
    store.close()


def test_user_passwd_unknown_user_is_an_error(run: Run) -> None:
    result = run("user", "passwd", "nobody@example.org", stdin=PASSWORD + "\n")
    assert (result.status, result.err) == (
        1,
        "txmailhost: error: no such user: nobody@example.org\n",
    )


def test_user_del_keeps_mail_unless_purged(run: Run, data: Path) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "kim@example.org", stdin=PASSWORD + "\n")
    run("user", "add", "lee@example.org", stdin=PASSWORD + "\n")

    kept = run("user", "del", "kim@example.org")
    assert kept.status == 0
    assert (
        kept.out
        == f"removed user kim@example.org (mail kept in {maildir(data, 'kim@example.org')})\n"
    )
    assert maildir(data, "kim@example.org").is_dir()

    purged = run("user", "del", "lee@example.org", "--purge")
    assert (purged.status, purged.out) == (0, "removed user lee@example.org and deleted its mail\n")
    assert not maildir(data, "lee@example.org").exists()
    assert run("user", "list").out == ""

    again = run("user", "del", "lee@example.org")
    assert (again.status, again.err) == (1, "txmailhost: error: no such user: lee@example.org\n")


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (
            ["user", "add", "admin\u202e@example.org"],
            "U+202E (RIGHT-TO-LEFT OVERRIDE) is invisible",
        ),
        (["user", "add", "\u00ad@example.org"], "U+00AD (SOFT HYPHEN) is invisible"),
        (["alias", "add", "\u2028@example.org", "kim@example.org"], "not an address"),
        (["alias", "add", "\t@example.org", "kim@example.org"], "not an address"),
    ],
    ids=["bidi override", "soft hyphen", "line separator catch-all", "tab catch-all"],
)
def test_names_that_show_as_something_else_are_refused(
    run: Run, command: list[str], error: str
) -> None:
    """Once added and listed raw, or (aliases) stripped into the domain's catch-all."""
    assert run("domain", "add", "example.org").status == 0
    result = run(*command, stdin=PASSWORD + "\n")
    assert result.status == 1 and error in result.err, result.err
    assert (run("user", "list").out, run("alias", "list").out) == ("", "")


@pytest.mark.parametrize("uid", ["0", "4294967296", "99999999999999999999999"])
def test_fetch_takes_only_a_uid_imap_could_have(run: Run, uid: str) -> None:
    """A 23-digit UID once ended as "unexpected OverflowError"."""
    result = run("fetch", "kim@example.org", "INBOX", uid)
    assert result.status == 2
    assert result.err.endswith(f"error: argument uid: {uid}: a UID is from 1 to 4294967295\n")


def test_check_config_ok(run: Run, data: Path) -> None:
    result = run("check-config")
    assert (result.status, result.out) == (0, f"ok: {data / 'txmailhost.toml'}\n")


def test_check_config_reports_every_problem_and_creates_nothing(
    fresh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = fresh
    bad = BAD_CONFIGS / "several_problems.toml"
    status = main(["--data", str(data), "--config", str(bad), "check-config"])
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert len(err) == 7  # one line per problem
    assert err[0] == f"txmailhost: error: data directory {data} does not exist; " + (
        f"create it with 'txmailhost --data {data} init'"
    )
    assert err[1].startswith(f"txmailhost: error: {bad}: server.hostname: ")
    assert not data.exists()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            '[filters]\nchain = ["nosuchfilter"]\n',
            "filters.chain: unknown filter 'nosuchfilter' (not registered, no"
            " 'txmailhost.filters' entry point; a path is written 'package.module:factory')",
        ),
        (
            '[filters]\nchain = ["greylist"]\n[filters.settings.greylist]\nbogus = 1\n',
            "filters.settings.greylist.bogus: the 'greylist' filter has no such option",
        ),
        (
            '[relay]\nsmarthost = "smtp.example.net:587"\nsmarthost_username = "u"\n'
            'smarthost_password_file = "/nonexistent/pw"\n',
            "relay.smarthost_password_file: can't read '/nonexistent/pw': [Errno 2] No such"
            " file or directory: '/nonexistent/pw'",
        ),
    ],
    ids=["unknown filter", "bad filter setting", "missing password file"],
)
def test_check_config_refuses_what_the_server_refuses_at_start(
    run: Run, data: Path, extra: str, problem: str
) -> None:
    (data / "txmailhost.toml").write_text(extra)
    result = run("check-config")
    assert (result.status, result.out) == (1, "")
    assert result.err == f"txmailhost: error: {problem}\n"


@pytest.mark.parametrize("name", sorted(p.stem for p in BAD_STARTS.glob("*.toml")))
def test_bad_start_fixture_fails_check_config_with_its_expected_problems(
    run: Run, data: Path, name: str
) -> None:
    (data / "txmailhost.toml").write_text((BAD_STARTS / f"{name}.toml").read_text())
    expected = (BAD_STARTS / f"{name}.expected").read_text().strip().splitlines()
    result = run("check-config")
    assert (result.status, result.out) == (1, "")
    assert result.err.splitlines() == [f"txmailhost: error: {line}" for line in expected]


def test_check_config_takes_a_ca_file_with_certificates(run: Run, data: Path) -> None:
    """The server's own certificate stands in for a private CA's."""
    ca = data / "tls" / "cert.pem"
    (data / "txmailhost.toml").write_text(
        f'[relay]\ntls_ca_file = "{ca}"\n[tls]\nacme = true\nacme_ca_file = "{ca}"\n'
    )
    assert run("check-config") == Result(0, f"ok: {data / 'txmailhost.toml'}\n", "")


def _signing_keys(run: Run, data: Path) -> Path:
    """example.org with DKIM keys; the directory holding them."""
    assert run("domain", "add", "example.org").status == 0
    assert run("dkim", "init", "example.org", "--selector", "s1").status == 0
    return data / "dkim" / "example.org"


def _garble(path: Path) -> None:
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")


def _make_a_directory(path: Path) -> None:
    """A directory where the file should be: unreadable as a file, for root too."""
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda keys: _garble(keys / "s1-rsa.pem"),
         "'{keys}/s1-rsa.pem' is not an unencrypted PEM rsa private key"),
        (lambda keys: (keys / "s1-ed25519.pem").write_bytes((keys / "s1-rsa.pem").read_bytes()),
         "'{keys}/s1-ed25519.pem' is not an unencrypted PEM ed25519 private key"),
        (lambda keys: _make_a_directory(keys / "s1-ed25519.pem"),
         "can't read '{keys}/s1-ed25519.pem': Is a directory"),
        (lambda keys: (keys / "s1-rsa.pem").unlink(),
         "can't read '{keys}/s1-rsa.pem': No such file or directory"),
        (lambda keys: (keys / "state.json").write_text("{"),
         "'{keys}/state.json' is not a DKIM state file (JSON with \"active\" and \"selectors\")"),
        (lambda keys: _make_a_directory(keys / "state.json"),
         "can't read '{keys}/state.json': Is a directory"),
    ],
    ids=["garbled", "wrong algorithm", "unreadable", "missing", "bad state", "unreadable state"],
)  # fmt: skip
def test_check_config_refuses_a_dkim_key_signing_could_not_use(
    run: Run, data: Path, damage: Callable[[Path], object], problem: str
) -> None:
    keys = _signing_keys(run, data)
    damage(keys)
    result = run("check-config")
    assert (result.status, result.out) == (1, "")
    assert result.err == f"txmailhost: error: dkim: example.org: {problem.format(keys=keys)}\n"


def test_check_config_leaves_dkim_keys_alone_when_nothing_signs_with_them(
    run: Run, data: Path
) -> None:
    """Older selectors sign nothing; with [mailauth] sign = false, no key does."""
    keys = _signing_keys(run, data)
    assert run("dkim", "rotate", "example.org", "--selector", "s2").status == 0
    _garble(keys / "s1-rsa.pem")
    assert run("check-config").status == 0
    _garble(keys / "s2-rsa.pem")
    (data / "txmailhost.toml").write_text("[mailauth]\nsign = false\n")
    assert run("check-config").status == 0


def test_check_config_builds_the_filter_chain_and_leaves_nothing_behind(
    run: Run, data: Path
) -> None:
    """Building the chain to check it starts no scoring process and makes no database."""
    (data / "txmailhost.toml").write_text('[filters]\nchain = ["spam", "greylist"]\n')
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    result = run("check-config")
    assert (result.status, result.out) == (0, f"ok: {data / 'txmailhost.toml'}\n")
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            '[filters.settings.greylist]\nlisteners = ["smtpp"]\n',
            "{file}: filters.settings.greylist.listeners: 'smtpp' is not a listener of"
            " [listen] (did you mean smtp?)",
        ),
        (
            "[filters.settings.nosuch]\nx = 1\n",
            "filters.settings.nosuch: there is no filter 'nosuch'",
        ),
        ('[filters]\nchain = ["spam", "spam"]\n', "{file}: filters.chain: 'spam' is named twice"),
        (
            '[filters.settings.greylist]\ndelay = "5m"\n',
            "filters.settings.greylist.delay: expected a number, got '5m'",
        ),
    ],
    ids=["listener typo", "no such filter", "named twice", "wrong type"],
)
def test_check_config_refuses_filter_settings_that_would_do_nothing_or_fail(
    run: Run, data: Path, settings: str, problem: str
) -> None:
    """Each of these said "ok"; the first two left greylisting or the settings unused."""
    (data / "txmailhost.toml").write_text(settings)
    result = run("check-config")
    file = data / "txmailhost.toml"
    assert (result.status, result.err) == (1, f"txmailhost: error: {problem.format(file=file)}\n")


def test_check_config_notes_settings_of_a_filter_out_of_the_chain(run: Run, data: Path) -> None:
    (data / "txmailhost.toml").write_text('[filters.settings.clamd]\nsocket = "/run/c.ctl"\n')
    result = run("check-config")
    assert (result.status, result.out) == (0, f"ok: {data / 'txmailhost.toml'}\n")
    assert result.err == (
        "txmailhost: note: filters.settings.clamd: 'clamd' is not in filters.chain; these"
        " settings do nothing until it is\n"
    )


def test_check_config_reports_a_key_that_does_not_match_the_certificate(
    run: Run, data: Path
) -> None:
    other = data.parent / "other"
    main(["--data", str(other), "init"])
    (data / "tls" / "key.pem").write_bytes((other / "tls" / "key.pem").read_bytes())

    result = run("check-config")
    assert result.status == 1
    assert result.err.startswith(
        f"txmailhost: error: {data / 'tls' / 'key.pem'}: this key does not"
    )


def _both_warn(run: Run, data: Path, warnings: str) -> None:
    """``check-config`` and ``reload-tls`` both pass, saying ``warnings`` on stderr."""
    checked = run("check-config")
    assert (checked.status, checked.out, checked.err) == (
        0,
        f"ok: {data / 'txmailhost.toml'}\n",
        warnings,
    )
    reloaded = run("reload-tls")
    assert (reloaded.status, reloaded.err) == (0, warnings)


def test_check_config_and_reload_tls_warn_of_an_expired_certificate(run: Run, data: Path) -> None:
    """Only a warning: the server starts with it (and warns too), and ACME may renew it."""
    cert, key = data / "tls" / "old.pem", data / "tls" / "old-key.pem"
    write_pair(cert, key, datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    (data / "txmailhost.toml").write_text(f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n')
    warning = (
        f"txmailhost: warning: {cert}: the certificate expired on 2020-01-01 00:00 UTC;"
        " clients that check it refuse it\n"
    )
    _both_warn(run, data, warning)


def test_check_config_and_reload_tls_take_sni_pairs_and_warn_of_their_names(
    run: Run, data: Path
) -> None:
    """A pair that loads passes; one expiring, or not for the name it is given for, is
    warned about with the tls.sni entry named, as the server warns at start."""
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=90)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3, hours=1)
    b, c = data / "tls" / "b.pem", data / "tls" / "c.pem"
    write_pair(b, data / "tls" / "b.key", later, ("mail.b.example",))
    write_pair(c, data / "tls" / "c.key", soon, ("*.c.example",))
    (data / "txmailhost.toml").write_text(
        '[tls]\nsni = { "mail.b.example" = ["tls/b.pem", "tls/b.key"],'
        ' "x.c.example" = ["tls/c.pem", "tls/c.key"], "y.d.example" = ["tls/b.pem", "tls/b.key"] }\n'
    )
    warnings = (
        f'txmailhost: warning: tls.sni "x.c.example": {c}: the certificate expires on'
        f" {soon:%Y-%m-%d %H:%M} UTC, in 3 day(s)\n"
        f'txmailhost: warning: tls.sni "y.d.example": {b}: the certificate is not for'
        " y.d.example (it names mail.b.example)\n"
    )
    _both_warn(run, data, warnings)


def test_check_config_warns_of_an_acme_name_an_sni_entry_serves(run: Run, data: Path) -> None:
    """ACME renews tls.certificate only: mail.b.example (exact) and mx.c.example (by the
    wildcard) would be served sni pairs nothing renews, never the ACME certificate."""
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=90)
    write_pair(data / "tls" / "b.pem", data / "tls" / "b.key", later, ("mail.b.example",))
    write_pair(data / "tls" / "c.pem", data / "tls" / "c.key", later, ("*.c.example",))
    (data / "txmailhost.toml").write_text(
        '[tls]\nacme = true\nacme_domains = ["mail.b.example", "mx.c.example", "mta-sts.b.example"]\n'
        'sni = { "mail.b.example" = ["tls/b.pem", "tls/b.key"],'
        ' "*.c.example" = ["tls/c.pem", "tls/c.key"] }\n'
    )
    warnings = (
        "txmailhost: warning: tls.acme_domains: mail.b.example is served the certificate of"
        ' tls.sni "mail.b.example", not the one ACME renews (tls.certificate)\n'
        "txmailhost: warning: tls.acme_domains: mx.c.example is served the certificate of"
        ' tls.sni "*.c.example", not the one ACME renews (tls.certificate)\n'
    )
    _both_warn(run, data, warnings)


def test_reload_tls_refuses_a_broken_sni_pair_naming_it(run: Run, data: Path) -> None:
    write_pair(data / "tls" / "b.pem", data / "tls" / "b.key", datetime.datetime(2099, 1, 1))
    (data / "tls" / "b.key").write_text("not a key")
    (data / "txmailhost.toml").write_text(
        '[tls]\nsni = { "mail.b.example" = ["tls/b.pem", "tls/b.key"] }\n'
    )
    reloaded = run("reload-tls")
    assert (reloaded.status, reloaded.err) == (
        1,
        f'txmailhost: error: tls.sni "mail.b.example": {data / "tls" / "b.key"}: not a PEM'
        " private key\n",
    )
    assert not (data / "run" / "reload-tls").exists()


def test_commands_on_a_bad_config_fail_with_the_key_named(run: Run, data: Path) -> None:
    (data / "txmailhost.toml").write_text("[smtp]\nmax_recipients = 'many'\n")
    before = sorted(os.listdir(data))
    result = run("domain", "list")
    assert result.status == 1
    assert result.err == (
        f"txmailhost: error: {data / 'txmailhost.toml'}: smtp.max_recipients: "
        "expected a positive integer number of recipients, got 'many'\n"
    )
    assert sorted(os.listdir(data)) == before


def test_a_database_error_names_the_file_it_came_from(run: Run, data: Path) -> None:
    """Every SQLite error read "accounts database: ...". (A damaged mailbox index is no
    longer an error: it is set aside and made anew, store/index.py.)"""
    run("domain", "add", "example.org")
    run("user", "add", "kim@example.org", stdin=PASSWORD + "\n")
    index = maildir(data, "kim@example.org") / "txmailhost-index.sqlite"
    index.write_bytes(b"not a database" * 100)
    result = run("mailbox", "status", "kim@example.org", "INBOX")
    assert result.status == 0, result.err
    assert any(p.name.startswith(index.name + ".broken-") for p in index.parent.iterdir())
    (data / "accounts.sqlite").write_bytes(b"not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (data / f"accounts.sqlite{suffix}").unlink(missing_ok=True)
    result = run("user", "list")
    assert (result.status, result.err) == (
        1,
        f"txmailhost: error: {data / 'accounts.sqlite'}: file is not a database\n",
    )


def test_usage_error_exits_2(run: Run) -> None:
    result = run("domain", "frobnicate")
    assert result.status == 2
    assert "invalid choice" in result.err


# -- as a real process ------------------------------------------------------------------------

COMMAND = [sys.executable, "-c", "import sys; from txmailhost.cli import main; sys.exit(main())"]


def txmailhost(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_process_adds_a_user_with_the_password_piped_in(data: Path) -> None:
    assert txmailhost(data, "domain", "add", "example.org").returncode == 0
    added = txmailhost(data, "user", "add", "max@example.org", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert txmailhost(data, "user", "list").stdout == "max@example.org\n"
    assert verify_password(PASSWORD, accounts(data).password_hash("max@example.org") or "")


def test_process_errors_are_one_line_without_traceback(data: Path) -> None:
    assert txmailhost(data, "init").returncode == 0
    failed = txmailhost(data, "user", "add", "x@example.org", stdin=PASSWORD + "\n")
    assert failed.returncode == 1
    assert failed.stderr == (
        "txmailhost: error: domain example.org is not served here; "
        "add it with 'domain add example.org'\n"
    )

    bad = txmailhost(data, "--config", str(BAD_CONFIGS / "unknown_key.toml"), "check-config")
    assert bad.returncode == 1
    assert "smtp.max_mesage_size: unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- the data directory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["domain", "list"], ["user", "list"], ["queue", "list"], ["reload-tls"], ["check-config"]],
)
def test_commands_refuse_a_data_directory_that_does_not_exist(
    make_run: MakeRun, tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "txmailhost-dta"
    result = make_run(typo)(*command)
    assert (result.status, result.out) == (1, "")
    assert result.err == (
        f"txmailhost: error: data directory {typo} does not exist; "
        f"create it with 'txmailhost --data {typo} init'\n"
    )
    assert not typo.exists()


def test_commands_refuse_a_directory_that_init_has_not_set_up(
    make_run: MakeRun, tmp_path: Path
) -> None:
    result = make_run(tmp_path)("domain", "add", "example.org")
    assert result.status == 1
    assert result.err.startswith(f"txmailhost: error: {tmp_path} is not a txmailhost data")
    assert os.listdir(tmp_path) == []


def test_global_options_may_follow_the_command(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["domain", "add", "example.org", "--data", str(data)]) == 0
    assert (
        main(["domain", "list", "--config", str(data / "txmailhost.toml"), "--data", str(data)])
        == 0
    )
    assert capsys.readouterr().out == "added domain example.org\nexample.org\n"


def test_global_options_after_the_command_win(data: Path, tmp_path: Path) -> None:
    typo = tmp_path / "txmailhost-dta"
    assert main(["--data", str(typo), "domain", "list", "--data", str(data)]) == 0
    assert not typo.exists()


def test_process_on_a_read_only_data_directory_says_it_is_not_writable(data: Path) -> None:
    with read_only(str(data)) as prefix:
        result = subprocess.run(
            [*prefix, *COMMAND, "--data", str(data), "user", "list"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"txmailhost: error: data directory {data} is not writable (")
    assert result.stderr.count("\n") == 1


def test_user_add_common_password_is_a_one_line_error_and_creates_nothing(
    run: Run, data: Path
) -> None:
    run("domain", "add", "example.org")
    result = run("user", "add", "hal@example.org", stdin="Password1\n")
    assert result.status == 1
    assert result.err == (
        "txmailhost: error: password refused: it is one of the most common passwords;"
        " choose another\n"
    )
    assert run("user", "list").out == ""
    assert not maildir(data, "hal@example.org").exists()


def test_a_mailbox_index_error_names_the_index_not_the_accounts_database(
    run: Run, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "ann@example.org", stdin=PASSWORD + "\n")

    def still_locked(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
        raise sqlite3.OperationalError("database is locked")  # after the busy timeout

    monkeypatch.setattr("txmailhost.store.index.enable_wal", still_locked)
    result = run("mailbox", "status", "ann@example.org", "INBOX")

    index = maildir(data, "ann@example.org") / "txmailhost-index.sqlite"
    assert (result.status, result.err) == (
        1,
        f"txmailhost: error: mailbox index {index}: database is locked\n",
    )


def test_index_rebuild_sets_a_damaged_index_aside_and_says_so(run: Run, data: Path) -> None:
    run("domain", "add", "example.org")
    run("user", "add", "ann@example.org", stdin=PASSWORD + "\n")
    inbox = maildir(data, "ann@example.org")
    (inbox / "new" / "1700000000.M1P1.elsewhere").write_bytes(b"Subject: hi\n\nthere\n")
    assert run("index", "rebuild", "ann@example.org", "INBOX").status == 0
    forget(str(inbox))  # closed, as when a CLI process ends: its -wal is gone
    os.truncate(inbox / "txmailhost-index.sqlite", 100)

    result = run("index", "rebuild", "ann@example.org", "INBOX")

    assert result.status == 0, result.err
    (aside,) = inbox.glob("txmailhost-index.sqlite.broken-*")
    assert result.out.startswith("ann@example.org INBOX 1 text 1 (old index set aside as ")
    assert str(aside) in result.out
