"""The SMTP anchor: Debian's Postfix, delivering a virtual domain to Maildir, from a temp dir.

A private instance (``postfix -c DIR/etc start``) with its own config, queue and data
directories, listening on one unprivileged loopback port; the system's Postfix (and its
/etc/postfix/main.cf) is never read or touched. Mail for any ``USER@bench.test`` goes through
smtpd -> cleanup (fsync into the incoming queue, then ``250``) -> qmgr -> virtual(8), which
writes ``DIR/mail/bench.test/USER/new/`` as a static uid. That is Postfix's path a txmailhost
message also takes (accept durably, then deliver), on its defaults otherwise.

Pitfalls this config works around, each learned the hard way:

- The master must run as root (it binds, then drops to ``mail_owner = postfix``); the queue
  directory and its parents must be traversable by that user. The queue directory itself must
  exist (root-owned); ``postfix start`` then creates its subdirectories and the data directory
  (post-install create-missing) with the ownership ``postfix check`` wants.
- Debian's master.cf chroots most daemons into the queue directory, which then needs copies of
  /etc files; this instance runs nothing chrooted (chroot does not change the work done).
- ``virtual_mailbox_limit`` (48.8 MiB by default) must not be below ``message_size_limit``,
  and both must admit the 50 MiB memory probe, or virtual(8) bounces it after smtpd said 250.
- ``virtual_mailbox_maps`` refuses regexp substitution (``$1``) for safety, so each user is a
  line of a ``texthash:`` table (no ``postmap`` needed) followed by ``postfix reload``: daemons
  read the table when they start. After a reload the first connection waits ~1 s for its
  greeting, so ``add_user`` probes with RCPT TO until the new user is accepted.
- Postfix commands report fatal errors on stderr only when it is a terminal, otherwise to syslog
  (absent here): a failed ``postfix start`` is re-run on a pseudo-terminal to get its reason.
  ``maillog_file`` keeps the log in the temp dir, but only below ``maillog_file_prefixes``.
- mydestination is empty (bench.test must not also be a local domain) and myhostname is set, so
  nothing waits on DNS.

With ``tls``, smtpd offers STARTTLS with a throwaway ECDSA P-256 certificate (the kind
txmailhost makes) on the MX port, and a second smtpd is the submission service, configured as
Debian's master.cf template suggests for port 587: TLS required (``smtpd_tls_security_level =
encrypt``), AUTH only after STARTTLS (``smtpd_tls_auth_only``), mail only from authenticated
clients, and only from their own address (``reject_sender_login_mismatch``, as txmailhost
refuses other senders with 553 5.7.1). Its SASL server is an auth-only Dovecot
(``anchors/sasl.py``, which says why not Cyrus sasldb), whose processes count in the memory.
"""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.anchors import sasl
from bench.server import (
    BENCH_DOMAIN,
    MAIL_UID,
    Server,
    free_port,
    is_running,
    kill_tree,
    process_tree,
    read_pidfile,
    self_signed,
    wait_for_port,
)

NAME = "Postfix"
# Daemons keep inherited descriptors: never give them a pipe we would wait on.
_QUIET = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
MAX_MESSAGE = 100 * 1024 * 1024

_MAIN_CF = """\
# Written by bench/anchors/postfix.py for one benchmark run.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = bench-postfix.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP
message_size_limit = {max_message}
virtual_mailbox_limit = {max_message}
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
virtual_minimum_uid = 100
"""

_TLS_CF = """\
smtpd_tls_security_level = may
smtpd_tls_chain_files = {key}, {cert}
smtpd_tls_auth_only = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sender_login_maps = texthash:{root}/etc/senders
"""

