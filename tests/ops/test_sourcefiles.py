"""Files of a tree txmailhost didn't write are read only when they are regular files, never
through a link, and only if they are still the file that was listed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from txmailhost.ops.sourcefiles import RegularFileSource, SourceFileError, read_regular


def test_a_message_file_swapped_for_a_link_after_listing_is_refused(tmp_path: Path) -> None:
    message = tmp_path / "1700000000.M1P1.host"
    message.write_bytes(b"Subject: mine\n\n")
    source = RegularFileSource(str(message), os.lstat(message))
    (tmp_path / "secret").write_bytes(b"root:x\n")
    message.unlink()
    message.symlink_to(tmp_path / "secret")
    with pytest.raises(SourceFileError, match="a symbolic link"):
        source.read()


def test_a_message_file_replaced_by_another_after_listing_is_refused(tmp_path: Path) -> None:
    message = tmp_path / "1700000000.M1P1.host"
    message.write_bytes(b"Subject: mine\n\n")
    source = RegularFileSource(str(message), os.lstat(message))
    os.link(message, tmp_path / "keep")  # the old inode lives on: a new one can't reuse it
    message.unlink()
    message.write_bytes(b"Subject: other\n\n")
    with pytest.raises(SourceFileError, match="replaced while being read"):
        source.read()
    assert RegularFileSource(str(message), os.lstat(message)).read() == b"Subject: other\n\n"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "dovecot-uidlist")
    with pytest.raises(SourceFileError, match="a FIFO"):
        read_regular(str(tmp_path / "dovecot-uidlist"))
    assert read_regular(str(tmp_path / "absent")) is None


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "mailboxes.json").write_bytes(b"[" + b" " * 100 + b"]")
    with pytest.raises(SourceFileError, match="mailboxes.json: larger than 100 bytes"):
        read_regular(str(tmp_path / "mailboxes.json"), limit=100)
    assert read_regular(str(tmp_path / "mailboxes.json"), limit=102) == b"[" + b" " * 100 + b"]"
