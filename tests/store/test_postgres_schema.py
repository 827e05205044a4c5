"""Schema steps known by number: a step another branch adds below one already applied is
applied at the next upgrade, and a reserved number is neither applied nor recorded; a
database from before a step that adds tables gets them beside the mail it holds."""

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


def test_the_metadata_step_adds_its_tables_to_a_database_that_holds_mail(postgres_dsn):  # noqa: F811
    """A database of a release before METADATA (steps 1-7, a user with a mailbox): the next
    start applies step 8 (and any later), the mailbox keeps its row, and its entries can be kept."""
    import psycopg

    from tests.support.syncpool import SyncReactor, SyncThreadPool, result
    from txmailhost.store.postgres import PostgresStore

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY)")
        for version, step in enumerate(postgres_schema.MIGRATIONS[:7], 1):
            conn.execute(step)
            conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        user_id = conn.execute(
            "INSERT INTO mail_users (address) VALUES ('alice@example.test') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO mailboxes (user_id, name) VALUES (%s, 'INBOX'), (%s, 'Projects')",
            (user_id, user_id),
        )
        assert postgres_schema.missing_steps(conn)[0] == 8
    store = PostgresStore(postgres_dsn, SyncReactor(), SyncThreadPool())
    try:
        result(store.set_metadata("alice@example.test", "Projects", {"/private/x": b"\x00v"}))
        assert result(store.get_metadata("alice@example.test", "Projects")) == {
            "/private/x": b"\x00v"
        }
    finally:
        store.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert postgres_schema.missing_steps(conn) == []
        assert postgres_schema.current_version(conn) == postgres_schema.LATEST
