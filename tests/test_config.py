"""txmailhost.config: defaults, a full file, the rendered default file, and every bad config.

Bad configs are fixtures: ``tests/fixtures/bad_configs/NAME.toml`` must fail with exactly the
problems listed one per line in ``NAME.expected``, where ``{file}`` stands for the absolute
path of the ``.toml`` file. Add a case by adding the two files.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from txmailhost.cli import main as cli_main
from txmailhost.config import (
    Config,
    ConfigError,
    IMAPConfig,
    ListenConfig,
    POP3Config,
    SMTPConfig,
    StoreConfig,
    load_config,
    render_default_config,
)
from txmailhost.datadir import ensure_data_dir
from txmailhost.tls import ensure_self_signed, load_certificate_options

BAD_CONFIGS = Path(__file__).parent / "fixtures" / "bad_configs"


def sections(config: Config) -> dict[str, object]:
    """Everything but the paths, to compare configs loaded from different places."""
    fields = dataclasses.asdict(config)
    for path in ("data_dir", "config_file", "tls"):
        fields.pop(path)
    return fields


def test_no_config_file_means_every_default(tmp_path: Path) -> None:
    config = load_config(str(tmp_path))

    assert config.data_dir == str(tmp_path)
    assert config.config_file == str(tmp_path / "txmailhost.toml")
    assert config.listen == ListenConfig()
    assert config.listen.smtp == "tcp:2525:interface=127.0.0.1"
    assert config.listen.pop3s == "tcp:2995:interface=127.0.0.1"
    assert config.smtp == SMTPConfig()
    assert config.smtp.max_message_size == 50 * 1024 * 1024
    assert config.pop3 == POP3Config() and config.imap == IMAPConfig()
    assert config.store == StoreConfig(threads=8)
    assert config.tls.certificate == str(tmp_path / "tls" / "cert.pem")
    assert config.tls.key == str(tmp_path / "tls" / "key.pem")
    assert config.accounts_path == str(tmp_path / "accounts.sqlite")
    assert config.mail_root == str(tmp_path / "mail")
    assert config.queue_dir == str(tmp_path / "queue")
    assert config.tls_dir == str(tmp_path / "tls")
    assert config.hostname


def test_relative_data_dir_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config("data").data_dir == str(tmp_path / "data")


def test_full_config_file_sets_every_key(tmp_path: Path) -> None:
    path = tmp_path / "mail.toml"
    path.write_text(
        """
[server]
hostname = "Mail.Example.ORG."

[listen]
smtp = "tcp:25:interface=0.0.0.0"
submission = 'tcp6:587:interface=\\:\\:'
submissions = "tcp:465"
imap = ""
imaps = "tcp:993"
pop3 = ""
pop3s = "unix:/run/txmailhost/pop3s.sock"

[tls]
certificate = "certs/fullchain.pem"
key = "/etc/ssl/private/mail.key"

[smtp]
max_message_size = 10_485_760
max_recipients = 50
max_line_length = 1000
idle_timeout = 60
session_timeout = 600.5
max_errors = 5

[pop3]
idle_timeout = 700

[imap]
idle_timeout = 1900
max_literal_size = 20971520

