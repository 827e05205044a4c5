"""``export`` keeps each user's Sieve scripts and which one is active; ``import`` restores
them through the script store ManageSieve serves, within the ``[sieve]`` quotas, and refuses
an edited export's hostile script names and files before anything is imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.pigeonhole import DOVECOT_ONLY, FILING, VACATION
from txmailhost.cli import main
from txmailhost.sieve.scripts import ScriptStore

ALICE = "alice@example.test"
SCRIPTS = {"rules": FILING, "away": VACATION, "a/b ..": "keep;\r\n", "old": DOVECOT_ONLY}


def data_directory(path: Path, sieve_config: str = "") -> str:
    """A new data directory serving example.test (``[sieve]`` settings added)."""
    data = str(path)
    assert main(["--data", data, "init", "--hostname", "mx.example.test"]) == 0
    assert main(["--data", data, "domain", "add", "example.test"]) == 0
    if sieve_config:
        config = Path(data, "txmailhost.toml")
        config.write_text(config.read_text().replace("[sieve]\n", f"[sieve]\n{sieve_config}"))
    return data


def scripts_of(data: str) -> ScriptStore:
    return ScriptStore(os.path.join(data, "sieve"))


def texts(data: str, user: str = ALICE) -> dict[str, str]:
    store = scripts_of(data)
    return {info.name: store.get(user, info.name) for info in store.list(user)}


class Exported:
    """alice with ``SCRIPTS`` (``rules`` active; ``old`` one our Sieve refuses, kept as a
    migration keeps it), exported to ``export``; ``fresh`` another server's data directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data = data_directory(tmp_path / "data")
        password = tmp_path / "password"
        password.write_text("a-password-9\n")
        assert main(["--data", self.data, "user", "add", ALICE, "--password-file",
                     str(password)]) == 0  # fmt: skip
        store = scripts_of(self.data)
        for name, text in SCRIPTS.items():
            store.put(ALICE, name, text, check=name != "old")
        store.set_active(ALICE, "rules")
        self.export = tmp_path / "export"
        assert main(["--data", self.data, "export", ALICE, str(self.export)]) == 0
        self.fresh = data_directory(tmp_path / "fresh")

    @property
    def account_json(self) -> Path:
        return self.export / ALICE / "account.json"

    def edit_sieve(self, change) -> None:
        record = json.loads(self.account_json.read_text())
        change(record["sieve"])
        self.account_json.write_text(json.dumps(record))

    def run_import(self, capsys: pytest.CaptureFixture[str], data: str | None = None):
        """(exit status, stdout, stderr) of ``import`` into ``data`` (default: ``fresh``)."""
        capsys.readouterr()
        code = main(["--data", data or self.fresh, "import", str(self.export)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def refused(self, capsys: pytest.CaptureFixture[str]) -> str:
        """``import`` into ``fresh`` fails with nothing made: no account, no script."""
        code, _out, err = self.run_import(capsys)
        assert code == 1, err
        assert err.count("\n") == 1, err
        capsys.readouterr()
        assert main(["--data", self.fresh, "user", "list"]) == 0
        assert ALICE not in capsys.readouterr().out
        assert not os.path.exists(os.path.join(self.fresh, "sieve", "example.test"))
        return err


@pytest.fixture
def exported(tmp_path: Path) -> Exported:
    return Exported(tmp_path)


def test_the_scripts_and_the_active_one_come_back_on_another_server(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were not exported at all: the restored user had no filters and no vacation."""
    record = json.loads(exported.account_json.read_text())["sieve"]
    assert record["active"] == "rules"
    files = {entry["name"]: entry["file"] for entry in record["scripts"]}
    assert sorted(files) == sorted(SCRIPTS)
    for name, file_name in files.items():  # the text as the store keeps it, in numbered files
        path = exported.export / ALICE / "sieve" / file_name
        assert path.read_bytes() == SCRIPTS[name].encode()
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    assert texts(exported.fresh) == SCRIPTS
    assert scripts_of(exported.fresh).active_name(ALICE) == "rules"
    assert "  sieve 'rules': imported, active\n" in out
    assert "  sieve 'a/b ..': imported\n" in out
    code, out, err = exported.run_import(capsys)  # again: nothing changes
    assert code == 0, err
    assert texts(exported.fresh) == SCRIPTS
    assert "  sieve 'rules': there already, unchanged, active\n" in out


def test_a_script_this_sieve_refuses_comes_back_inactive_and_is_reported(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """Active on the old server (an extension it had): kept, never active here."""
    scripts_of(exported.data).set_active(ALICE, "old")
    again = exported.tmp / "again"
    assert main(["--data", exported.data, "export", ALICE, str(again)]) == 0
    exported.export = again
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    assert texts(exported.fresh)["old"] == DOVECOT_ONLY
    assert scripts_of(exported.fresh).active_name(ALICE) is None
    assert (
        "  sieve 'old': imported (inactive, it was active in the export): our Sieve refuses "
        "it: line 1: unsupported extension 'vnd.dovecot.debug'\n"
    ) in out


def test_the_sieve_quotas_hold_and_the_active_script_is_the_one_kept(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small = data_directory(tmp_path / "small", "max_scripts = 2\n")
    code, out, err = exported.run_import(capsys, small)
    assert code == 0, err
    assert sorted(texts(small)) == ["a/b ..", "rules"]  # the active first, then by name
    assert scripts_of(small).active_name(ALICE) == "rules"
    assert "  sieve 'away': not imported: at most 2 scripts per user\n" in out


def test_a_huge_script_file_is_reported_over_the_quota_unread(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sparse file of 1 TiB: its size is checked before it is read."""
    record = json.loads(exported.account_json.read_text())["sieve"]
    file_name = next(e["file"] for e in record["scripts"] if e["name"] == "away")
    os.truncate(exported.export / ALICE / "sieve" / file_name, 2**40)
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    assert "  sieve 'away': not imported: scripts may be at most 65536 octets\n" in out
    assert sorted(texts(exported.fresh)) == ["a/b ..", "old", "rules"]


def test_a_different_script_of_the_same_name_here_is_kept_and_reported(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """And the user's own active choice here is not undone by importing an old backup."""
    password = exported.tmp / "password"
    assert main(["--data", exported.fresh, "user", "add", ALICE, "--password-file",
                 str(password)]) == 0  # fmt: skip
    here = scripts_of(exported.fresh)
    here.put(ALICE, "rules", "discard;\r\n")
    here.put(ALICE, "mine", "keep;\r\n")
    here.set_active(ALICE, "mine")
    code, out, err = exported.run_import(capsys)
    assert code == 0, err
    assert texts(exported.fresh)["rules"] == "discard;\r\n"
    assert here.active_name(ALICE) == "mine"
    assert (
        "  sieve 'rules': kept the script here (it differs from the export's), inactive: "
        "'mine' is active here\n"
    ) in out
    assert "  sieve 'away': imported\n" in out


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r["scripts"][0].update(file="../../../../etc/passwd"),
         "sieve file '../../../../etc/passwd' is not a name export writes"),
        (lambda r: r["scripts"][0].update(file="/etc/passwd"),
         "sieve file '/etc/passwd' is not a name export writes"),
        (lambda r: r["scripts"][0].update(file="0001.sieve/.."),
         "sieve file '0001.sieve/..' is not a name export writes"),
        (lambda r: r["scripts"][0].update(name="evil\x1b[2J\nname"),
         "sieve script name 'evil\\x1b[2J\\nname': a script name may not contain control"),
        (lambda r: r["scripts"][0].update(name="x" * 129),
         "a script name has 1 to 128 characters"),
        (lambda r: r["scripts"][0].update(name=5), "sieve script name 5 is not a string"),
        (lambda r: r["scripts"][1].update(name=r["scripts"][0]["name"]), "script 'a/b ..' twice"),
        (lambda r: r["scripts"][1].update(file=r["scripts"][0]["file"]),
         "sieve file '0001.sieve' named twice"),
        (lambda r: r.update(active="gone"),
         "the active sieve script 'gone' is not one of its scripts"),
        (lambda r: r["scripts"].append({"name": "gone", "file": "0099.sieve"}),
         "sieve/0099.sieve: missing from the export"),
        (lambda r: r.update(scripts="rules"), "sieve is not an object with a list of scripts"),
    ],
)  # fmt: skip
def test_an_edited_export_s_hostile_scripts_are_refused_with_nothing_made(
    exported: Exported, capsys: pytest.CaptureFixture[str], change, problem: str
) -> None:
    exported.edit_sieve(change)
    err = exported.refused(capsys)
    assert problem in err


def test_a_script_file_or_directory_that_is_a_link_is_refused_with_nothing_made(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = exported.tmp / "shadow"
    secret.write_text("root:$6$secret:19000::::::\n")
    sieve = exported.export / ALICE / "sieve"
    (sieve / "0001.sieve").unlink()
    (sieve / "0001.sieve").symlink_to(secret)
    err = exported.refused(capsys)
    assert f"{sieve}/0001.sieve: a symbolic link (not followed)" in err
    sieve.rename(exported.tmp / "elsewhere")
    sieve.symlink_to(exported.tmp / "elsewhere")
    err = exported.refused(capsys)
    assert f"{sieve}: a symbolic link (not followed)" in err


def test_an_export_made_before_scripts_were_kept_imports(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """Version 1: no ``sieve`` record, no ``sieve/``; the user has no scripts to restore (the
    report says so), and a version this one doesn't know is refused naming both."""
    record = json.loads(exported.account_json.read_text())
    del record["sieve"]
    exported.account_json.write_text(json.dumps(record))
    for entry in os.listdir(exported.export / ALICE / "sieve"):
        os.unlink(exported.export / ALICE / "sieve" / entry)
    os.rmdir(exported.export / ALICE / "sieve")
    manifest_path = exported.export / "txmailhost-export.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["version"] == 2
    manifest_path.write_text(json.dumps(dict(manifest, version=1)))
    capsys.readouterr()
    assert main(["--data", exported.fresh, "import", str(exported.export), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["account"] == "created" and report["sieve"] == []
    assert texts(exported.fresh) == {}
    manifest_path.write_text(json.dumps(dict(manifest, version=3)))
    code, _out, err = exported.run_import(capsys)
    assert code == 1 and "export format 3 is newer than this txmailhost reads (2)" in err
