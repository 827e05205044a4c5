"""``migrate dovecot`` brings the users' Pigeonhole Sieve scripts and their quota rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ops.test_migrate import DOMAIN, PASSWORD_HASH
from tests.support.pigeonhole import (
    DOVECOT_ONLY,
    FILING,
    VACATION,
    dovecot_home,
    sievec_missing,
    sievec_refusal,
)
from txmailhost.cli import main
from txmailhost.ops.dovecot_quota import quota_of
from txmailhost.ops.mailbox_admin import AdminError
from txmailhost.ops.migrate_sieve import expand, parse_location
from txmailhost.sieve.scripts import ScriptStore

CAROL, DAVE = f"carol@{DOMAIN}", f"dave@{DOMAIN}"


class Move:
    """A data directory serving ``audit.test``, Dovecot homes under ``homes/`` and the
    passwd-file naming them."""

    def __init__(self, tmp_path: Path, sieve_config: str = "") -> None:
        self.data = str(tmp_path / "data")
        self.homes = tmp_path / "homes"
        self.passwd = tmp_path / "passwd"
        assert main(["--data", self.data, "init", "--hostname", f"mx.{DOMAIN}"]) == 0
        assert main(["--data", self.data, "domain", "add", DOMAIN]) == 0
        if sieve_config:
            config = Path(self.data, "txmailhost.toml")
            config.write_text(config.read_text().replace("[sieve]\n", f"[sieve]\n{sieve_config}"))

    def home(self, user: str) -> Path:
        return self.homes / user.partition("@")[0]

    def users(self, *lines: tuple[str, str]) -> None:
        """(address, extra fields) a line, each with its home under ``homes/``."""
        self.passwd.write_text(
            "".join(
                f"{u}:{PASSWORD_HASH}:1000:1000::{self.home(u)}::{extra}\n" for u, extra in lines
            )
        )

    def migrate(self, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--data", self.data, "migrate", "dovecot",
                     "--passwd-file", str(self.passwd), *more])  # fmt: skip
        return code, capsys.readouterr().out

    def scripts(self, user: str) -> dict[str, str]:
        store = ScriptStore(os.path.join(self.data, "sieve"))
        return {info.name: store.get(user, info.name) for info in store.list(user)}

    def active(self, user: str) -> str | None:
        return ScriptStore(os.path.join(self.data, "sieve")).active_name(user)


@pytest.fixture
def move(tmp_path: Path) -> Move:
    return Move(tmp_path)


def test_the_scripts_come_over_with_the_one_the_dovecot_sieve_link_names_active(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    dovecot_home(move.home(CAROL), {"rules": FILING, "away": VACATION}, active="rules")
    (move.home(CAROL) / "sieve" / "rules.svbin").write_bytes(b"\0binary")  # Pigeonhole's
    (move.home(CAROL) / "sieve" / "tmp").mkdir()
    move.users((CAROL, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING, "away": VACATION}
    assert move.active(CAROL) == "rules"
    assert "  sieve 'rules': imported, active\n" in out
    assert "  sieve 'away': imported\n" in out
    assert "skipped" not in out  # neither .dovecot.sieve (not a folder) nor the .svbin


def test_a_maildir_that_is_the_home_has_its_scripts_beside_its_folders(
    move: Move, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``mail_location = maildir:~`` and no home in the passwd-file: the home is the Maildir
    (``--maildir-root``), whose ``.dovecot.sieve`` link is no folder to report."""
    maildir = tmp_path / "vmail" / DOMAIN / "carol"
    dovecot_home(maildir, {"rules": FILING}, active="rules")
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir()
    move.passwd.write_text(f"{CAROL}:{PASSWORD_HASH}::::\n")
    code, out = move.migrate(capsys, "--maildir-root", str(tmp_path / "vmail"))
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING}
    assert move.active(CAROL) == "rules"
    assert "skipped" not in out


