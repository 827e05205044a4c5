"""SRS: forwarded senders rewritten, bounces reversed, forgeries and old addresses refused."""

from __future__ import annotations

import os
import stat

import pytest

from tests.support.clock import FakeClock
from txmailhost.srs import SRS, Keys, SRSError

DAY = 86400


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(20_000 * DAY + 3600.0)


@pytest.fixture
def srs(tmp_path, clock) -> SRS:
    return SRS("fwd.example.org", Keys(str(tmp_path / "srs" / "keys")), 21, clock)


def test_srs0_round_trip(srs):
    rewritten = srs.forward("Bob.Smith@example.com")
    local, _, domain = rewritten.rpartition("@")
    assert domain == "fwd.example.org" and local.startswith("SRS0=")
    assert local.endswith("=example.com=Bob.Smith")
    assert srs.is_srs(local, "FWD.example.org")
    assert srs.reverse(local) == "Bob.Smith@example.com"
    assert srs.reverse(local.lower()) == "bob.smith@example.com"  # a server lower-cased it


def test_forged_and_damaged_addresses_are_refused(srs):
    local = srs.forward("bob@example.com").rpartition("@")[0]
    forged = local.replace("=example.com=", "=evil.example=")
    for bad in (forged, "SRS0=AAAA=AA=example.com=bob", "SRS0=x", "SRS1=AAAA=x==y", "SRS2=x"):
        with pytest.raises(SRSError):
            srs.reverse(bad)


def test_addresses_expire_after_max_age(srs, clock):
    local = srs.forward("bob@example.com").rpartition("@")[0]
    clock.now += 21 * DAY
    assert srs.reverse(local) == "bob@example.com"
    clock.now += 2 * DAY
    with pytest.raises(SRSError, match="expired"):
        srs.reverse(local)


def test_srs1_for_another_forwarders_srs0_and_back(srs, tmp_path, clock):
    first = SRS("first.example", Keys(str(tmp_path / "first")), 21, clock)
    srs0 = first.forward("bob@example.com")
    srs1 = srs.forward(srs0)
    local = srs1.rpartition("@")[0]
    assert local.startswith("SRS1=") and "=first.example==" in local
    assert srs.reverse(local) == srs0
    assert first.reverse(srs0.rpartition("@")[0]) == "bob@example.com"
    third = SRS("third.example", Keys(str(tmp_path / "third")), 21, clock)
    again = third.forward(srs1)  # SRS1 forwarded again keeps the first forwarder
    assert third.reverse(again.rpartition("@")[0]) == srs0


def test_our_own_srs_address_is_not_wrapped_again(srs):
    rewritten = srs.forward("bob@example.com")
    assert srs.forward(rewritten) == rewritten


def test_key_rotation_keeps_old_addresses_valid(srs, tmp_path):
    old = srs.forward("bob@example.com").rpartition("@")[0]
    srs.keys.rotate()
    new = srs.forward("bob@example.com").rpartition("@")[0]
    assert old != new
    assert srs.reverse(old) == srs.reverse(new) == "bob@example.com"
    path = tmp_path / "srs" / "keys"
    assert len(path.read_text().split()) == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text(path.read_text().split()[0] + "\n")  # the old key retired by hand
    fresh = SRS("fwd.example.org", Keys(str(path)), 21, srs._clock)
    with pytest.raises(SRSError):
        fresh.reverse(old)
    assert fresh.reverse(new) == "bob@example.com"
