"""``Deadlines``: one timer for the answers a chain waits for, each failing at its own
deadline as ``Deferred.addTimeout`` would make it fail."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import Clock

from txmailhost.filters.deadlines import Deadlines


def outcome(d: Deferred) -> list:
    seen: list = []
    d.addBoth(seen.append)
    return seen


def test_an_answer_in_time_passes_through_and_one_past_its_deadline_times_out():
    clock = Clock()
    deadlines = Deadlines(clock, 5.0)
    answered, hanging = Deferred(), Deferred()
    answered_seen = outcome(deadlines.watch(answered))
    hanging_seen = outcome(deadlines.watch(hanging))
    clock.advance(4.9)
    answered.callback("verdict")
    assert answered_seen == ["verdict"] and hanging_seen == []
    clock.advance(0.1)
    (failure,) = hanging_seen
    assert failure.check(DeferredTimeout)
    assert clock.getDelayedCalls() == []


def test_each_answer_times_out_at_its_own_deadline_under_one_timer():
    clock = Clock()
    deadlines = Deadlines(clock, 10.0)
    seen = []
    for _ in range(5):  # asked at 0, 3, 6, 9, 12
        seen.append(outcome(deadlines.watch(Deferred())))
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(3.0)
    # now 15: the first two (deadlines 10 and 13) are past, the third (16) is not
    assert [bool(s) for s in seen] == [True, True, False, False, False]
    clock.advance(0.999)
    assert not seen[2]
    clock.advance(0.001)
    assert seen[2] and not seen[3]
    clock.advance(6.0)  # 22: all past (the last one's deadline)
    assert all(s and s[0].check(DeferredTimeout) for s in seen)
    assert clock.getDelayedCalls() == []


def test_an_answer_watched_when_another_times_out_keeps_its_own_deadline():
    """A timed-out answer's callbacks may ask the next filter at once (the chain goes on
    with the default verdict): that one's budget starts then, and the timer stays one."""
    clock = Clock()
    deadlines = Deadlines(clock, 5.0)
    later: list = []

    def next_filter(_failure):
        later.append(outcome(deadlines.watch(Deferred())))

    deadlines.watch(Deferred()).addErrback(next_filter)
    clock.advance(5.0)
    assert len(later) == 1 and later[0] == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(4.99)
    assert later[0] == []
    clock.advance(0.01)
    assert later[0][0].check(DeferredTimeout)


def test_a_failure_of_its_own_is_passed_on_not_made_a_timeout():
    clock = Clock()
    deadlines = Deadlines(clock, 5.0)
    failing = Deferred()
    seen = outcome(deadlines.watch(failing))
    failing.errback(ValueError("the filter's own error"))
    with pytest.raises(ValueError):
        seen[0].raiseException()
    clock.advance(10)
    assert len(seen) == 1


def test_an_answer_already_given_sets_no_timer():
    clock = Clock()
    deadlines = Deadlines(clock, 5.0)
    given = Deferred()
    given.callback("verdict")
    assert outcome(deadlines.watch(given)) == ["verdict"]
    assert clock.getDelayedCalls() == []
