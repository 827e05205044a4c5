"""The ``txmailhost`` admin command: set up a data directory, manage domains and users.

It uses the same code as the server (``config``, ``accounts.db``, ``store.backends``), so what it
writes is exactly what the server reads (DESIGN invariant 5: a user added here can log in at
once, without a restart). It works whether or not the server is running: the accounts database
is SQLite in WAL mode, and Maildir provisioning is safe against concurrent deliveries.

Only ``init`` creates a data directory; every other command refuses one that ``init`` (or the
server) hasn't set up, so a typo in ``--data`` is an error, not a fresh empty server. Commands
that open the accounts database or the queue first check the directory is writable (SQLite in
WAL mode needs that even to read). ``--data`` and ``--config`` may come before or after the
command (``txmailhost domain list --data DIR``). ``check-config`` only reads, and says "ok"
only for what the server would start with. Failures the administrator can fix (a bad
address, an unknown domain, a config problem, an unreadable file) end as one ``txmailhost:
error: ...`` line on stderr and exit status 1, never a traceback; usage errors exit 2
(argparse's rule).
Output meant for scripts (``domain list``, ``user list``) is one item per line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from txmailhost import dataformat
from txmailhost.accounts.addresses import canonical_address, canonical_domain
from txmailhost.accounts.admin import (
    register_alias,
    register_domain_actions,
    register_user_actions,
)
from txmailhost.accounts.backends import open_accounts
from txmailhost.accounts.interfaces import AccountError, IAccounts
from txmailhost.config import (
    Config,
    ConfigError,
    default_tls_paths,
    load_config,
)
from txmailhost.datadir import DataDirError, ensure_data_dir, require_data_dir, writable_problem

PROG = "txmailhost"


class CommandError(Exception):
    """A failure to report as one line, for problems found by the CLI itself."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one admin command; returns the exit status (0 ok, 1 failed, 2 usage error)."""
    parser = _parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): argparse already printed it
        return e.code if isinstance(e.code, int) else 0
    try:
        return args.run(args)
    except ConfigError as e:
        for problem in e.problems:
            _error(problem)
        return 1
    except (AccountError, CommandError, DataDirError, ValueError) as e:
        _error(str(e))
        return 1
    except OSError as e:
        _error(f"{e.filename}: {e.strerror}" if e.filename else str(e))
        return 1
    except sqlite3.Error as e:  # e.g. "database is locked" after the 30 s busy timeout
        # A mailbox index names its file in the error's notes (store/index.py); else the
        # file is found from where the error came (``_database_of``).
        notes = getattr(e, "__notes__", None)
        _error(f"{notes[0] if notes else _database_of(e)}: {e}")
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as e:  # a bug, but an administrator still gets one line, not a traceback
        _error(f"unexpected {type(e).__name__}: {e}")
        return 1


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _database_of(error: sqlite3.Error) -> str:
    """The file a SQLite error came from, for its one line: the accounts database, a
    mailbox's index, a filter's state... An error carries no file name, but the frames it
    passed through hold the connection (or the accounts backend) that raised it; the
    innermost one that does names it."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            found = _database_file(value)
            if found:
                return found
    return "SQLite database"


def _database_file(value: object) -> str | None:
    from txmailhost.accounts.db import AccountsDB, AddressRules

    if isinstance(value, AddressRules):
        value = value.accounts
    if isinstance(value, AccountsDB):
        return value.path
    if isinstance(value, sqlite3.Cursor):
        value = value.connection
    if not isinstance(value, sqlite3.Connection):
        return None
    try:  # answered from the connection itself, without a lock or a read of the file
        rows = value.execute("PRAGMA database_list").fetchall()
    except sqlite3.Error:
        return None
    return next((row[2] for row in rows if row[1] == "main" and row[2]), None)


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: only the command group its command word names, or every
    group when that word isn't known yet (no command, ``--help``, a typo), so that the help
    and argparse's "invalid choice" list every command.

    Registering a group imports its modules, and some pull in OpenSSL and Twisted's reactor;
    ``domain list`` needs none of them, and administrators run it (and ``user add``) in loops.
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="Administer a txmailhost mail server: domains, users, setup."
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default="txmailhost-data",
        help="data directory: config, accounts, mail, queue, TLS (default: ./txmailhost-data)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="config file (default: DATA/txmailhost.toml)",
    )
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    word = _command_word(sys.argv[1:] if argv is None else argv)
    for words, register in COMMAND_GROUPS:
        if word is None or word in words:
            register(commands)
    _accept_global_options_anywhere(parser)
    return parser


# Options the top-level parser takes a value for; argparse also takes any unambiguous prefix
# of them (``--dat DIR``), and ``--data=DIR``.
_VALUE_OPTIONS = ("--data", "--config")
_TOP_OPTIONS = ("--help", *_VALUE_OPTIONS)


def _command_word(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when one of ``COMMAND_GROUPS`` adds it; else None.

    Reads the arguments as the top-level parser will: ``--data``/``--config`` and their
    values (or their abbreviations) come before the command. Anything else there, ``-h``,
    ``--`` or an option argparse would refuse, is left to the whole parser, which says what
    it says today.
    """
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            return arg if arg in _GROUP_OF else None
        name, equals, _value = arg.partition("=")
        matches = [option for option in _TOP_OPTIONS if option.startswith(name)]
        if name == "--" or len(matches) != 1 or matches[0] not in _VALUE_OPTIONS:
            return None
        if not equals:
            value = next(args, None)
            if value is None or value.startswith("-"):
                return None  # argparse's own error (or its reading of a negative number)
    return None


