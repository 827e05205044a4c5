"""``socketpaths.usable``: a UNIX socket path too long for ``sun_path`` still binds and
connects, through its directory's descriptor, and names the file in that directory."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from txmailhost import socketpaths


def _deep(tmp_path) -> str:
    directory = str(tmp_path / ("d" * 100))
    os.mkdir(directory)
    return directory


def test_a_short_path_is_itself(tmp_path):
    path = str(tmp_path / "s.sock")
    assert len(path) <= socketpaths.MAX_PATH
    assert socketpaths.usable(path) == path


def test_a_long_path_binds_connects_and_is_the_file_in_its_directory(tmp_path):
    directory = _deep(tmp_path)
    stream_path = os.path.join(directory, "control.sock")
    datagram_path = os.path.join(directory, "0.sock")
    assert len(stream_path) > socketpaths.MAX_PATH
    with pytest.raises(OSError):
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(stream_path)

    address = socketpaths.usable(stream_path)
    assert len(address) <= socketpaths.MAX_PATH
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(address)
        server.listen()
        assert sorted(os.listdir(directory)) == ["control.sock"]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(socketpaths.usable(stream_path))
            accepted, _ = server.accept()
            client.sendall(b"WHO\n")
            assert accepted.recv(10) == b"WHO\n"
            accepted.close()

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(socketpaths.usable(datagram_path))
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"hello\x000", socketpaths.usable(datagram_path))
        assert receiver.recv(64) == b"hello\x000"
    assert os.path.exists(datagram_path)


def test_a_missing_directory_is_file_not_found(tmp_path):
    """What ``control.ask`` reads as "the server is not running"."""
    path = os.path.join(str(tmp_path / ("m" * 100)), "control.sock")
    with pytest.raises(FileNotFoundError):
        socketpaths.usable(path)


def test_a_directory_made_again_is_named_afresh(tmp_path):
    """A data directory's ``run`` removed and made again (a restart) gets a descriptor on
    the new directory, not the deleted one."""
    directory = _deep(tmp_path)
    path = os.path.join(directory, "0.sock")
    first = socketpaths.usable(path)
    shutil.rmtree(directory)
    os.mkdir(directory)
    second = socketpaths.usable(path)
    assert second != first
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(second)
    assert os.listdir(directory) == ["0.sock"]
