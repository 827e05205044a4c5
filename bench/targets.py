"""The server under test: txmailhost started the way an administrator would, in a temp dir.

``twistd -n txmailhost --data DIR`` (run by the interpreter running the harness, hence from the
same venv), with a config written first that moves every listener
to a free loopback port and turns off the ones no suite uses; accounts are made with the admin
CLI, the same code path a user takes. The process is the server, so its pid is all the memory
sampler needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench import maildirs, smtp_load
from bench.server import (
    BENCH_DOMAIN,
    PASSWORD,
    Server,
    free_port,
    is_running,
    kill_tree,
    run_quietly,
    wait_for_port,
)

NAME = "txmailhost"
NAME_WORKERS = "txmailhost (2 workers)"
MAX_MESSAGE = 100 * 1024 * 1024  # above the 50 MiB memory probe plus the headers added to it

_CONFIG = """\
# Written by bench/targets.py for one benchmark run.
[server]
hostname = "bench-txmailhost.localdomain"
workers = {workers}

[listen]
smtp = "tcp:{smtp}:interface=127.0.0.1"
pop3 = "tcp:{pop3}:interface=127.0.0.1"
submission = "tcp:{submission}:interface=127.0.0.1"
submissions = ""
imap = "tcp:{imap}:interface=127.0.0.1:backlog=1024"
imaps = "{imaps}"
pop3s = ""
# Unmeasured listeners off: their default ports would clash between two servers of one run.
managesieve = ""
web = ""
web_redirect = ""
# Metrics stay on, as in production (their hooks are part of what is measured), on any port.
metrics = "tcp:0:interface=127.0.0.1"

[smtp]
max_message_size = {max_message}

