"""What a load generator needs to know about a running mail server, and process plumbing.

Every target (txmailhost, and each anchor: Postfix, Dovecot) is started by a context manager that
yields a ``Server``. The suites only use this record, so the same workload runs unchanged against
each of them; a protocol a target does not serve has its port set to ``None`` and its suite skips
it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DOMAIN = "bench.test"
PASSWORD = "bench-password"
# Owner of the anchors' delivered files: Postfix's virtual(8) writes as it, Dovecot serves as it.
MAIL_UID = 5000


@dataclass
class Server:
    """A running server: where to connect, whose memory to sample, how to make mailboxes.

    ``add_user`` creates an account (address, password) and returns its INBOX Maildir;
    ``populate`` puts ``count`` messages of ``size`` bytes in that INBOX the way the server itself
    would store them, so a POP3/IMAP measurement starts from the server's native state.
    """

    name: str
    version: str
    host: str
    add_user: Callable[[str], Path]
    pids: Callable[[], list[int]]
    populate: Callable[[str, int, int], None] | None = None
    smtp_port: int | None = None
    submission_port: int | None = None  # the AUTH-required listener (``--auth`` loads use it)
    pop3_port: int | None = None
    imap_port: int | None = None
    imaps_port: int | None = None  # IMAP over implicit TLS (993 in production)
    # Put these exact messages (CRLF) into the address's INBOX as Maildir files in ``new/``, as
    # another delivery agent would: fast enough for 100,000 messages, and the server finds them
    # on its next SELECT (txmailhost adopts unknown files, Dovecot indexes new/).
    store_files: Callable[[str, Iterable[bytes]], None] | None = None
    notes: list[str] = field(default_factory=list)


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port, found by letting the kernel pick one (racy only against strangers)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def listens(pids: Iterable[int], port: int) -> bool:
    """True when one of ``pids`` holds the TCP socket listening on ``port``.

    ``free_port`` only finds a port free when asked; a test running beside (pytest-xdist) can
    bind it before our server does, and then ``wait_for_port`` succeeds against that stranger.
    The kernel's socket tables say whose listener it is: the socket's inode from
    ``/proc/net/tcp`` (and ``tcp6``), found among the processes' open descriptors.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return True
    return False


def wait_for_port(
    host: str, port: int, timeout: float, alive: Callable[[], bool] = lambda: True
) -> None:
    """Block until something accepts on ``host:port``; fail early if ``alive()`` turns false.

    Each server logs "listening" at a different point of its start-up, so the port itself is the
    only signal that means the same thing for all of them.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if not alive():
                raise RuntimeError(f"server exited before listening on {host}:{port}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def run_quietly(argv: Sequence[str | os.PathLike[str]], timeout: float = 60) -> str:
    """Run a helper command; on failure raise with its output, which is what explains it.

    Output goes through a temporary file, not a pipe: a daemon that forks and keeps the inherited
    descriptors open (Dovecot does) would otherwise make us wait for an EOF that never comes.
    """
    with tempfile.TemporaryFile() as output:
        done = subprocess.run(
            [os.fspath(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        output.seek(0)
        text = output.read().decode(errors="replace").strip()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {done.returncode}: {text}")
    return text


def read_pidfile(path: Path) -> int | None:
    """The pid in a daemon's pid file, or None when there is none (not started, or gone)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children_by_parent() -> dict[int, list[int]]:
    """The whole process table as parent -> children (one pass over /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants: Postfix and Dovecot are a master plus its children."""
    tree = children_by_parent()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) used so far by ``pids`` and by their children already reaped.

    A forking server's short-lived children (Dovecot's imap-login, one per connection) are gone
    before anyone can sample them; once reaped, their time is in their parent's cutime/cstime.
    The difference of two samples is what the server spent between them.
    """
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    """End a child the bench started: TERM, and KILL if it is still there after ``grace``
    seconds (an rspamd, a spamd, a Redis, the loopback DNS server)."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill_tree(root: int, grace: float = 5.0) -> None:
    """Last resort after a polite stop: TERM, then KILL, ``root`` and whatever it spawned."""
    pids = process_tree(root) if is_running(root) else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while any(is_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [p for p in pids if is_running(p)]
        if not pids:
            return


def self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A throwaway key and self-signed certificate for an anchor: (key.pem, cert.pem).

    The same kind txmailhost makes on first start (ECDSA P-256, SHA-256), so a handshake costs
    every server the same signature and key exchange; nothing verifies it (loopback only).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / "key.pem", directory / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file
