"""The data directory's format: recorded at start, an older one upgraded, a newer one refused
by the server and the admin commands before they touch anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import BIN
from txmailhost import dataformat
from txmailhost.cli import main


def test_a_new_directory_records_the_current_format(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["--data", str(data), "init"]) == 0
    assert (data / "format").read_text() == f"txmailhost data format {dataformat.FORMAT}\n"
    assert f"recorded data format {dataformat.FORMAT}" in capsys.readouterr().out


def test_a_directory_from_before_the_format_file_is_upgraded_in_place(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(["--data", str(data), "init"])
    (data / "format").unlink()  # as 0.1.0.dev0 left it
    assert dataformat.read_format(str(data)) == 0
    assert dataformat.upgrade(str(data)) == [f"recorded data format 1 in {data / 'format'}"]
    assert dataformat.read_format(str(data)) == 1
    assert dataformat.upgrade(str(data)) == []


def test_the_admin_commands_refuse_a_newer_directory(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    main(["--data", str(data), "init"])
    (data / "format").write_text("txmailhost data format 99\n")
    capsys.readouterr()
    assert main(["--data", str(data), "user", "list"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"txmailhost: error: data directory {data} is format 99, newer than this txmailhost"
        f" understands ({dataformat.FORMAT}): run the version that wrote it, or a newer one\n"
    )
    with pytest.raises(dataformat.DataFormatError):
        dataformat.upgrade(str(data))
    (data / "format").write_text("garbage\n")
    with pytest.raises(dataformat.DataFormatError, match="expected 'txmailhost data format N'"):
        dataformat.check(str(data))


@pytest.mark.slow
def test_the_server_refuses_to_start_on_a_newer_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(["--data", str(data), "init"])
    (data / "format").write_text("txmailhost data format 99\n")
    before = sorted(p.name for p in data.rglob("*"))
    result = subprocess.run(
        [os.path.join(BIN, "twistd"), "-n", "--pidfile=", f"--logfile={tmp_path / 'log'}",
         "txmailhost", "--data", str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"txmailhost: data directory {data} is format 99, newer than this txmailhost"
        f" understands ({dataformat.FORMAT}): run the version that wrote it, or a newer one\n"
    )
    assert sorted(p.name for p in data.rglob("*")) == before
