"""The POP3 and IMAP anchor: Debian's Dovecot serving Maildirs from a temp dir.

A private instance (``dovecot -c DIR/dovecot.conf``) with its own base_dir (sockets, pid) and
state_dir, a passwd-file for users, plaintext login allowed (loopback, ``ssl = no``), listening
on unprivileged loopback ports; /etc/dovecot is never read. With ``tls``, ``ssl = yes`` and a
throwaway ECDSA P-256 certificate (the kind txmailhost makes) add an IMAPS listener; not
``ssl = required``, which would refuse the plaintext logins the POP3 and IMAP suites make on
the other ports of the same instance. Login processes stay in Dovecot's default
"high-security" mode (``service_count = 1``: a fresh imap-login process per connection), as
Debian ships it, unless ``login_reuse`` asks for the "high-performance" mode Dovecot's manual
suggests for busy servers (``service_count = 0``, ``process_min_avail`` = one per core: a few
long-lived login processes serve every connection); for TLS handshakes that is the difference
between forking and exec'ing a process with its own TLS set-up per connection, or not. Mail lives in
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
from bench.server import (
    MAIL_UID,
    PASSWORD,
    Server,
    free_port,
    is_running,
    kill_tree,
    process_tree,
    read_pidfile,
    run_quietly,
    self_signed,
    wait_for_port,
)

NAME = "Dovecot"
NAME_REUSED = "Dovecot, login reused"  # the same, with login processes in high-performance mode

_CONF = """\
# Written by bench/anchors/dovecot.py for one benchmark run.
base_dir = {root}/run
state_dir = {root}/state
instance_name = bench-dovecot-{pop3}
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
{ssl}
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
service imap-login {{{login}
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
  }}
}}
service pop3-login {{{login}
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def binary() -> str:
    return shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or ""


def unavailable() -> str | None:
    """Why this anchor can't run here, or None."""
    if not binary():
        return "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
    if not Path("/usr/lib/dovecot/pop3").exists():
        return "dovecot-pop3d is not installed"
    if os.geteuid() != 0:
        return "Dovecot's master must start as root to serve a static mail uid"
    return None


def version() -> str:
    out = subprocess.run([binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.split(" ")[0].strip() or "unknown"


@contextlib.contextmanager
def running(
    workdir: Path, *, tls: bool = False, login_reuse: bool = False, start_timeout: float = 30.0
) -> Iterator[Server]:
    """Start a private Dovecot under ``workdir``; stop it (and any leftover) afterwards.

    ``tls`` adds the IMAPS listener (``Server.imaps_port``); the POP3 and IMAP ports keep
    allowing plaintext logins either way, since their loads log in without TLS.
    ``login_reuse`` runs the login processes in high-performance mode (module doc) and names
    the server ``NAME_REUSED``.
    """
    mail = workdir / "mail"
    mail.mkdir(parents=True)
    workdir.chmod(0o755)
    os.chown(mail, MAIL_UID, MAIL_UID)
    users = workdir / "users"
    users.write_text("")
    pop3_port, imap_port = free_port(), free_port()
    imaps_port = free_port() if tls else None
    ssl = "ssl = no"
    if tls:
        key, cert = self_signed(workdir, "bench-dovecot.localdomain")
        ssl = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
    config = workdir / "dovecot.conf"
    config.write_text(
        _CONF.format(
            root=workdir,
            pop3=pop3_port,
            imap=imap_port,
            imaps=imaps_port or 0,
            ssl=ssl,
            login=f"\n  service_count = 0\n  process_min_avail = {os.cpu_count() or 1}"
            if login_reuse
            else "",
        )
    )
    master_pid_file = workdir / "run" / "master.pid"
    try:
        run_quietly([binary(), "-c", config], timeout=start_timeout)
        for port in (pop3_port, imap_port, imaps_port):
            if port is not None:
                wait_for_port("127.0.0.1", port, start_timeout)

        def pids() -> list[int]:
            master = read_pidfile(master_pid_file)
            return process_tree(master) if master and is_running(master) else []

        password = password_hash()

        def add_user(address: str) -> Path:
            local, domain = address.rsplit("@", 1)
            maildir = mail / domain / local
            with users.open("a") as table:  # passwd-file is re-read when it changes
                table.write(f"{address}:{password}:{MAIL_UID}:{MAIL_UID}::{maildir}::\n")
            return maildir

        yield Server(
            name=NAME_REUSED if login_reuse else NAME,
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
            imaps_port=imaps_port,
            notes=[
                "Dovecot: memory is the PSS summed over master, login, auth and mail processes; "
                "passwords are {ARGON2ID} (its memory-hard scheme), as txmailhost's are scrypt.",
                *(
                    [
                        f"{NAME_REUSED}: the same Dovecot with its login processes in"
                        " high-performance mode (service_count = 0, process_min_avail ="
                        f" {os.cpu_count() or 1}); the other Dovecot forks one per connection."
                    ]
                    if login_reuse
                    else []
                ),
            ],
        )
    finally:
        stop(config, master_pid_file)


def password_hash() -> str:
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


def stop(config: Path, master_pid_file: Path) -> None:
    """``dovecot stop``, then make sure: a leftover master (and its children) gets killed."""
    master = read_pidfile(master_pid_file)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([binary(), "-c", config, "stop"], **quiet, check=False, timeout=60)
    if master is None:
        return
    deadline = time.monotonic() + 10
    while is_running(master) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(master):
        kill_tree(master)