def _register_setup(commands: Any) -> None:
    init = commands.add_parser(
        "init", help="create the data directory, config file, database and certificate"
    )
    init.add_argument(
        "--hostname", help="server.hostname to write into a new config file (default: this host)"
    )
    init.set_defaults(run=_init)

    check = commands.add_parser("check-config", help="validate the config file and certificate")
    check.set_defaults(run=_check_config)

    reload_tls = commands.add_parser(
        "reload-tls",
        help="check the configured certificate and have the running server load it "
        "(within 5 s; SIGHUP does the same)",
    )
    reload_tls.set_defaults(run=_reload_tls)


def _register_domain(commands: Any) -> None:
    domain = commands.add_parser("domain", help="manage the domains this server receives mail for")
    domain_commands = domain.add_subparsers(metavar="ACTION", required=True)
    add = domain_commands.add_parser("add", help="start serving a domain")
    add.add_argument("domain")
    add.add_argument(
        "--alias-of", metavar="DOMAIN", help="mail for user@DOMAIN... goes to the same user there"
    )
    add.set_defaults(run=_with_accounts(_domain_add))
    listing = domain_commands.add_parser("list", help="list the domains, one per line")
    listing.set_defaults(run=_with_accounts(_domain_list))
    delete = domain_commands.add_parser("del", help="stop serving a domain")
    delete.add_argument("domain")
    delete.add_argument(
        "--force", action="store_true", help="also delete the accounts of the domain's users"
    )
    delete.add_argument(
        "--purge", action="store_true", help="also delete those users' mail (with --force)"
    )
    delete.set_defaults(run=_with_accounts(_domain_del))
    register_domain_actions(domain_commands, _with_accounts)


def _register_alias(commands: Any) -> None:
    register_alias(commands, _with_accounts, _router_for)


def _register_queue(commands: Any) -> None:
    from txmailhost.queue.admin import register as register_queue_commands

    register_queue_commands(commands, _with_config)


def _register_mailauth(commands: Any) -> None:
    from txmailhost.mailauth.cli import register as register_mailauth_commands

    register_mailauth_commands(commands, _with_config)


def _register_db(commands: Any) -> None:
    from txmailhost.store.dbadmin import register as register_db_commands

    register_db_commands(commands, _with_config)


def _register_ops(commands: Any) -> None:
    from txmailhost.ops.admin import register as register_ops_commands

    register_ops_commands(commands, _with_config, _with_accounts, _password_option, _read_password)