# Debian's master.cf ``submission`` entry, uncommented, on our port.
_SUBMISSION_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
"""

# Debian's master.cf services, none chrooted, with smtpd on our port only.
_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
proxywrite unix  - - n - 1 proxymap
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
local      unix  - n n - - local
virtual    unix  - n n - - virtual
lmtp       unix  - - n - - lmtp
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def unavailable() -> str | None:
    """Why this anchor can't run here, or None."""
    if not shutil.which("postfix", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        return "postfix is not installed (apt-get install postfix)"
    if os.geteuid() != 0:
        return "Postfix's master must start as root"
    return None


def _postfix() -> str:
    return shutil.which("postfix", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or ""


def version() -> str:
    postconf = Path(_postfix()).with_name("postconf")
    out = subprocess.run([postconf, "-d", "-h", "mail_version"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


@contextlib.contextmanager
def running(
    workdir: Path,
    *,
    tls: bool = False,
    settings: dict[str, str] | None = None,
    start_timeout: float = 30.0,
) -> Iterator[Server]:
    """Start a private Postfix under ``workdir`` and stop it (and any leftover) afterwards.

    With ``tls``, smtpd offers STARTTLS with a throwaway self-signed certificate, and a
    submission smtpd (``Server.submission_port``) wants STARTTLS then AUTH PLAIN (module doc).
    ``settings`` override main.cf (``--postfix-set in_flow_delay=0``) for experiments; the
    report lists them.
    """
    etc, mail, spool = workdir / "etc", workdir / "mail", workdir / "spool"
    for directory in (workdir, etc, spool):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    mail.mkdir()
    os.chown(mail, MAIL_UID, MAIL_UID)
    port = free_port()
    submission_port = free_port() if tls else None
    main_cf = _MAIN_CF.format(
        root=workdir, domain=BENCH_DOMAIN, uid=MAIL_UID, max_message=MAX_MESSAGE
    )
    master_cf = _MASTER_CF.format(port=port)
    if tls:
        key, cert = self_signed(etc, "bench-postfix.localdomain")
        main_cf += _TLS_CF.format(key=key, cert=cert, root=workdir)
        master_cf += _SUBMISSION_CF.format(port=submission_port)
    main_cf += "".join(f"{name} = {value}\n" for name, value in (settings or {}).items())
    (etc / "main.cf").write_text(main_cf)
    (etc / "master.cf").write_text(master_cf)
    mailboxes, senders = etc / "vmailbox", etc / "senders"
    mailboxes.write_text("")
    senders.write_text("")

    postfix = [_postfix(), "-c", str(etc)]
    master_pid_file = workdir / "spool" / "pid" / "master.pid"
    with contextlib.ExitStack() as stack:
        stack.callback(_stop, postfix, master_pid_file)
        started = subprocess.run([*postfix, "start"], **_QUIET, timeout=start_timeout)
        if started.returncode:
            raise RuntimeError(f"postfix start failed: {_why([*postfix, 'check'])}")
        wait_for_port("127.0.0.1", port, start_timeout)
        auth = None
        if submission_port is not None:
            auth = stack.enter_context(
                sasl.running(workdir / "sasl", spool / "private" / "auth", tag=str(port))
            )
            wait_for_port("127.0.0.1", submission_port, start_timeout)

        def pids() -> list[int]:
            master = read_pidfile(master_pid_file)
            own = process_tree(master) if master and is_running(master) else []
            return own + (auth.pids() if auth else [])

        def add_user(address: str) -> Path:
            local, domain = address.rsplit("@", 1)
            # The trailing slash makes virtual(8) write a Maildir, not an mbox file.
            with mailboxes.open("a") as table:
                table.write(f"{address} {domain}/{local}/\n")
            with senders.open("a") as table:  # who may use this MAIL FROM on submission
                table.write(f"{address} {address}\n")
            if auth:
                auth.add_user(address)
            subprocess.run([*postfix, "reload"], **_QUIET, check=True, timeout=60)
            _wait_until_accepted(port, address)
            return mail / domain / local  # virtual(8) creates it on first delivery

        yield Server(
            name=NAME,
            version=version(),
            host="127.0.0.1",
            add_user=add_user,
            pids=pids,
            smtp_port=port,
            submission_port=submission_port,
            notes=[
                "Postfix: virtual(8) to Maildir, Debian defaults otherwise (in_flow_delay = 1s, "
                "no chroot); memory is the PSS summed over master and all its children"
                + (", and over the auth-only Dovecot that is its SASL server." if tls else "."),
                *(f"Postfix setting overridden: {n} = {v}" for n, v in (settings or {}).items()),
            ],
        )


def _wait_until_accepted(port: int, address: str, timeout: float = 30.0) -> None:
    """Probe with RCPT TO until smtpd accepts ``address``: the reload has then taken effect.

    After a reload the first connection waits about a second for its greeting while the master
    restarts its services; absorbing that here keeps it out of the measured runs.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as probe:
                probe.ehlo("probe.client.test")
                probe.mail("probe@client.test")
                code, text = probe.rcpt(address)
                probe.rset()
            if code == 250:
                return
            reason = f"{code} {text.decode(errors='replace')}"
        except (OSError, smtplib.SMTPException) as e:
            reason = repr(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"Postfix still refuses {address} after reload: {reason}")
        time.sleep(0.1)


def _why(argv: list[str]) -> str:
    """Run a failing postfix command with a terminal on stderr, where it then says why."""
    leader, follower = pty.openpty()
    try:
        subprocess.run(argv, stdout=follower, stderr=follower, timeout=60, check=False)
        os.close(follower)
        follower = -1
        output = b""
        with contextlib.suppress(OSError):  # EIO once everything written has been read
            while chunk := os.read(leader, 4096):
                output += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return output.decode(errors="replace").strip() or "no reason given"


def _stop(postfix: list[str], master_pid_file: Path) -> None:
    """``postfix stop``, then make sure: a leftover master (and its children) gets killed."""
    master = read_pidfile(master_pid_file)
    subprocess.run([*postfix, "stop"], **_QUIET, check=False, timeout=60)
    if master is None:
        return
    deadline = time.monotonic() + 10
    while is_running(master) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(master):
        kill_tree(master)
