"""``queue hold``, ``release`` and ``requeue`` (postsuper -h, -H, -r), and ``list --domain``."""

from __future__ import annotations

import os

from tests.queue.support import GREYLISTED, Harness, ScriptedCourier
from txmailhost.cli import main
from txmailhost.queue.spool import Spool


def fired(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_a_held_message_is_kept_untried_across_a_restart_until_released(tmp_path) -> None:
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED), retry_min=300)
    queue_id = h.submit()
    assert len(h.courier.calls) == 1  # tried once, deferred for 300 s
    assert fired(h.queue.hold(queue_id)) is True
    h.clock.advance(10_000)
    h.queue.flush()  # postqueue -f doesn't touch held mail either
    h.clock.advance(0)
    assert len(h.courier.calls) == 1
    h.restart(retry_min=300)
    h.clock.advance(10_000)
    assert len(h.courier.calls) == 1 and h.spool.load(queue_id).held
    assert fired(h.queue.release(queue_id)) is True
    h.clock.advance(0)
    assert len(h.courier.calls) == 2 and h.queued_ids() == []


def test_requeue_forgets_the_attempts_and_tries_now(tmp_path) -> None:
    h = Harness(tmp_path, ScriptedCourier(GREYLISTED, GREYLISTED, GREYLISTED), retry_min=300)
    queue_id = h.submit()
    h.clock.advance(300)
    assert [r.attempts for r in h.spool.load(queue_id).recipients] == [2]
    assert fired(h.queue.hold(queue_id)) is True
    assert fired(h.queue.requeue(queue_id)) is True  # released too
    h.clock.advance(0)
    [recipient] = h.spool.load(queue_id).recipients
    assert len(h.courier.calls) == 3 and recipient.attempts == 1  # counted afresh
    assert not h.spool.load(queue_id).held
    assert recipient.next_attempt == h.clock.seconds() + 300  # the first backoff again
    assert fired(h.queue.hold("NOSUCHID")) is False


def test_the_cli_leaves_hold_release_requeue_requests_and_lists_by_domain(tmp_path, capsys):
    data = str(tmp_path / "data")
    main(["--data", data, "init"])
    source = tmp_path / "msg"
    source.write_bytes(b"Subject: x\r\n\r\ny\r\n")
    spool = Spool(os.path.join(data, "queue"))
    spool.prepare()
    one = spool.add("a@example.test", ["x@far.test"], str(source), 1_700_000_000.0)
    two = spool.add("a@example.test", ["y@other.test"], str(source), 1_700_000_000.0)
    two.held = True
    spool.save(two)
    for kind in ("hold", "release", "requeue"):
        assert main(["--data", data, "queue", kind, one.queue_id]) == 0
    assert sorted(spool.take_requests()) == sorted(
        [("hold", one.queue_id), ("release", one.queue_id), ("requeue", one.queue_id)]
    )
    capsys.readouterr()
    assert main(["--data", data, "queue", "list", "--domain", "OTHER.test"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(two.queue_id) and line.endswith("(held)")