def _register_spam(commands: Any) -> None:
    from txmailhost.spam.cli import register as register_spam_commands

    register_spam_commands(commands, _with_config)


def _register_srs(commands: Any) -> None:
    from txmailhost.srs_cli import register as register_srs_commands

    register_srs_commands(commands, _with_config)


def _register_user(commands: Any) -> None:
    from txmailhost.sieve.admin import register as register_vacation

    user = commands.add_parser("user", help="manage user accounts (user@domain)")
    user_commands = user.add_subparsers(metavar="ACTION", required=True)
    add = user_commands.add_parser("add", help="create an account and its mailbox")
    add.add_argument("address")
    _password_option(add)
    add.add_argument("--admin", action="store_true", help="may use the webmail's admin console")
    add.set_defaults(run=_with_accounts(_user_add))
    admin = user_commands.add_parser("admin", help="grant or withdraw the admin console")
    admin.add_argument("address")
    admin.add_argument("state", choices=("on", "off"))
    admin.set_defaults(run=_with_accounts(_user_admin))
    listing = user_commands.add_parser("list", help="list the users, one per line")
    listing.add_argument("--domain", help="only the users of this domain")
    listing.set_defaults(run=_with_accounts(_user_list))
    passwd = user_commands.add_parser("passwd", help="set a user's password")
    passwd.add_argument("address")
    _password_option(passwd)
    passwd.set_defaults(run=_with_accounts(_user_passwd))
    delete = user_commands.add_parser("del", help="delete an account (its mail stays on disk)")
    delete.add_argument("address")
    delete.add_argument("--purge", action="store_true", help="also delete the user's mail")
    delete.set_defaults(run=_with_accounts(_user_del))
    register_user_actions(user_commands, _with_accounts, _router_for)
    register_vacation(user_commands, _with_accounts)


_OPS_WORDS = (
    "mailbox", "search", "fetch", "expunge", "flags", "quota", "index", "acl", "export",
    "import", "log", "migrate", "who", "kick", "auth", "config", "status",
)  # fmt: skip
# Each group's top-level command words, in the order ``--help`` lists them, beside what adds
# them. Written out so that a command is found without importing every group's modules;
# tests/test_cli_lazy.py checks each group adds exactly these words, so a command added to a
# group's ``register`` without its word here fails there, not silently at the prompt.
COMMAND_GROUPS: tuple[tuple[tuple[str, ...], Callable[[Any], None]], ...] = (
    (("init", "check-config", "reload-tls"), _register_setup),
    (("domain",), _register_domain),
    (("alias",), _register_alias),
    (("queue",), _register_queue),
    (("dkim", "dmarc", "dns"), _register_mailauth),
    (("db",), _register_db),
    (_OPS_WORDS, _register_ops),
    (("spam",), _register_spam),
    (("srs",), _register_srs),
    (("user",), _register_user),
)
_GROUP_OF = {word: register for words, register in COMMAND_GROUPS for word in words}


def _accept_global_options_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``--data`` and ``--config`` follow the command too, as people type them.

    argparse only knows an option at the level it was declared; each subcommand gets a copy
    whose default is "not given", so a value given after the command replaces the global one
    and an absent one leaves it alone.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):  # a set: aliases share a parser
                subparser.add_argument(
                    "--data", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS
                )
                subparser.add_argument(
                    "--config", metavar="FILE", default=argparse.SUPPRESS, help=argparse.SUPPRESS
                )
                _accept_global_options_anywhere(subparser)


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from the first line of FILE ('-' for stdin); "
        "default: prompt on a terminal, else read the first line of stdin",
    )


