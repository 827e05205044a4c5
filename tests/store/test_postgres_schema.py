"""Schema steps known by number: a step another branch adds below one already applied is
applied at the next upgrade, and a reserved number is neither applied nor recorded."""

from __future__ import annotations

from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.store import postgres_schema


def test_a_step_added_below_an_applied_one_is_applied_later(postgres_dsn, monkeypatch):  # noqa: F811
    import psycopg

    reserved = [n for n, step in enumerate(postgres_schema.MIGRATIONS, 1) if step is None]
    latest = postgres_schema.LATEST
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert postgres_schema.upgrade(conn) == (0, latest)
        assert postgres_schema.missing_steps(conn) == []
        recorded = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        assert recorded == set(range(1, latest + 1)) - set(reserved)
        if not reserved:
            return  # every number has its step: nothing reserved to fill in
        # The other branch merges: its step takes the reserved number.
        number = reserved[0]
        steps = list(postgres_schema.MIGRATIONS)
        steps[number - 1] = "CREATE TABLE merged_later (x integer)"
        monkeypatch.setattr(postgres_schema, "MIGRATIONS", tuple(steps))
        assert postgres_schema.missing_steps(conn) == [number]
        assert postgres_schema.current_version(conn) == number - 1
        assert postgres_schema.upgrade(conn) == (number - 1, latest)
        assert conn.execute("SELECT to_regclass('merged_later') IS NOT NULL").fetchone()[0]
        assert postgres_schema.upgrade(conn) == (latest, latest)
