"""Real POP3 clients from Debian against the real server: fetchmail over STLS (download and
delete, then keep-and-UIDL across sessions) and curl over pop3:// with STLS required. Skipped
where the client isn't installed."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import textwrap

import pytest

from tests.e2e.conftest import PASSWORD

H = "127.0.0.1"
ALICE = "alice@example.test"

pytestmark = pytest.mark.interop


def send(server, subject: str) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as client:
        client.sendmail(
            "bob@remote.test",
            [ALICE],
            f"From: bob@remote.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
            ".leading dot survives\r\n",
        )


def _fetchmail(server, tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, list[bytes]]:
    """Run fetchmail once; return its result and the messages its MDA received, in order."""
    out = tmp_path / "fetched"
    out.mkdir(exist_ok=True)
    before = set(os.listdir(out))
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "{out}/$(date +%s%N).$$"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            set no syslog
            poll {H} port {server.ports["pop3"]} proto pop3 auth password
              user "{ALICE}" password "{PASSWORD}"
              sslproto 'tls1.2+' no sslcertck
              mda "{mda}"
            """
        )
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nodetach", "--pidfile", str(tmp_path / "pid"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    names = sorted(set(os.listdir(out)) - before)
    return result, [(out / n).read_bytes() for n in names]


def _subjects(messages: list[bytes]) -> list[str]:
    found = []
    for message in messages:
        for line in message.split(b"\n"):
            if line.startswith(b"Subject: "):
                found.append(line[9:].strip().decode())
    return sorted(found)


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_downloads_over_stls_and_deletes(server, tmp_path):
    for subject in ("one", "two", "three"):
        send(server, subject)
    result, messages = _fetchmail(server, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _subjects(messages) == ["one", "three", "two"]
    assert all(b"\n.leading dot survives" in m for m in messages)  # dot-stuffing undone
    assert all(b"Return-Path: <bob@remote.test>" in m for m in messages)
    again, none = _fetchmail(server, tmp_path)
    assert again.returncode == 1 and none == []  # 1: no mail (fetchmail's exit code)


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_keep_with_uidl_fetches_only_new_mail(server, tmp_path):
    """UIDL must be stable across sessions: fetchmail's 'keep' relies on it."""
    send(server, "first")
    result, messages = _fetchmail(server, tmp_path, "--keep", "--uidl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _subjects(messages) == ["first"]
    send(server, "second")
    result, messages = _fetchmail(server, tmp_path, "--keep", "--uidl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _subjects(messages) == ["second"]
    result, messages = _fetchmail(server, tmp_path, "--keep", "--uidl")
    assert result.returncode == 1 and messages == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_lists_and_retrieves_over_required_stls(server):
    send(server, "for curl")
    base = f"pop3://{H}:{server.ports['pop3']}"
    common = ["curl", "-sS", "--ssl-reqd", "-k", "--user", f"{ALICE}:{PASSWORD}"]
    listing = subprocess.run([*common, base + "/"], capture_output=True, timeout=30)
    assert listing.returncode == 0, listing.stderr
    number, size = listing.stdout.split()
    assert number == b"1" and int(size) > 0
    message = subprocess.run([*common, base + "/1"], capture_output=True, timeout=30)
    assert message.returncode == 0, message.stderr
    assert len(message.stdout) == int(size)  # LIST's size is what RETR sends
    assert b"Subject: for curl\r\n" in message.stdout
    assert message.stdout.endswith(b"body of for curl\r\n.leading dot survives\r\n")