# -- setup commands -------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    if os.path.isdir(args.data):
        dataformat.check(args.data)
    created = ensure_data_dir(args.data, args.config, hostname=args.hostname)
    created += dataformat.upgrade(args.data)
    for line in created:
        print(line)
    config = load_config(args.data, args.config)
    if not created:
        print(f"nothing to do: {config.data_dir} is already set up")
    if args.hostname is not None and args.hostname.rstrip(".").lower() != config.hostname:
        print(
            f"note: {config.config_file} already sets hostname {config.hostname!r}; "
            "edit it there to change it",
            file=sys.stderr,
        )
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """Check what the server checks at start, without creating or starting anything: the
    data directory, the config keys, the certificate files, the filter chain, the secret
    files, the CA files and the DKIM keys signing uses (``service.start_problems``); every
    problem found, one line each."""
    from txmailhost import fdlimit
    from txmailhost.service import start_problems

    problems = []
    try:
        require_data_dir(args.data)  # the server would start a fresh, empty one there
        dataformat.check(args.data)
    except (DataDirError, dataformat.DataFormatError) as e:
        problems.append(str(e))
    config: Config | None = None
    try:
        config = load_config(args.data, args.config)
    except ConfigError as e:
        problems += e.problems
    else:
        problems += _tls_problems(config) + start_problems(config)
    for problem in problems:
        _error(problem)
    if problems or config is None:
        return 1
    notes = [fdlimit.preview(config), *_idle_filter_settings(config)]
    for note in notes:
        if note is not None:
            print(f"{PROG}: note: {note}", file=sys.stderr)
    _warn_of_expiry(config)
    suffix = "" if os.path.exists(config.config_file) else " (file absent: all defaults)"
    print(f"ok: {config.config_file}{suffix}")
    return 0


def _idle_filter_settings(config: Config) -> list[str]:
    """Settings of a filter left out of the chain are allowed (switched off for a while),
    but said, in case it was left out by mistake."""
    chain = config.filters.chain
    return [
        f"filters.settings.{name}: {name!r} is not in filters.chain; these settings do"
        " nothing until it is"
        for name in config.filters.settings
        if name not in chain
    ]


def _reload_tls(args: argparse.Namespace) -> int:
    """Validate the pair, then leave the request the server's TLSReloadService looks for."""
    from txmailhost._safeio import makedirs_durably, write_atomic

    require_data_dir(args.data)  # the request would go unseen in a new directory
    config = load_config(args.data, args.config)
    problems = _tls_problems(config)
    if problems:
        for problem in problems:
            _error(problem)
        return 1
    _warn_of_expiry(config)
    run_dir = os.path.join(config.data_dir, "run")
    makedirs_durably(run_dir)
    write_atomic(os.path.join(run_dir, "reload-tls"), b"")
    print(f"ok: the running server will load {config.tls.certificate} within 5 seconds")
    return 0


def _warn_of_expiry(config: Config) -> None:
    """An expired or expiring certificate is a warning, not a failure: the server starts
    with it (and says so too), and ACME or certbot may be about to renew it. So is a
    ``[tls] sni`` certificate that isn't for its name: clients that don't check take it;
    and a name ACME gets the certificate for that an sni entry serves instead."""
    from txmailhost.tls import acme_sni_warnings, expiry_warning, sni_warnings

    if config.tls.acme:
        names = config.tls.acme_domains or (config.hostname,)
        for warning in acme_sni_warnings(names, config.tls.sni):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if os.path.exists(config.tls.certificate):
        warning = expiry_warning(config.tls.certificate)
        if warning is not None:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for name, (cert, _key) in config.tls.sni.items():
        for warning in sni_warnings(name, cert):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)


def _tls_problems(config: Config) -> list[str]:
    from txmailhost.tls import load_certificate_options, load_sni_options, sni_label

    problems = []
    cert, key = config.tls.certificate, config.tls.key
    present = [p for p in (cert, key) if os.path.exists(p)]
    if not present and (cert, key) == default_tls_paths(config.data_dir):
        pass  # made on first start
    elif len(present) < 2:
        missing = [p for p in (cert, key) if p not in present]
        problems += [f"{p}: file not found ([tls] in {config.config_file})" for p in missing]
    else:
        try:
            load_certificate_options(cert, key)
        except ValueError as e:
            problems.append(str(e))
    for name, (cert, key) in config.tls.sni.items():
        missing = [p for p in (cert, key) if not os.path.exists(p)]
        problems += [f"{sni_label(name)}: {p}: file not found" for p in missing]
        if not missing:
            try:
                load_sni_options(name, cert, key)
            except ValueError as e:
                problems.append(str(e))
    return problems


