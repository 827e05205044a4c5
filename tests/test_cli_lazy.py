"""The CLI builds only the command group its command word names (cli.COMMAND_GROUPS): what
that leaves out of a run, and that nothing an administrator sees changes."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost import cli

PASSWORD = "a-long-Enough-passw0rd-x"
EVERY_WORD = [word for words, _register in cli.COMMAND_GROUPS for word in words]

# Loaded by none of `domain list`, `user list`, `user add`: TLS, Twisted's endpoints and
# reactor, Sieve delivery (`user vacation` only), the other command groups.
NOT_LOADED = (
    "txmailhost.sieve.setup",
    "txmailhost.delivery",
    "OpenSSL",
    "cryptography",
    "twisted.internet.ssl",
    "twisted.internet.endpoints",
    "twisted.internet.reactor",
    "twisted.internet.tcp",
    "txmailhost.tls",
    "txmailhost.ops.admin",
    "txmailhost.queue.admin",
    "txmailhost.mailauth.cli",
    "txmailhost.spam.cli",
)


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(commands.choices)


@pytest.mark.parametrize(("words", "register"), cli.COMMAND_GROUPS)
def test_each_group_adds_exactly_the_words_the_table_names(words: Any, register: Any) -> None:
    parser = argparse.ArgumentParser(prog=cli.PROG)
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    register(commands)
    assert list(commands.choices) == list(words)


def test_the_whole_parser_holds_every_group_in_the_table_order() -> None:
    assert _choices(cli._parser([])) == EVERY_WORD
    assert len(set(EVERY_WORD)) == len(EVERY_WORD)


def test_a_known_command_builds_its_group_only() -> None:
    assert _choices(cli._parser(["--data", "D", "domain", "list"])) == ["domain"]
    assert _choices(cli._parser(["user", "list", "--data", "D"])) == ["user"]
    assert _choices(cli._parser(["--dat=D", "who"])) == list(cli._OPS_WORDS)


def _outcome(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[Any, str, str]:
    """What parsing ``argv`` gives: the options and the command it runs, or the exit status,
    with what argparse printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = vars(parser.parse_args(argv))
        except SystemExit as e:
            return ("exit", e.code), out.getvalue(), err.getvalue()
    run = args.pop("run")
    cells = [getattr(c.cell_contents, "__qualname__", None) for c in run.__closure__ or ()]
    return (args, run.__qualname__, cells), out.getvalue(), err.getvalue()


TRICKY = [
    ["--data", "D", "domain", "list"],
    ["domain", "list", "--data", "D"],
    ["--data=D", "--config", "C", "user", "add", "a@b", "--admin"],
    ["--dat", "D", "user", "list", "--domain", "x"],
    ["--d=D", "--conf=C", "queue", "list"],
    ["--data", "D", "dom", "list"],
    ["--data", "D", "domain", "frob"],
    ["--data", "D", "user"],
    ["--data", "D", "user", "vacation", "a@b", "--off"],
    ["--data"],
    ["--data", "domain", "list"],
    ["--data", "-x", "domain", "list"],
    ["--data", "-5", "domain", "list"],
    ["--", "domain", "list"],
    ["-", "domain", "list"],
    ["-h"],
    ["--he"],
    ["domain", "--help"],
    ["user", "add", "-h"],
    ["--bogus", "domain", "list"],
    ["domain", "list", "--bogus"],
    [],
    ["", "list"],
    ["check-config", "--config", "C"],
    ["fetch", "a@b", "INBOX", "7"],
]


@pytest.mark.parametrize("argv", TRICKY, ids=" ".join)
def test_argv_parses_as_the_whole_parser_parses_it(argv: list[str]) -> None:
    assert _outcome(cli._parser(argv), argv) == _outcome(cli._parser([]), argv)


TOKENS = st.sampled_from(
    [
        *("--data", "--dat", "--d", "--data=D", "--d=", "--config", "--c=C", "--help", "-h"),
        *("--", "-", "-x", "-5", "--bogus", "D", "", "domain", "user", "dom", "list", "add"),
        *("a@b", "queue", "who", "init", "--hostname", "h", "--domain", "--admin", "alias"),
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(TOKENS, max_size=6))
def test_any_argv_parses_as_the_whole_parser_parses_it(argv: list[str]) -> None:
    assert _outcome(cli._parser(argv), argv) == _outcome(cli._parser([]), argv)


def _in_a_fresh_interpreter(argv: list[str], stdin: str = "") -> tuple[int, str, list[str]]:
    """``cli.main(argv)`` run by a new Python: its status, output and the modules it loaded."""
    code = (
        "import json, sys\n"
        "from txmailhost.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    *err, modules = result.stderr.splitlines()
    assert not err, err
    return result.returncode, result.stdout, json.loads(modules)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    assert cli.main(["--data", str(path), "init"]) == 0
    assert cli.main(["--data", str(path), "domain", "add", "example.org"]) == 0
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--data", "{data}", "domain", "list"], "example.org\n"),
        (["domain", "list", "--data={data}"], "example.org\n"),
        (["--dat", "{data}", "user", "list"], ""),
        (
            ["--data", "{data}", "user", "add", "ann@example.org", "--password-file", "-"],
            "added user ann@example.org (mail in {data}/mail/example.org/ann)\n",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_account_commands_load_no_tls_no_reactor_and_no_other_group(
    data: Path, argv: list[str], expected: str
) -> None:
    status, out, modules = _in_a_fresh_interpreter(
        [arg.format(data=data) for arg in argv], stdin=PASSWORD + "\n"
    )
    assert (status, out) == (0, expected.format(data=data))
    loaded = [m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_LOADED)]
    assert loaded == []


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for word in EVERY_WORD:
        assert f"\n    {word} " in listed or f"\n    {word}\n" in listed, word


def test_a_mistyped_command_is_refused_naming_every_command(data: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "txmailhost.cli", "--data", str(data), "domian", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    choices = ", ".join(repr(word) for word in EVERY_WORD)
    assert result.returncode == 2
    assert result.stderr.endswith(
        f"txmailhost: error: argument COMMAND: invalid choice: 'domian' (choose from {choices})\n"
    )