[store]
backend = "memory"
threads = 2
"""
    )
    config = load_config(str(tmp_path / "data"), str(path))

    assert config.config_file == str(path)
    assert config.hostname == "mail.example.org"
    assert config.listen == ListenConfig(
        smtp="tcp:25:interface=0.0.0.0",
        submission="tcp6:587:interface=\\:\\:",
        submissions="tcp:465",
        imap="",
        imaps="tcp:993",
        pop3="",
        pop3s="unix:/run/txmailhost/pop3s.sock",
    )
    # A relative path is relative to the data directory.
    assert config.tls.certificate == str(tmp_path / "data" / "certs" / "fullchain.pem")
    assert config.tls.key == "/etc/ssl/private/mail.key"
    assert config.smtp == SMTPConfig(
        max_message_size=10485760,
        max_recipients=50,
        max_line_length=1000,
        idle_timeout=60.0,
        session_timeout=600.5,
        max_errors=5,
    )
    assert config.pop3.idle_timeout == 700.0
    assert config.imap == IMAPConfig(idle_timeout=1900.0, max_literal_size=20971520)
    assert config.store.threads == 2
    assert config.store.backend == "memory"


def test_store_backend_choices_are_the_registered_backends() -> None:
    from txmailhost.store import backends

    (backend,) = [f for f in dataclasses.fields(StoreConfig) if f.name == "backend"]
    for name in backends.BACKENDS:  # every backend the server can build can be named
        assert backend.metadata["check"](name) == name


def test_secret_and_ca_files_are_relative_to_the_data_directory(tmp_path: Path) -> None:
    """As tls.certificate and tls.acme_ca_file are: they were taken from the working directory
    of whoever started the server."""
    path = tmp_path / "mail.toml"
    path.write_text(
        '[relay]\ntls_ca_file = "ca/bundle.pem"\nsmarthost_password_file = "~/pw"\n'
        '[store]\ns3_secret_key_file = "/etc/txm/s3"\n'
    )
    config = load_config(str(tmp_path / "data"), str(path))
    assert config.relay.tls_ca_file == str(tmp_path / "data" / "ca" / "bundle.pem")
    assert config.relay.smarthost_password_file == os.path.expanduser("~/pw")
    assert config.store.s3_secret_key_file == "/etc/txm/s3"
    assert load_config(str(tmp_path / "empty")).relay.tls_ca_file == ""


def test_rendered_default_config_loads_as_the_defaults(tmp_path: Path) -> None:
    ensure_data_dir(str(tmp_path / "data"))  # writes the rendered file
    written = load_config(str(tmp_path / "data"))
    assert os.path.exists(written.config_file)
    assert sections(written) == sections(load_config(str(tmp_path / "empty")))


def test_rendered_default_config_values_are_the_defaults_when_uncommented(
    tmp_path: Path,
) -> None:
    """Every key is in the file, and its commented value is valid TOML equal to the default."""
    text = render_default_config()
    lines = []
    for line in text.splitlines():
        if line.startswith("# ") and " = " in line and line[2:].split(" = ")[0].isidentifier():
            line = line[2:]
        lines.append(line)
    uncommented = tmp_path / "uncommented.toml"
    uncommented.write_text("\n".join(lines))

    config = load_config(str(tmp_path), str(uncommented))
    assert sections(config) == sections(load_config(str(tmp_path)))
    for section in ("listen", "smtp", "pop3", "imap", "store", "tls"):
        for field in dataclasses.fields(getattr(config, section)):
            assert f"\n{field.name} = " in "\n".join(lines), f"{section}.{field.name} missing"


def test_rendered_default_config_documents_each_key() -> None:
    text = render_default_config()
    assert "# max_message_size = 52428800" in text
    assert "RFC 1870" in text  # the doc paragraph written above the key
    assert "[smtp]" in text.splitlines()


def test_rendered_config_with_hostname_sets_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(render_default_config(hostname="mx1.example.net"))
    assert load_config(str(tmp_path), str(path)).hostname == "mx1.example.net"


def test_explicit_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(tmp_path / "nope.toml"))
    assert raised.value.problems == [f"{tmp_path / 'nope.toml'}: config file not found"]


@pytest.mark.parametrize("name", sorted(p.stem for p in BAD_CONFIGS.glob("*.toml")))
def test_bad_config_fixture_fails_with_its_expected_problems(name: str, tmp_path: Path) -> None:
    path = BAD_CONFIGS / f"{name}.toml"
    expected = (BAD_CONFIGS / f"{name}.expected").read_text().strip().splitlines()
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    assert raised.value.problems == [line.format(file=path) for line in expected]


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[server]\nhostname = "a.example"\n[smtp\n')
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    (problem,) = raised.value.problems
    assert problem.startswith(f"{path}: line 3, column 6: invalid TOML: ")


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[pop3]\nidle_timeuot = 60\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    assert raised.value.problems == [
        f"{path}: pop3.idle_timeuot: unknown key (did you mean pop3.idle_timeout?)"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text('[smtp]\nmax_recipients = "x"\nmax_errors = -2\n[store]\nthreads = 0\n')
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    keys = [problem.split(": ")[1] for problem in raised.value.problems]
    assert keys == ["smtp.max_recipients", "smtp.max_errors", "store.threads"]
    assert str(raised.value).count("\n") == 2  # one line per problem


def test_systemd_socket_activation_is_accepted_without_its_environment(tmp_path: Path) -> None:
    path = tmp_path / "systemd.toml"
    path.write_text('[listen]\nsmtp = "systemd:domain=INET:index=0"\n')
    assert load_config(str(tmp_path), str(path)).listen.smtp == "systemd:domain=INET:index=0"


def test_self_signed_certificate_is_made_for_a_key_left_alone(tmp_path: Path) -> None:
    """A crash between writing the key and the certificate is repaired, keeping the key."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    ensure_self_signed(cert, key, "localhost")
    key_pem = Path(key).read_bytes()
    os.unlink(cert)

    assert ensure_self_signed(cert, key, "localhost") is True
    assert Path(key).read_bytes() == key_pem
    load_certificate_options(cert, key)