# -- account commands -----------------------------------------------------------------------


def _with_accounts(
    command: Callable[[argparse.Namespace, Config, IAccounts], int],
) -> Callable[[argparse.Namespace], int]:
    """Check the data directory, then run ``command`` with the config and accounts DB."""

    def run(args: argparse.Namespace) -> int:
        config = _prepared_config(args)
        accounts = open_accounts(config)
        try:
            return command(args, config, accounts)
        finally:
            accounts.close()

    return run


def _with_config(
    command: Callable[[argparse.Namespace, Config], int],
) -> Callable[[argparse.Namespace], int]:
    """Check the data directory, then run ``command`` with the config (queue commands)."""

    def run(args: argparse.Namespace) -> int:
        return command(args, _prepared_config(args))

    return run


def _prepared_config(args: argparse.Namespace) -> Config:
    """The config of a data directory that is set up and writable; else one line, exit 1."""
    require_data_dir(args.data)
    dataformat.check(args.data)  # never write into a newer release's files
    config = load_config(args.data, args.config)
    problem = writable_problem(config)
    if problem:
        raise CommandError(problem)
    return config


def _router_for(config: Config, accounts: IAccounts) -> Any:
    """``routing.blocking_router``, imported when a command needs it (start-up stays light)."""
    from txmailhost.routing import blocking_router

    return blocking_router(config, accounts)


def _mail_store(config: Config) -> Any:
    """The ``IMailStore`` that ``[store] backend`` names, doing its work inline: no reactor
    runs here, so each Deferred has fired when the call returns (read with ``_now``). The
    memory store lives in the server's process, out of reach: provisioning is a no-op there
    (it creates mailboxes on first use) and so is purging."""
    from txmailhost.store import backends, s3blobs

    return backends.build(
        config.store.backend,
        config.mail_root,
        dsn=config.store.dsn,
        blobs=s3blobs.from_config(config.store),
    )


