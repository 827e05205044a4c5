"""``config show`` and ``status`` in-process, through ``cli.main`` as the shell runs it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from txmailhost.cli import main
from txmailhost.config import load_config
from txmailhost.ops.server_admin import HIDDEN, _listeners, effective


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    data = tmp_path / "data"
    assert run(capsys, "--data", str(data), "init", "--hostname", "mx.example.test")[0] == 0
    return data


def test_config_show_lists_only_what_the_file_changes_and_hides_secrets(data, capsys) -> None:
    (data / "txmailhost.toml").write_text(
        '[server]\nhostname = "mx.example.test"\n[smtp]\nmax_recipients = 50\n'
        '[relay]\nsmarthost_password_file = "/etc/txm/relay.pw"\n'
        '[filters.settings.rspamd]\npassword = "hunter2"\napi_key = "k"\nurl = "http://r"\n'
    )
    status, out, _err = run(capsys, "--data", str(data), "config", "show")
    assert status == 0
    lines = out.splitlines()[1:]
    assert lines == [
        'server.hostname = "mx.example.test"',
        "smtp.max_recipients = 50",
        'relay.smarthost_password_file = "/etc/txm/relay.pw"',
        'filters.settings = {"rspamd": {"password": "********", "api_key": "********",'
        ' "url": "http://r"}}',
    ]
    assert "hunter2" not in out


def test_config_show_all_has_every_key_as_json(data, capsys) -> None:
    status, out, _err = run(capsys, "--data", str(data), "config", "show", "--all", "--json")
    shown = json.loads(out)
    assert status == 0
    assert shown["listen"]["metrics"] == "tcp:29100:interface=127.0.0.1"
    assert shown["tls"]["certificate"] == str(data / "tls" / "cert.pem")
    assert set(shown) >= {"server", "listen", "smtp", "imap", "queue", "relay", "filters"}


def test_effective_config_of_an_empty_file_is_empty(data) -> None:
    assert effective(load_config(str(data)), everything=False) == {
        "server": {"hostname": "mx.example.test"}
    }
    assert HIDDEN not in json.dumps(effective(load_config(str(data)), everything=True))


def test_status_probes_each_listener_it_can(data, capsys) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            free = closed.getsockname()[1]
        (data / "txmailhost.toml").write_text(
            f'[listen]\nsmtp = "tcp:{port}:interface=127.0.0.1"\nimap = "tcp:{free}"\n'
            'pop3 = ""\npop3s = "tcp:0"\n'
        )
        rows = {r["listener"]: r["state"] for r in _listeners(load_config(str(data)))}
    assert rows["smtp"] == "listening"
    assert rows["imap"] == "not listening"
    assert rows["pop3"] == "off"
    assert rows["pop3s"] == "unknown"
    status, out, _err = run(capsys, "--data", str(data), "status")
    assert status == 0
    assert "queue: 0 message(s)" in out and "accounts: 0 domain(s), 0 user(s)" in out


def test_auth_test_of_a_user_with_no_account_fails(data, capsys, monkeypatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    status, out, _err = run(capsys, "--data", str(data), "auth", "test", "x@example.test")
    assert status == 1
    assert out == "auth failed for x@example.test: no such user\n"


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://mail:hunter2@db.example/mail", "postgresql://mail:********@db.example/mail"),
        (
            "host=db user=mail password='hunter2 x' dbname=mail",
            "host=db user=mail password=******** dbname=mail",
        ),
        (
            "postgresql://db/mail?user=mail&password=hunter2&sslmode=require",
            "postgresql://db/mail?user=mail&password=********&sslmode=require",
        ),
    ],
)
def test_config_show_hides_the_password_of_the_store_dsn(data, capsys, dsn, shown) -> None:
    """``store.dsn`` is not named like a secret, and was printed whole, password and all."""
    (data / "txmailhost.toml").write_text(
        f'[server]\nhostname = "mx.example.test"\n[store]\ndsn = "{dsn}"\n'
    )
    status, out, _err = run(capsys, "--data", str(data), "config", "show")
    assert status == 0
    assert out.splitlines()[2] == f'store.dsn = "{shown}"'
    assert "hunter2" not in out
