"""``txmailhost queue ...`` with ``[queue] backend = "postgres"``: the commands read the
database and change it at once (skipped without PostgreSQL)."""

from __future__ import annotations

from tests.queue.support import MESSAGE
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.cli import main
from txmailhost.queue.postgres import PostgresQueueStore


def queued(tmp_path, dsn: str) -> tuple[str, str, PostgresQueueStore]:
    data = str(tmp_path / "data")
    main(["--data", data, "init"])
    with open(f"{data}/txmailhost.toml", "w") as f:  # every other key at its default
        f.write(f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\n[queue]\nbackend = "postgres"\n')
    source = tmp_path / "incoming"
    source.write_bytes(MESSAGE)
    records = PostgresQueueStore(dsn)
    envelope = records.add(
        "alice@example.test", ["carol@remote.invalid"], str(source), 1_700_000_000.0
    )
    return data, envelope.queue_id, records


def test_list_show_hold_and_delete_act_on_the_database(tmp_path, capsys, postgres_dsn):  # noqa: F811
    data, queue_id, records = queued(tmp_path, postgres_dsn)
    try:
        capsys.readouterr()
        assert main(["--data", data, "queue", "list"]) == 0
        [line] = capsys.readouterr().out.splitlines()
        assert line.split()[0] == queue_id and "carol@remote.invalid(pending)" in line
        assert main(["--data", data, "queue", "show", queue_id]) == 0
        shown = capsys.readouterr().out
        assert '"sender": "alice@example.test"' in shown and "Subject: outbound" in shown
        assert main(["--data", data, "queue", "hold", queue_id]) == 0
        assert records.load(queue_id).held
        assert main(["--data", data, "queue", "list"]) == 0
        assert capsys.readouterr().out.rstrip().endswith("(held)")
        assert main(["--data", data, "queue", "delete", queue_id]) == 0
        assert records.ids() == []
        assert main(["--data", data, "queue", "show", queue_id]) == 1
        assert f"no message {queue_id} in the queue" in capsys.readouterr().err
    finally:
        records.close()