def _now(d: Any) -> Any:
    """The result of a Deferred that has already fired; raises its failure."""
    from twisted.python.failure import Failure

    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise CommandError("the mail store did not finish its work")
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def _domain_add(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    name = accounts.add_domain(args.domain, alias_of=args.alias_of)
    suffix = f" (an alias of {accounts.domain_alias_of(name)})" if args.alias_of else ""
    print(f"added domain {name}{suffix}")
    return 0


def _domain_list(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    for name, alias_of, _quota in accounts.domain_table():
        print(f"{name} (alias of {alias_of})" if alias_of else name)
    return 0


def _domain_del(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    name = canonical_domain(args.domain)
    removed = accounts.remove_domain(name, force=args.force)
    if not removed:
        print(f"removed domain {name}")
        return 0
    ended = _end_sessions(config, removed)
    if args.purge:
        store = _mail_store(config)
        for address in removed:
            _now(store.remove_user(address))
            _forget_user(config, address)
        # Absent, or holding mail of addresses that weren't accounts: then leave it.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(config.mail_root, name))
        fate = "their mail was deleted"
    else:
        fate = f"their mail stays in {os.path.join(config.mail_root, name)}"
    print(f"removed domain {name} and its {len(removed)} user(s) ({fate}){ended}")
    return 0


def _user_add(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    address = canonical_address(args.address)
    domain = address.split("@", 1)[1]
    # Checked before asking for a password, so a typo doesn't cost a prompt; add_user checks
    # again inside the database.
    if not accounts.has_domain(domain):
        raise AccountError(f"domain {domain} is not served here; add it with 'domain add {domain}'")
    if accounts.has_user(address):
        raise AccountError(f"user {address} already exists")
    password = _read_password(args.password_file)
    accounts.add_user(address, password)
    store = _mail_store(config)
    try:
        _now(store.provision(address))
    except BaseException:
        accounts.remove_user(address)  # no account without a mailbox
        raise
    admin = getattr(args, "admin", False)
    if admin:
        accounts.set_admin(address, True)
    print(f"added user {address}{' (admin)' if admin else ''} (mail in {store.location(address)})")
    return 0


def _user_list(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    for address in accounts.list_users(args.domain):
        print(address)
    return 0


def _user_passwd(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    address = canonical_address(args.address)
    if not accounts.has_user(address):
        raise AccountError(f"no such user: {address}")
    accounts.set_password(address, _read_password(args.password_file))
    from txmailhost.ops.control import log_out_web

    try:  # browsers logged in with the old password are logged out, as the webmail does
        ended = log_out_web(config, address)
    except ConnectionError as e:
        print(f"{PROG}: note: webmail sessions were not ended: {e}", file=sys.stderr)
        ended = 0
    note = f"; ended {ended} webmail session(s)" if ended else ""
    print(f"changed the password of {address}{note}")
    return 0


def _user_admin(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    address = accounts.set_admin(args.address, args.state == "on")
    print(f"{address}: admin {args.state}")
    return 0


def _user_del(args: argparse.Namespace, config: Config, accounts: IAccounts) -> int:
    address = accounts.remove_user(args.address)
    ended = _end_sessions(config, [address])
    store = _mail_store(config)
    mail = store.location(address)
    if args.purge:
        # The account goes first so nothing new is delivered into a directory being removed.
        try:
            _now(store.remove_user(address))
            _forget_user(config, address)
        except OSError as e:
            raise CommandError(
                f"removed user {address} but could not delete its mail in {mail}: {e.strerror}"
            ) from None
        print(f"removed user {address} and deleted its mail{ended}")
    else:
        print(f"removed user {address} (mail kept in {mail}){ended}")
    return 0


def _forget_user(config: Config, address: str) -> None:
    """What else is kept for a purged user: their Sieve scripts (with the vacation and
    failure memories) and their own spam training, threshold and sender lists. An account
    made later under the same address would otherwise run the old one's rules (an active
    redirect sending the new user's mail on) and be judged by the old one's training."""
    from txmailhost.sieve.setup import script_store
    from txmailhost.spam.bayes import TokenStore
    from txmailhost.spam.scoring import owner_of, store_path

    script_store(config).remove_user(address)
    path = store_path(config.data_dir)
    if os.path.exists(path):  # none made on a server that never scored
        store = TokenStore(path)
        try:
            store.forget_owner(owner_of(address))
        finally:
            store.close()


def _end_sessions(config: Config, removed: Sequence[str]) -> str:
    """End the removed users' sessions on the running server, as ``kick`` does, before
    their mail goes: a POP3 or IMAP session would otherwise go on serving an account that
    no longer exists. Nothing to do when no server runs. What to add to the report."""
    from txmailhost.ops.control import end_sessions

    try:
        ended = end_sessions(config, removed)
    except ConnectionError as e:
        print(f"{PROG}: note: open sessions were not ended: {e}", file=sys.stderr)
        return ""
    return f"; ended {ended} open session(s)" if ended else ""


# -- passwords ------------------------------------------------------------------------------


def _read_password(password_file: str | None) -> str:
    """The new password, from ``--password-file``, a terminal prompt, or stdin's first line.

    Passing passwords as arguments is not offered: they would show in ``ps`` and shell history.
    """
    if password_file == "-":
        return _first_line(sys.stdin.readline(), "standard input")
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                line = f.readline()
        except OSError as e:
            raise CommandError(f"{password_file}: cannot read the password: {e.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{password_file}: the password is not UTF-8 text") from None
        return _first_line(line, password_file)
    if sys.stdin.isatty():
        try:
            first = getpass.getpass("New password: ")
            second = getpass.getpass("Repeat it: ")
        except EOFError:
            raise CommandError("no password given") from None
        if first != second:
            raise CommandError("the passwords don't match")
        return first
    return _first_line(sys.stdin.readline(), "standard input")


def _first_line(line: str, source: str) -> str:
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError(f"no password in {source} (expected it on the first line)")
    return password


if __name__ == "__main__":
    sys.exit(main())