def test_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    ensure_self_signed(cert, key, "localhost")
    os.unlink(key)
    with pytest.raises(ValueError, match="key.pem: missing"):
        ensure_self_signed(cert, key, "localhost")
    with pytest.raises(ValueError, match="key.pem: cannot read the private key"):
        load_certificate_options(cert, key)


def test_listeners_may_share_a_port_on_different_addresses(tmp_path: Path) -> None:
    path = tmp_path / "dual.toml"
    path.write_text(
        "[listen]\n"
        'smtp = "tcp:2525:interface=127.0.0.1"\n'
        "submission = 'tcp6:2525:interface=\\:\\:1'\n"
        'imap = "tcp:2525:interface=127.0.0.2"\n'
    )
    assert load_config(str(tmp_path), str(path)).listen.imap == "tcp:2525:interface=127.0.0.2"


# -- [queue] and [relay] (the relay queue) ------------------------------------------------------


def test_queue_and_relay_defaults_are_postfix_like(tmp_path: Path) -> None:
    config = load_config(str(tmp_path))
    assert (config.queue.retry_min, config.queue.retry_max) == (300.0, 4000.0)
    assert config.queue.max_lifetime == 5 * 86400
    assert config.queue.delay_warning == 4 * 3600
    assert (config.queue.max_connections, config.queue.max_per_domain) == (100, 20)
    assert config.relay.nameservers == () and config.relay.port == 25
    assert config.relay.tls == "opportunistic" and config.relay.tls_domains == {}


def test_relay_settings_are_read_and_domains_canonicalised(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        "[queue]\nretry_min = 60\ndelay_warning = 0\n\n"
        '[relay]\nnameservers = ["127.0.0.1:5353", "::1"]\ntls = "required"\n'
        'tls_domains = { "Bank.Example." = "verify" }\n'
    )
    config = load_config(str(tmp_path), str(path))
    assert config.queue.retry_min == 60.0 and config.queue.delay_warning == 0.0
    assert config.relay.nameservers == ("127.0.0.1:5353", "::1")
    assert config.relay.tls == "required"
    assert config.relay.tls_domains == {"bank.example": "verify"}


