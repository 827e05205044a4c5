"""Starting ``twistd txmailhost`` when something is wrong: it must stop with one line, exit 1.

A server that can't bind one of its ports, or can't write its data directory, is not running:
saying so at once (and failing the init system's start) beats running half-deaf or answering
every message ``451``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.readonly import read_only
from tests.support.server import BIN, LABELS, ServerProcess


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another process (here: this one) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def write_config(data: Path, imap_port: int) -> None:
    data.mkdir()
    listen = "\n".join(
        f'{label} = "tcp:{imap_port if label == "imap" else 0}:interface=127.0.0.1"'
        for label in LABELS
    )
    (data / "txmailhost.toml").write_text(f"[listen]\n{listen}\n")


def twistd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.path.join(BIN, "twistd"), *args], capture_output=True, text=True, timeout=20
    )


def test_a_port_in_use_stops_the_foreground_start_with_exit_1(
    tmp_path: Path, held_port: int
) -> None:
    data = tmp_path / "data"
    write_config(data, held_port)
    log = tmp_path / "log"

    result = twistd("-n", "--pidfile=", f"--logfile={log}", "txmailhost", "--data", str(data))

    assert result.returncode == 1
    assert result.stderr == (
        f"txmailhost: can't listen for imap on 127.0.0.1:{held_port}: Address already in use\n"
    )
    assert "Traceback" not in log.read_text()


def test_a_port_in_use_fails_the_daemonised_start_with_exit_1(
    tmp_path: Path, held_port: int
) -> None:
    data = tmp_path / "data"
    write_config(data, held_port)
    log, pidfile = tmp_path / "log", tmp_path / "pid"
    try:
        result = twistd(
            f"--pidfile={pidfile}", f"--logfile={log}", "txmailhost", "--data", str(data)
        )
        assert result.returncode == 1
        assert f"can't listen for imap on 127.0.0.1:{held_port}" in result.stderr
        # twistd's daemon reports the failure to the parent, then removes its pidfile: the
        # parent may exit first (_twistd_unix.postApplication).
        deadline = time.monotonic() + 5
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pidfile.exists()
        text = log.read_text()
        assert f"can't listen for imap on 127.0.0.1:{held_port}: Address already in use" in text
        assert "Traceback" not in text
    finally:
        if pidfile.exists():  # the daemon of a start that wrongly succeeded
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def start_read_only(data: Path, log: Path) -> subprocess.CompletedProcess[str]:
    with read_only(str(data)) as prefix:
        return subprocess.run(
            [*prefix, os.path.join(BIN, "twistd"), "-n", "--pidfile=", f"--logfile={log}",
             "txmailhost", "--data", str(data)],
            capture_output=True,
            text=True,
            timeout=20,
        )  # fmt: skip


def test_a_read_only_new_data_directory_stops_the_start_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_config(data, 0)

    result = start_read_only(data, tmp_path / "log")

    assert result.returncode == 1
    assert result.stderr.startswith(f"txmailhost: data directory {data} is not writable (")
    assert result.stderr.count("\n") == 1


def test_a_used_data_directory_now_read_only_stops_the_start_with_one_line(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    write_config(data, 0)
    ServerProcess(str(data)).start().stop()

    result = start_read_only(data, tmp_path / "log")

    assert result.returncode == 1
    assert result.stderr.startswith(f"txmailhost: data directory {data} is not writable (")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "extra",
    [
        '[filters]\nchain = ["nosuchfilter"]\n',
        '[filters]\nchain = ["greylist"]\n[filters.settings.greylist]\nbogus = 1\n',
        '[relay]\nsmarthost = "smtp.example.net:587"\nsmarthost_username = "u"\n'
        'smarthost_password_file = "/nonexistent/pw"\n',
        "[security]\nmax_connections = 1000000000000000000\n",
        '[relay]\ntls_ca_file = "/dev/null"\n',
    ],
    ids=[
        "unknown filter",
        "bad filter setting",
        "missing password file",
        "huge max_connections",
        "CA file without a certificate",
    ],
)
def test_check_config_refuses_each_config_the_start_refuses_with_the_same_line(
    tmp_path: Path, extra: str
) -> None:
    """docs/admin.rst: check a file with check-config before restarting. Its "ok" for a file
    the server then refused (or, for max_connections, died on with a traceback) was a lie."""
    data = tmp_path / "data"
    write_config(data, 0)
    txmailhost(data, "init")
    with open(data / "txmailhost.toml", "a") as config:
        config.write(extra)
    check_and_start_refuse_alike(tmp_path, data)


def txmailhost(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([os.path.join(BIN, "txmailhost"), "--data", str(data), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def check_and_start_refuse_alike(tmp_path: Path, data: Path) -> str:
    """check-config and the start both refuse ``data``'s server with the same one line."""
    checked = subprocess.run(
        [os.path.join(BIN, "txmailhost"), "--data", str(data), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    started = twistd("-n", "--pidfile=", f"--logfile={tmp_path / 'log'}", "txmailhost",
                     "--data", str(data))  # fmt: skip

    assert (started.returncode, started.stderr.count("\n")) == (1, 1), started.stderr
    assert (checked.returncode, checked.stdout) == (1, "")
    assert checked.stderr.removeprefix("txmailhost: error: ") == started.stderr.removeprefix(
        "txmailhost: "
    )
    return started.stderr


def test_a_dkim_key_signing_could_not_use_stops_the_start_as_check_config_says(
    tmp_path: Path,
) -> None:
    """Such a key was found only when a submission was signed: a garbled one logged an error
    and the mail went out without its signature (an unreadable one failed it, 451)."""
    data = tmp_path / "data"
    write_config(data, 0)
    txmailhost(data, "init")
    txmailhost(data, "domain", "add", "example.org")
    txmailhost(data, "dkim", "init", "example.org", "--selector", "s1")
    (data / "dkim" / "example.org" / "s1-rsa.pem").write_text("not a key\n")

    refused = check_and_start_refuse_alike(tmp_path, data)
    assert refused == (
        f"txmailhost: dkim: example.org: '{data}/dkim/example.org/s1-rsa.pem' is not an"
        " unencrypted PEM rsa private key\n"
    )


def test_a_second_server_on_a_data_directory_in_use_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A second server started on a running one's data directory swept the first one's
    spool from under it: a message being received lost its spool file and was answered
    250 and lost, and the spare files went with it (451 for the next message)."""
    import smtplib

    first = ServerProcess(str(tmp_path / "data")).start()
    try:
        first.add_user("alice@example.test", "river-maple-7-lantern")
        spare = tmp_path / "data" / "queue" / "spare"
        before = sorted(os.listdir(spare)) if spare.exists() else []
        client = smtplib.SMTP("127.0.0.1", first.ports["smtp"], timeout=30)
        client.ehlo("client.test")
        client.mail("someone@remote.test")
        client.rcpt("alice@example.test")
        code, _ = client.docmd("DATA")
        assert code == 354
        client.send(b"Subject: in flight\r\n\r\n" + b"x" * 100_000 + b"\r\n")
        other = tmp_path / "other.toml"
        listen = "\n".join(f'{label} = "tcp:0:interface=127.0.0.1"' for label in LABELS)
        other.write_text(f"[listen]\n{listen}\n")
        second = twistd("-n", "--pidfile=", f"--logfile={tmp_path / 'second.log'}",
                        "txmailhost", "--data", str(tmp_path / "data"), "--config", str(other))  # fmt: skip
        assert second.returncode == 1
        assert "is in use by another txmailhost server" in second.stderr
        assert f"(pid {first.process.pid})" in second.stderr
        assert (sorted(os.listdir(spare)) if spare.exists() else []) == before
        code, text = client.docmd(".")
        assert code == 250, text
        client.quit()
        deadline = time.monotonic() + 10
        inbox = tmp_path / "data" / "mail" / "example.test" / "alice"
        while time.monotonic() < deadline:
            found = [f for d in ("new", "cur") for f in os.listdir(inbox / d)]
            if found:
                break
            time.sleep(0.05)
        assert len(found) == 1
    finally:
        first.stop()
    again = ServerProcess(str(tmp_path / "data")).start()  # the lock went with the first
    again.stop()