[security]
# The load comes from one address (127.0.0.1): the per-IP default (20) would refuse the
# 50-connection run with 421. Postfix exempts $mynetworks from its own per-client limits.
# The IMAP suite holds 1,000 idle sessions (target: < 50 KiB each) plus a few, all from here.
max_connections_per_ip = {max_connections}
max_connections = {max_connections}
{security}
[mailauth]
check_inbound = {mailauth}
"""

_ADMIN = "import sys; from txmailhost.cli import main; sys.exit(main())"
# twistd itself, run by this interpreter. Not ``python -m twisted``: that is ``twist``, a different
# runner whose options (--log-file, no -n or --pidfile) are not the ones administrators use.
_TWISTD = "from twisted.scripts.twistd import run; run()"


def unavailable() -> str | None:
    """Why txmailhost can't be benchmarked here, or None when it can.

    Probed in a child interpreter so a half-written server can't break the harness's own imports.
    """
    probe = subprocess.run(
        [sys.executable, "-c", "import txmailhost.service, txmailhost.cli"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"txmailhost is not importable here ({last})"
    return None


def version() -> str:
    try:
        return importlib.metadata.version("txmailhost")
    except importlib.metadata.PackageNotFoundError:
        return "checkout"


@contextlib.contextmanager
def running(
    workdir: Path,
    *,
    tls: bool = False,
    start_timeout: float = 30.0,
    name: str = NAME,
    credential_cache: bool = True,
    mailauth: bool = True,
    workers: int = 1,
    max_connections: int = 5000,
    extra_config: str = "",
    extra_security: str = "",
    wrapper: tuple[str, ...] = (),
) -> Iterator[Server]:
    """Start txmailhost with its data directory in ``workdir``; stop it however the block ends.

    ``credential_cache=False`` turns the cache of verified passwords off (every login hashes,
    as before it existed); ``mailauth=False`` turns the SPF/DKIM/DMARC checks of inbound mail
    off (senders are at client.test, a special-use name: no DNS is asked either way); ``name``
    is what the report calls this server; ``workers`` is ``[server] workers`` (more than one:
    the memory sampled is the supervisor's and every worker's). ``extra_config`` is appended
    to the config file (sections the one written here doesn't have, e.g. ``[store]``);
    ``extra_security`` are lines for its ``[security]`` section. ``wrapper`` goes before the
    server's command line (``bench.spam_instructions`` runs it under valgrind's callgrind).

    STARTTLS needs nothing: txmailhost makes a self-signed certificate (ECDSA P-256) on first
    start and offers it on every plain listener. ``tls`` adds the implicit-TLS IMAPS listener
    (``[listen] imaps``, ``Server.imaps_port``).
    """
    data = workdir / "data"
    data.mkdir(parents=True)
    smtp_port, submission_port, pop3_port = free_port(), free_port(), free_port()
    imap_port = free_port()
    imaps_port = free_port() if tls else None
    (data / "txmailhost.toml").write_text(
        _CONFIG.format(
            smtp=smtp_port,
            submission=submission_port,
            pop3=pop3_port,
            imap=imap_port,
            imaps=f"tcp:{imaps_port}:interface=127.0.0.1" if imaps_port else "",
            max_message=MAX_MESSAGE,
            security=("" if credential_cache else "credential_cache_ttl = 0\n") + extra_security,
            mailauth="true" if mailauth else "false",
            workers=workers,
            max_connections=max_connections,
        )
        + extra_config
    )
    password_file = workdir / "password"
    password_file.write_text(PASSWORD + "\n")

    def admin(*args: str) -> None:
        run_quietly([sys.executable, "-c", _ADMIN, "--data", data, *args])

    admin("init")  # only init sets up a data directory (the CLI refuses a missing one)
    admin("domain", "add", BENCH_DOMAIN)

    def add_user(address: str) -> Path:
        admin("user", "add", address, "--password-file", str(password_file))
        domain = address.rsplit("@", 1)[1]
        return data / "mail" / domain / address.rsplit("@", 1)[0]

    def add_user_dir(address: str) -> Path:
        """The INBOX Maildir of an existing account (files written there are adopted)."""
        local, domain = address.rsplit("@", 1)
        return data / "mail" / domain / local

    def populate(address: str, count: int, size: int) -> None:
        """Deliver through txmailhost's own SMTP: the store and its index then hold them."""
        load = smtp_load.SmtpLoad(
            "127.0.0.1", smtp_port, count, size, min(10, count), 100, recipient=address
        )
        result = asyncio.run(smtp_load.run(load))
        if result.accepted != count:
            raise RuntimeError(f"populating {address} over SMTP: {result.summary()}")

    log = workdir / "twistd.log"
    argv = [*wrapper, sys.executable, "-c", _TWISTD, "-n", "--pidfile=", f"--logfile={log}"]
    argv += [NAME, "--data", str(data)]
    with open(workdir / "twistd.out", "wb") as out:
        process = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            for port in (smtp_port, submission_port, pop3_port, imap_port, imaps_port):
                if port is None:
                    continue
                wait_for_port(
                    "127.0.0.1", port, start_timeout, alive=lambda: process.poll() is None
                )
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}; its log ends:\n{_tail(log, workdir / 'twistd.out')}") from e
        yield Server(
            name=name,
            version=version(),
            host="127.0.0.1",
            add_user=add_user,
            pids=lambda: _with_children(process.pid) if is_running(process.pid) else [],
            populate=populate,
            smtp_port=smtp_port,
            submission_port=submission_port,
            pop3_port=pop3_port,
            imap_port=imap_port,
            imaps_port=imaps_port,
            store_files=lambda address, contents: maildirs.write_files(
                add_user_dir(address), contents
            ),
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            process.wait()


def _tail(*paths: Path, lines: int = 15) -> str:
    text = []
    for path in paths:
        with contextlib.suppress(OSError):
            text += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


def _with_children(pid: int) -> list[int]:
    """``pid`` and its worker processes (``[server] workers``), for the memory sampler."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *(int(child) for child in f.read().split())]
    except OSError:
        return [pid]
