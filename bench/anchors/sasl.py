"""Postfix's SASL backend: a private Dovecot that runs nothing but its auth service.

smtpd keeps no passwords; it asks a SASL server. Debian packages two: Cyrus (libsasl2 with a
sasldb2 file) and Dovecot's auth service (``smtpd_sasl_type = dovecot``), the one Postfix's
SASL_README describes first and most submission set-ups use. Dovecot is chosen because it can
hold the same kind of hash the other servers check: sasldb2 stores plaintext secrets, so a login
would cost Postfix a table lookup where txmailhost pays a scrypt (N=2^15, r=8: 32 MiB, about
0.1 s). Here each login costs an Argon2id verification (64 MiB, t=3, also about 0.1 s), the
scheme the Dovecot anchor stores, with no auth cache (Dovecot's default): every AUTH hashes.

The instance (``protocols = none``: no IMAP or POP3 listeners) has its own base_dir, state_dir
and log in its directory, a passwd-file of users, and one unix socket, the ``private/auth`` of
Postfix's queue directory, owned by ``postfix`` so smtpd can connect (``smtpd_sasl_path =
private/auth``). It is started after Postfix, whose ``postfix start`` creates ``private/``.

As shipped, Dovecot verifies passwd-file passwords inside its one auth process (no
auth-worker), so logins arriving together are hashed one after another on one core: 50 at once
take 6 s or more. smtpd waits at most 10 s for the auth server (its AUTH_TIMEOUT), both for
its AUTH reply ("Connection lost to authentication server") and for the mechanism list a new
smtpd process asks for first ("fatal: no SASL authentication mechanisms", after which the
master stops starting smtpd for 60 s). The TLS suite therefore makes every account before its
warm-up, since each ``add_user`` reloads Postfix and renews all smtpd processes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.anchors import dovecot
from bench.server import (
    MAIL_UID,
    is_running,
    process_tree,
    read_pidfile,
    run_quietly,
)

_CONF = """\
# Written by bench/anchors/sasl.py: Postfix's SASL backend for one benchmark run.
base_dir = {root}/run
state_dir = {root}/state
instance_name = bench-postfix-auth-{tag}
log_path = {root}/dovecot.log
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/home
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


@dataclass(frozen=True)
class AuthServer:
    """The running instance: ``add_user(address)`` gives an address the bench password (the
    passwd-file is re-read when it changes); ``pids`` are its processes, which count in
    Postfix's memory since Postfix needs them to offer AUTH."""

    add_user: Callable[[str], None]
    pids: Callable[[], list[int]]


@contextlib.contextmanager
def running(
    workdir: Path, socket: Path, tag: str, start_timeout: float = 30.0
) -> Iterator[AuthServer]:
    """Start the auth-only Dovecot with its socket at ``socket``; stop it afterwards.

    ``tag`` keeps its instance name apart from the Dovecot anchor's.
    """
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)
    users = workdir / "users"
    users.write_text("")
    config = workdir / "dovecot.conf"
    config.write_text(_CONF.format(root=workdir, tag=tag, uid=MAIL_UID, socket=socket))
    master_pid_file = workdir / "run" / "master.pid"
    hashed = dovecot.password_hash()

    def add_user(address: str) -> None:
        with users.open("a") as table:
            table.write(f"{address}:{hashed}::::::\n")

    def pids() -> list[int]:
        master = read_pidfile(master_pid_file)
        return process_tree(master) if master and is_running(master) else []

    try:
        run_quietly([dovecot.binary(), "-c", config], timeout=start_timeout)
        deadline = time.monotonic() + start_timeout
        while not socket.is_socket():  # the master creates it before it forks the auth process
            if time.monotonic() > deadline:
                raise TimeoutError(f"Dovecot auth made no {socket} in {start_timeout}s")
            time.sleep(0.05)
        yield AuthServer(add_user, pids)
    finally:
        dovecot.stop(config, master_pid_file)