def test_a_plain_dovecot_sieve_file_comes_over_active_as_dovecot_orig(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pigeonhole's own name for a script written before ManageSieve was used."""
    dovecot_home(move.home(DAVE), {}, plain_active=VACATION)
    move.users((DAVE, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(DAVE) == {"dovecot.orig": VACATION}
    assert move.active(DAVE) == "dovecot.orig"
    home = move.home(DAVE)
    assert f"  sieve 'dovecot.orig' (from {home}/.dovecot.sieve): imported, active\n" in out


def test_an_active_script_our_sieve_refuses_comes_over_inactive_and_named_with_its_error(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = 'require "fileinto";\r\nif header :contains "subject" "x" {\r\n  fileinto "X";\r\n'
    dovecot_home(move.home(CAROL), {"debug": DOVECOT_ONLY, "broken": broken}, active="debug")
    dovecot_home(move.home(DAVE), {}, plain_active=broken)
    move.users((CAROL, ""), (DAVE, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"debug": DOVECOT_ONLY, "broken": broken}
    assert move.active(CAROL) is None
    assert (
        "  sieve 'debug': imported (inactive, it was active in Dovecot): our Sieve refuses it: "
        "line 1: unsupported extension 'vnd.dovecot.debug'\n"
    ) in out
    assert "  sieve 'broken': imported (inactive): our Sieve refuses it: line 4: missing" in out
    assert move.scripts(DAVE) == {"dovecot.orig": broken}
    assert move.active(DAVE) is None


def test_script_names_are_made_ones_managesieve_allows_each_once(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    """RFC 5804 1.6: no control characters, NFC; at most 128 characters here."""
    stems: dict[str, str | bytes] = {
        "a\x1bb": "keep;\r\n",  # an escape sequence would drive the terminal of the report
        "a_b": "discard;\r\n",  # what the first becomes: it keeps its name, the first moves
        "e\u0301t\u00e9": "keep;\r\n",  # NFD
        "x" * 200: "keep;\r\n",
    }
    dovecot_home(move.home(CAROL), stems)
    with open(os.path.join(os.fsencode(move.home(CAROL) / "sieve"), b"caf\xe9.sieve"), "wb") as f:
        f.write(b"keep;\r\n")  # a Latin-1 file name
    move.users((CAROL, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {
        "a_b": "discard;\r\n",
        "a_b-2": "keep;\r\n",
        "caf\ufffd": "keep;\r\n",
        "\u00e9t\u00e9": "keep;\r\n",
        "x" * 128: "keep;\r\n",
    }
    assert f"  sieve 'a_b-2' (from {move.home(CAROL)}/sieve/a\\x1bb.sieve): imported\n" in out
    assert "\x1b" not in out
    again = move.migrate(capsys)[1]
    assert move.scripts(CAROL)["a_b-2"] == "keep;\r\n"  # the same names the second time
    assert again.count("there already, unchanged") == 5


def test_migrating_again_duplicates_nothing_and_keeps_a_script_changed_here(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    dovecot_home(move.home(CAROL), {"rules": FILING, "away": VACATION}, active="rules")
    move.users((CAROL, ""))
    assert move.migrate(capsys)[0] == 0
    store = ScriptStore(os.path.join(move.data, "sieve"))
    store.put(CAROL, "away", "keep;\r\n")  # the user edits it over ManageSieve
    store.set_active(CAROL, "away")
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING, "away": "keep;\r\n"}
    assert move.active(CAROL) == "away"
    assert "  sieve 'rules': there already, unchanged, inactive: 'away' is active here\n" in out
    sieve = move.home(CAROL) / "sieve"
    assert f"  sieve 'away': kept the script here (it differs from {sieve}/away.sieve)\n" in out


def test_a_run_cut_short_before_activating_activates_when_run_again(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    dovecot_home(move.home(CAROL), {"rules": FILING}, active="rules")
    move.users((CAROL, ""))
    ScriptStore(os.path.join(move.data, "sieve")).put(CAROL, "rules", FILING)
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.active(CAROL) == "rules"
    assert "  sieve 'rules': there already, unchanged, active\n" in out


def test_links_out_of_the_users_sieve_directory_are_not_followed(
    move: Move, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dovecot_home(move.home(DAVE), {"secret": 'redirect "dave@elsewhere.test";\r\n'})
    carol = dovecot_home(move.home(CAROL), {"rules": FILING})
    (carol / ".dovecot.sieve").symlink_to("../dave/sieve/secret.sieve")
    (carol / "sieve" / "stolen.sieve").symlink_to(move.home(DAVE) / "sieve" / "secret.sieve")
    os.mkfifo(carol / "sieve" / "fifo.sieve")
    erin = dovecot_home(move.home(f"erin@{DOMAIN}"), {})
    (erin / "sieve").rmdir()
    (erin / "sieve").symlink_to(move.home(DAVE) / "sieve")
    move.users((CAROL, ""), (f"erin@{DOMAIN}", ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING}
    assert move.active(CAROL) is None
    assert (
        f"  skipped {carol}/.dovecot.sieve: a link to {carol}/../dave/sieve/secret.sieve, "
        f"outside {carol}/sieve (not followed): no script made active\n"
    ) in out
    assert f"  skipped {carol}/sieve/stolen.sieve: a symbolic link (not followed)\n" in out
    assert f"  skipped {carol}/sieve/fifo.sieve: a FIFO\n" in out
    assert move.scripts(f"erin@{DOMAIN}") == {}
    assert f"  skipped {erin}/sieve: a symbolic link (not followed), not a directory" in out


def test_scripts_over_the_sieve_quotas_are_reported_and_the_active_one_goes_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    move = Move(tmp_path, "max_scripts = 2\nmax_script_size = 200\n")
    big = "# " + "x" * 300 + "\r\nkeep;\r\n"
    scripts = {"a": "keep;\r\n", "b": "keep;\r\n", "big": big, "z": FILING}
    dovecot_home(move.home(CAROL), scripts, active="z")
    move.users((CAROL, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"z": FILING, "a": "keep;\r\n"}
    assert move.active(CAROL) == "z"
    assert "  sieve 'b': not imported: at most 2 scripts per user\n" in out
    assert "  sieve 'big': not imported: scripts may be at most 200 octets\n" in out


def test_a_huge_script_file_is_reported_over_the_quota_without_being_read(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sparse file of 1 TiB (no disk needed to make it) is judged by its size."""
    dovecot_home(move.home(CAROL), {"rules": FILING}, active="rules")
    with open(move.home(CAROL) / "sieve" / "huge.sieve", "wb") as f:
        f.truncate(1024**4)
    move.users((CAROL, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING}
    assert "  sieve 'huge': not imported: scripts may be at most 65536 octets\n" in out


def test_a_script_that_is_not_utf8_comes_over_inactive_and_reported(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    dovecot_home(move.home(CAROL), {"latin": b'require "vacation";\nvacation "Caf\xe9";\n'},
                 active="latin")  # fmt: skip
    move.users((CAROL, ""))
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert move.scripts(CAROL) == {"latin": 'require "vacation";\nvacation "Caf\ufffd";\n'}
    assert move.active(CAROL) is None
    assert "our Sieve refuses it: not UTF-8 (byte 0xe9 at 33)" in out


def test_sieve_takes_dovecots_location_with_its_variables(
    move: Move, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scripts = tmp_path / "srv" / "sieve" / DOMAIN / "carol"
    scripts.mkdir(parents=True)
    (scripts / "rules.sieve").write_text(FILING)
    (tmp_path / "srv" / "active" / DOMAIN).mkdir(parents=True)
    (tmp_path / "srv" / "active" / DOMAIN / "carol.sieve").symlink_to(scripts / "rules.sieve")
    move.passwd.write_text(f"{CAROL}:{PASSWORD_HASH}::::\n")  # no home: none needed
    location = (
        f"file:{tmp_path}/srv/sieve/%d/%n;active={tmp_path}/srv/active/%Ld/%{{username}}.sieve"
    )
    code, out = move.migrate(capsys, "--sieve", location)
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING}
    assert move.active(CAROL) == "rules"


def test_a_sieve_location_that_is_one_file_is_that_script_active(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pigeonhole before ``sieve_dir``: ``sieve = ~/.dovecot.sieve``, one script."""
    dovecot_home(move.home(DAVE), {}, plain_active=VACATION)
    move.users((DAVE, ""))
    code, out = move.migrate(capsys, "--sieve", "~/.dovecot.sieve")
    assert code == 0, out
    assert move.scripts(DAVE) == {"dovecot.orig": VACATION}
    assert move.active(DAVE) == "dovecot.orig"


def test_sieve_locations_are_read_as_dovecot_writes_them() -> None:
    assert parse_location("file:~/sieve;active=~/.dovecot.sieve;bindir=~/.bin") == (
        parse_location("~/sieve;active=~/.dovecot.sieve")
    )
    location = parse_location("/var/vmail/%d/%n/sieve;active=/var/vmail/%d/%n/.dovecot.sieve")
    assert expand(location.directory, CAROL, None) == f"/var/vmail/{DOMAIN}/carol/sieve"
    assert expand("~/sieve", CAROL, "/home/carol") == "/home/carol/sieve"
    assert expand("%h/sieve/%u/100%%", CAROL, "/h%n") == f"/h%n/sieve/{CAROL}/100%"
    with pytest.raises(ValueError, match="no home directory"):
        expand("~/sieve", CAROL, None)
    with pytest.raises(AdminError, match="only Pigeonhole's file: storage"):
        parse_location("dict:proxy::sieve;name=active")
    with pytest.raises(AdminError, match="unknown variable at '%x/sieve'"):
        parse_location("/var/%x/sieve")


def test_a_user_without_home_or_maildir_is_reported_not_looked_for(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    move.passwd.write_text(f"{CAROL}:{PASSWORD_HASH}::::\n")
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert "  skipped sieve scripts not looked for: no home directory for ~ or %h\n" in out


@pytest.mark.skipif(sievec_missing(), reason="sievec (dovecot-sieve) not installed")
@pytest.mark.parametrize("script", [FILING, VACATION, DOVECOT_ONLY])
def test_the_fixture_scripts_are_what_pigeonhole_runs(script: str) -> None:
    assert sievec_refusal(script) is None


# -- quotas ------------------------------------------------------------------------------------

G, M = 1024**3, 1024**2


@pytest.mark.parametrize(
    ("extra", "limit"),
    [
        ("userdb_quota_rule=*:storage=1G", G),
        ("quota_rule=*:storage=1GB", G),  # Dovecot reads the first letter of the unit
        ("quota_rule=*:storage=2048", 2 * M),  # storage without a unit: kilobytes
        ("quota_rule=*:bytes=2048", 2048),
        ("quota_rule=*:bytes=100m", 100 * M),
        ("quota_rule=*:storage=1T", 1024 * G),
        ("quota_rule=?:storage=5M", 5 * M),
        ("quota_rule=*:storage=0", None),  # Dovecot's "no limit"
        ("quota_rule=*:ignore", None),
        ("nodelay=yes userdb_mail=maildir:~/Maildir", None),  # no rule at all
        ("quota_rule=*:storage=1G quota_rule2=*:bytes=10M", 10 * M),  # the later one
    ],
)
def test_quota_rules_are_read_as_dovecot_reads_them(extra: str, limit: int | None) -> None:
    found = quota_of(extra)
    assert (found.limit, found.problems, found.dropped) == (limit, [], [])


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("quota_rule=*:storage=+1G", "the default rule can't be relative (+)"),
        ("quota_rule=*:storage=-5M", "the default rule can't be relative (-)"),
        ("quota_rule=*:storage=10%", "the default rule can't be a percentage"),
        ("quota_rule=*:storage=1X", "unknown unit 'X'"),
        ("quota_rule=*:storage=", "not a number"),
        ("quota_rule=*:storage=lots", "not a number"),
        ("quota_rule=*:size=1G", "unknown limit 'size'"),
        ("quota_rule=storage=1G", "not MAILBOX:LIMITS"),
        ("quota_rule=*:bytes=99999999999999999999", "more than 9223372036854775807 bytes"),
    ],
)
def test_a_quota_rule_dovecot_would_refuse_gives_no_limit_and_a_reason(
    extra: str, problem: str
) -> None:
    found = quota_of(extra)
    assert found.limit is None
    assert len(found.problems) == 1 and problem in found.problems[0]


def test_quota_parts_with_no_counterpart_are_named_and_the_storage_limit_holds() -> None:
    found = quota_of("quota_rule=*:storage=1G:messages=1000 quota_rule2=Trash:storage=+100M")
    assert found.limit == G
    assert found.dropped == [
        "quota_rule=*:storage=1G:messages=1000: no limit on the number of messages here",
        "quota_rule2=Trash:storage=+100M: no per-mailbox limits here",
    ]


def quota_here(move: Move, user: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["--data", move.data, "user", "quota", user]) == 0
    return capsys.readouterr().out.strip()


def test_the_quota_rule_of_the_passwd_file_becomes_the_users_quota(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    erin, frank = f"erin@{DOMAIN}", f"frank@{DOMAIN}"
    move.users(
        (CAROL, "userdb_quota_rule=*:storage=1G"),
        (DAVE, "quota_rule=*:bytes=10M:messages=5 quota_rule2=Trash:storage=+10%"),
        (erin, "userdb_quota_rule=*:storage=10%"),
        (frank, "userdb_quota_rule=*:storage=0"),
    )
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert quota_here(move, CAROL, capsys) == "1G"
    assert quota_here(move, DAVE, capsys) == "10M"
    assert quota_here(move, erin, capsys) == "none"
    assert quota_here(move, frank, capsys) == "none"
    assert "  quota 1G (userdb_quota_rule=*:storage=1G)\n" in out
    assert (
        "  quota: not carried: quota_rule=*:bytes=10M:messages=5: no limit on the number of "
        "messages here\n"
    ) in out
    assert (
        "  quota not set (no limit of the user's own): userdb_quota_rule=*:storage=10%: "
        "storage=10%: the default rule can't be a percentage\n"
    ) in out
    assert "  quota: no limit (userdb_quota_rule=*:storage=0)\n" in out

    # Run again: nothing changes; a limit set here since is kept, and Dovecot's named.
    assert main(["--data", move.data, "user", "quota", CAROL, "2G"]) == 0
    code, out = move.migrate(capsys)
    assert code == 0, out
    assert quota_here(move, CAROL, capsys) == "2G"
    assert "  quota kept at 2G, set here; Dovecot's is 1G (userdb_quota_rule=*:storage=1G)\n" in out
    assert "  quota 10M there already" in out


def test_json_report_carries_the_quota_and_the_scripts(
    move: Move, capsys: pytest.CaptureFixture[str]
) -> None:
    dovecot_home(move.home(CAROL), {"rules": FILING}, active="rules")
    move.users((CAROL, "userdb_quota_rule=*:storage=1G"))
    code, out = move.migrate(capsys, "--json")
    assert code == 0, out
    (user,) = json.loads(out)
    assert user["quota"]["limit"] == G and user["quota"]["result"] == "set"
    assert [(s["name"], s["result"], s["activated"]) for s in user["sieve"]] == [
        ("rules", "imported", True)
    ]


def test_an_mbox_user_brings_scripts_and_quota_too(
    move: Move, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--mail-location mbox:...`` (users whose mail is in mbox files) takes the same path
    for the passwd-file's quota and the Pigeonhole scripts in the home as Maildir users."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "carol").write_bytes(
        b"From a@example.org  Sat Dec  5 09:30:01 2026\nSubject: x\n\nx\n"
    )
    dovecot_home(move.home(CAROL), {"rules": FILING}, active="rules")
    (move.home(CAROL) / "mail").mkdir()
    move.users((CAROL, "userdb_quota_rule=*:storage=1G"))
    code, out = move.migrate(capsys, "--mail-location", f"mbox:~/mail:INBOX={spool}/%n")
    assert code == 0, out
    assert move.scripts(CAROL) == {"rules": FILING}
    assert move.active(CAROL) == "rules"
    assert "  sieve 'rules': imported, active\n" in out
    assert quota_here(move, CAROL, capsys) == "1G"
