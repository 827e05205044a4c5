"""``txmailhost srs list|rotate|retire``, and a running server's keys following them."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from tests.support.clock import FakeClock
from tests.test_cli import Run, data, make_run, run  # noqa: F401 - fixtures
from txmailhost.srs import SRS, Keys, SRSError


@pytest.fixture
def srs_run(run: Run, data: Path) -> Run:  # noqa: F811 - the fixtures
    config = data / "txmailhost.toml"
    text = config.read_text()
    assert '# domain = ""' in text  # the [srs] section init writes
    config.write_text(text.replace('# domain = ""', 'domain = "fwd.example.org"', 1))
    return run


def listed(run: Run) -> list[tuple[str, str]]:  # noqa: F811
    result = run("srs", "list")
    assert result.status == 0, result.err
    return [tuple(line.split()[:2]) for line in result.out.splitlines()]


def test_list_rotate_and_retire_without_ever_printing_a_secret(srs_run: Run, data: Path):  # noqa: F811
    path = data / "srs" / "keys"
    [(first, state)] = listed(srs_run)
    assert state == "signs" and re.fullmatch(r"[0-9a-f]{12}", first)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    rotated = srs_run("srs", "rotate")
    assert rotated.status == 0 and "max_age_days" in rotated.out
    (second, _), (old, old_state) = listed(srs_run)
    assert second in rotated.out and (old, old_state) == (first, "verifies")
    secrets = path.read_text().split()
    for result in (rotated, srs_run("srs", "list")):
        assert not any(secret in result.out for secret in secrets)

    refused = srs_run("srs", "retire", second)  # the signing key
    assert refused.status == 1 and "signs" in refused.err
    unknown = srs_run("srs", "retire", "0123456789ab")
    assert unknown.status == 1 and "no SRS key" in unknown.err
    assert path.read_text().split() == secrets  # refusals changed nothing

    assert srs_run("srs", "retire", first.upper()).status == 0
    assert listed(srs_run) == [(second, "signs")]
    assert path.read_text().split() == secrets[:1]


def test_retire_before_any_key_exists_makes_none(srs_run: Run, data: Path):  # noqa: F811
    """It made DATA/srs/keys with a first key, then failed."""
    result = srs_run("srs", "retire", "deadbeef")
    assert (result.status, result.err) == (
        1,
        "txmailhost: error: no SRS key 'deadbeef': there are no keys yet\n",
    )
    assert not (data / "srs").exists()


def test_without_an_srs_domain_the_commands_say_so(run: Run):  # noqa: F811
    result = run("srs", "list")
    assert result.status == 0 and "[srs] domain is not set" in result.err


def test_a_running_server_signs_with_the_new_key_and_forgets_a_retired_one(
    srs_run: Run,
    data: Path,  # noqa: F811
):
    clock = FakeClock()
    keys = Keys(str(data / "srs" / "keys"), clock)
    server = SRS("fwd.example.org", keys)
    old_address = server.forward("bob@example.com").rpartition("@")[0]

    # Another process (this CLI) rotates: a bounce signed with the new key verifies at once
    # (a failed check looks at the file again), and the server signs with it within REFRESH.
    assert srs_run("srs", "rotate").status == 0
    cli_keys = Keys(str(data / "srs" / "keys"))
    new_signer = SRS("fwd.example.org", cli_keys)
    new_address = new_signer.forward("carol@example.com").rpartition("@")[0]
    clock.now += Keys.RETRY
    assert server.reverse(new_address) == "carol@example.com"
    assert server.reverse(old_address) == "bob@example.com"
    clock.now += Keys.REFRESH
    assert server.forward("dave@example.com") == new_signer.forward("dave@example.com")

    # Retired: the old key's addresses are refused once the server has looked again.
    (_new, _), (old, _) = listed(srs_run)
    assert srs_run("srs", "retire", old).status == 0
    clock.now += Keys.REFRESH
    with pytest.raises(SRSError):
        server.reverse(old_address)
    assert server.reverse(new_address) == "carol@example.com"
