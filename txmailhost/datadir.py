"""The data directory: creating what it needs, and checks that turn a broken setup into one
line instead of tracebacks.

:func:`ensure_data_dir` creates what is missing (directories, the commented config file, the
accounts database, a self-signed certificate) for ``txmailhost init`` and the server's first
start; ``config.py`` only reads and validates, so loading a config never creates a file.

Three mistakes an administrator makes, each found before anything else runs:

- a typo in ``--data``: every command but ``init`` (and the server, on its first start)
  refuses a directory that isn't set up, rather than creating a fresh one beside the real one
  (:func:`require_data_dir`);
- a data directory the server can't write (a read-only mount, files left owned by root): the
  server would answer every message ``451 4.3.0``, so it refuses to start instead
  (:func:`writable_problem`);
- starting as root with ``twistd --uid/--gid``: what the server creates before twistd drops
  privileges must belong to the user it drops to (:func:`acting_as`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
from collections.abc import Iterator

from txmailhost import _safeio
from txmailhost.accounts.db import AccountsDB
from txmailhost.config import (
    Config,
    default_config_path,
    default_tls_paths,
    load_config,
    render_default_config,
)

ACCOUNTS_NAME = "accounts.sqlite"

# The directories the server writes into; ``ensure_data_dir`` creates them (``init`` and the
# server's first start), and they are checked for writability at every start.
WRITTEN_DIRECTORIES = (
    "",
    "mail",
    "queue",
    "queue/control",
    "queue/env",
    "queue/msg",
    "queue/spare",
    "queue/tmp",
    "run",
)


def ensure_data_dir(
    data_dir: str, config_file: str | None = None, hostname: str | None = None
) -> list[str]:
    """Create what a data directory needs and is missing; return "created ..." lines.

    Used by ``txmailhost init`` and by the server at every start; the other commands refuse a
    directory that isn't set up (:func:`require_data_dir`), so a typo in ``--data`` creates
    nothing. Idempotent and never overwrites: an existing config, database
    or certificate is left as it is. The config is validated *before* anything is created, so a
    bad config leaves no half-made directory behind.
    """
    data_dir = os.path.abspath(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", data_dir)
    default_path = default_config_path(data_dir)
    write_default = config_file is None and not os.path.exists(default_path)
    if write_default:
        text = render_default_config(hostname)  # validates hostname before anything is created
    else:
        load_config(data_dir, config_file)  # raises before anything is created

    created = []
    # Everything the server writes exists after `init`, so that `chown -R` gives it all to the
    # user twistd drops to (README's recipe); the TLS directory is read only, after the drop.
    for relative in (*WRITTEN_DIRECTORIES, "tls"):
        directory = os.path.join(data_dir, relative) if relative else data_dir
        if not os.path.isdir(directory):
            _safeio.makedirs_durably(directory, 0o700)
            created.append(f"created directory {directory}")
    if write_default:
        _safeio.write_atomic(default_path, text.encode("utf-8"), mode=0o600)
        created.append(f"created config file {default_path} (every setting at its default)")
    config = load_config(data_dir, config_file)

    if not os.path.exists(config.accounts_path):
        accounts = AccountsDB(config.accounts_path)
        try:
            accounts.list_domains()  # creates the file and its schema
        finally:
            accounts.close()
        os.chmod(config.accounts_path, 0o600)  # password hashes; SQLite's -wal/-shm follow it
        created.append(f"created accounts database {config.accounts_path}")

    # Imported here: the commands that only check the directory (``require_data_dir``,
    # ``writable_problem``) would otherwise load OpenSSL and Twisted's TLS for nothing.
    from txmailhost.tls import ensure_self_signed

    default_tls = (config.tls.certificate, config.tls.key) == default_tls_paths(data_dir)
    if default_tls and ensure_self_signed(config.tls.certificate, config.tls.key, config.hostname):
        created.append(
            f"created self-signed certificate {config.tls.certificate} and key "
            f"{config.tls.key} for {config.hostname} (configure a CA-signed one in [tls] "
            "for production)"
        )
    return created


class DataDirError(Exception):
    """The data directory can't be used; the message is the one line to show."""


def require_data_dir(data_dir: str) -> None:
    """Refuse a data directory that ``init`` (or the server) hasn't set up."""
    path = os.path.abspath(data_dir)
    if not os.path.exists(path):
        raise DataDirError(
            f"data directory {path} does not exist; create it with "
            f"'txmailhost --data {data_dir} init'"
        )
    if not os.path.isdir(path):
        raise DataDirError(f"data directory {path} is not a directory")
    if not os.path.exists(os.path.join(path, ACCOUNTS_NAME)):
        raise DataDirError(
            f"{path} is not a txmailhost data directory (no {ACCOUNTS_NAME}); set it up with "
            f"'txmailhost --data {data_dir} init'"
        )


def writable_problem(config: Config) -> str | None:
    """``data directory DIR is not writable (reason)``, or None when the server can write it.

    Tried, not inferred from permission bits: ``os.access`` answers for the real user and
    ignores a read-only mount's subtleties, and root passes every bit check. A probe file is
    created and removed in each directory the server writes, and the accounts database (with
    SQLite's ``-wal`` and ``-shm`` beside it, which even reading needs in WAL mode) is opened
    for writing.
    """
    probe = f".txmailhost-probe-{os.getpid()}"
    for relative in WRITTEN_DIRECTORIES:
        directory = os.path.join(config.data_dir, relative)
        if not os.path.isdir(directory):
            continue  # made on demand, by a user that could make the rest
        path = os.path.join(directory, probe)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(path)
        except OSError as e:
            return _not_writable(config, relative, e)
    for suffix in ("", "-wal", "-shm"):
        path = config.accounts_path + suffix
        try:
            os.close(os.open(path, os.O_RDWR))
        except FileNotFoundError:
            continue
        except OSError as e:
            return _not_writable(config, os.path.basename(path), e)
    return None


def _not_writable(config: Config, what: str, error: OSError) -> str:
    reason = f"{what}: {error.strerror}" if what else error.strerror
    return f"data directory {config.data_dir} is not writable ({reason})"


@contextlib.contextmanager
def acting_as(uid: int | None, gid: int | None) -> Iterator[None]:
    """Create files as ``uid``/``gid`` for a while, when root will drop to them later.

    twistd prepares the service as root and only then switches to ``--uid``/``--gid``. Changing
    just the *effective* ids (the real ones stay root) lets the data directory be prepared and
    checked as the user that will run the server, and switched back so that the listeners can
    still bind ports below 1024 afterwards. Does nothing unless running as root with a user to
    switch to.
    """
    if os.geteuid() != 0 or (uid is None and gid is None):
        yield
        return
    if uid is None:
        uid = 0
    if gid is None:
        gid = pwd.getpwuid(uid).pw_gid
    groups = os.getgroups()
    egid = os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
        os.setgroups(os.getgrouplist(name, gid))
    except KeyError:  # a numeric uid without a passwd entry: its primary group only
        os.setgroups([gid])
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(egid)
        os.setgroups(groups)
