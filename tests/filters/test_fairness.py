"""``ClientSlots`` and ``client_key``: the per-client share of the filters' threads."""

from __future__ import annotations

import pytest

from txmailhost.filters.fairness import ClientSlots, client_key


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3::4", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unix", "unix"),
    ],
)
def test_a_client_is_its_address_or_its_ipv6_64(address, key):
    assert client_key(address) == key


def test_slots_are_handed_on_in_the_order_asked():
    slots = ClientSlots(1)
    first = slots.acquire("a")
    second, third = slots.acquire("a"), slots.acquire("a")
    other = slots.acquire("b")
    assert first.called and other.called and not second.called and not third.called
    slots.release("a")
    assert second.called and not third.called and slots.in_use("a") == 1
    slots.release("a")
    slots.release("a")
    assert third.called and slots.in_use("a") == 0 and slots.waiting("a") == 0


def test_a_cancelled_waiter_is_skipped():
    slots = ClientSlots(1)
    slots.acquire("a")
    gone, next_one = slots.acquire("a"), slots.acquire("a")
    gone.addErrback(lambda _f: None)
    gone.cancel()
    slots.release("a")
    assert next_one.called and slots.in_use("a") == 1


def test_envelope_checks_go_ahead_of_the_clients_waiting_end_of_data_checks():
    """A client's RCPT, behind a queue of its own slow messages, waits only for a slot to
    free, not for every message queued before it."""
    slots = ClientSlots(1)
    slots.acquire("a")
    data_1, data_2 = slots.acquire("a"), slots.acquire("a")
    rcpt_1, rcpt_2 = slots.acquire("a", first=True), slots.acquire("a", first=True)
    assert slots.waiting("a") == 4
    slots.release("a")
    assert rcpt_1.called and not (rcpt_2.called or data_1.called)
    rcpt_2.cancel()  # its session went away
    slots.release("a")
    assert data_1.called and not data_2.called
    slots.release("a")
    slots.release("a")
    assert data_2.called and slots.in_use("a") == 0 and slots.waiting("a") == 0
