"""bench/pg_driver.py runs end to end on a tiny size, and its async SQL matches the store's.

Not timings (nothing here asserts a speed): every variant runs every workload against a real
PostgreSQL (the tests' throwaway server; skipped without it), the variants answer alike, and
what the async side delivered is what ``PostgresStore`` itself reads back: consecutive UIDs
shared with the store's own deliveries, the right sizes and header blocks. So the bench can't
rot as the store changes under it.
"""

from __future__ import annotations

import importlib.util

import pytest

from bench import pg_driver
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures

FETCH, MESSAGES, CHAINS = 3, 12, 2


def _variants() -> list[str]:
    found = ["sync", "async", "sync-asyncio"]
    if importlib.util.find_spec("psycopg_pool") is not None:
        found.append("async-pool")
    return found


def _now(d):
    return pg_driver._now(d)


def test_every_variant_runs_every_workload_and_they_agree(postgres_dsn):  # noqa: F811
    from txmailhost.store.interfaces import INBOX
    from txmailhost.store.postgres import PostgresStore

    opts = pg_driver.options(
        ["--rounds", "1", "--seconds", "0.2", "--concurrency", str(CHAINS), "--fetch", str(FETCH)]
        + ["--mailbox-messages", str(MESSAGES), "--variants", *_variants()]
    )
    lines: list[str] = []
    results = pg_driver.run_driver(postgres_dsn, opts, lines.append)

    assert set(results) == {
        (variant, workload, CHAINS) for variant in _variants() for workload in pg_driver.WORKLOADS
    }
    for (variant, workload, _c), (run,) in results.items():
        assert run["ops"] > 0 and run["ops_per_s"] > 0, (variant, workload)
        assert run["p50_ms"] <= run["p99_ms"]
        expected = {
            "select": [MESSAGES, MESSAGES],  # every message listed, none seen
            "fetch": FETCH * 4096,  # the bodies, whole
            "store": 1,  # each STORE changed its message
        }.get(workload)
        if expected is not None:
            assert run["witness"] == expected, (variant, workload)
    assert "load average" in lines[0]
    assert "ops/s" in pg_driver.table(results).splitlines()[0]

    # Sync and async deliveries into the same mailboxes: one sequence of UIDs, and the
    # store reads every message the async SQL wrote as it reads its own.
    delivered = sum(
        run["all_ops"] for (_v, workload, _c), runs in results.items() for run in runs
        if workload == "deliver"
    )  # fmt: skip
    store = PostgresStore(postgres_dsn)
    try:
        found = 0
        for chain in range(CHAINS):
            box = _now(store.open(pg_driver.deliver_user(chain), INBOX))
            selection = _now(box.select(False))
            uids = list(selection.uids)
            assert uids == list(range(1, len(uids) + 1))
            for stored in _now(box.messages(uids, True, True)):
                assert stored.size == len(stored.content) == 4096
                assert stored.content.startswith(stored.header)
                assert stored.header.endswith(b"\r\n\r\n")
            found += len(uids)
        assert found == delivered
    finally:
        store.close()


def test_table_gives_the_median_and_range_of_the_rounds():
    runs = [
        {
            "ops_per_s": v,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "cpu_ms_per_op": 0.5,
            "pg_cpu_ms_per_op": None,
        }
        for v in (90.0, 100.0, 130.0)
    ]
    text = pg_driver.table({("sync", "deliver", 1): runs})
    assert "100.0 (90.0-130.0)" in text.splitlines()[1]


@pytest.mark.slow
def test_the_server_runs_on_either_reactor(postgres_server):  # noqa: F811
    opts = pg_driver.options(["--rounds", "1", "--smtp-messages", "8", "--imap-sessions", "2"])
    results = pg_driver.run_server(postgres_server, opts, lambda _line: None)
    for reactor in ("default", "asyncio"):
        assert results[(reactor, "smtp 50")][0]["msgs_per_s"] > 0
        assert results[(reactor, "imap 2")][0]["seconds"] > 0