def test_bad_relay_settings_are_each_reported_with_their_key(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        "[queue]\nmax_per_domain = 0\n\n"
        '[relay]\nnameservers = ["dns.example"]\ntls = "maybe"\n'
        'tls_domains = { "x.example" = "always" }\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    keys = [p.split(": ")[1] for p in raised.value.problems]
    assert keys == ["queue.max_per_domain", "relay.nameservers", "relay.tls", "relay.tls_domains"]
    assert (
        "expected one of 'none', 'opportunistic', 'required', 'verify'" in raised.value.problems[2]
    )


def test_smarthost_gets_port_587_unless_given(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    for given, stored in (
        ("Relay.Example.NET", "relay.example.net:587"),
        ("relay.example.net:25", "relay.example.net:25"),
        ("[::1]:2525", "[::1]:2525"),
    ):
        path.write_text(f'[relay]\nsmarthost = "{given}"\n')
        assert load_config(str(tmp_path), str(path)).relay.smarthost == stored


def test_bad_smarthost_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[relay]\nsmarthost = "relay.example.net:99999"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    assert "relay.smarthost: expected" in raised.value.problems[0]


def test_tls_sni_names_are_dns_names_and_its_paths_relative_to_the_data_directory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "txmailhost.toml"
    path.write_text(
        '[tls]\nsni = { "Mail.B.Example." = ["certs/b.pem", "/etc/ssl/b.key"],'
        ' "*.C.example" = ["c.pem", "c.key"], "mail.bücher.example" = ["u.pem", "u.key"] }\n'
    )
    config = load_config(str(tmp_path / "data"), str(path))
    data = tmp_path / "data"
    assert config.tls.sni == {
        "mail.b.example": (str(data / "certs" / "b.pem"), "/etc/ssl/b.key"),
        "*.c.example": (str(data / "c.pem"), str(data / "c.key")),
        "mail.xn--bcher-kva.example": (str(data / "u.pem"), str(data / "u.key")),  # A-labels
    }
    assert load_config(str(tmp_path / "empty")).tls.sni == {}


def test_tls_sni_names_the_same_name_twice(tmp_path: Path) -> None:
    path = tmp_path / "txmailhost.toml"
    path.write_text(
        '[tls]\nsni = { "mail.b.example" = ["b.pem", "b.key"],'
        ' "MAIL.b.example." = ["b2.pem", "b2.key"] }\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path / "data"), str(path))
    (problem,) = raised.value.problems
    assert problem.startswith(f"{path}: tls.sni: expected a table of host name")
    assert problem.endswith("; 'MAIL.b.example.': the same name as another entry, got a table")


def test_a_config_file_larger_than_any_real_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nhostname = "mx.example.net"\n' + "#\n" * 600_000)
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    assert raised.value.problems == [f"{path}: the config file is larger than 1048576 bytes"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_config_file_that_is_a_fifo_or_a_device_is_refused_at_once(
    tmp_path: Path, kind: str
) -> None:
    """``--config /dev/zero`` read for ever, a FIFO waited for a writer for ever. (The
    device here is /dev/null, which the old code took as an empty file: /dev/zero would
    fill the machine's memory were the check ever lost.)"""
    data = tmp_path / "data"
    assert cli_main(["--data", str(data), "init", "--hostname", "mx.example.net"]) == 0
    path = tmp_path / "fifo.toml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/null")
    command = [sys.executable, "-m", "txmailhost.cli", "--data", str(data), "--config",
               str(path), "check-config"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == f"txmailhost: error: {path}: the config file is not a regular file\n"


@pytest.mark.parametrize(
    ("section", "key"), [("smtp", "max_message_size"), ("imap", "max_literal_size")]
)
def test_an_integer_beyond_64_bits_is_refused_naming_its_key(
    tmp_path: Path, section: str, key: str
) -> None:
    """TOML integers are 64-bit (tomllib takes any): 10**30 was announced as ``SIZE`` with
    31 digits (RFC 1870 allows 20) and ``APPENDLIMIT`` past IMAP's number64 (RFC 9051)."""
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{key} = {10**30}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    assert raised.value.problems == [
        f"{path}: {section}.{key}: expected a positive integer number of bytes (e.g. 52428800 "
        f"for 50 MiB), at most 9223372036854775807 (2^63-1), got {10**30}"
    ]
    path.write_text(f"[{section}]\n{key} = {2**63 - 1}\n")
    config = load_config(str(tmp_path), str(path))
    assert getattr(getattr(config, section), key) == 2**63 - 1


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a = " * 5000 + "1" + "}" * 5000])
def test_toml_nested_past_the_parsers_depth_is_one_config_error(
    tmp_path: Path, nested: str
) -> None:
    """tomllib recurses once a level: it was "unexpected RecursionError" in the CLI and a
    traceback at the server's start."""
    path = tmp_path / "c.toml"
    path.write_text(f'[server]\nhostname = "mx.example.net"\n[smtp]\nx = {nested}\n')
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), str(path))
    assert raised.value.problems == [f"{path}: invalid TOML: arrays or tables nested too deeply"]


def test_plain_tcp_listeners_are_checked_without_twisted_endpoints_or_tls(tmp_path: Path) -> None:
    """Every CLI command loads the config: "tcp:PORT[:interface=ADDR]" listeners (every
    default) are read without twisted.internet.endpoints, which imports OpenSSL and
    twisted.internet.ssl. Another kind still goes to Twisted, and both are still checked."""
    data = tmp_path / "data"
    assert cli_main(["--data", str(data), "init", "--hostname", "mx.example.net"]) == 0
    tcp6 = tmp_path / "tcp6.toml"
    tcp6.write_text("[listen]\nsubmission = 'tcp6:2587:interface=\\:\\:1'\n")
    probe = (
        "heavy = ('twisted.internet.endpoints', 'twisted.internet.ssl', 'OpenSSL')\n"
        f"load_config({str(data)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
        f"load_config({str(data)!r}, {str(tcp6)!r})\n"
        "print('twisted.internet.endpoints' in sys.modules)\n"
    )
    assert _config_probe(probe) == "[]\nTrue\n"
    problems = _listen_problems(
        data, 'smtp = "tcp:70000:interface=127.0.0.1"\nimap = "tcp:99999"\n'
    )
    assert "listen.smtp: " in problems
    assert "(port 70000 is not from 0 to 65535)" in problems
    assert "listen.imap: " in problems
    assert "(port 99999 is not from 0 to 65535)" in problems
    problems = _listen_problems(data, 'pop3 = "tcp:2601:interface=127.0.0.1"\nimap = "tcp:2601"\n')
    assert "listen.pop3: port 2601 is already used by listen.imap" in problems


def _config_probe(code: str) -> str:
    """What ``code`` prints in a fresh interpreter that has imported ``sys`` and
    ``load_config`` and nothing else (the modules it loads are then load_config's)."""
    probe = "import sys\nfrom txmailhost.config import load_config\n" + code
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _listen_problems(data: Path, listen: str) -> str:
    """The ConfigError a config of ``[listen]`` lines ``listen`` gets, as text."""
    path = data.parent / "bad.toml"
    path.write_text("[listen]\n" + listen)
    with pytest.raises(ConfigError) as raised:
        load_config(str(data), str(path))
    return str(raised.value)


def test_checking_the_listeners_loads_no_test_tooling(tmp_path: Path) -> None:
    """The endpoint checks "listened" on Twisted's ``MemoryReactor``, whose module imports
    trial and ``unittest``: 31 modules held by every server and CLI run for a config check.
    The checks still catch what they are for: a bad port, two listeners on one port."""
    data = tmp_path / "data"
    assert cli_main(["--data", str(data), "init", "--hostname", "mx.example.net"]) == 0
    probe = (
        f"load_config({str(data)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('twisted.internet.testing',"
        " 'twisted.trial.unittest'))))\n"
    )
    assert _config_probe(probe) == "[]\n"
    problems = _listen_problems(data, 'smtp = "tcp:70000"\n')
    assert "listen.smtp: " in problems
    assert "(port 70000 is not from 0 to 65535)" in problems
    problems = _listen_problems(data, 'pop3 = "tcp:2601"\nimap = "tcp:2601"\n')
    assert "listen.pop3: port 2601 is already used by listen.imap" in problems
