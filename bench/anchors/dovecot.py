"""The POP3 and IMAP anchor: Debian's Dovecot serving Maildirs from a temp dir.

A private instance (``dovecot -c DIR/dovecot.conf``) with its own base_dir (sockets, pid) and
state_dir, a passwd-file for users, plaintext login allowed (loopback, ``ssl = no``), listening
on unprivileged loopback ports; /etc/dovecot is never read. Mail lives in
``DIR/mail/DOMAIN/USER/`` owned by the same static uid Postfix's virtual(8) delivers as, so the
two anchors agree on the Maildir. Passwords are stored as Argon2id, Dovecot's memory-hard scheme,
since txmailhost's are scrypt: logins then cost each server what they cost in production.

Mailboxes are populated by writing Maildir files directly, as a delivery agent would (LF line
ends, ``,S=size`` in the name, in ``new/``): the measurement is Dovecot serving mail, not
receiving it. Dovecot builds its index on first access; suites do a warm-up session first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import maildirs, messages
from bench.anchors.postfix import MAIL_UID
from bench.server import (
    PASSWORD,
    Server,
    free_port,
    is_running,
    kill_tree,
    process_tree,
    read_pidfile,
    run_quietly,
    wait_for_port,
)

NAME = "Dovecot"

_CONF = """\
# Written by bench/anchors/dovecot.py for one benchmark run.
base_dir = {root}/run
state_dir = {root}/state
instance_name = bench-dovecot-{pop3}
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%d/%n
first_valid_uid = 100
default_internal_user = dovecot
default_login_user = dovenull
# The IMAP suite keeps 1,000 idle sessions of one user from one address (plus the 50
# concurrent ones), each an imap process: the stock limits (100 processes per service, 1,000
# clients, 10 connections per user and IP) would refuse most of them.
mail_max_userip_connections = 5000
default_process_limit = 2000
default_client_limit = 5000
default_vsz_limit = 512M
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def _dovecot() -> str:
    return shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or ""


def unavailable() -> str | None:
    """Why this anchor can't run here, or None."""
    if not _dovecot():
        return "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
    if not Path("/usr/lib/dovecot/pop3").exists():
        return "dovecot-pop3d is not installed"
    if os.geteuid() != 0:
        return "Dovecot's master must start as root to serve a static mail uid"
    return None


def version() -> str:
    out = subprocess.run([_dovecot(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.split(" ")[0].strip() or "unknown"


@contextlib.contextmanager
def running(workdir: Path, *, tls: bool = False, start_timeout: float = 30.0) -> Iterator[Server]:
    """Start a private Dovecot under ``workdir``; stop it (and any leftover) afterwards.

    ``tls`` is accepted for symmetry and ignored: the POP3 and IMAP loads log in in plaintext.
    """
    mail = workdir / "mail"
    mail.mkdir(parents=True)
    workdir.chmod(0o755)
    os.chown(mail, MAIL_UID, MAIL_UID)
    users = workdir / "users"
    users.write_text("")
    pop3_port, imap_port = free_port(), free_port()
    config = workdir / "dovecot.conf"
    config.write_text(_CONF.format(root=workdir, pop3=pop3_port, imap=imap_port))
    master_pid_file = workdir / "run" / "master.pid"
    try:
        run_quietly([_dovecot(), "-c", config], timeout=start_timeout)
        for port in (pop3_port, imap_port):
            wait_for_port("127.0.0.1", port, start_timeout)

        def pids() -> list[int]:
            master = read_pidfile(master_pid_file)
            return process_tree(master) if master and is_running(master) else []

        password = _password_hash()

        def add_user(address: str) -> Path:
            local, domain = address.rsplit("@", 1)
            maildir = mail / domain / local
            with users.open("a") as table:  # passwd-file is re-read when it changes
                table.write(f"{address}:{password}:{MAIL_UID}:{MAIL_UID}::{maildir}::\n")
            return maildir

        yield Server(
            name=NAME,
            version=version(),
            host="127.0.0.1",
            add_user=add_user,
            pids=pids,
            populate=lambda address, count, size: write_maildir(
                mail / address.rsplit("@", 1)[1] / address.rsplit("@", 1)[0], count, size
            ),
            store_files=lambda address, contents: maildirs.write_files(
                mail / address.rsplit("@", 1)[1] / address.rsplit("@", 1)[0],
                contents,
                line_end=b"\n",
                owner=MAIL_UID,
            ),
            pop3_port=pop3_port,
            imap_port=imap_port,
            notes=[
                "Dovecot: memory is the PSS summed over master, login, auth and mail processes; "
                "passwords are {ARGON2ID} (its memory-hard scheme), as txmailhost's are scrypt."
            ],
        )
    finally:
        _stop(config, master_pid_file)


def _password_hash() -> str:
    """The bench password as Dovecot's memory-hard default, ``{ARGON2ID}`` (64 MiB, t=3).

    txmailhost stores scrypt (32 MiB) hashes; a ``{PLAIN}`` anchor would make logins look free.
    Falls back to ``{PLAIN}`` (and says so in the log) if this Dovecot lacks Argon2.
    """
    doveadm = shutil.which("doveadm", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
    argv = [doveadm or "doveadm", "pw", "-s", "ARGON2ID", "-p", PASSWORD]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        if done.returncode == 0 and done.stdout.startswith("{ARGON2ID}"):
            return done.stdout.strip()
        reason = done.stderr.strip()
    except OSError as e:
        reason = str(e)
    print(f"Dovecot: no ARGON2ID ({reason}); using PLAIN passwords", file=sys.stderr)
    return f"{{PLAIN}}{PASSWORD}"


def write_maildir(maildir: Path, count: int, size: int, owner: int = MAIL_UID) -> None:
    """Deliver ``count`` messages into ``maildir/new`` the way an MDA does (LF, S=size)."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    now = int(time.time())
    for index in range(count):
        content = messages.message(index, size, "loadgen@client.test", "bench").replace(
            b"\r\n", b"\n"
        )
        name = f"{now}.M{index}P{os.getpid()}.{host},S={len(content)}"
        (maildir / "new" / name).write_bytes(content)
    for path in [maildir, *maildir.rglob("*")]:
        os.chown(path, owner, owner)


def _stop(config: Path, master_pid_file: Path) -> None:
    """``dovecot stop``, then make sure: a leftover master (and its children) gets killed."""
    master = read_pidfile(master_pid_file)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([_dovecot(), "-c", config, "stop"], **quiet, check=False, timeout=60)
    if master is None:
        return
    deadline = time.monotonic() + 10
    while is_running(master) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(master):
        kill_tree(master)
